import Foundation
import Glibc
import Testing
import TestSupport

let stockKeys: Set<String> = ["sku", "on_hand", "available", "reserved", "confirmed", "backup", "low_stock_threshold",
                               "per_customer_limit"]

@Suite(.ownThread) struct StockctlTests {
    @Test func pingStatsAndEnvironment() throws {
        let f = try CtlFixture()
        let ping = try f.run(["ping"])
        #expect(ping.code == 0, "\(ping)")
        #expect(ping.stdout.contains("pong from \(f.address)") && ping.stdout.contains(" ms"), "\(ping)")
        let pingJSON = try f.run(["ping", "--json"])
        #expect(pingJSON.code == 0 && pingJSON.object?["rtt_ms"] is NSNumber, "\(pingJSON)")

        // STOCKD_SERVER is used when --server is absent.
        let viaEnv = try stockctl(["ping"], env: ["STOCKD_SERVER": f.address])
        #expect(viaEnv.code == 0 && viaEnv.stdout.contains(f.address), "\(viaEnv)")
        // A host name is resolved (every address tried in turn).
        let byName = try stockctl(["ping", "--server", "localhost:\(f.server.port)"])
        #expect(byName.code == 0 && byName.stdout.contains("pong from localhost:"), "\(byName)")

        _ = try f.run(["reserve", "SCARF", "1"])
        let stats = try f.run(["stats"])
        #expect(stats.code == 0, "\(stats)")
        #expect(stats.stdoutLines.first?.hasPrefix("NAME") == true)
        #expect(stats.stdoutLines.contains { $0.hasPrefix("tokens.reserved") && $0.hasSuffix(" 1") }, "\(stats)")
        let statsJSON = try f.run(["stats", "--json"])
        #expect((statsJSON.object?["tokens.reserved"] as? NSNumber)?.intValue == 1, "\(statsJSON)")
    }

