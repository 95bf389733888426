import ArgumentParser
import CommandSupport
import Foundation
import StockClient

/// `stockctl stage FILE.csv`: a show's catalog in one STAGE request, so
/// stockd applies every line or none (PROTOCOL.md STAGE).
struct StageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stage",
        abstract: "Stage a show's catalog from a CSV, all lines or none: "
            + "sku,on_hand,backup,low_stock_threshold,per_customer_limit[,name].",
        discussion: """
            Each line sets the SKU's on-hand, backup (units held back from sale until \
            `stockctl backup release`), low-stock threshold and per-customer limit (0: none), creating \
            the SKU if new. The file is RFC 4180 CSV: a field may be quoted ("CSV-Q-1", "Aurora, blue"), \
            with a quote inside doubled; spaces around a field are trimmed; a UTF-8 BOM and CRLF are fine. \
            Blank lines and # comments are skipped; a first line starting with 'sku' \
            is a header; the name column (the rest of the line) is for people and not sent. \
            Every line is checked before anything is sent: each bad line is reported as FILE:LINE: reason \
            and nothing is applied (exit 2). stockd then applies the whole file in one step or refuses it \
            whole (exit 1), e.g. when a line would take off sale units that are reserved or sold. \
            --dry-run shows what would change and sends nothing that changes state.
            """)

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The CSV file.") var file: String
    @Flag(name: .customLong("dry-run"), help: "Show the changes without applying them.") var dryRun = false

    struct Row: Equatable {
        let line: Int
        let stage: StageLine
        let name: String
    }

    /// The rows, or every bad line as `LINE: reason`.
    static func parse(_ text: String) -> (rows: [Row], errors: [(line: Int, reason: String)]) {
        var rows: [Row] = []
        let csv = csvRecords(text, isHeader: { $0.first?.lowercased() == "sku" })
        var errors: [(line: Int, reason: String)] = csv.errors
        var seen: [String: Int] = [:]
        for (lineNo, fields) in csv.records {
            switch parseLine(fields, seen: seen) {
            case .failure(let why): errors.append((lineNo, why.message))
            case .success(let stage):
                seen[fields[0]] = lineNo
                let name = fields.count > 5 ? fields[5...].joined(separator: ",") : ""
                rows.append(Row(line: lineNo, stage: stage, name: name))
            }
        }
        if rows.isEmpty && errors.isEmpty { errors.append((0, "no lines to stage")) }
        if rows.count > Limits.maxStageLines {
            errors.append((rows[Limits.maxStageLines].line,
                           "more than \(Limits.maxStageLines) SKUs: one stage holds at most \(Limits.maxStageLines)"))
        }
        return (rows, errors)
    }

    struct LineError: Error { let message: String }

    private static func parseLine(_ f: [String], seen: [String: Int]) -> Result<StageLine, LineError> {
        guard f.count >= 5 else {
            return .failure(LineError(message: "expected sku,on_hand,backup,low_stock_threshold,per_customer_limit[,name], "
                                      + "got \(f.count) field\(f.count == 1 ? "" : "s")"))
        }
        guard let sku = SKU(f[0]), sku.isValidSKU else {
            return .failure(LineError(message: "SKU '\(f[0])' must be 1-64 bytes of UTF-8 without control characters"))
        }
        if let first = seen[f[0]] { return .failure(LineError(message: "SKU '\(f[0])' already on line \(first)")) }
        guard let onHand = UInt64(f[1]), onHand <= Limits.maxStock else {
            return .failure(LineError(message: "on_hand '\(f[1])' must be a whole number 0...\(Limits.maxStock)"))
        }
        guard let backup = UInt64(f[2]) else {
            return .failure(LineError(message: "backup '\(f[2])' must be a whole number"))
        }
        guard backup <= onHand else {
            return .failure(LineError(message: "backup \(backup) is more than on_hand \(onHand)"))
        }
        guard let low = UInt32(f[3]) else {
            return .failure(LineError(message: "low_stock_threshold '\(f[3])' must be a whole number 0...\(UInt32.max)"))
        }
        guard let limit = UInt32(f[4]) else {
            return .failure(LineError(message: "per_customer_limit '\(f[4])' must be a whole number 0...\(UInt32.max)"))
        }
        return .success(StageLine(sku: sku, onHand: onHand, backup: backup, lowStockThreshold: low,
                                  perCustomerLimit: limit))
    }

    func run() async throws {
        let (rows, errors) = Self.parse(try readOperatorFile(file))
        try rejectBadLines(file, errors, nothing: dryRun ? "checked" : "staged")
        let client = try options.makeClient()
        defer { client.close() }
        let lines = rows.map(\.stage)
        let maxFrame = Int(try await client.serverInfo().maxFrame)
        let bytes = StockClient.stageFrameBytes(lines)
        guard bytes <= maxFrame else {
            throw CLIError("\(file): \(rows.count) SKUs make a \(bytes)-byte request, above this stockd's maximum "
                           + "frame of \(maxFrame) bytes (stockd --max-frame); nothing staged", code: ExitStatus.failure)
        }
        if dryRun { return try await preview(rows, client) }
        let result: Result<StageReply, StockError>
        do throws(StockError) {
            result = .success(try await client.stage(lines))
        } catch {
            result = .failure(error)
        }
        let reply: StageReply
        switch result {
        case .success(let r): reply = r
        case .failure(.stageRefused(let refused)):
            throw CLIError("\(file): stockd refused \(refused.count) line\(refused.count == 1 ? "" : "s"), "
                           + "nothing staged", code: ExitStatus.failure,
                           lines: refused.map { "\(file):\(Self.lineNumber($0, rows)): \(Self.describe($0, rows))" })
        case .failure(let error): throw error
        }
        let backup = lines.reduce(UInt64(0)) { $0 + $1.backup }
        let onHand = lines.reduce(UInt64(0)) { $0 + $1.onHand }
        emit(options, json: .object([("staged", .uint(UInt64(reply.lines))), ("created", .uint(UInt64(reply.created))),
                                     ("on_hand", .uint(onHand)), ("backup", .uint(backup))]),
             human: "staged \(reply.lines) SKUs (\(reply.created) new): \(onHand) units on hand, "
                 + "\(backup) held back as backup")
    }

    static func lineNumber(_ r: StageRefusal, _ rows: [Row]) -> Int {
        Int(r.line) < rows.count ? rows[Int(r.line)].line : 0
    }

    /// One refused line in words.
    static func describe(_ r: StageRefusal, _ rows: [Row]) -> String {
        guard Int(r.line) < rows.count else { return "line \(r.line): \(r.status.name)" }
        let s = rows[Int(r.line)].stage
        switch r.status {
        case .insufficientAvailable:
            return "\(s.sku): on_hand \(s.onHand) with backup \(s.backup) would take units off sale that are "
                + "reserved or sold (only \(r.value) available now)"
        case .atCapacity:
            return "\(s.sku): the catalog is full (room for \(r.value) more SKUs; stockd --max-skus)"
        default:
            return "\(s.sku): \(r.status.name)"
        }
    }

    /// --dry-run: the current and the staged values side by side.
    private func preview(_ rows: [Row], _ client: StockClient) async throws {
        var now: [String: StockInfo] = [:]
        for e in try await client.listAllStock() { now[e.sku.string] = e.info }
        let headers = ["LINE", "SKU", "ON_HAND", "BACKUP", "LOW", "LIMIT", "CHANGE"]
        var body: [[String]] = []
        var json: [JSON] = []
        for r in rows {
            let s = r.stage, sku = s.sku.string
            let cur = now[sku]
            func pair(_ old: UInt64?, _ new: UInt64) -> String { old.map { $0 == new ? "\(new)" : "\($0) -> \(new)" } ?? "\(new)" }
            let change: String
            if let cur {
                let same = cur.onHand == s.onHand && cur.backup == s.backup
                    && cur.lowStockThreshold == s.lowStockThreshold && cur.perCustomerLimit == s.perCustomerLimit
                let held = cur.reserved + cur.confirmed
                change = s.onHand - s.backup < held ? "REFUSED: \(held) reserved or sold" : (same ? "unchanged" : "update")
            } else {
                change = "new"
            }
            body.append(["\(r.line)", sku, pair(cur?.onHand, s.onHand), pair(cur?.backup, s.backup),
                         pair(cur.map { UInt64($0.lowStockThreshold) }, UInt64(s.lowStockThreshold)),
                         pair(cur.map { UInt64($0.perCustomerLimit) }, UInt64(s.perCustomerLimit)), change])
            json.append(.object([("line", .int(Int64(r.line))), ("sku", .string(sku)), ("change", .string(change)),
                                 ("on_hand", .uint(s.onHand)), ("backup", .uint(s.backup))]))
        }
        emit(options, json: .array(json),
             human: (formatTable(headers, body, leftColumns: [1, 6]) + ["dry run: nothing staged"])
                .joined(separator: "\n"))
    }
}

