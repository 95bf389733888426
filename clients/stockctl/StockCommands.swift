import ArgumentParser
import CommandSupport
import Foundation
import StockClient

struct StockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stock", abstract: "Read and set stock levels.",
        subcommands: [StockGet.self, StockSetCommand.self, StockAdjustCommand.self, StockListCommand.self,
                      StockImportCommand.self])
}

/// Prints one SKU's counters (stock get / set / adjust).
func printStock(_ options: GlobalOptions, _ sku: String, _ info: StockInfo) {
    emit(options, json: stockJSON(sku, info),
         human: formatTable(stockHeaders, [stockRow(sku, info)]).joined(separator: "\n"))
}

/// Runs `body`, turning `unknownSKU` into a message that names the SKU.
func namingSKU<T>(_ sku: String, _ body: () async throws(StockError) -> T) async throws -> T {
    do {
        return try await body()
    } catch .unknownSKU {
        throw CLIError("unknown SKU '\(sku)'", code: ExitStatus.failure)
    }
}

struct StockGet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "One SKU's counters.")

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The SKU.") var sku: String

    func validate() throws { try Check.sku(sku) }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        printStock(options, sku, try await namingSKU(sku) { () async throws(StockError) in try await client.stock(sku) })
    }
}

struct StockSetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set", abstract: "Set on-hand units of SKU (creates it if new).")

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The SKU.") var sku: String
    @Argument(help: "Units on hand.") var onHand: UInt64
    @Option(help: "Low-stock threshold (0: none).") var low: UInt32?
    @Option(help: "Per-customer limit (0: none).") var limit: UInt32?
    @Option(help: "Only if on-hand is now this (compare-and-set).") var expect: UInt64?

    func validate() throws {
        try Check.sku(sku)
        try Check.stock(onHand, name: "on-hand")
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let info = try await client.setStock(sku, onHand: onHand, expected: expect, lowStockThreshold: low,
                                             perCustomerLimit: limit)
        printStock(options, sku, info)
    }
}

struct StockAdjustCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adjust", abstract: "Add (+N) or remove (-N, available units only) units of SKU.")

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The SKU.") var sku: String
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Change in units: 5, +5 or -5.", valueName: "delta"))
    var delta: [String] = []
    @Option(help: "restock, shrinkage, damage, return, correction or transfer.") var reason: String?

    func parsedDelta() throws -> Int64 {
        let delta = self.delta.filter { $0 != "--" }
        guard delta.count == 1 else {
            throw ValidationError(delta.isEmpty ? "missing the change in units (e.g. 5 or -5)"
                                  : "expected one change in units, got '\(delta.joined(separator: " "))'")
        }
        var text = Substring(delta[0])
        if text.hasPrefix("+") { text = text.dropFirst() }
        guard let d = Int64(text), d != 0, d.magnitude <= Limits.maxStock else {
            throw ValidationError("invalid change in units '\(delta[0])': a non-zero whole number like 5 or -5")
        }
        return d
    }

    func parsedReason() throws -> AdjustReason {
        guard let reason else { return .unspecified }
        guard let r = AdjustReason.allCases.first(where: { $0.name == reason && $0 != .unspecified }) else {
            throw ValidationError("--reason must be restock, shrinkage, damage, return, correction or transfer")
        }
        return r
    }

    func validate() throws {
        try Check.sku(sku)
        _ = try parsedDelta()
        _ = try parsedReason()
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let delta = try parsedDelta(), reason = try parsedReason()
        let info = try await namingSKU(sku) { () async throws(StockError) in
            try await client.adjustStock(sku, delta: delta, reason: reason)
        }
        printStock(options, sku, info)
    }
}

struct StockListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Every SKU's counters.",
        discussion: "Drill SKUs (\(ReservedSKU.drillPrefix)…, left behind by stockctl drill) are left out unless "
            + "--include-drill.")

    @OptionGroup var options: GlobalOptions
    @Flag(name: .customLong("low-only"), help: "Only SKUs sold out or at/under their low-stock threshold.")
    var lowOnly = false
    @Flag(name: .customLong("include-drill"),
          help: "Include drill SKUs (\(ReservedSKU.drillPrefix)…, stockctl drill's), left out by default.")
    var includeDrill = false

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let selection = SKUSelection(includeDrill: includeDrill)
        var entries = try await client.listAllStock().filter { selection.selects($0.sku.string) }
        if lowOnly { entries = entries.filter { !stockStatus($0.info).isEmpty } }
        emit(options, json: .array(entries.map { stockJSON($0.sku.string, $0.info) }),
             human: formatTable(stockHeaders, entries.map { stockRow($0.sku.string, $0.info) })
                .joined(separator: "\n"))
    }
}