    @Test func reserveConfirmReleaseExtendBundle() throws {
        let f = try CtlFixture()
        let human = try f.run(["reserve", "SCARF", "2", "--ttl", "30s"])
        #expect(human.code == 0, "\(human)")
        #expect(human.stdout.contains("SCARF") && human.stdout.contains("available   3"), "\(human)")
        let tokenLine = human.stdoutLines.first { $0.hasPrefix("token") }
        let humanToken = String(tokenLine?.split(separator: " ").last ?? "")
        #expect(humanToken.count == 32)

        let r = try f.run(["reserve", "SCARF", "1", "--json", "--customer", "c1", "--key", "k1"])
        #expect(r.code == 0, "\(r)")
        #expect(r.keys == ["token", "sku", "quantity", "expires_in_ms", "available"], "\(r)")
        let token = try #require(r.object?["token"] as? String)
        #expect(token.count == 32 && token.allSatisfy(\.isHexDigit))
        #expect(r.object?["sku"] as? String == "SCARF")
        #expect((r.object?["quantity"] as? NSNumber)?.intValue == 1)
        #expect((r.object?["available"] as? NSNumber)?.intValue == 2)
        let expiresIn = (r.object?["expires_in_ms"] as? NSNumber)?.intValue ?? -1
        #expect(expiresIn > 80_000 && expiresIn <= 91_000, "default ttl 90s: \(expiresIn)")

        // Beyond stock: exit 3, one line.
        let oos = try f.run(["reserve", "SCARF", "50"])
        #expect(oos.code == 3, "\(oos)")
        #expect(oos.stderrLines == ["stockctl: out of stock (2 available)"], "\(oos)")
        #expect(oos.stdout.isEmpty)

        let extended = try f.run(["extend", token, "--ttl", "60s", "--json"])
        #expect(extended.code == 0 && extended.keys == ["token", "expires_at_ms", "expires_in_ms"], "\(extended)")
        #expect(((extended.object?["expires_in_ms"] as? NSNumber)?.intValue ?? 0) > 50_000, "\(extended)")
        let extendedHuman = try f.run(["extend", token, "--ttl", "60s"])
        #expect(extendedHuman.code == 0 && extendedHuman.stdout.contains("expires in"), "\(extendedHuman)")

        let confirmed = try f.run(["confirm", token, "--order", "ORD-1", "--json"])
        #expect(confirmed.code == 0, "\(confirmed)")
        #expect(confirmed.keys == ["confirmed", "returned"])
        #expect((confirmed.object?["confirmed"] as? NSNumber)?.intValue == 1)
        let again = try f.run(["confirm", token])
        #expect(again.code == 4 && again.stderrLines == ["stockctl: token already confirmed"], "\(again)")

        let partial = try f.run(["confirm", humanToken, "--quantity", "1"])
        #expect(partial.code == 0 && partial.stdout.contains("confirmed 1 units, returned 1"), "\(partial)")

        let held = try f.run(["reserve", "HAT", "1", "--json"])
        let heldToken = try #require(held.object?["token"] as? String)
        let released = try f.run(["release", heldToken])
        #expect(released.code == 0 && released.stdout.contains("released 1 units"), "\(released)")
        let releasedTwice = try f.run(["release", heldToken, "--json"])
        #expect(releasedTwice.code == 4, "\(releasedTwice)")

        let forged = try f.run(["release", "0123456789abcdef0123456789abcdef"])
        #expect(forged.code == 4 && forged.stderrLines.count == 1, "\(forged)")
        let badHex = try f.run(["release", "not-a-token"])
        #expect(badHex.code == 2 && badHex.stderrLines.count == 1, "\(badHex)")
        #expect(badHex.stderr.contains("32 hex digits"))

        // JACKET allows 2 per customer.
        let two = try f.run(["reserve", "JACKET", "2", "--customer", "c9"])
        #expect(two.code == 0, "\(two)")
        let limit = try f.run(["reserve", "JACKET", "1", "--customer", "c9"])
        #expect(limit.code == 5 && limit.stderrLines.count == 1, "\(limit)")

        let bundle = try f.run(["bundle", "JACKET:1", "HAT:1", "--json"])
        #expect(bundle.code == 0 && bundle.keys == ["token", "lines", "expires_in_ms"], "\(bundle)")
        #expect((bundle.object?["lines"] as? [Any])?.count == 2)
        let bundleHuman = try f.run(["bundle", "JACKET:1", "SCARF:1"])
        #expect(bundleHuman.code == 0 && bundleHuman.stdout.contains("JACKET:1 SCARF:1"), "\(bundleHuman)")
        let bundleOOS = try f.run(["bundle", "JACKET:1", "HAT:1"])
        #expect(bundleOOS.code == 3 && bundleOOS.stderr.contains("HAT"), "\(bundleOOS)")
    }

    @Test func stockGetSetAdjustList() throws {
        let f = try CtlFixture()
        let get = try f.run(["stock", "get", "JACKET"])
        #expect(get.code == 0, "\(get)")
        #expect(get.stdoutLines.count == 2 && get.stdoutLines[0].hasPrefix("SKU"), "\(get)")
        #expect(get.stdoutLines[1].split(separator: " ").map(String.init) == ["JACKET", "10", "10", "0", "0", "0", "3", "2"])
        let getJSON = try f.run(["stock", "get", "JACKET", "--json"])
        #expect(getJSON.keys == stockKeys, "\(getJSON)")
        #expect((getJSON.object?["on_hand"] as? NSNumber)?.intValue == 10)

        let unknown = try f.run(["stock", "get", "NOPE"])
        #expect(unknown.code == 1 && unknown.stderrLines == ["stockctl: unknown SKU 'NOPE'"], "\(unknown)")

        let set = try f.run(["stock", "set", "BOOTS", "4", "--low", "5", "--limit", "1", "--json"])
        #expect(set.code == 0 && set.keys == stockKeys && (set.object?["available"] as? NSNumber)?.intValue == 4,
                "\(set)")
        let cas = try f.run(["stock", "set", "BOOTS", "9", "--expect", "3"])
        #expect(cas.code == 1 && cas.stderr.contains("stock changed"), "\(cas)")

