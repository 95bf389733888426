import ArgumentParser
import Foundation
import StockClient

/// `stockctl report`: the post-show report, computed from the event feed
/// (definitions in clients/README-report.md).
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "The post-show report per SKU from the event feed, and the next show's staging suggestion.",
        discussion: """
            Reads the event feed from --since (an offset, or an ISO-8601 UTC time such as \
            2026-11-27T18:00:00Z; default: the oldest offset held), or from the last STAGE on the feed with \
            --since-stage, up to the feed's end when it starts, \
            then prints per SKU: staged, sold, reserved (lines), released and expired (units), backup \
            used (backup units released to sale), remaining (unsold units now), conversion (confirmed \
            lines / reserved lines) and when it sold out, with a totals row; then the next show's staging \
            suggestion as a `stockctl stage` CSV (on_hand ceil(sold x 1.1), at least the staged units for \
            a SKU that sold out, the staged units kept for a SKU that sold nothing (named in a note on \
            stderr); backup as staged this show, at most that on_hand; threshold and limit as now). Drill \
            SKUs (DRILL-...) are left out unless --include-drill. --csv prints the table as CSV (the suggestion then goes only to \
            --suggest); --json prints one document with "skus", "totals" and "suggestion". \
            Definitions: clients/README-report.md.
            """)

    @OptionGroup var options: GlobalOptions
    @Option(help: ArgumentHelp("First offset of the show, or its start time (ISO-8601 UTC).", valueName: "offset|time"))
    var since: String?
    @Flag(name: .customLong("since-stage"),
          help: "The show staged last: from the last STAGE on the feed (its first stock_set) to the end.")
    var sinceStage = false
    @Flag(name: .customLong("include-drill"),
          help: "Include drill SKUs (\(ReservedSKU.drillPrefix)…, stockctl drill's), left out by default.")
    var includeDrill = false
    @Flag(help: "Print the per-SKU table as CSV.") var csv = false
    @Option(help: ArgumentHelp("Write the staging suggestion (a `stockctl stage` CSV) to this file.", valueName: "file"))
    var suggest: String?

    enum Since: Equatable {
        case oldest
        case offset(UInt64)
        case time(ms: UInt64)
    }

    func parsedSince() throws -> Since {
        if sinceStage { return .oldest }  // the whole feed is read; the window opens at the last stage found
        guard let since else { return .oldest }
        if since.allSatisfy({ $0.isASCII && $0.isNumber }) {
            guard let n = UInt64(since), n >= 1 else {
                throw ValidationError("--since \(since): expected an offset >= 1 or an ISO-8601 UTC time like 2026-11-27T18:00:00Z")
            }
            return .offset(n)
        }
        guard let ms = Self.parseISOTime(since) else {
            throw ValidationError("--since \(since): expected an offset >= 1 or an ISO-8601 UTC time like 2026-11-27T18:00:00Z")
        }
        return .time(ms: ms)
    }

    /// `2026-11-27T18:00:00Z` or `2026-11-27T18:00:00.250Z` as Unix epoch milliseconds.
    static func parseISOTime(_ s: String) -> UInt64? {
        guard s.hasSuffix("Z") else { return nil }
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = plain.date(from: s) ?? fractional.date(from: s) else { return nil }
        let ms = (date.timeIntervalSince1970 * 1000).rounded()
        guard ms >= 0 else { return nil }
        return UInt64(ms)
    }

    func validate() throws {
        _ = try parsedSince()
        if sinceStage && since != nil { throw ValidationError("--since and --since-stage: choose one") }
        if csv && options.json { throw ValidationError("--csv and --json: choose one") }
        if let suggest, suggest.isEmpty { throw ValidationError("--suggest: expected a file name") }
    }

    func run() async throws {
        let since = try parsedSince()
        let client = try options.makeClient()
        defer { client.close() }
        var tally = ReportTally(selection: SKUSelection(includeDrill: includeDrill))
        // --since-stage: nothing is in the window until a stage is found.
        if sinceStage { tally.windowFromOffset = .max }
        var stages = StageDetector()
        let from: FeedPosition
        switch since {
        case .offset(let n):
            from = .offset(n)
            tally.windowFromOffset = n
        case .oldest, .time:
            from = .oldest
        }
        if case .time(let ms) = since { tally.sinceMs = ms }
        let feed: EventFeed
        do throws(StockError) {
            feed = try await client.events(from: from, filter: EventFilter(includeProgress: true), resume: false)
        } catch {
            switch error {
            case .offsetCompacted(let oldest):
                throw CLIError("--since \(self.since ?? ""): that part of the feed is compacted away (retention); "
                               + "the oldest offset held is \(oldest)", code: ExitStatus.failure)
            case .invalidArgument where from != .oldest:
                throw CLIError("--since \(self.since ?? ""): beyond the feed's end (an offset from another server?)",
                               code: ExitStatus.failure)
            default: throw error
            }
        }
        defer { feed.close() }
        let end = feed.end
        if tally.windowFromOffset == 0 { tally.windowFromOffset = feed.start }
        tally.windowToOffset = end
        if feed.start <= end {
            for try await e in feed {
                if e.kind != .progress {
                    if sinceStage, let stage = stages.observe(e) { tally.reopen(at: stage.offset, skus: stage.skus) }
                    tally.add(e)
                }
                if e.offset >= end { break }
            }
        }
        if sinceStage && stages.found == nil {
            throw CLIError("--since-stage: no STAGE among the events held (offsets \(feed.start)-\(end)); "
                           + "give --since OFFSET|TIME", code: ExitStatus.failure)
        }
        var now: [String: StockInfo] = [:]
        if !tally.skus.isEmpty {
            for entry in try await client.listAllStock() where tally.skus[entry.sku.string] != nil {
                now[entry.sku.string] = entry.info
            }
        }
        let report = tally.finish(now: now)
        let suggestionCSV = ([Report.suggestionHeader] + report.rows.map(Report.suggestionLine))
            .joined(separator: "\n") + "\n"
        if let suggest {
            guard FileManager.default.createFile(atPath: suggest, contents: Data(suggestionCSV.utf8)) else {
                throw CLIError("--suggest \(suggest): cannot write the file", code: ExitStatus.usage)
            }
        }
        if options.json {
            print(report.json.rendered)
        } else if csv {
            print(report.csv, terminator: "")
        } else {
            print(report.table.joined(separator: "\n"))
            if let suggest {
                print("\nstaging suggestion written to \(suggest) (\(report.rows.count) SKUs)")
            } else {
                print("\n" + suggestionCSV, terminator: "")
            }
        }
        fflush(nil)
        // After the output, so it is the last thing the operator reads; JSON carries it as each row's `basis`.
        if !options.json, let note = report.unsoldNote { writeStderr("stockctl: note: \(note)\n") }
    }
}

