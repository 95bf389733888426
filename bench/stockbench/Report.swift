import Foundation

/// One JSON document, keys sorted (stable for diffs and scripts).
func encodeJSON(_ value: some Encodable) -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    guard let data = try? e.encode(value) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}

private func cell(_ x: Double, digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

/// The human table: one line per run.
func printTable(_ results: [RunResult], header: Bool = true) {
    let columns = ["backend", "scenario", "conns", "depth/rate", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "granted",
                   "refused", "confirmed", "released", "to expire", "errors", "oversold", "books", "sell-out", "all sold"]
    let widths = [8, 11, 6, 11, 11, 9, 9, 10, 10, 9, 10, 9, 10, 7, 9, 6, 10, 10]
    func line(_ cells: [String]) -> String {
        zip(cells, widths).map { c, w in c.count >= w ? c + " " : c + String(repeating: " ", count: w - c.count) }
            .joined().trimmingCharacters(in: .whitespaces)
    }
    if header { print(line(columns)) }
    for r in results {
        let pacing = r.pipeline.map { "depth \($0)" } ?? r.rate.map { "\(formatRate($0))" } ?? "-"
        print(line([r.backend, r.scenario, "\(r.connections)", pacing, formatRate(r.ops_per_sec).replacingOccurrences(of: "/s", with: ""),
                    cell(r.p50_us), cell(r.p99_us), cell(r.p999_us), "\(r.reservations_granted)", "\(r.refused)",
                    "\(r.confirmed)", "\(r.released)", "\(r.left_to_expire)", "\(r.errors)", "\(r.oversold)",
                    r.accounting_mismatches == 0 ? "ok" : "\(r.accounting_mismatches) off",
                    r.sell_out_ms.map { cell($0, digits: 0) + " ms" } ?? "-",
                    r.all_sold_ms.map { cell($0, digits: 0) + " ms" } ?? "-"]))
        if let s = r.sweeper {
            print("         redis sweeper: every \(s.interval_ms) ms, \(s.calls) calls, \(s.expired) holds expired, "
                  + "\(cell(s.busy_ms)) ms inside sweep calls")
        }
    }
    fflush(nil)
}

/// `compare`: every round, and per backend the medians.
struct CompareSummary: Codable {
    struct Medians: Codable {
        var ops_per_sec: Double
        var p50_us: Double
        var p99_us: Double
        var p999_us: Double
        var sell_out_ms: Double?
        var all_sold_ms: Double?
        var oversold: Int64
        var errors: UInt64
    }

    var scenario: String
    var rounds: [RunResult]
    var stockd: Medians
    var redis: Medians
    /// stockd over redis, median throughput.
    var ratio: Double
    /// redis over stockd, median p99 (above 1: stockd's p99 is lower).
    var p99_ratio: Double
    /// redis over stockd, median sell-out time (flash-sale).
    var sell_out_ratio: Double?
    var redis_persistence: String
    var stockd_sync: String

    init(scenario: String, rounds: [RunResult]) {
        self.scenario = scenario
        self.rounds = rounds
        func medians(_ backend: BackendKind) -> Medians {
            let rs = rounds.filter { $0.backend == backend.rawValue }
            let sellOuts = rs.compactMap(\.sell_out_ms)
            let allSold = rs.compactMap(\.all_sold_ms)
            return Medians(ops_per_sec: median(rs.map(\.ops_per_sec)), p50_us: median(rs.map(\.p50_us)),
                           p99_us: median(rs.map(\.p99_us)), p999_us: median(rs.map(\.p999_us)),
                           sell_out_ms: sellOuts.count == rs.count && !rs.isEmpty ? median(sellOuts) : nil,
                           all_sold_ms: allSold.count == rs.count && !rs.isEmpty ? median(allSold) : nil,
                           oversold: rs.map(\.oversold).reduce(0, +), errors: rs.map(\.errors).reduce(0, +))
        }
        stockd = medians(.stockd)
        redis = medians(.redis)
        ratio = redis.ops_per_sec > 0 ? stockd.ops_per_sec / redis.ops_per_sec : .infinity
        p99_ratio = stockd.p99_us > 0 ? redis.p99_us / stockd.p99_us : .infinity
        if let a = stockd.sell_out_ms, let b = redis.sell_out_ms, a > 0 { sell_out_ratio = b / a }
        redis_persistence = rounds.first { $0.backend == "redis" }?.redis_persistence ?? "off"
        stockd_sync = rounds.first { $0.backend == "stockd" }?.stockd_sync ?? "as given by --stockd-server"
    }

    /// The round whose throughput is the backend's median (for the plot).
    func medianRun(_ backend: BackendKind) -> RunResult? {
        let rs = rounds.filter { $0.backend == backend.rawValue }.sorted { $0.ops_per_sec < $1.ops_per_sec }
        return rs.isEmpty ? nil : rs[rs.count / 2]
    }
}

func median(_ xs: [Double]) -> Double {
    guard !xs.isEmpty else { return 0 }
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func printSummary(_ s: CompareSummary) {
    print("")
    print("medians over \(s.rounds.count / 2) rounds each (stockd sync: \(s.stockd_sync); "
          + "redis persistence: \(s.redis_persistence)):")
    for (name, m) in [("stockd", s.stockd), ("redis", s.redis)] {
        var text = "  \(name.padding(toLength: 7, withPad: " ", startingAt: 0)) \(formatRate(m.ops_per_sec))  "
            + "p50 \(cell(m.p50_us)) µs  p99 \(cell(m.p99_us)) µs  p99.9 \(cell(m.p999_us)) µs  "
            + "oversold \(m.oversold)  errors \(m.errors)"
        if let so = m.sell_out_ms { text += "  sell-out \(cell(so, digits: 0)) ms" }
        if let a = m.all_sold_ms { text += "  all sold \(cell(a, digits: 0)) ms" }
        print(text)
    }
    var ratios = "ratio stockd/redis: throughput \(cell(s.ratio, digits: 2))×, p99 redis/stockd \(cell(s.p99_ratio, digits: 2))×"
    if let r = s.sell_out_ratio { ratios += ", sell-out time redis/stockd \(cell(r, digits: 2))×" }
    print(ratios)
    fflush(nil)
}

/// Writes `text` to stderr unbuffered (progress lines, failures).
func writeStderr(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