        // Negative deltas parse as arguments, before or after options.
        let down = try f.run(["stock", "adjust", "JACKET", "-5", "--reason", "damage"])
        #expect(down.code == 0 && down.stdoutLines.last?.split(separator: " ").prefix(3) == ["JACKET", "5", "5"], "\(down)")
        let downJSON = try f.run(["stock", "adjust", "--json", "JACKET", "-1"])
        #expect(downJSON.code == 0 && (downJSON.object?["on_hand"] as? NSNumber)?.intValue == 4, "\(downJSON)")
        let dashDash = try stockctl(["stock", "adjust", "--json", "--server", f.address, "JACKET", "--", "-1"])
        #expect(dashDash.code == 0 && (dashDash.object?["on_hand"] as? NSNumber)?.intValue == 3, "\(dashDash)")
        let up = try f.run(["stock", "adjust", "JACKET", "+7", "--reason", "restock", "--json"])
        #expect(up.code == 0 && (up.object?["on_hand"] as? NSNumber)?.intValue == 10, "\(up)")
        let badReason = try f.run(["stock", "adjust", "JACKET", "5", "--reason", "theft"])
        #expect(badReason.code == 2 && badReason.stderrLines.count == 1, "\(badReason)")
        let badDelta = try f.run(["stock", "adjust", "JACKET", "-x"])
        #expect(badDelta.code == 2 && badDelta.stderrLines.count == 1, "\(badDelta)")