/// Per-SKU counts from the events read (see README-report.md for the definitions).
struct ReportTally {
    /// One SKU's replay state and window counts.
    struct SKUState {
        /// On-hand by replay: absolute once a stock_set was read (`onHandKnown`),
        /// before that relative to the on-hand when the read started.
        var onHand: Int64 = 0
        var onHandKnown = false
        /// Confirmed units read so far (relative to the confirmed count when the read started).
        var confirmedRead: Int64 = 0
        /// Whether the SKU had an event in the window.
        var inWindow = false
        /// The show's start for this SKU: the replay state just before its first sale activity in the window.
        var start: (onHand: Int64, onHandRelative: Bool, confirmed: Int64)?
        /// Units added after the show's start (positive stock_adjusted deltas, stock_set increases).
        var added: Int64 = 0
        /// A stock_set after the start whose increase depends on an on-hand the events never fixed.
        var unknownIncrease = false
        var sold: Int64 = 0
        var reservedLines: Int64 = 0
        var confirmedLines: Int64 = 0
        var released: Int64 = 0
        var expired: Int64 = 0
        var soldOutAtMs: UInt64?
        /// Backup units released to sale in the window.
        var backupUsed: Int64 = 0
        /// Net change of backup after the show's start (the backup staged = backup now − this).
        var backupChange: Int64 = 0
    }

    struct Row {
        let sku: String
        let staged: Int64?
        let sold: Int64
        let reserved: Int64
        let confirmedLines: Int64
        let released: Int64
        let expired: Int64
        let remaining: Int64?
        let soldOutAtMs: UInt64?
        let suggested: Int64
        var basis: SuggestionBasis = .sold
        var backupUsed: Int64 = 0
        /// Backup held back at the show's start (nil: SKU not in the catalog now).
        var backupStaged: Int64? = nil
        var lowStockThreshold: UInt32 = 0
        var perCustomerLimit: UInt32 = 0

