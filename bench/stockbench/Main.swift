// stockbench: the flash-sale load generator. The same workload code drives
// stockd (its binary protocol) and the Redis baseline (RESP + the Lua scripts
// in bench/StockBenchRedis/), so a comparison is a ratio measured in one run, on one
// machine. See bench/README.md.

import ArgumentParser
import CommandSupport
import Foundation
import StockBenchRedis
#if canImport(Glibc)
import Glibc
#endif

@main
struct StockBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stockbench",
        abstract: "Flash-sale load generator: stockd and the Redis/Lua baseline, side by side.",
        discussion: """
            Without --server, stockbench starts the backend itself on a free loopback port \
            (stockd from the same build folder, redis-server from the system) and stops it afterwards. \
            Every run checks the books: the server's final counts must match the generator's own \
            accounting and nothing may be oversold; otherwise stockbench exits 1.
            """,
        version: BuildInfo.versionLine(program: "stockbench"),
        subcommands: [Throughput.self, Latency.self, FlashSale.self, Compare.self, FeedBench.self, Hostile.self])
}

/// A duration argument in the grammar every binary shares (`DurationParser`: `500ms`, `1.5s`,
/// `1m30s`), as seconds for the generator's clocks. Options declared with `transform: Seconds.parse`
/// name the accepted format when a value is bad.
struct Seconds: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let value: Double
    init(_ v: Double) { value = v }
    init?(argument: String) {
        guard let s = try? Seconds.parse(argument) else { return nil }
        self = s
    }
    static func parse(_ text: String) throws -> Seconds {
        Seconds(Double(try DurationParser.milliseconds(text)) / 1000)
    }
    var description: String { DurationParser.format(UInt64((value * 1000).rounded())) }
    var defaultValueDescription: String { description }
}

/// Options every scenario shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Connections to the server.") var connections = 16
    @Option(help: "Generator threads (each its own libuv loop).") var threads = 1
    @Option(help: "Number of SKUs.") var skus: Int?
    @Option(help: "Share of requests on the hottest SKU (0...1); the rest spread uniformly.") var hot: Double?
    @Option(help: "Zipf exponent for SKU popularity (instead of --hot).") var zipf: Double?
    @Option(help: "Units staged per SKU.") var stock: Int64?
    @Option(help: "reserve:confirm:release:expire weights; reserve = confirm + release + expire.") var mix: String?
    @Option(help: "Hold time of each reservation.", transform: Seconds.parse) var ttl: Seconds?
    @Option(help: "Seed of the workload's random choices.") var seed: UInt64 = 42
    @Flag(help: "One JSON document on stdout.") var json = false
    @Option(help: "Draw the latency percentile curves into this SVG file.") var plot: String?
    @Option(help: "stockd worker threads when stockbench starts stockd.") var stockdWorkers = 1
    @Option(help: "Redis persistence when stockbench starts redis: off, everysec or always (appendfsync).")
    var redisPersistence = "off"
    @Option(help: "stockd journaling when stockbench starts stockd: none (in memory) or always (fdatasync before answering).")
    var stockdSync = "none"

    func validate() throws {
        guard connections >= 1, connections <= 10_000 else { throw ValidationError("--connections must be 1...10000") }
        guard threads >= 1, threads <= 64, threads <= connections else {
            throw ValidationError("--threads must be 1...64 and at most --connections")
        }
        if let skus, skus < 1 || skus > 1_000_000 { throw ValidationError("--skus must be 1...1000000") }
        if let hot, !(0...1).contains(hot) { throw ValidationError("--hot must be between 0 and 1") }
        if let zipf, !(zipf > 0 && zipf < 10) { throw ValidationError("--zipf must be between 0 and 10") }
        if hot != nil && zipf != nil { throw ValidationError("--hot and --zipf exclude each other") }
        if let stock, stock < 0 || stock > 1 << 40 { throw ValidationError("--stock must be 0...2^40") }
        if let mix, case .failure(let e) = Mix.parse(mix) { throw ValidationError(e.description) }
        if let ttl, ttl.value < 0.001 || ttl.value > 3600 { throw ValidationError("--ttl must be 1ms...1h") }
        guard ["off", "everysec", "always"].contains(redisPersistence) else {
            throw ValidationError("--redis-persistence must be off, everysec or always")
        }
        guard ["none", "always"].contains(stockdSync) else { throw ValidationError("--stockd-sync must be none or always") }
    }

    var persistence: RedisServer.Persistence {
        switch redisPersistence {
        case "everysec": .appendfsyncEverysec
        case "always": .appendfsyncAlways
        default: .off
        }
    }

    var shape: SKUChooser.Shape {
        if let zipf { return .zipf(zipf) }
        if let hot { return .hot(hot) }
        return .uniform
    }

    func parsedMix(default d: String) -> Mix {
        guard case .success(let m) = Mix.parse(mix ?? d) else { preconditionFailure("validated") }
        return m
    }

    var progress: Bool { isatty(STDERR_FILENO) == 1 }
}

/// Which server a single run drives (`compare` drives both and has its own).
struct TargetOptions: ParsableArguments {
    @Option(help: "Backend: stockd or redis.") var backend = "stockd"
    @Option(help: "Server host:port (default: start one).") var server: String?

