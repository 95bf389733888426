import CommandSupport
import Foundation
import StockProtocol

/// The `--catalog` file: `sku,on_hand[,low_stock_threshold][,per_customer_limit]`
/// per record, RFC 4180 CSV (quoted fields, doubled quotes, CRLF, a UTF-8 BOM; read by CSV.swift);
/// blank lines and `#` comments are skipped; a first record whose first field is `sku` is a header.
/// Every error names the line its record starts on.
enum CatalogFile {
    struct LineError: Error, CustomStringConvertible {
        let description: String
    }

    static func load(path: String) throws -> [StockSet] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LineError(description: "--catalog \(path): cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw LineError(description: "--catalog \(path): not UTF-8 text")
        }
        return try parse(text, name: path)
    }

    static func parse(_ text: String, name: String) throws -> [StockSet] {
        var result: [StockSet] = []
        var seen = Set<SKU>()
        for (lineNo, fields) in try records(text, name: name) {
            func fail(_ why: String) -> LineError { LineError(description: "--catalog \(name) line \(lineNo): \(why)") }
            if result.isEmpty && seen.isEmpty && fields.first?.lowercased() == "sku" { continue }
            guard (2...4).contains(fields.count) else {
                throw fail("expected sku,on_hand[,low_stock_threshold][,per_customer_limit], got \(fields.count) fields")
            }
            guard let sku = SKU(fields[0]), sku.isValidSKU else {
                throw fail("SKU '\(fields[0])' must be 1-64 bytes of UTF-8 without control characters")
            }
            guard seen.insert(sku).inserted else { throw fail("SKU '\(fields[0])' appears twice") }
            guard let onHand = UInt64(fields[1]), onHand <= Limits.maxStock else {
                throw fail("on_hand '\(fields[1])' must be a whole number 0...\(Limits.maxStock)")
            }
            var threshold: UInt32?
            var limit: UInt32?
            if fields.count >= 3 && !fields[2].isEmpty {
                guard let t = UInt32(fields[2]) else { throw fail("low_stock_threshold '\(fields[2])' must be a whole number") }
                threshold = t
            }
            if fields.count == 4 && !fields[3].isEmpty {
                guard let l = UInt32(fields[3]) else { throw fail("per_customer_limit '\(fields[3])' must be a whole number") }
                limit = l
            }
            result.append(StockSet(sku: sku, onHand: onHand, lowStockThreshold: threshold, perCustomerLimit: limit))
        }
        return result
    }

    /// The non-blank, non-comment records of `text`, each with the line it starts on: the same RFC 4180
    /// reading as stockctl's files (CommandSupport's `csvRecords`); the first unreadable line is the error.
    static func records(_ text: String, name: String) throws -> [(line: Int, fields: [String])] {
        let csv = csvRecords(text, isHeader: { _ in false })
        if let first = csv.errors.min(by: { $0.line < $1.line }) {
            throw LineError(description: "--catalog \(name) line \(first.line): \(first.reason)")
        }
        return csv.records
    }
}