struct StockImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Set stock from a CSV: sku,on_hand[,low_stock_threshold][,per_customer_limit].",
        discussion: """
            RFC 4180 CSV (quoted fields, doubled quotes, CRLF, a UTF-8 BOM). \
            Blank lines and # comments are skipped; a first line starting with 'sku' is a header. \
            Every line is checked before anything is applied: each bad line is reported as FILE:LINE: reason \
            and nothing is applied (exit 2).
            """)

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The CSV file.") var file: String

    struct Row {
        let sku: String
        let onHand: UInt64
        let low: UInt32?
        let limit: UInt32?
    }

    /// The rows, or every bad line as `LINE: reason`.
    static func parse(_ text: String) -> (rows: [Row], errors: [(line: Int, reason: String)]) {
        var rows: [Row] = []
        let csv = csvRecords(text, isHeader: { $0.first?.lowercased() == "sku" })
        var errors: [(line: Int, reason: String)] = csv.errors
        var seen: [String: Int] = [:]
        for (lineNo, fields) in csv.records {
            guard (2...4).contains(fields.count) else {
                errors.append((lineNo, "expected sku,on_hand[,low_stock_threshold][,per_customer_limit], "
                               + "got \(fields.count) fields"))
                continue
            }
            guard let sku = SKU(fields[0]), sku.isValidSKU else {
                errors.append((lineNo, "SKU '\(fields[0])' must be 1-64 bytes of UTF-8 without control characters"))
                continue
            }
            if let first = seen[fields[0]] {
                errors.append((lineNo, "SKU '\(fields[0])' already on line \(first)"))
                continue
            }
            seen[fields[0]] = lineNo
            guard let onHand = UInt64(fields[1]), onHand <= Limits.maxStock else {
                errors.append((lineNo, "on_hand '\(fields[1])' must be a whole number 0...\(Limits.maxStock)"))
                continue
            }
            var low: UInt32?
            var limit: UInt32?
            if fields.count >= 3 && !fields[2].isEmpty {
                guard let t = UInt32(fields[2]) else {
                    errors.append((lineNo, "low_stock_threshold '\(fields[2])' must be a whole number"))
                    continue
                }
                low = t
            }
            if fields.count == 4 && !fields[3].isEmpty {
                guard let l = UInt32(fields[3]) else {
                    errors.append((lineNo, "per_customer_limit '\(fields[3])' must be a whole number"))
                    continue
                }
                limit = l
            }
            rows.append(Row(sku: fields[0], onHand: onHand, low: low, limit: limit))
        }
        return (rows, errors)
    }

    func run() async throws {
        let (rows, errors) = Self.parse(try readOperatorFile(file))
        try rejectBadLines(file, errors, nothing: "imported")
        let client = try options.makeClient()
        defer { client.close() }
        let progress = isTerminal(STDERR_FILENO) ? ProgressBar(total: rows.count) : nil
        for (i, row) in rows.enumerated() {
            do {
                try await client.setStock(row.sku, onHand: row.onHand, lowStockThreshold: row.low,
                                          perCustomerLimit: row.limit)
            } catch {
                progress?.finish()
                throw CLIError("\(row.sku): \(error) (\(i) of \(rows.count) SKUs imported before it)",
                               code: ExitStatus.code(for: error))
            }
            progress?.update(i + 1)
        }
        progress?.finish()
        emit(options, json: .object([("imported", .int(Int64(rows.count)))]), human: "imported \(rows.count) SKUs")
    }
}

/// `[#####.....] 50/100` redrawn in place on stderr.
final class ProgressBar {
    let total: Int
    private var shown = -1

    init(total: Int) { self.total = total }

    func update(_ done: Int) {
        let width = 30
        let filled = total == 0 ? width : done * width / total
        // Redraw at most once per filled cell, and at the end.
        guard filled != shown || done == total else { return }
        shown = filled
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        writeStderr("\r[\(bar)] \(done)/\(total)")
    }

    func finish() {
        if shown >= 0 { writeStderr("\n") }
    }
}
