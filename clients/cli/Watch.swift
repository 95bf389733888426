import ArgumentParser
import Foundation
import StockClient

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Live stock table and show totals, refreshed every second (until Ctrl-C or --count).",
        discussion: """
            On a terminal: the screen is redrawn with one row per SKU (SOLD OUT rows red, LOW rows yellow), the \
            show's totals since watch started — reservations/s, confirmations/s, conversion, expiries — and the \
            latest alerts (a SKU crossing its low-stock threshold, selling out, back in stock). Totals and alerts \
            come from the event feed as they happen, not from polling. Otherwise one plain line per refresh, \
            preceded by one `ALERT` line per alert (with --json, one JSON object per line).
            """)

    @OptionGroup var options: GlobalOptions
    @Option(help: "Stop after this many refreshes.") var count: Int?
    @Option(help: "Time between refreshes.") var interval = DurationValue(milliseconds: 1000)

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        guard interval.milliseconds >= 1 else { throw ValidationError("--interval must be at least 1ms") }
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let terminal = isTerminal(STDOUT_FILENO) && !options.json
        let show = ShowTally()
        let feedTask = Task { await show.follow(client) }
        defer { feedTask.cancel(); show.stop() }
        let clock = ContinuousClock()
        var previous: (reserved: UInt64, perSKU: [SKU: UInt64], at: ContinuousClock.Instant)?
        var n = 0
        while true {
            let started = clock.now
            let entries = try await client.listAllStock()
            let stats = try await client.stats()
            let reserved = stats.first { $0.name == "tokens.reserved" }?.value ?? 0
            var perSKU = [SKU: UInt64](minimumCapacity: entries.count)
            for e in entries { perSKU[e.sku] = e.info.reservations }
            var rates = Rates(total: nil, perSKU: [:])
            if let previous {
                let c = (started - previous.at).components
                let secs = Double(c.seconds) + Double(c.attoseconds) / 1e18
                if secs > 0 {
                    rates.total = Double(reserved &- previous.reserved) / secs
                    for e in entries {
                        // A SKU new since the last refresh counts from zero.
                        let before = previous.perSKU[e.sku] ?? 0
                        rates.perSKU[e.sku] = Double(e.info.reservations &- before) / secs
                    }
                }
            }
            previous = (reserved, perSKU, started)
            let snapshot = show.take(now: started)
            if options.json {
                print(Self.json(entries, rates: rates, show: snapshot).rendered)
            } else if terminal {
                print(Self.screen(entries, rates: rates, server: options.address, show: snapshot), terminator: "")
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
                         ("sold", .uint(e.info.confirmed)),
                         ("reservations_per_s", rates.perSKU[e.sku].map { .double($0) } ?? .null),
                         ("status", .string(stockStatus(e.info)))])
            })),
        ])
    }

    /// Clear screen, header, colored table.
    static func screen(_ entries: [StockEntry], rates: Rates, server: String, show: ShowTally.Snapshot) -> String {
        let red = "\u{1B}[1;31m", yellow = "\u{1B}[33m", reset = "\u{1B}[0m"
        let rows = entries.map { e in
            [e.sku.string, "\(e.info.onHand)", "\(e.info.available)", "\(e.info.reserved)", "\(e.info.confirmed)",
             rateText(rates.perSKU[e.sku]), stockStatus(e.info)]
        }
        let lines = formatTable(["SKU", "ON_HAND", "AVAILABLE", "RESERVED", "SOLD", "RES/S", "STATUS"], rows,
                                leftColumns: [0, 6])
        var out = "\u{1B}[H\u{1B}[2J"
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss"
        let time = formatter.string(from: Date())
        out += "stockd \(server)  \(time)  reservations/s: \(rateText(rates.total))  (Ctrl-C to stop)\n"
        out += "show: \(show.line)\n\n"
        out += lines[0] + "\n"
        for (i, e) in entries.enumerated() {
            let text = lines[i + 1]
            switch stockStatus(e.info) {
            case "SOLD OUT": out += red + text + reset + "\n"
            case "LOW": out += yellow + text + reset + "\n"
            default: out += text + "\n"
            }
        }
        if !show.recentAlerts.isEmpty {
            out += "\nalerts:\n"
            for a in show.recentAlerts {
                let color = a.kind == .soldOut ? red : a.kind == .lowStock ? yellow : ""
                out += color + "  " + a.text + (color.isEmpty ? "" : reset) + "\n"
            }
        }
        return out
    }
}
