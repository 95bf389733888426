import Foundation
import StockClient
import Testing
import TestSupport

/// `stockctl report` against a real stockd: a small seeded show driven with
/// StockClient, the report's numbers checked against a ledger of the same
/// operations and against `stockctl events --json`.
@Suite(.ownThread) struct ReportTests {
    /// Per-SKU numbers the test keeps itself.
    struct Ledger: Equatable {
        var sold = 0, reserved = 0, confirmedLines = 0, released = 0, expired = 0
    }

    /// Runs stockctl on a thread of its own (it waits for the process), so the test's executor stays free.
    static func ctl(_ f: CtlFixture, _ args: [String]) async throws -> ToolRun {
        let address = f.address
        let result: Result<ToolRun, any Error> = await withCheckedContinuation { k in
            Thread { k.resume(returning: Result { try stockctl(args + ["--server", address]) }) }.start()
        }
        return try result.get()
    }

    /// `stockctl events --json`, one dictionary per event.
    static func events(_ f: CtlFixture) async throws -> [[String: Any]] {
        let run = try await ctl(f, ["events", "--json"])
        #expect(run.code == 0, "\(run)")
        return run.stdoutLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Per-SKU sums over events (offset >= from), computed here from `events --json`.
    static func ledger(fromEvents events: [[String: Any]], from: Int = 1) -> [String: Ledger] {
        var out: [String: Ledger] = [:]
        for e in events where (e["offset"] as? Int ?? 0) >= from {
            guard let sku = e["sku"] as? String, let kind = e["kind"] as? String, let q = e["quantity"] as? Int else { continue }
            var l = out[sku] ?? Ledger()
            switch kind {
            case "reserved": l.reserved += 1
            case "confirmed":
                l.sold += q
                l.confirmedLines += 1
            case "released": l.released += q
            case "expired": l.expired += q
            default: break
            }
            out[sku] = l
        }
        return out
    }

    static func int(_ any: Any?) -> Int? { (any as? NSNumber)?.intValue }

    /// The report's per-SKU objects by SKU.
    static func skus(_ report: [String: Any]) -> [String: [String: Any]] {
        let list = report["skus"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: list.compactMap { o in (o["sku"] as? String).map { ($0, o) } })
    }

    static func suggestion(_ report: [String: Any]) -> [String: Int] {
        let list = report["suggestion"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: list.compactMap { o in
            (o["sku"] as? String).flatMap { sku in int(o["on_hand"]).map { (sku, $0) } }
        })
    }

    /// Waits (bounded) until the feed holds `count` expired events.
    static func waitForExpiries(_ f: CtlFixture, count: Int) async throws {
        let deadline = monotonicSeconds() + 8
        while true {
            let expired = try await events(f).filter { $0["kind"] as? String == "expired" }.count
            if expired >= count { return }
            guard monotonicSeconds() < deadline else { throw HarnessError("\(expired) of \(count) expiries within 8 s") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test func showReportMatchesTheOperations() async throws {
        let f = try CtlFixture(catalog: "RPT-A,10\nRPT-B,4\nRPT-C,6\n")
        let client = StockClient(port: f.server.port, timeout: testCallTimeout)
        defer { client.close() }
        var ledger: [String: Ledger] = ["RPT-A": Ledger(), "RPT-B": Ledger(), "RPT-C": Ledger()]
        // RPT-A: 2 units held back before the show, 1 of them released during it.
        _ = try await client.holdBackup("RPT-A", quantity: 2)

        // RPT-A: a full confirm, a partial confirm (1 of 3), a release.
        let a1 = try await client.reserve(sku: "RPT-A", quantity: 2, customer: "c-1")
        ledger["RPT-A"]!.reserved += 1
        ledger["RPT-A"]!.sold += Int(try await client.confirm(a1.token, orderReference: "ORD-1").confirmed)
        ledger["RPT-A"]!.confirmedLines += 1
        let a2 = try await client.reserve(sku: "RPT-A", quantity: 3)
        ledger["RPT-A"]!.reserved += 1
        let partial = try await client.confirm(a2.token, quantity: 1, orderReference: "ORD-2")
        #expect(partial.confirmed == 1 && partial.returned == 2)
        ledger["RPT-A"]!.sold += Int(partial.confirmed)
        ledger["RPT-A"]!.confirmedLines += 1
        let a3 = try await client.reserve(sku: "RPT-A", quantity: 1)
        ledger["RPT-A"]!.reserved += 1
        ledger["RPT-A"]!.released += try await client.release(a3.token)
        #expect(try await client.releaseBackup("RPT-A", quantity: 1).backup == 1)
        // A bundle RPT-A x1 + RPT-B x2, confirmed.
        let bundle = try await client.reserveBundle([("RPT-A", 1), ("RPT-B", 2)])
        ledger["RPT-A"]!.reserved += 1
        ledger["RPT-B"]!.reserved += 1
        _ = try await client.confirm(bundle.token, orderReference: "ORD-3")
        ledger["RPT-A"]!.sold += 1
        ledger["RPT-A"]!.confirmedLines += 1
        ledger["RPT-B"]!.sold += 2
        ledger["RPT-B"]!.confirmedLines += 1
        // RPT-B sells out with a short hold that then expires.
        let b2 = try await client.reserve(sku: "RPT-B", quantity: 2, ttl: .milliseconds(300))
        #expect(b2.available == 0)
        ledger["RPT-B"]!.reserved += 1
        ledger["RPT-B"]!.expired += 2
        // RPT-C: two short holds that expire, a confirm, then a restock of 3.
        for _ in 0..<2 {
            _ = try await client.reserve(sku: "RPT-C", quantity: 1, ttl: .milliseconds(300))
            ledger["RPT-C"]!.reserved += 1
            ledger["RPT-C"]!.expired += 1
        }
        let c3 = try await client.reserve(sku: "RPT-C", quantity: 2)
        ledger["RPT-C"]!.reserved += 1
        ledger["RPT-C"]!.sold += Int(try await client.confirm(c3.token).confirmed)
        ledger["RPT-C"]!.confirmedLines += 1
        _ = try await client.adjustStock("RPT-C", delta: 3, reason: .restock)
        try await Self.waitForExpiries(f, count: 3)

        // What the ledger says, the feed says too.
        let fromEvents = Self.ledger(fromEvents: try await Self.events(f))
        #expect(fromEvents == ledger, "events: \(fromEvents) ledger: \(ledger)")

        let json = try await Self.ctl(f, ["report", "--json"])
        #expect(json.code == 0 && json.stderr.isEmpty, "\(json)")
        let report = try #require(json.object, "\(json)")
        #expect(Set(report.keys) == ["window", "skus", "totals", "suggestion"], "\(json)")
        let rows = Self.skus(report)
        #expect(Set(rows.keys) == ["RPT-A", "RPT-B", "RPT-C"], "\(json)")
        // Staged: catalog on-hand, plus the restock after the first reservation (RPT-C).
        let staged = ["RPT-A": 10, "RPT-B": 4, "RPT-C": 6 + 3]
        for (sku, l) in ledger {
            let r = try #require(rows[sku])
            #expect(Self.int(r["sold"]) == l.sold && Self.int(r["reserved"]) == l.reserved
                    && Self.int(r["confirmed"]) == l.confirmedLines && Self.int(r["released"]) == l.released
                    && Self.int(r["expired"]) == l.expired, "\(sku): \(r) vs \(l)")
            #expect(Self.int(r["staged"]) == staged[sku], "\(sku): \(r)")
            // Remaining: unsold units now = staged - sold (no shrinkage here), and the server agrees.
            let info = try await client.stock(sku)
            #expect(Self.int(r["remaining"]) == staged[sku]! - l.sold, "\(sku): \(r)")
            #expect(Self.int(r["remaining"]) == Int(info.onHand - info.confirmed), "\(sku): \(r) \(info)")
            let conversion = (r["conversion_pct"] as? NSNumber)?.doubleValue ?? -1
            #expect(abs(conversion - Double(l.confirmedLines) * 100 / Double(l.reserved)) < 0.01, "\(sku): \(r)")
            #expect(Self.int(r["backup_used"]) == (sku == "RPT-A" ? 1 : 0), "\(sku): \(r)")
        }
        #expect(rows["RPT-B"]?["sold_out_at"] is String && Self.int(rows["RPT-B"]?["sold_out_at_ms"]) != nil, "\(json)")
        #expect(rows["RPT-A"]?["sold_out_at"] is NSNull && rows["RPT-C"]?["sold_out_at"] is NSNull, "\(json)")
        let totals = try #require(report["totals"] as? [String: Any])
        #expect(Self.int(totals["sold"]) == ledger.values.map(\.sold).reduce(0, +)
                && Self.int(totals["reserved"]) == ledger.values.map(\.reserved).reduce(0, +)
                && Self.int(totals["released"]) == 1 && Self.int(totals["expired"]) == 4
                && Self.int(totals["staged"]) == 23 && Self.int(totals["remaining"]) == 23 - 8
                && Self.int(totals["sold_out_skus"]) == 1 && Self.int(totals["backup_used"]) == 1, "\(totals)")
        // Suggestion: ceil(sold x 1.1); RPT-B sold out, so at least its staged 4.
        let suggestion = Self.suggestion(report)
        #expect(suggestion == ["RPT-A": 5, "RPT-B": 4, "RPT-C": 3], "\(json)")
        // The backup staged for the show (2, held before its first reservation) carries over.
        let suggestedBackup = (report["suggestion"] as? [[String: Any]] ?? []).map { Self.int($0["backup"]) }
        #expect(suggestedBackup == [2, 0, 0], "\(json)")
        for (sku, l) in ledger {
            let rule = (l.sold * 11 + 9) / 10
            #expect(suggestion[sku]! >= rule)
            if rows[sku]?["sold_out_at"] is String { #expect(suggestion[sku]! >= staged[sku]!) }
        }

        // Human: the table with a totals row, then the suggestion as CSV.
        let human = try await Self.ctl(f, ["report"])
        #expect(human.code == 0 && human.stderr.isEmpty, "\(human)")
        let lines = human.stdout.components(separatedBy: "\n")
        let header = try #require(lines.firstIndex { $0.hasPrefix("SKU ") }, "\(human)")
        #expect(lines[header].contains("STAGED") && lines[header].contains("SOLD_OUT_AT"), "\(human)")
        #expect(lines[header + 4].hasPrefix("TOTAL ") && lines[header + 4].contains("1 sold out"), "\(human)")
        #expect(lines[header + 1].hasPrefix("RPT-A ") && lines[header + 1].contains("75.0%"), "\(human)")
        #expect(Array(lines[(header + 5)...]) == ["", "sku,on_hand,backup,low_stock_threshold,per_customer_limit",
                                                  "RPT-A,5,2,0,0", "RPT-B,4,0,0,0", "RPT-C,3,0,0,0", ""], "\(human)")

        // CSV: header, one row per SKU, the totals row; the suggestion only to --suggest.
        let dir = try TempDirectory(prefix: "report")
        defer { dir.remove() }
        let file = dir.path("next-show.csv")
        let csv = try await Self.ctl(f, ["report", "--csv", "--suggest", file])
        #expect(csv.code == 0, "\(csv)")
        let csvLines = csv.stdoutLines
        #expect(csvLines.first == "sku,staged,sold,reserved,released,expired,backup_used,remaining,conversion_pct,sold_out_at",
                "\(csv)")
        #expect(csvLines.count == 5 && csvLines.allSatisfy { $0.split(separator: ",", omittingEmptySubsequences: false).count == 10 },
                "\(csv)")
        #expect(csvLines[1] == "RPT-A,10,4,4,1,0,1,6,75.0,", "\(csv)")
        #expect(csvLines[2].hasPrefix("RPT-B,4,2,2,0,2,0,2,50.0,2"), "\(csv)")
        #expect(csvLines[3] == "RPT-C,9,2,3,0,2,0,7,33.3,", "\(csv)")
        #expect(csvLines[4] == "TOTAL,23,8,9,1,4,1,15,55.6,", "\(csv)")
        #expect(!csv.stdout.contains("on_hand"), "\(csv)")
        let written = try String(contentsOfFile: file, encoding: .utf8)
        #expect(written == "sku,on_hand,backup,low_stock_threshold,per_customer_limit\nRPT-A,5,2,0,0\nRPT-B,4,0,0,0\n"
                + "RPT-C,3,0,0,0\n", "\(written)")
        // Ready to use: `stage` takes it as it is (on the next show's stockd, whose on-hand does not
        // still count this show's sold units).
        let next = try CtlFixture(catalog: "OTHER,1\n")
        let staged2 = try await Self.ctl(next, ["stage", file, "--json"])
        #expect(staged2.code == 0 && staged2.object?["staged"] as? Int == 3, "\(staged2)")
    }

    @Test func sinceLimitsTheWindow() async throws {
        let f = try CtlFixture(catalog: "RPT-A,10\nRPT-B,4\nRPT-D,5\nRPT-E,3\n")
        let client = StockClient(port: f.server.port, timeout: testCallTimeout)
        defer { client.close() }
        // Before the show: RPT-A sells 3, RPT-B 1.
        try await client.confirm(try await client.reserve(sku: "RPT-A", quantity: 3).token)
        try await client.confirm(try await client.reserve(sku: "RPT-B", quantity: 1).token)
        let held = try await client.reserve(sku: "RPT-E", quantity: 2)  // held before the show, confirmed in it
        let before = try await Self.events(f)
        let last = try #require(before.compactMap { Self.int($0["offset"]) }.max())
        try await Task.sleep(for: .milliseconds(50))  // the show's events come at a later millisecond
        // The show: RPT-A sells 2 then is restocked by 4; RPT-D sells out (5 of 5).
        try await client.confirm(try await client.reserve(sku: "RPT-A", quantity: 2).token)
        _ = try await client.adjustStock("RPT-A", delta: 4, reason: .restock)
        try await client.confirm(try await client.reserve(sku: "RPT-D", quantity: 5).token)
        try await client.confirm(held.token)
        let all = try await Self.events(f)
        let end = try #require(all.compactMap { Self.int($0["offset"]) }.max())
        let expected = Self.ledger(fromEvents: all, from: last + 1)

        let windowed = try await Self.ctl(f, ["report", "--json", "--since", "\(last + 1)"])
        #expect(windowed.code == 0, "\(windowed)")
        let report = try #require(windowed.object, "\(windowed)")
        let window = report["window"] as? [String: Any]
        #expect(Self.int(window?["from_offset"]) == last + 1 && Self.int(window?["to_offset"]) == end, "\(windowed)")
        let rows = Self.skus(report)
        #expect(Set(rows.keys) == ["RPT-A", "RPT-D", "RPT-E"], "RPT-B had no event in the window: \(windowed)")
        #expect(Self.int(rows["RPT-A"]?["sold"]) == expected["RPT-A"]?.sold && expected["RPT-A"]?.sold == 2, "\(windowed)")
        #expect(Self.int(rows["RPT-D"]?["sold"]) == 5, "\(windowed)")
        // Staged: unsold at the show's first reservation (10 - 3) plus the restock; RPT-D all 5.
        #expect(Self.int(rows["RPT-A"]?["staged"]) == 11 && Self.int(rows["RPT-A"]?["remaining"]) == 9, "\(windowed)")
        #expect(Self.int(rows["RPT-D"]?["staged"]) == 5 && Self.int(rows["RPT-D"]?["remaining"]) == 0, "\(windowed)")
        // RPT-E: the hold taken before the window and confirmed in it counts as sold; no reservation in the window.
        #expect(Self.int(rows["RPT-E"]?["sold"]) == 2 && Self.int(rows["RPT-E"]?["reserved"]) == 0
                && rows["RPT-E"]?["conversion_pct"] is NSNull, "\(windowed)")
        #expect(Self.int(rows["RPT-E"]?["staged"]) == 3 && Self.int(rows["RPT-E"]?["remaining"]) == 1, "\(windowed)")
        #expect(Self.suggestion(report) == ["RPT-A": 3, "RPT-D": 6, "RPT-E": 3], "\(windowed)")

        // The same window by time: the first show event's time_ms as ISO-8601.
        let firstShow = try #require(all.first { Self.int($0["offset"]) == last + 1 })
        let ms = try #require(Self.int(firstShow["time_ms"]))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let iso = formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
        let byTime = try await Self.ctl(f, ["report", "--json", "--since", iso])
        #expect(byTime.code == 0, "\(byTime)")
        let timed = try #require(byTime.object, "\(byTime)")
        #expect(Set(Self.skus(timed).keys) == ["RPT-A", "RPT-D", "RPT-E"], "\(byTime)")
        #expect(Self.int(Self.skus(timed)["RPT-A"]?["staged"]) == 11 && Self.suggestion(timed) == Self.suggestion(report),
                "\(byTime)")

        // Without --since: everything held (the catalog's stock_sets, both phases).
        let full = try #require(try await Self.ctl(f, ["report", "--json"]).object)
        #expect(Self.int(Self.skus(full)["RPT-A"]?["sold"]) == 5 && Self.int(Self.skus(full)["RPT-B"]?["sold"]) == 1)
        #expect(Self.int(Self.skus(full)["RPT-A"]?["staged"]) == 14, "10 staged, +4 restocked during the show")
        let future = try #require(try await Self.ctl(f, ["report", "--json", "--since", "2099-01-01T00:00:00Z"]).object)
        #expect((future["skus"] as? [Any])?.isEmpty == true && (future["suggestion"] as? [Any])?.isEmpty == true)

        // Usage errors: exit 2, one line on stderr, nothing on stdout.
        for args in [["--since", "yesterday"], ["--since", "0"], ["--since", "-5"], ["--since", "2026-13-40T00:00:00Z"],
                     ["--since", "2026-11-27T18:00:00"], ["--csv", "--json"]] {
            let bad = try await Self.ctl(f, ["report"] + args)
            #expect(bad.code == 2 && bad.stderrLines.count == 1 && bad.stdout.isEmpty, "\(args): \(bad)")
        }
        let beyond = try await Self.ctl(f, ["report", "--since", "\(end + 100)"])
        #expect(beyond.code == 1 && beyond.stderrLines.count == 1 && beyond.stderr.contains("--since"), "\(beyond)")
        let port = try unusedPort()
        let unreachable = try stockctl(["report", "--server", "127.0.0.1:\(port)", "--timeout", "2s"])
        #expect(unreachable.code == 69 && unreachable.stderrLines.count == 1, "\(unreachable)")
    }
}