        _ = try f.run(["reserve", "HAT", "1"])
        let list = try f.run(["stock", "list"])
        #expect(list.code == 0, "\(list)")
        #expect(list.stdoutLines.count == 5, "\(list)")  // header + 4 SKUs
        #expect(list.stdoutLines.contains { $0.hasPrefix("HAT") && $0.hasSuffix("SOLD OUT") }, "\(list)")
        #expect(list.stdoutLines.contains { $0.hasPrefix("BOOTS") && $0.hasSuffix("LOW") }, "\(list)")
        let listJSON = try f.run(["stock", "list", "--json"])
        let items = try #require(listJSON.json as? [[String: Any]], "\(listJSON)")
        #expect(items.count == 4 && items.allSatisfy { Set($0.keys) == stockKeys })
        let low = try f.run(["stock", "list", "--low-only", "--json"])
        let lowSKUs = ((low.json as? [[String: Any]]) ?? []).compactMap { $0["sku"] as? String }
        #expect(Set(lowSKUs) == ["HAT", "BOOTS"], "\(low)")
    }

    @Test func stockImport() throws {
        let f = try CtlFixture()
        let dir = try TempDirectory(prefix: "stockctl-csv")
        defer { dir.remove() }
        let bad = try dir.write("bad.csv", "sku,on_hand,low,limit\n# comment\nGOOD-1,5\nBROKEN,lots\n\nGOOD-2,1,2,3\nX\n")
        let rejected = try f.run(["stock", "import", bad])
        #expect(rejected.code == 2, "\(rejected)")
        #expect(rejected.stderr.contains("\(bad):4: ") && rejected.stderr.contains("\(bad):7: "), "\(rejected)")
        #expect(!rejected.stderr.contains("\(bad):3:") && rejected.stdout.isEmpty, "\(rejected)")
        let absent = try f.run(["stock", "get", "GOOD-1"])
        #expect(absent.code == 1 && absent.stderr.contains("unknown SKU"), "nothing applied: \(absent)")

        let good = try dir.write("good.csv", "sku,on_hand\nGOOD-1,5\n# x\nGOOD-2,1,2,3\r\nJACKET,20\n")
        let imported = try f.run(["stock", "import", good])
        #expect(imported.code == 0 && imported.stdout == "imported 3 SKUs\n", "\(imported)")
        #expect(imported.stderr.isEmpty, "no progress bar when stderr is not a terminal: \(imported)")
        let g2 = try f.run(["stock", "get", "GOOD-2", "--json"])
        #expect((g2.object?["on_hand"] as? NSNumber)?.intValue == 1, "\(g2)")
        let jacket = try f.run(["stock", "get", "JACKET", "--json"])
        #expect((jacket.object?["on_hand"] as? NSNumber)?.intValue == 20, "\(jacket)")
        let importedJSON = try f.run(["stock", "import", good, "--json"])
        #expect((importedJSON.object?["imported"] as? NSNumber)?.intValue == 3, "\(importedJSON)")
        let missing = try f.run(["stock", "import", dir.path("missing.csv")])
        #expect(missing.code == 2 && missing.stderrLines.count == 1, "\(missing)")
    }

    /// `events`: human lines and JSON Lines up to the feed's end, filters, --follow printing as it happens.
    @Test func eventsPrintsTheFeed() throws {
        let f = try CtlFixture()  // the catalog's 3 SKUs are offsets 1-3
        let token = try #require(f.run(["reserve", "JACKET", "2", "--customer", "c-9", "--json"]).object?["token"] as? String)
        #expect(try f.run(["confirm", token, "--order", "ORD-77"]).code == 0)
        let human = try f.run(["events"])
        #expect(human.code == 0, "\(human)")
        #expect(human.stdoutLines.count == 5 && human.stdoutLines[0].hasPrefix("#1 ") && human.stdoutLines[0].contains("stock_set"),
                "\(human)")
        #expect(human.stdoutLines[4].contains("confirmed JACKET qty=2") && human.stdoutLines[4].contains("order=ORD-77")
                && human.stdoutLines[4].contains("customer=c-9"), "\(human)")
        let json = try f.run(["events", "--json", "--kind", "confirmed"])
        #expect(json.code == 0 && json.stdoutLines.count == 1, "\(json)")
        let line = try #require(try JSONSerialization.jsonObject(with: Data(json.stdoutLines[0].utf8)) as? [String: Any])
        #expect(Set(line.keys).isSuperset(of: ["offset", "kind", "sku", "quantity", "token", "order", "time"]), "\(line)")
        #expect(line["offset"] as? Int == 5 && line["kind"] as? String == "confirmed" && line["sku"] as? String == "JACKET"
                && line["quantity"] as? Int == 2 && line["token"] as? String == token && line["order"] as? String == "ORD-77",
                "\(line)")
        let fromFour = try f.run(["events", "--from", "4", "--sku", "JACK"])
        #expect(fromFour.code == 0 && fromFour.stdoutLines.count == 2 && fromFour.stdoutLines[0].hasPrefix("#4 "), "\(fromFour)")
        // --follow prints new events as they happen (and would run until interrupted).
        let follow = try stockctl(["events", "--follow", "--server", f.address], timeout: 5, interrupt: true) { soFar in
            sleepSeconds(0.5)
            _ = try f.run(["stock", "adjust", "HAT", "-1", "--reason", "damage"])
            let deadline = monotonicSeconds() + 2
            while !soFar().contains("sold_out HAT") && monotonicSeconds() < deadline { sleepSeconds(0.05) }
        }
        #expect(follow.stdout.contains("stock_adjusted HAT delta=-1") && follow.stdout.contains("sold_out HAT"), "\(follow)")
        #expect(!follow.stdout.contains("#1 "), "--follow starts from now")
        let bad = try f.run(["events", "--kind", "shipped"])
        #expect(bad.code == 2 && bad.stderrLines.count == 1 && bad.stderr.contains("--kind shipped"), "\(bad)")
    }

    @Test func watchPipedPrintsOneLinePerRefresh() throws {
        let f = try CtlFixture()
        let w = try f.run(["watch", "--count", "2"])
        #expect(w.code == 0, "\(w)")
        #expect(w.stdoutLines.count == 2, "\(w)")
        #expect(w.stdoutLines.allSatisfy { $0.contains("skus=3") && !$0.contains("\u{1B}") }, "\(w)")
        #expect(w.stdoutLines.last?.contains("reservations/s=0.0") == true, "\(w)")
        let j = try f.run(["watch", "--count", "1", "--json"])
        #expect(j.code == 0 && j.keys == ["time_ms", "reservations_per_s", "show", "alerts", "skus"], "\(j)")
    }

    /// Show totals and alerts come from the event feed: reservations, confirmations, conversion,
    /// expiries, and an ALERT line when a SKU runs low and sells out.
    @Test func watchShowTotalsAndAlertsFromTheFeed() throws {
        let f = try CtlFixture()  // HAT: 1 unit; JACKET: 10, low-stock threshold 3
        let c = try f.server.connect()
        let w = try f.run(["watch", "--count", "2", "--interval", "2s"]) { stdoutSoFar in
            let deadline = monotonicSeconds() + 10
            while !stdoutSoFar().contains("\n") {
                guard monotonicSeconds() < deadline else { throw HarnessError("no first refresh within 10 s") }
                usleep(5_000)
            }
            sleepSeconds(0.3)  // the feed subscription is up by now
            let hat = try c.reserveOK("HAT", 1)  // sold out
            #expect(try c.confirm(hat.token).status == .ok)
            for _ in 0..<4 { _ = try c.reserveOK("JACKET", 2) }  // 10 -> 2: low stock
            _ = try c.reserveOK("SCARF", 1, ttlMs: 200)  // expires before the second refresh
        }
        #expect(w.code == 0, "\(w)")
        let alerts = w.stdoutLines.filter { $0.hasPrefix("ALERT ") }
        #expect(alerts.contains { $0.contains("HAT SOLD OUT") }, "\(w)")
        #expect(alerts.contains { $0.contains("JACKET LOW (") }, "\(w)")
        let last = w.stdoutLines.last ?? ""
        #expect(last.contains("show_reservations=6") && last.contains("show_confirmations=1")
                && last.contains("conversion=16.7%") && last.contains("expiries=1"), "\(w)")
    }

    @Test func watchRatesPerSKU() throws {
        let f = try CtlFixture()
        let c = try f.server.connect()
        // Between the first and the second refresh (2 s apart), 3 reservations of SCARF.
        let w = try f.run(["watch", "--count", "2", "--interval", "2s", "--json"]) { stdoutSoFar in
            let deadline = monotonicSeconds() + 10
            while !stdoutSoFar().contains("\n") {
                guard monotonicSeconds() < deadline else { throw HarnessError("no first refresh within 10 s") }
                usleep(5_000)
            }
            for _ in 0..<3 { _ = try c.reserveOK("SCARF", 1) }
        }
        #expect(w.code == 0 && w.stdoutLines.count == 2, "\(w)")
        func skus(_ line: String) -> [String: [String: Any]] {
            let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            let list = (o?["skus"] as? [[String: Any]]) ?? []
            return Dictionary(uniqueKeysWithValues: list.compactMap { e in (e["sku"] as? String).map { ($0, e) } })
        }
        let first = skus(w.stdoutLines.first ?? ""), second = skus(w.stdoutLines.last ?? "")
        #expect(first["SCARF"]?["reservations_per_s"] is NSNull, "no rate before two reads: \(w)")
        let scarf = (second["SCARF"]?["reservations_per_s"] as? NSNumber)?.doubleValue ?? -1
        #expect(scarf > 0.5 && scarf <= 3.0, "3 reservations over ≥ 2 s: \(scarf)")
        #expect((second["HAT"]?["reservations_per_s"] as? NSNumber)?.doubleValue == 0, "\(w)")
        #expect((second["SCARF"]?["reserved"] as? NSNumber)?.intValue == 3, "\(w)")
    }

    @Test func usageAndTransportErrors() throws {
        let help = try stockctl(["--help"])
        #expect(help.code == 0 && help.stdout.contains("Exit codes") && help.stdout.contains("69"), "\(help)")
        let subHelp = try stockctl(["stock", "adjust", "--help"])
        #expect(subHelp.code == 0 && subHelp.stdout.contains("--reason"), "\(subHelp)")

        for args in [["frobnicate"], ["reserve", "JACKET", "many"], ["reserve", "JACKET", "0"],
                     ["reserve", "JACKET"], ["confirm", "abc"], ["extend", "0123456789abcdef0123456789abcdef"],
                     ["ping", "--timeout", "soon"], ["ping", "--server", "127.0.0.1:99999"], ["bundle", "JACKET"]] {
            let r = try stockctl(args)
            #expect(r.code == 2, "\(args): \(r)")
            #expect(r.stderrLines.count == 1 && r.stderr.hasPrefix("stockctl: "), "\(args): \(r)")
            #expect(r.stdout.isEmpty, "\(args): \(r)")
        }

        let port = try unusedPort()
        for args in [["ping"], ["stock", "get", "JACKET", "--json"]] {
            let r = try stockctl(args + ["--server", "127.0.0.1:\(port)", "--timeout", "2s"])
            #expect(r.code == 69, "\(r)")
            #expect(r.stderrLines.count == 1 && r.stderr.contains("unreachable"), "\(r)")
        }
        let viaEnv = try stockctl(["ping"], env: ["STOCKD_SERVER": "127.0.0.1:\(port)"])
        #expect(viaEnv.code == 69, "\(viaEnv)")
    }
}