        /// The next show's backup: as staged this show, at most the suggested on-hand.
        var suggestedBackup: Int64 { min(backupStaged ?? 0, suggested) }

        var conversion: Double? { reserved == 0 ? nil : Double(confirmedLines) * 100 / Double(reserved) }
    }

    /// Why a row's suggested on-hand is what it is (README-report.md, "Next show's staging suggestion").
    enum SuggestionBasis: String {
        /// ceil(sold × 1.1)
        case sold
        /// It sold out: at least what was staged.
        case soldOut = "sold_out"
        /// It sold nothing: the staged units again (never a silent 0).
        case unsold
        /// It sold nothing and its staged units are unknown: the unsold units now, else 0 (named in the note).
        case unsoldUnknown = "unsold_unknown"
    }

    /// The next show's on-hand for one SKU, and why.
    static func suggestion(sold: Int64, soldOut: Bool, staged: Int64?, remaining: Int64?) -> (Int64, SuggestionBasis) {
        let bySales = (sold * 11 + 9) / 10
        if soldOut, let staged { return (max(bySales, staged), .soldOut) }
        if sold > 0 || soldOut { return (bySales, .sold) }
        if let staged { return (staged, .unsold) }
        return (remaining ?? 0, .unsoldUnknown)
    }

    var skus: [String: SKUState] = [:]
    /// Which SKUs are counted (drill SKUs only with --include-drill).
    var selection = SKUSelection()
    var windowFromOffset: UInt64 = 0
    var windowToOffset: UInt64 = 0
    var sinceMs: UInt64 = 0

    init(selection: SKUSelection = SKUSelection()) { self.selection = selection }

    mutating func add(_ e: FeedEvent) {
        guard !e.sku.isEmpty else { return }  // extended, term_started: no SKU, nothing to count
        let name = e.sku.string
        guard selection.selects(name) else { return }
        var s = skus[name] ?? SKUState()
        let inWindow = e.offset >= windowFromOffset && e.timeMs >= sinceMs
        if inWindow {
            s.inWindow = true
            // The show starts for this SKU at its first sale activity in the window: a reservation,
            // or the confirm / release / expiry of a hold taken before the window.
            if s.start == nil && (e.kind == .reserved || e.kind == .confirmed || e.kind == .released || e.kind == .expired) {
                s.start = (s.onHand, !s.onHandKnown, s.confirmedRead)
            }
        }
        let counting = inWindow && s.start != nil
        switch e.kind {
        case .stockSet:
            if counting {
                if s.onHandKnown {
                    s.added += max(0, e.quantity - s.onHand)
                } else {
                    s.unknownIncrease = true
                }
            }
            s.onHand = e.quantity
            s.onHandKnown = true
        case .stockAdjusted:
            s.onHand += e.quantity
            if counting && e.quantity > 0 { s.added += e.quantity }
        case .confirmed:
            s.confirmedRead += e.quantity
        default: break
        }
        if inWindow {
            switch e.kind {
            case .reserved: s.reservedLines += 1
            case .confirmed:
                s.sold += e.quantity
                s.confirmedLines += 1
            case .released: s.released += e.quantity
            case .expired: s.expired += e.quantity
            case .soldOut where s.soldOutAtMs == nil: s.soldOutAtMs = e.timeMs
            case .backupChanged:
                if counting { s.backupChange += e.quantity }
                if e.quantity < 0 { s.backupUsed -= e.quantity }
            default: break
            }
        }
        skus[name] = s
    }

    /// Opens the window again at `offset` (a later stage): every SKU keeps its replay state
    /// (on-hand, confirmed read) and starts its window counts afresh; the stage's own SKUs,
    /// whose events from `offset` were already read, are in the window.
    mutating func reopen(at offset: UInt64, skus stage: Set<String>) {
        windowFromOffset = offset
        for (name, s) in skus {
            var fresh = SKUState()
            fresh.onHand = s.onHand
            fresh.onHandKnown = s.onHandKnown
            fresh.confirmedRead = s.confirmedRead
            fresh.inWindow = stage.contains(name)
            skus[name] = fresh
        }
    }

