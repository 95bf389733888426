import Foundation
import Testing
import TestSupport

/// `stockctl audit` and `stockctl drill` (issue 9) against a real stockd,
/// through the built stockctl binary.
@Suite(.ownThread) struct OperationsTests {
    /// The catalog of every audit test: ZERO is at on-hand 0.
    static let catalog = "JACKET,10\nSCARF,5\nHAT,3\nZERO,0\n"

    /// The warehouse's count: JACKET agrees, SCARF differs, NEW is missing in
    /// stockd, HAT is missing in the file; ZERO (absent, 0 in stockd) and GONE
    /// (counted 0, unknown to stockd) agree. Header, comment, blank line, CRLF.
    static let wms = "sku,counted\r\n# counted 2026-11-25, aisle 4\r\nJACKET,10\r\nSCARF,4\r\n\r\nNEW,7\r\nGONE,0\r\n"

    static func onHand(_ f: CtlFixture, _ sku: String) throws -> Int? {
        (try f.run(["stock", "get", sku, "--json"]).object?["on_hand"] as? NSNumber)?.intValue
    }

    /// JSON Lines on stdout, each parsed.
    static func jsonLines(_ run: ToolRun) -> [[String: Any]] {
        run.stdoutLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test func auditReportsEachKindOfDiscrepancy() throws {
        let f = try CtlFixture(catalog: Self.catalog)
        let dir = try TempDirectory(prefix: "audit")
        defer { dir.remove() }
        let file = try dir.write("wms.csv", Self.wms)

        let human = try f.run(["audit", file])
        #expect(human.code == 1, "\(human)")
        let rows = human.stdoutLines
        #expect(rows.first?.hasPrefix("SKU") == true && rows.first?.contains("STATUS") == true, "\(human)")
        #expect(rows.contains { $0.hasPrefix("SCARF") && $0.contains(" 5 ") && $0.contains(" 4 ") && $0.contains("-1")
                                && $0.hasSuffix("differs") }, "\(human)")
        #expect(rows.contains { $0.hasPrefix("NEW") && $0.contains("+7") && $0.hasSuffix("missing in stockd") }, "\(human)")
        #expect(rows.contains { $0.hasPrefix("HAT") && $0.contains("-3") && $0.hasSuffix("missing in WMS") }, "\(human)")
        #expect(!rows.contains { $0.hasPrefix("JACKET") || $0.hasPrefix("ZERO") || $0.hasPrefix("GONE") }, "\(human)")
        #expect(rows.last == "3 discrepancies in 6 SKUs", "\(human)")
        #expect(human.stderrLines == ["stockctl: 3 discrepancies in 6 SKUs"], "\(human)")

