import CommandSupport
import Foundation
import StockClient

/// A JSON value with keys kept in the order they were given.
indirect enum JSON {
    case object([(String, JSON)])
    case array([JSON])
    case string(String)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case bool(Bool)
    case null

    var rendered: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .object(let fields):
            out += "{"
            for (i, (key, value)) in fields.enumerated() {
                if i > 0 { out += "," }
                JSON.escape(key, to: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .string(let s): JSON.escape(s, to: &out)
        case .int(let n): out += String(n)
        case .uint(let n): out += String(n)
        case .double(let d): out += d.isFinite ? String(format: "%.3f", d) : "null"
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        }
    }

    static func escape(_ s: String, to out: inout String) { JSONString.append(s, to: &out) }
}

/// What stock get / list / set / adjust print per SKU.
func stockJSON(_ sku: String, _ info: StockInfo) -> JSON {
    .object([
        ("sku", .string(sku)),
        ("on_hand", .uint(info.onHand)),
        ("available", .uint(info.available)),
        ("reserved", .uint(info.reserved)),
        ("confirmed", .uint(info.confirmed)),
        ("backup", .uint(info.backup)),
        ("low_stock_threshold", .uint(UInt64(info.lowStockThreshold))),
        ("per_customer_limit", .uint(UInt64(info.perCustomerLimit))),
    ])
}

/// SOLD OUT when nothing is available, LOW at or under a set threshold.
func stockStatus(_ info: StockInfo) -> String {
    if info.available == 0 { return "SOLD OUT" }
    if info.lowStockThreshold > 0 && info.available <= UInt64(info.lowStockThreshold) { return "LOW" }
    return ""
}

let stockHeaders = ["SKU", "ON_HAND", "AVAILABLE", "RESERVED", "CONFIRMED", "BACKUP", "LOW", "LIMIT", "STATUS"]

func stockRow(_ sku: String, _ info: StockInfo) -> [String] {
    [sku, "\(info.onHand)", "\(info.available)", "\(info.reserved)", "\(info.confirmed)", "\(info.backup)",
     info.lowStockThreshold > 0 ? "\(info.lowStockThreshold)" : "-",
     info.perCustomerLimit > 0 ? "\(info.perCustomerLimit)" : "-", stockStatus(info)]
}

/// Aligned columns: the first column left-aligned, the others right-aligned
/// except those in `leftColumns`. Returns one string per line (no newline).
func formatTable(_ headers: [String], _ rows: [[String]], leftColumns: Set<Int> = [0]) -> [String] {
    var widths = headers.map(\.count)
    for row in rows {
        for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ cells: [String]) -> String {
        var parts: [String] = []
        for (i, cell) in cells.enumerated() {
            let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
            parts.append(leftColumns.contains(i) ? cell + pad : pad + cell)
        }
        var s = parts.joined(separator: "  ")
        while s.hasSuffix(" ") { s.removeLast() }
        return s
    }
    return [line(headers)] + rows.map(line)
}

/// `key  value` lines with the keys padded to one width.
func formatPairs(_ pairs: [(String, String)]) -> String {
    let width = pairs.map(\.0.count).max() ?? 0
    return pairs.map { $0.0 + String(repeating: " ", count: width - $0.0.count) + "  " + $0.1 }
        .joined(separator: "\n")
}

/// Seconds with one decimal from milliseconds: `89.9s`.
func seconds(_ ms: UInt64) -> String {
    String(format: "%.1fs", Double(ms) / 1000)
}

/// Prints the JSON document or the human text.
func emit(_ options: GlobalOptions, json: @autoclosure () -> JSON, human: @autoclosure () -> String) {
    if options.json {
        print(json().rendered)
    } else {
        print(human())
    }
}