    /// The rows, with the counters read at the end (`now`) fixing what the
    /// events alone leave relative (on-hand before a stock_set, confirmed before the read).
    func finish(now: [String: StockInfo]) -> Report {
        var rows: [Row] = []
        for (name, s) in skus where s.inWindow {
            let info = now[name]
            let remaining = info.map { Int64($0.onHand) - Int64($0.confirmed) }
            // The unknown bases: on-hand and confirmed when the read started.
            let confirmedBase = info.map { max(0, Int64($0.confirmed) - s.confirmedRead) }
            let onHandBase: Int64? = s.onHandKnown ? nil : info.map { max(0, Int64($0.onHand) - s.onHand) }
            let start = s.start ?? (s.onHand, !s.onHandKnown, s.confirmedRead)  // no sale activity: the window's end
            var staged: Int64?
            if let confirmedBase, !s.unknownIncrease {
                // A relative starting on-hand is fixed from the end (no stock_set overwrote it since).
                let startOnHand = start.onHandRelative ? onHandBase.map { start.onHand + $0 } : start.onHand
                if let startOnHand {
                    staged = max(0, startOnHand - (start.confirmed + confirmedBase)) + s.added
                }
            }
            let (suggested, basis) = Self.suggestion(sold: s.sold, soldOut: s.soldOutAtMs != nil, staged: staged,
                                                     remaining: remaining)
            rows.append(Row(sku: name, staged: staged, sold: s.sold, reserved: s.reservedLines,
                            confirmedLines: s.confirmedLines, released: s.released, expired: s.expired,
                            remaining: remaining, soldOutAtMs: s.soldOutAtMs, suggested: suggested, basis: basis,
                            backupUsed: s.backupUsed, backupStaged: info.map { max(0, Int64($0.backup) - s.backupChange) },
                            lowStockThreshold: info?.lowStockThreshold ?? 0, perCustomerLimit: info?.perCustomerLimit ?? 0))
        }
        rows.sort { $0.sku < $1.sku }
        return Report(rows: rows, fromOffset: windowFromOffset, toOffset: windowToOffset,
                      sinceMs: sinceMs == 0 ? nil : sinceMs)
    }
}

/// The finished report and its renderings.
struct Report {
    let rows: [ReportTally.Row]
    let fromOffset: UInt64
    let toOffset: UInt64
    let sinceMs: UInt64?

    static let headers = ["SKU", "STAGED", "SOLD", "RESERVED", "RELEASED", "EXPIRED", "BACKUP_USED", "REMAINING",
                          "CONVERSION", "SOLD_OUT_AT"]

    /// The staging suggestion is a `stockctl stage` file.
    static let suggestionHeader = "sku,on_hand,backup,low_stock_threshold,per_customer_limit"

    static func suggestionLine(_ r: ReportTally.Row) -> String {
        "\(reportCSVField(r.sku)),\(r.suggested),\(r.suggestedBackup),\(r.lowStockThreshold),\(r.perCustomerLimit)"
    }

    /// Sums; staged and remaining only when known for every SKU.
    var total: ReportTally.Row {
        let staged = rows.allSatisfy { $0.staged != nil } ? rows.reduce(0) { $0 + ($1.staged ?? 0) } : nil
        let remaining = rows.allSatisfy { $0.remaining != nil } ? rows.reduce(0) { $0 + ($1.remaining ?? 0) } : nil
        return ReportTally.Row(sku: "TOTAL", staged: staged, sold: rows.reduce(0) { $0 + $1.sold },
                               reserved: rows.reduce(0) { $0 + $1.reserved },
                               confirmedLines: rows.reduce(0) { $0 + $1.confirmedLines },
                               released: rows.reduce(0) { $0 + $1.released }, expired: rows.reduce(0) { $0 + $1.expired },
                               remaining: remaining, soldOutAtMs: nil, suggested: rows.reduce(0) { $0 + $1.suggested },
                               backupUsed: rows.reduce(0) { $0 + $1.backupUsed })
    }

    var soldOutCount: Int { rows.filter { $0.soldOutAtMs != nil }.count }