        let json = try f.run(["audit", file, "--json"])
        #expect(json.code == 1 && json.keys == ["discrepancies", "skus_compared"], "\(json)")
        #expect((json.object?["skus_compared"] as? NSNumber)?.intValue == 6, "\(json)")
        let items = try #require(json.object?["discrepancies"] as? [[String: Any]])
        #expect(items.count == 3 && items.allSatisfy {
            Set($0.keys) == ["sku", "on_hand", "counted", "difference", "status"]
        }, "\(json)")
        let bySKU = Dictionary(uniqueKeysWithValues: items.map { ($0["sku"] as? String ?? "", $0) })
        #expect(bySKU["SCARF"]?["status"] as? String == "differs" && bySKU["SCARF"]?["on_hand"] as? Int == 5
                && bySKU["SCARF"]?["counted"] as? Int == 4 && bySKU["SCARF"]?["difference"] as? Int == -1, "\(json)")
        #expect(bySKU["NEW"]?["status"] as? String == "missing in stockd" && bySKU["NEW"]?["on_hand"] is NSNull
                && bySKU["NEW"]?["difference"] as? Int == 7, "\(json)")
        #expect(bySKU["HAT"]?["status"] as? String == "missing in WMS" && bySKU["HAT"]?["counted"] is NSNull
                && bySKU["HAT"]?["difference"] as? Int == -3, "\(json)")

        // Nothing was changed by looking.
        #expect(try Self.onHand(f, "SCARF") == 5)
        #expect(try f.run(["stock", "get", "NEW"]).code == 1)

        // In agreement: exit 0, one line.
        let same = try dir.write("same.csv", "JACKET,10\nSCARF,5\nHAT,3\n")
        let clean = try f.run(["audit", same])
        #expect(clean.code == 0 && clean.stdout == "no discrepancies (4 SKUs)\n" && clean.stderr.isEmpty, "\(clean)")
        let cleanJSON = try f.run(["audit", same, "--json"])
        #expect(cleanJSON.code == 0 && (cleanJSON.object?["discrepancies"] as? [Any])?.isEmpty == true, "\(cleanJSON)")
    }

    @Test func auditRejectsBadLinesAndAppliesNothing() throws {
        let f = try CtlFixture(catalog: Self.catalog)
        let dir = try TempDirectory(prefix: "audit")
        defer { dir.remove() }
        let file = try dir.write("bad.csv", "sku,counted\r\nSCARF,1\r\nNEW,lots\r\n# fine\r\nHAT,1,2\r\n,4\r\nSCARF,2\r\nOK,-1\r\n")
        let bad = try f.run(["audit", file, "--apply"])
        #expect(bad.code == 2 && bad.stdout.isEmpty, "\(bad)")
        let lines = bad.stderrLines
        #expect(lines.count == 6, "\(bad)")
        for n in [3, 5, 6, 7, 8] {
            #expect(lines.contains { $0.hasPrefix("\(file):\(n): ") }, "line \(n): \(bad)")
        }
        #expect(lines.contains("\(file):7: SKU 'SCARF' already on line 2"), "\(bad)")
        #expect(lines.last == "stockctl: \(file): 5 bad lines, nothing compared", "\(bad)")
        #expect(try Self.onHand(f, "SCARF") == 5, "nothing applied")
        #expect(try Self.onHand(f, "HAT") == 3, "nothing applied")

        let missing = try f.run(["audit", dir.path("absent.csv")])
        #expect(missing.code == 2 && missing.stderrLines.count == 1, "\(missing)")
    }

    @Test func auditApplyRepairsByCompareAndSet() throws {
        let f = try CtlFixture(catalog: Self.catalog)
        let dir = try TempDirectory(prefix: "audit")
        defer { dir.remove() }
        let file = try dir.write("wms.csv", Self.wms)
        let hatSetsBefore = try f.run(["events", "--kind", "stock_set", "--sku", "HAT"]).stdoutLines.count

        // SCARF and NEW are repaired; HAT (missing in the file) is reported, untouched: exit 1.
        let applied = try f.run(["audit", file, "--apply", "--json"])
        #expect(applied.code == 1, "\(applied)")
        let items = try #require(applied.object?["discrepancies"] as? [[String: Any]])
        let bySKU = Dictionary(uniqueKeysWithValues: items.map { ($0["sku"] as? String ?? "", $0) })
        #expect(bySKU["SCARF"]?["applied"] as? Bool == true && bySKU["NEW"]?["applied"] as? Bool == true, "\(applied)")
        #expect(bySKU["HAT"]?["applied"] as? Bool == false
                && (bySKU["HAT"]?["result"] as? String)?.contains("not touched") == true, "\(applied)")
        #expect((applied.object?["repaired"] as? NSNumber)?.intValue == 2, "\(applied)")
        #expect(try Self.onHand(f, "SCARF") == 4)
        #expect(try Self.onHand(f, "NEW") == 7)
        #expect(try Self.onHand(f, "HAT") == 3, "a SKU missing in the file is never touched")

        // The sets are journaled: stock_set events for SCARF (4) and NEW (7), none for HAT.
        let sets = Self.jsonLines(try f.run(["events", "--kind", "stock_set", "--json"]))
        #expect(sets.contains { $0["sku"] as? String == "SCARF" && $0["quantity"] as? Int == 4 }, "\(sets)")
        #expect(sets.contains { $0["sku"] as? String == "NEW" && $0["quantity"] as? Int == 7 }, "\(sets)")
        #expect(try f.run(["events", "--kind", "stock_set", "--sku", "HAT"]).stdoutLines.count == hatSetsBefore)

        // A second audit finds only HAT left.
        let again = try f.run(["audit", file])
        #expect(again.code == 1, "\(again)")
        #expect(again.stdoutLines.count == 3 && again.stdoutLines[1].hasPrefix("HAT"), "\(again)")

        // A file covering every SKU: --apply repairs everything (exit 0), and the audit after it is clean.
        let full = try dir.write("full.csv", "JACKET,12\nSCARF,4\nNEW,7\nHAT,2\n")
        let fixed = try f.run(["audit", full, "--apply"])
        #expect(fixed.code == 0, "\(fixed)")
        #expect(fixed.stdout.contains("set to 12") && fixed.stdout.contains("set to 2")
                && fixed.stdout.contains("2 discrepancies in 5 SKUs, 2 repaired"), "\(fixed)")
        let clean = try f.run(["audit", full])
        #expect(clean.code == 0 && clean.stdout == "no discrepancies (5 SKUs)\n", "\(clean)")
    }

    @Test func auditApplyBelowReservedAndConfirmedIsReported() throws {
        let f = try CtlFixture(catalog: Self.catalog)
        let dir = try TempDirectory(prefix: "audit")
        defer { dir.remove() }
        // HAT: 1 sold, 1 held, 1 available; the warehouse counted 1.
        let sold = try #require(try f.run(["reserve", "HAT", "1", "--json"]).object?["token"] as? String)
        #expect(try f.run(["confirm", sold]).code == 0)
        #expect(try f.run(["reserve", "HAT", "1"]).code == 0)
        let file = try dir.write("wms.csv", "JACKET,10\nSCARF,6\nHAT,1\nZERO,0\n")

        let applied = try f.run(["audit", file, "--apply"])
        #expect(applied.code == 1, "\(applied)")
        let hat = applied.stdoutLines.first { $0.hasPrefix("HAT") } ?? ""
        #expect(hat.contains("INSUFFICIENT_AVAILABLE") && hat.contains("counted 1")
                && hat.contains("(2 when read"), "\(applied)")
        #expect(applied.stdoutLines.contains { $0.hasPrefix("SCARF") && $0.hasSuffix("set to 6") }, "\(applied)")
        #expect(applied.stderrLines == ["stockctl: 1 of 2 discrepancies not repaired"], "\(applied)")
        #expect(try Self.onHand(f, "HAT") == 3)
        #expect(try Self.onHand(f, "SCARF") == 6)
    }

    static let drillSteps = ["connect", "stage", "reserve", "confirm", "feed-confirmed", "reserve-for-release",
                             "release", "feed-released", "reserve-for-expiry", "feed-expired", "cleanup"]

    @Test func drillPassesOnAHealthyServer() throws {
        let f = try CtlFixture()
        let human = try f.run(["drill", "--sku", "DRILL-T1", "--timeout", Self.drillWait])
        #expect(human.code == 0 && human.stderr.isEmpty, "\(human)")
        #expect(human.stdoutLines.map { $0.split(separator: " ")[1] } == Self.drillSteps.map { Substring($0) },
                "\(human)")
        #expect(human.stdoutLines.allSatisfy { $0.hasPrefix("PASS ") && $0.contains(" ms") }, "\(human)")
        #expect(human.stdout.contains("stays in the catalog"), "\(human)")
        // Clean-up: nothing left on sale, the drill's one sale stays on the books.
        let left = try f.run(["stock", "get", "DRILL-T1", "--json"])
        #expect((left.object?["available"] as? NSNumber)?.intValue == 0
                && (left.object?["on_hand"] as? NSNumber)?.intValue == 1
                && (left.object?["reserved"] as? NSNumber)?.intValue == 0, "\(left)")
        // The drill order went down the feed like any other.
        let confirmed = try f.run(["events", "--kind", "confirmed", "--sku", "DRILL-T1"])
        #expect(confirmed.stdoutLines.count == 1 && confirmed.stdout.contains("order=DRILL-"), "\(confirmed)")

        // JSON Lines, with the default SKU DRILL-<ms>.
        let json = try f.run(["drill", "--json", "--timeout", Self.drillWait])
        #expect(json.code == 0, "\(json)")
        let steps = Self.jsonLines(json)
        #expect(steps.count == json.stdoutLines.count && steps.count == Self.drillSteps.count, "\(json)")
        #expect(steps.allSatisfy { Set($0.keys) == ["step", "ok", "ms", "detail"] && $0["ok"] as? Bool == true
                                   && $0["ms"] is NSNumber }, "\(json)")
        #expect(steps.map { $0["step"] as? String ?? "" } == Self.drillSteps, "\(json)")
        #expect((steps[1]["detail"] as? String)?.hasPrefix("DRILL-") == true, "\(json)")
    }

    @Test func drillChecksTheWebhookReceiver() throws {
        let f = try CtlFixture()
        let receiver = try HooksReceiver(seed: 9)
        defer { receiver.stop() }
        let ok = try f.run(["drill", "--webhook-check", "http://127.0.0.1:\(receiver.port)/health", "--timeout", Self.drillWait])
        #expect(ok.code == 0, "\(ok)")
        #expect(ok.stdoutLines.contains { $0.hasPrefix("PASS webhook-check") && $0.contains("HTTP 200") }, "\(ok)")
        #expect(receiver.requests.contains { $0.method == "GET" && $0.path == "/health" }, "\(receiver.requests)")

        // Nobody listening: the step fails by name, clean-up still runs, exit 1.
        let down = try f.run(["drill", "--webhook-check", "http://127.0.0.1:\(try unusedPort())/health", "--timeout", Self.drillWait])
        #expect(down.code == 1, "\(down)")
        #expect(down.stdoutLines.contains { $0.hasPrefix("FAIL webhook-check: GET http://127.0.0.1:") }, "\(down)")
        #expect(down.stdoutLines.last?.hasPrefix("PASS cleanup") == true, "\(down)")
        #expect(!down.stdout.contains("reserve-for-release"), "stops at the first failure: \(down)")
        #expect(down.stderrLines == ["stockctl: drill failed at webhook-check"], "\(down)")

        let https = try f.run(["drill", "--webhook-check", "https://127.0.0.1/health"])
        #expect(https.code == 2 && https.stdout.isEmpty, "\(https)")
    }

    /// How long a drill step may wait for its event (--timeout; 5 s by default): generous, because the
    /// whole suite runs in parallel on two cores and the feed thread runs at a lower priority.
    static let drillWait = "30s"

    @Test func drillNeverOverwritesAStockedSKU() throws {
        let f = try CtlFixture(catalog: "SCARF,5\nDRILL-STOCKED,5\n")  // a drill SKU someone stocked by hand
        let run = try f.run(["drill", "--sku", "DRILL-STOCKED"])
        #expect(run.code == 1, "\(run)")
        #expect(run.stdoutLines.count == 2
                && run.stdoutLines[1].hasPrefix("FAIL stage: SKU 'DRILL-STOCKED' already has on-hand 5"), "\(run)")
        #expect(try OperationsTests.onHand(f, "DRILL-STOCKED") == 5)
        // A show SKU is never a drill target: refused before anything is sent (the reserved prefix).
        let show = try f.run(["drill", "--sku", "SCARF"])
        #expect(show.code == 2 && show.stdout.isEmpty, "\(show)")
        #expect(try OperationsTests.onHand(f, "SCARF") == 5)
    }

    @Test func drillFailsAtTheFeedStepWithoutAJournal() throws {
        let server = try StockdProcess(["--workers", "1", "--sync", "none"])
        let run = try stockctl(["drill", "--server", "127.0.0.1:\(server.port)"])
        #expect(run.code == 1, "\(run)")
        #expect(run.stdoutLines.contains { $0.hasPrefix("FAIL feed-confirmed: FEED_UNAVAILABLE") }, "\(run)")
        #expect(run.stdoutLines.prefix(4).allSatisfy { $0.hasPrefix("PASS ") }, "\(run)")
        #expect(run.stdoutLines.last?.hasPrefix("PASS cleanup") == true && run.stdoutLines.count == 6, "\(run)")
        #expect(run.stderrLines == ["stockctl: drill failed at feed-confirmed"], "\(run)")
    }

    @Test func drillAgainstAnUnreachableServerExits69() throws {
        let run = try stockctl(["drill", "--server", "127.0.0.1:\(try unusedPort())", "--timeout", "2s"])
        #expect(run.code == 69, "\(run)")
        #expect(run.stdoutLines.count == 1 && run.stdoutLines[0].hasPrefix("FAIL connect: server unreachable"), "\(run)")
        let json = try stockctl(["drill", "--json", "--server", "127.0.0.1:\(try unusedPort())", "--timeout", "2s"])
        #expect(json.code == 69 && Self.jsonLines(json).first?["ok"] as? Bool == false, "\(json)")
    }
}