    func validate() throws {
        guard BackendKind(rawValue: backend) != nil else { throw ValidationError("--backend must be stockd or redis") }
    }
}

/// A scenario's workload, resolved from its options and defaults.
protocol Scenario: Sendable {
    var name: String { get }
    func spec() -> RunSpec
    var common: CommonOptions { get }
}

/// Throughput workload options (also used by `compare`).
struct ThroughputOptions: ParsableArguments, Scenario {
    @OptionGroup var common: CommonOptions
    @Option(help: "Requests outstanding per connection.") var pipeline = 32
    @Option(help: "Measured time (default: 10s).", transform: Seconds.parse) var duration = Seconds(10)
    @Option(help: "Unmeasured time first (default: 1s).", transform: Seconds.parse) var warmup = Seconds(1)
    @Option(help: "Stop after this many answers instead of --duration.") var requests: Int?

    var name: String { "throughput" }

    func validate() throws {
        guard pipeline >= 1, pipeline <= 4096 else { throw ValidationError("--pipeline must be 1...4096") }
        if let requests, requests < 1 { throw ValidationError("--requests must be positive") }
    }

    func spec() -> RunSpec {
        RunSpec(scenario: name, pacing: .closed(depth: pipeline), connections: common.connections,
                threads: common.threads, durationSeconds: requests == nil ? duration.value : 3600,
                warmupSeconds: requests == nil ? warmup.value : 0, requests: requests,
                mix: common.parsedMix(default: "1:1:0:0"), shape: common.shape, skus: common.skus ?? 1,
                stock: common.stock ?? (1 << 40), ttlMs: UInt32((common.ttl?.value ?? 5) * 1000), seed: common.seed,
                progress: common.progress)
    }
}

struct Throughput: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Closed loop: --pipeline requests outstanding per connection, as fast as the server answers.")
    @OptionGroup var scenario: ThroughputOptions
    @OptionGroup var target: TargetOptions
    func run() async throws { try await runSingle(scenario, target) }
}

/// Latency workload options (also used by `compare`).
struct LatencyOptions: ParsableArguments, Scenario {
    @OptionGroup var common: CommonOptions
    @Option(help: "Reservations (arrivals) per second, all connections together.") var rate: Double = 20_000
    @Option(help: "Measured time (default: 10s).", transform: Seconds.parse) var duration = Seconds(10)

    var name: String { "latency" }

    func validate() throws {
        guard rate >= 1, rate <= 50_000_000 else { throw ValidationError("--rate must be 1...50000000") }
    }

    func spec() -> RunSpec {
        RunSpec(scenario: name, pacing: .open(ratePerSecond: rate, arrivals: nil), connections: common.connections,
                threads: common.threads, durationSeconds: duration.value, warmupSeconds: 0, requests: nil,
                mix: common.parsedMix(default: "1:1:0:0"), shape: common.shape, skus: common.skus ?? 1,
                stock: common.stock ?? (1 << 40), ttlMs: UInt32((common.ttl?.value ?? 5) * 1000), seed: common.seed,
                progress: common.progress)
    }
}

struct Latency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open loop: reservations arrive at --rate per second whatever the answers do; "
            + "latency counts from each arrival's scheduled time (no coordinated omission).")
    @OptionGroup var scenario: LatencyOptions
    @OptionGroup var target: TargetOptions
    func run() async throws { try await runSingle(scenario, target) }
}

/// FlashSale workload options (also used by `compare`).
struct FlashSaleOptions: ParsableArguments, Scenario {
    @OptionGroup var common: CommonOptions
    @Option(help: "Buyers in all.") var buyers = 20_000
    @Option(help: "Time over which the buyers arrive (default: 1s).", transform: Seconds.parse) var within = Seconds(1)
    @Option(name: .customLong("sku"),
            help: ArgumentHelp("Sell this SKU as the server has it, instead of staging --skus fresh ones "
                               + "(repeatable; e.g. a show staged with `stockctl stage`).", valueName: "SKU"))
    var existing: [String] = []

    var name: String { "flash-sale" }

    func validate() throws {
        guard buyers >= 1, buyers <= 100_000_000 else { throw ValidationError("--buyers must be 1...100000000") }
        guard within.value >= 0.001 else { throw ValidationError("--within must be at least 1ms") }
        if !existing.isEmpty {
            guard common.skus == nil && common.stock == nil else {
                throw ValidationError("--sku sells SKUs as they are: leave out --skus and --stock")
            }
            guard Set(existing).count == existing.count, existing.count <= 100_000 else {
                throw ValidationError("--sku: each SKU once, at most 100000")
            }
        }
    }

    func spec() -> RunSpec {
        RunSpec(scenario: name, pacing: .open(ratePerSecond: Double(buyers) / within.value, arrivals: buyers),
                connections: common.connections, threads: common.threads, durationSeconds: within.value,
                warmupSeconds: 0, requests: nil, mix: common.parsedMix(default: "10:7:2:1"), shape: common.shape,
                skus: existing.isEmpty ? common.skus ?? 20 : existing.count, stock: common.stock ?? 500,
                ttlMs: UInt32((common.ttl?.value ?? 1) * 1000), seed: common.seed, progress: common.progress,
                existingSKUs: existing)
    }
}

