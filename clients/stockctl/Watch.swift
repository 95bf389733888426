import ArgumentParser
import Foundation
import StockClient

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Live stock table and show totals, refreshed every second (until Ctrl-C or --count).",
        discussion: """
            Needs a viewer credential at least (stock list, STATS and the event feed are read, nothing is \
            changed). On a terminal: the alternate screen (the shell's screen comes back on exit, Ctrl-C or \
            SIGTERM), redrawn to fit the terminal's size: a pinned header and column names, the SKUs that need \
            attention first (sold out in red, low in yellow, then by reservations/s), the rest cut with a \
            count ("… 37 more SKUs"), a TOTAL row, the show's totals since watch started (reservations/s, \
            confirmations/s, conversion, expiries) and the latest alerts (a SKU crossing its low-stock \
            threshold, selling out, back in stock, backup released). Totals and alerts come from the event \
            feed as they happen, not from polling. NO_COLOR set to anything non-empty turns colour off. \
            Otherwise one plain line per refresh, preceded by one `ALERT` line per alert (with --json, one \
            JSON object per line). --sku and --low-only filter the SKUs everywhere (table, totals, alerts, \
            plain and JSON lines); drill SKUs (DRILL-…) are left out unless --include-drill.
            """)

    @OptionGroup var options: GlobalOptions
    @Option(help: "Stop after this many refreshes.") var count: Int?
    @Option(help: ArgumentHelp("Time between refreshes.", valueName: "duration"), transform: DurationValue.parse)
    var interval = DurationValue(milliseconds: 1000)
    @Option(name: .customLong("sku"), help: ArgumentHelp("Only SKUs starting with this prefix (case-sensitive).",
                                                         valueName: "prefix"))
    var skuPrefix: String?
    @Flag(name: .customLong("low-only"), help: "Only SKUs sold out or at/under their low-stock threshold.")
    var lowOnly = false
    @Flag(name: .customLong("include-drill"),
          help: "Include drill SKUs (\(ReservedSKU.drillPrefix)…), left out by default.")
    var includeDrill = false

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        guard interval.milliseconds >= 1 else { throw ValidationError("--interval must be at least 1ms") }
        if let skuPrefix, !(SKU(skuPrefix)?.isValidSKU ?? false) {
            throw ValidationError("--sku '\(skuPrefix)': a prefix is 1-64 bytes of UTF-8 without control characters")
        }
    }

    /// --sku and the drill rule (--low-only depends on the counters: `shows`).
    var selection: SKUSelection { SKUSelection(prefix: skuPrefix, includeDrill: includeDrill) }

    func shows(_ e: StockEntry) -> Bool {
        selection.selects(e.sku.string) && (!lowOnly || !stockStatus(e.info).isEmpty)
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let terminal = isTerminal(STDOUT_FILENO) && !options.json
        let show = ShowTally(selection: selection)
        let feedTask = Task { await show.follow(client) }
        defer { feedTask.cancel(); show.stop() }
        if terminal {
            fflush(nil)
            Terminal.enterAlternateScreen()
        }
        defer { if terminal { Terminal.leaveAlternateScreen() } }
        let clock = ContinuousClock()
        var previous: Counts?
        var n = 0
        while true {
            let started = clock.now
            let entries = try await client.listAllStock().filter(shows)
            let stats = try await client.stats()
            let counts = Counts(entries, reserved: stats.first { $0.name == "tokens.reserved" }?.value ?? 0, at: started)
            let rates = counts.rates(since: previous)
            previous = counts
            let snapshot = show.take(now: started)
            if options.json {
                print(Self.json(entries, rates: rates, show: snapshot).rendered)
            } else if terminal {
                Terminal.draw(Self.screen(entries, rates: rates, server: options.address, show: snapshot))
            } else {
                for a in snapshot.newAlerts { print("ALERT \(a.text)") }
                print(Self.line(entries, rates: rates) + " " + snapshot.line)
            }
            fflush(nil)
            n += 1
            if let count, n >= count { break }
            let next = started + interval.duration
            if next > clock.now { try await clock.sleep(until: next) }
        }
    }

    /// Reservations per second since the previous refresh (nil on the first).
    struct Rates {
        var total: Double?
        var perSKU: [SKU: Double]
    }

    /// The reservation counters of one refresh: the server's (STATS `tokens.reserved`) and each SKU's.
    struct Counts {
        let reserved: UInt64
        let perSKU: [SKU: UInt64]
        let at: ContinuousClock.Instant

        init(_ entries: [StockEntry], reserved: UInt64, at: ContinuousClock.Instant) {
            self.reserved = reserved
            perSKU = Dictionary(entries.map { ($0.sku, $0.info.reservations) }, uniquingKeysWith: { a, _ in a })
            self.at = at
        }

        /// Per second since `previous`; a SKU new since then counts from zero.
        func rates(since previous: Counts?) -> Rates {
            var rates = Rates(total: nil, perSKU: [:])
            guard let previous else { return rates }
            let c = (at - previous.at).components
            let secs = Double(c.seconds) + Double(c.attoseconds) / 1e18
            guard secs > 0 else { return rates }
            rates.total = Double(reserved &- previous.reserved) / secs
            for (sku, count) in perSKU {
                rates.perSKU[sku] = Double(count &- (previous.perSKU[sku] ?? 0)) / secs
            }
            return rates
        }
    }

    static func rateText(_ rate: Double?) -> String {
        rate.map { String(format: "%.1f", $0) } ?? "-"
    }

    static func totals(_ entries: [StockEntry]) -> (onHand: UInt64, available: UInt64, reserved: UInt64, sold: UInt64) {
        entries.reduce((0, 0, 0, 0)) { t, e in
            (t.0 + e.info.onHand, t.1 + e.info.available, t.2 + e.info.reserved, t.3 + e.info.confirmed)
        }
    }

    /// One plain line: time, totals, reservations/s, sold-out and low SKUs.
    static func line(_ entries: [StockEntry], rates: Rates) -> String {
        let t = totals(entries)
        let soldOut = entries.filter { stockStatus($0.info) == "SOLD OUT" }.map(\.sku.string)
        let low = entries.filter { stockStatus($0.info) == "LOW" }.map(\.sku.string)
        let time = ISO8601DateFormatter().string(from: Date())
        return "\(time) skus=\(entries.count) on_hand=\(t.onHand) available=\(t.available) reserved=\(t.reserved) "
            + "sold=\(t.sold) reservations/s=\(rateText(rates.total)) "
            + "sold_out=\(soldOut.isEmpty ? "-" : soldOut.joined(separator: ",")) "
            + "low=\(low.isEmpty ? "-" : low.joined(separator: ","))"
    }

    static func json(_ entries: [StockEntry], rates: Rates, show: ShowTally.Snapshot) -> JSON {
        .object([
            ("time_ms", .uint(wallClockMs())),
            ("reservations_per_s", rates.total.map { .double($0) } ?? .null),
            ("show", show.json),
            ("alerts", .array(show.newAlerts.map(\.json))),
            ("skus", .array(entries.map { e in
                .object([("sku", .string(e.sku.string)), ("on_hand", .uint(e.info.onHand)),
                         ("available", .uint(e.info.available)), ("reserved", .uint(e.info.reserved)),
                         ("sold", .uint(e.info.confirmed)), ("backup", .uint(e.info.backup)),
                         ("reservations_per_s", rates.perSKU[e.sku].map { .double($0) } ?? .null),
                         ("status", .string(stockStatus(e.info)))])
            })),
        ])
    }

    /// The terminal frame for this refresh, fitted to the terminal's size now (WatchScreen).
    static func screen(_ entries: [StockEntry], rates: Rates, server: String, show: ShowTally.Snapshot) -> [String] {
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss"
        let screen = WatchScreen(server: server, time: formatter.string(from: Date()), serverRate: rates.total,
                                 show: show, size: Terminal.size(), colour: Terminal.colourAllowed)
        return screen.lines(entries.map {
            WatchScreen.Row(sku: $0.sku.string, info: $0.info, rate: rates.perSKU[$0.sku])
        })
    }
}
