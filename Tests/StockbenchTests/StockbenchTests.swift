import Foundation
import Testing
import TestSupport

// stockbench, run as a binary: small runs of every scenario against both
// backends (stockbench starts stockd and redis-server itself). These check
// accounting — nothing oversold, the server's final counts equal the
// generator's books, every granted hold has exactly one recorded fate — never
// speed.

/// Runs stockbench with `--json` and returns the parsed document.
func stockbench(_ args: [String], timeout: Double = 120) throws -> (run: ToolRun, json: [String: Any]) {
    let r = try runTool("stockbench", args + ["--json"], timeout: timeout)
    let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
    return (r, json)
}

func int(_ o: [String: Any], _ key: String) -> Int64 { (o[key] as? NSNumber)?.int64Value ?? -1 }

/// The books of one run balance: each granted hold had one fate, nothing
/// was oversold, and the server agrees with the generator.
func expectBalanced(_ o: [String: Any], _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(int(o, "oversold") == 0, "\(context)", sourceLocation: sourceLocation)
    #expect(int(o, "accounting_mismatches") == 0, "\(context)", sourceLocation: sourceLocation)
    #expect(int(o, "errors") == 0, "\(context)", sourceLocation: sourceLocation)
    let fates = int(o, "confirmed") + int(o, "released") + int(o, "left_to_expire") + int(o, "token_gone")
    #expect(fates == int(o, "reservations_granted"), "every granted hold has one fate: \(context)",
            sourceLocation: sourceLocation)
    #expect(int(o, "units_sold") == int(o, "confirmed"), "one unit per confirm: \(context)",
            sourceLocation: sourceLocation)
    #expect(int(o, "units_sold") <= int(o, "units_staged"), "\(context)", sourceLocation: sourceLocation)
}

@Suite(.ownThread, .serialized) struct StockbenchTests {
    static let backends = ["stockd", "redis"]

    @Test("throughput: closed loop, every fate, both backends", arguments: backends)
    func throughput(backend: String) throws {
        let (r, o) = try stockbench(["throughput", "--backend", backend, "--requests", "3000", "--connections", "4",
                                     "--pipeline", "8", "--skus", "5", "--mix", "4:2:1:1", "--ttl", "300ms"])
        #expect(r.code == 0, "\(r)")
        #expect(o["backend"] as? String == backend && o["scenario"] as? String == "throughput", "\(r)")
        #expect(int(o, "requests") >= 3000, "\(r)")
        #expect((o["ops_per_sec"] as? NSNumber)?.doubleValue ?? 0 > 0, "\(r)")
        #expect(int(o, "left_to_expire") > 0 && int(o, "released") > 0 && int(o, "confirmed") > 0, "\(r)")
        expectBalanced(o, "\(r)")
        for key in ["p50_us", "p99_us", "p999_us"] { #expect((o[key] as? NSNumber)?.doubleValue ?? 0 > 0, "\(key)") }
        if backend == "redis" {
            let sweeper = o["sweeper"] as? [String: Any] ?? [:]
            #expect(int(sweeper, "expired") >= 1, "the sweeper returned expired holds: \(r)")
        }
    }

    @Test("latency: open loop at a fixed rate, both backends", arguments: backends)
    func latency(backend: String) throws {
        let (r, o) = try stockbench(["latency", "--backend", backend, "--rate", "2000", "--duration", "1s",
                                     "--connections", "2", "--skus", "3"])
        #expect(r.code == 0, "\(r)")
        // 2,000 reservations/s for 1 s, each with its confirm: about 4,000 answers.
        #expect((3_000...5_000).contains(int(o, "requests")), "\(r)")
        #expect(int(o, "reservations_granted") >= 1_500, "\(r)")
        expectBalanced(o, "\(r)")
    }

    @Test("flash-sale: never oversells, books balance, sells out, both backends", arguments: backends)
    func flashSale(backend: String) throws {
        let (r, o) = try stockbench(["flash-sale", "--backend", backend, "--skus", "3", "--stock", "20",
                                     "--buyers", "400", "--within", "500ms", "--ttl", "200ms", "--connections", "4"])
        #expect(r.code == 0, "\(r)")
        expectBalanced(o, "\(r)")
        #expect(int(o, "units_staged") == 60)
        // 400 buyers for 60 units: most are refused, and sales happen.
        #expect(int(o, "units_sold") > 0 && int(o, "refused") > 0, "\(r)")
        // 400 buyers for 60 units: every SKU runs out; "all sold" exactly when every unit was sold.
        #expect((o["sell_out_ms"] as? NSNumber)?.doubleValue ?? -1 > 0, "\(r)")
        let allSold = int(o, "units_sold") == 60
        #expect(allSold == ((o["all_sold_ms"] as? NSNumber)?.doubleValue ?? -1 > 0), "\(r)")
        #expect(int(o, "reservations_granted") + int(o, "refused") == 400, "every buyer answered once: \(r)")
    }

    @Test("compare: A B A B rounds, medians and the ratio; the plot is an SVG")
    func compare() throws {
        let dir = try TempDirectory(prefix: "stockbench")
        defer { dir.remove() }
        let plot = dir.path("curves.svg")
        let (r, o) = try stockbench(["compare", "flash-sale", "--rounds", "3", "--skus", "2", "--stock", "10",
                                     "--buyers", "100", "--within", "200ms", "--ttl", "100ms", "--connections", "2",
                                     "--plot", plot])
        #expect(r.code == 0, "\(r)")
        let rounds = o["rounds"] as? [[String: Any]] ?? []
        #expect(rounds.map { $0["backend"] as? String ?? "" } == ["stockd", "redis", "stockd", "redis", "stockd", "redis"],
                "\(r)")
        for round in rounds { expectBalanced(round, "\(round)") }
        #expect((o["ratio"] as? NSNumber)?.doubleValue ?? 0 > 0, "\(r)")
        #expect(o["stockd"] is [String: Any] && o["redis"] is [String: Any], "\(r)")
        let svg = (try? String(contentsOfFile: plot, encoding: .utf8)) ?? ""
        #expect(svg.hasPrefix("<svg") && svg.contains("polyline") && svg.contains("redis") && svg.contains("stockd"))
    }

    @Test("bad arguments: one line on stderr, usage exit code")
    func badArguments() throws {
        for args in [["throughput", "--mix", "3:1:1:0"], ["throughput", "--backend", "mysql"],
                     ["flash-sale", "--buyers", "0"], ["latency", "--rate", "-5"], ["compare", "throughput", "--rounds", "2"]] {
            let r = try runTool("stockbench", args)
            #expect(r.code == 64, "\(args): \(r)")
            #expect(r.stdout.isEmpty && r.stderr.contains("Error:"), "\(args): \(r)")
        }
        let port = try unusedPort()
        let unreachable = try runTool("stockbench", ["throughput", "--server", "127.0.0.1:\(port)", "--requests", "10"])
        #expect(unreachable.code != 0 && unreachable.stderr.contains("127.0.0.1:\(port)"), "\(unreachable)")
    }
}