/// `stockctl backup release|hold`: move units between a SKU's backup and sale.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "Release backup units to sale, or hold available units back.",
        subcommands: [BackupRelease.self, BackupHold.self])
}

struct BackupRelease: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release", abstract: "Put N backup units of SKU on sale (all of them without N).")

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The SKU.") var sku: String
    @Argument(help: "Units to release (default: every backup unit).") var units: UInt64?

    func validate() throws {
        try Check.sku(sku)
        if let units { guard units >= 1, units <= Limits.maxStock else { throw ValidationError("N must be 1...\(Limits.maxStock)") } }
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let info = try await namingSKU(sku) { () async throws(StockError) in
            try await client.releaseBackup(sku, quantity: units)
        }
        printStock(options, sku, info)
    }
}

struct BackupHold: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hold", abstract: "Take N available units of SKU off sale as backup.")

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The SKU.") var sku: String
    @Argument(help: "Units to hold back.") var units: UInt64

    func validate() throws {
        try Check.sku(sku)
        guard units >= 1, units <= Limits.maxStock else { throw ValidationError("N must be 1...\(Limits.maxStock)") }
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let info = try await namingSKU(sku) { () async throws(StockError) in
            try await client.holdBackup(sku, quantity: units)
        }
        printStock(options, sku, info)
    }
}