    /// Names the SKUs that sold nothing, whose suggestion is not from sales (nil when none).
    var unsoldNote: String? {
        func names(_ basis: ReportTally.SuggestionBasis) -> [String] { rows.filter { $0.basis == basis }.map(\.sku) }
        func list(_ skus: [String]) -> String {
            skus.prefix(Self.noteSKUs).joined(separator: ", ") + (skus.count > Self.noteSKUs ? ", …" : "")
        }
        let kept = names(.unsold), unknown = names(.unsoldUnknown)
        var parts: [String] = []
        if !kept.isEmpty {
            parts.append("\(kept.count) SKU\(kept.count == 1 ? "" : "s") sold nothing; the suggestion keeps the staged "
                         + "on-hand: \(list(kept))")
        }
        if !unknown.isEmpty {
            parts.append("\(unknown.count) sold nothing and \(unknown.count == 1 ? "its" : "their") staged on-hand is "
                         + "unknown; the suggestion is the unsold units now: \(list(unknown))")
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ") + " (review before staging)"
    }

    /// SKUs a note names before it says `…`.
    static let noteSKUs = 10

    static func percent(_ p: Double?) -> String? { p.map { String(format: "%.1f", $0) } }

    var table: [String] {
        func cells(_ r: ReportTally.Row, soldOut: String) -> [String] {
            [r.sku, r.staged.map(String.init) ?? "-", "\(r.sold)", "\(r.reserved)", "\(r.released)", "\(r.expired)",
             "\(r.backupUsed)", r.remaining.map(String.init) ?? "-", Self.percent(r.conversion).map { $0 + "%" } ?? "-", soldOut]
        }
        var body = rows.map { cells($0, soldOut: $0.soldOutAtMs.map(isoTime) ?? "-") }
        body.append(cells(total, soldOut: soldOutCount == 0 ? "-" : "\(soldOutCount) sold out"))
        let window = "offsets \(fromOffset)-\(toOffset)" + (sinceMs.map { ", events from \(isoTime($0))" } ?? "")
        return ["show report: \(window)"] + formatTable(Self.headers, body, leftColumns: [0, 9])
    }

    var csv: String {
        func line(_ r: ReportTally.Row) -> String {
            [reportCSVField(r.sku), r.staged.map(String.init) ?? "", "\(r.sold)", "\(r.reserved)", "\(r.released)",
             "\(r.expired)", "\(r.backupUsed)", r.remaining.map(String.init) ?? "", Self.percent(r.conversion) ?? "",
             r.soldOutAtMs.map(isoTime) ?? ""].joined(separator: ",")
        }
        let header = "sku,staged,sold,reserved,released,expired,backup_used,remaining,conversion_pct,sold_out_at"
        return ([header] + rows.map(line) + [line(total)]).joined(separator: "\n") + "\n"
    }

    var json: JSON {
        func object(_ r: ReportTally.Row, total: Bool) -> JSON {
            var fields: [(String, JSON)] = [
                ("staged", r.staged.map { .int($0) } ?? .null), ("sold", .int(r.sold)), ("reserved", .int(r.reserved)),
                ("confirmed", .int(r.confirmedLines)), ("released", .int(r.released)), ("expired", .int(r.expired)),
                ("backup_used", .int(r.backupUsed)),
                ("remaining", r.remaining.map { .int($0) } ?? .null),
                ("conversion_pct", r.conversion.map { .double($0) } ?? .null),
            ]
            if total {
                fields.append(("sold_out_skus", .int(Int64(soldOutCount))))
            } else {
                fields.insert(("sku", .string(r.sku)), at: 0)
                fields.append(("sold_out_at", r.soldOutAtMs.map { .string(isoTime($0)) } ?? .null))
                fields.append(("sold_out_at_ms", r.soldOutAtMs.map { .uint($0) } ?? .null))
            }
            return .object(fields)
        }
        return .object([
            ("window", .object([("from_offset", .uint(fromOffset)), ("to_offset", .uint(toOffset)),
                                ("since_ms", sinceMs.map { .uint($0) } ?? .null)])),
            ("skus", .array(rows.map { object($0, total: false) })),
            ("totals", object(total, total: true)),
            ("suggestion", .array(rows.map {
                .object([("sku", .string($0.sku)), ("on_hand", .int($0.suggested)), ("backup", .int($0.suggestedBackup)),
                         ("low_stock_threshold", .uint(UInt64($0.lowStockThreshold))),
                         ("per_customer_limit", .uint(UInt64($0.perCustomerLimit))),
                         ("basis", .string($0.basis.rawValue))])
            })),
        ])
    }

}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
func reportCSVField(_ s: String) -> String {
    guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
    return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}