struct FlashSale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flash-sale",
        abstract: "A drop: --buyers arrive within --within; each reserves one unit, then confirms, releases "
            + "or lets it expire by --mix (default 10:7:2:1). Reports the time to sell-out (every SKU ran out: "
            + "all units held or sold) and to the last unit sold, oversold (must be 0), refusals and latency, "
            + "and checks the server's final counts against the generator's books.")
    @OptionGroup var scenario: FlashSaleOptions
    @OptionGroup var target: TargetOptions
    func run() async throws { try await runSingle(scenario, target) }
}

struct Compare: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs one scenario against stockd and redis alternately (A B A B ...) and prints both "
            + "and the ratio of medians (stockd over redis).",
        subcommands: [CompareThroughput.self, CompareLatency.self, CompareFlashSale.self])
}

/// Options of `compare`, besides the scenario's own.
struct CompareOptions: ParsableArguments {
    @Option(help: "Rounds per backend (at least 3).") var rounds = 3
    @Option(help: "stockd host:port (default: start one per round).") var stockdServer: String?
    @Option(help: "redis host:port (default: start one per round).") var redisServer: String?

    func validate() throws {
        guard rounds >= 3, rounds <= 100 else { throw ValidationError("--rounds must be 3...100") }
    }
}

struct CompareThroughput: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "throughput", abstract: "Compare closed-loop throughput.")
    @OptionGroup var scenario: ThroughputOptions
    @OptionGroup var compare: CompareOptions
    func run() async throws { try await runCompare(scenario, compare) }
}

struct CompareLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "latency", abstract: "Compare open-loop latency.")
    @OptionGroup var scenario: LatencyOptions
    @OptionGroup var compare: CompareOptions
    func run() async throws { try await runCompare(scenario, compare) }
}

struct CompareFlashSale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "flash-sale", abstract: "Compare the flash sale.")
    @OptionGroup var scenario: FlashSaleOptions
    @OptionGroup var compare: CompareOptions
    func validate() throws {
        guard scenario.existing.isEmpty else { throw ValidationError("--sku: only for a single run against one stockd") }
    }
    func run() async throws { try await runCompare(scenario, compare) }
}

// MARK: - running

/// One scenario against one backend; exits 1 if the books do not balance.
func runSingle(_ s: some Scenario, _ target: TargetOptions) async throws {
    signal(SIGPIPE, SIG_IGN)
    installInterruptHandler()
    let kind = BackendKind(rawValue: target.backend)!
    let server = try BackendTarget(kind: kind, address: target.server, stockdWorkers: s.common.stockdWorkers,
                                   maxTokens: nil, persistence: s.common.persistence,
                                   stockdSync: s.common.stockdSync)
    defer { server.stop() }
    let result = try await runOnce(s.spec(), on: server, label: "\(kind.rawValue) \(s.name)")
    if s.common.json {
        print(encodeJSON(result))
    } else {
        printTable([result])
    }
    if let plot = s.common.plot { try writePlot(plot, title: "\(s.name) latency", results: [result]) }
    try checkBooks([result])
}

/// A B A B ...: each round starts the managed servers afresh.
func runCompare(_ s: some Scenario, _ c: CompareOptions) async throws {
    signal(SIGPIPE, SIG_IGN)
    installInterruptHandler()
    var all: [RunResult] = []
    for round in 1...c.rounds {
        for kind in BackendKind.allCases {
            let address = kind == .stockd ? c.stockdServer : c.redisServer
            let target = try BackendTarget(kind: kind, address: address, stockdWorkers: s.common.stockdWorkers,
                                           maxTokens: nil, persistence: s.common.persistence,
                                   stockdSync: s.common.stockdSync)
            defer { target.stop() }
            let r = try await runOnce(s.spec(), on: target, label: "round \(round)/\(c.rounds) \(kind.rawValue) \(s.name)")
            if !s.common.json {
                printTable([r], header: all.isEmpty)
            }
            all.append(r)
        }
    }
    let summary = CompareSummary(scenario: s.name, rounds: all)
    if s.common.json {
        print(encodeJSON(summary))
    } else {
        printSummary(summary)
    }
    if let plot = s.common.plot {
        try writePlot(plot, title: "\(s.name): stockd vs redis (median rounds)",
                      results: [summary.medianRun(.stockd), summary.medianRun(.redis)].compactMap { $0 })
    }
    try checkBooks(all)
}

/// Exit 1 with one line per broken run when anything was oversold or the books differ.
func checkBooks(_ results: [RunResult]) throws {
    let bad = results.filter { $0.oversold != 0 || $0.accounting_mismatches != 0 }
    guard bad.isEmpty else {
        for r in bad {
            writeStderr("stockbench: \(r.backend) \(r.scenario): oversold \(r.oversold), "
                        + "\(r.accounting_mismatches) SKUs whose final counts differ from the generator's books\n")
        }
        throw ExitCode(1)
    }
}
