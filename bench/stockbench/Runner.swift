import BenchSupport
import CLibUV
import Foundation
import Histogram
import StockBenchRedis
#if canImport(Glibc)
import Glibc
#endif

/// One run's workload, whatever the backend.
struct RunSpec: Sendable {
    var scenario: String
    var pacing: Pacing
    var connections: Int
    var threads: Int
    var durationSeconds: Double
    var warmupSeconds: Double
    var requests: Int?
    var mix: Mix
    var shape: SKUChooser.Shape
    var skus: Int
    var stock: Int64
    var ttlMs: UInt32
    var seed: UInt64
    var progress: Bool
    /// SKUs already on the server to sell (flash-sale `--sku`); empty: stage `skus` fresh ones with `stock` each.
    var existingSKUs: [String] = []
}


/// What one run measured, and what the books say.
struct RunResult: Codable, Sendable {
    var backend: String
    var scenario: String
    var connections: Int
    var pipeline: Int?
    var rate: Double?
    var ops_per_sec: Double
    var requests: UInt64
    var duration_s: Double
    var p50_us: Double
    var p90_us: Double
    var p99_us: Double
    var p999_us: Double
    var max_us: Double
    var reservations_granted: UInt64
    var refused: UInt64
    var confirmed: UInt64
    var released: UInt64
    var left_to_expire: UInt64
    var token_gone: UInt64
    var errors: UInt64
    /// Open loop: 1 ms ticks whose due arrivals waited for a connection with
    /// a full ring (they kept their scheduled time, so their wait is in the latency).
    var stalled_ticks: UInt64
    /// Units sold beyond the stock staged (must be 0).
    var oversold: Int64
    /// SKUs whose final server counts differ from the generator's books.
    var accounting_mismatches: Int
    var units_staged: Int64
    var units_sold: Int64
    /// Flash-sale: first arrival to the moment every SKU had run out (all
    /// units held or sold; a buyer sees "sold out" everywhere). nil: some SKU never ran out.
    var sell_out_ms: Double?
    /// Flash-sale: first arrival to the confirm of the last unit (nil: not every unit was sold).
    var all_sold_ms: Double?
    var sweeper: SweeperStats?
    var redis_persistence: String?
    /// stockd's journaling when stockbench started it ("none" or "always").
    var stockd_sync: String?
    /// (percentile, µs) points for the plot.
    var latency_curve: [[Double]]
}

struct SweeperStats: Codable, Sendable {
    var interval_ms: Int
    var calls: UInt64
    var expired: UInt64
    var busy_ms: Double
}

/// Calls the Redis sweep script every `intervalMs` on its own connection
/// (looping while a call hit its limit), the way a deployment runs it, and
/// counts its cost.
final class Sweeper: @unchecked Sendable {
    let intervalMs: Int
    private let admin: RedisAdmin
    private let sha: String
    private let lock = NSLock()
    private var running = true
    private var thread: Thread?
    private(set) var calls: UInt64 = 0
    private(set) var expired: UInt64 = 0
    private(set) var busyNs: UInt64 = 0
    private let done = DispatchSemaphore(value: 0)

    init(host: String, port: Int, sha: String, intervalMs: Int = 100) throws {
        admin = try RedisAdmin(host: host, port: port, timeoutMs: 10_000)
        self.sha = sha
        self.intervalMs = intervalMs
    }

    func start() {
        let t = Thread { [self] in
            while isRunning() {
                sweepAll()
                usleep(UInt32(intervalMs) * 1000)
            }
            done.signal()
        }
        thread = t
        t.start()
    }

    private func isRunning() -> Bool { lock.withLock { running } }

    /// One round: sweep until a call returns fewer than the limit.
    func sweepAll() {
        while true {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = try? admin.sweep(sha: sha, limit: 1000)
            let dt = DispatchTime.now().uptimeNanoseconds - t0
            lock.withLock {
                calls += 1
                busyNs += dt
                expired += UInt64(r?.expired ?? 0)
            }
            guard let r, r.examined >= 1000 else { return }
        }
    }

    func stop() -> SweeperStats {
        lock.withLock { running = false }
        if thread != nil { done.wait() }
        thread = nil
        return lock.withLock {
            SweeperStats(interval_ms: intervalMs, calls: calls, expired: expired, busy_ms: Double(busyNs) / 1e6)
        }
    }

    deinit { admin.close() }
}

/// Runs `spec` against `target` and checks the books.
func runOnce(_ spec: RunSpec, on target: BackendTarget, label: String) async throws -> RunResult {
    let names: [String]
    // Per SKU, what the server holds before the run: the books are checked against it.
    let base: [SKUCounts]
    if spec.existingSKUs.isEmpty {
        names = skuNames(prefix: "b\(UInt32.random(in: 0...UInt32.max) % 1_000_000)", count: spec.skus)
        try await target.stage(names, units: spec.stock)
        base = names.map { _ in SKUCounts(available: spec.stock, held: 0, sold: 0, backup: 0) }
    } else {
        names = spec.existingSKUs
        base = try await target.counts(names)
        if let i = base.firstIndex(where: { $0.held != 0 }) {
            throw BenchError("\(names[i]) has \(base[i].held) units held: start the sale with no holds on its SKUs")
        }
    }
    // Units each SKU can sell in this run: on sale now, plus its backup (released during the run or not).
    let sellable = base.map { $0.available + $0.backup }

    var sweeper: Sweeper?
    if target.kind == .redis, let scripts = target.scripts {
        let s = try Sweeper(host: target.host, port: target.port, sha: scripts.sweep)
        s.start()
        sweeper = s
    }

    let outcome = try runEngine(spec, target: target, names: names, units: Int(sellable.reduce(0, +)), label: label)

    // Holds left to expire come back after their ttl: wait, then sweep
    // (Redis) so the final counts are settled before they are compared.
    if outcome.tally.leftToExpire > 0 || outcome.tally.tokenGone > 0 || outcome.tally.undrained > 0 {
        usleep(UInt32(min(Int(spec.ttlMs) + 400, 60_000)) * 1000)
        sweeper?.sweepAll()
    }
    let sweeperStats = sweeper?.stop()
    let counts = try await target.counts(names)

    var oversold: Int64 = 0
    var mismatches = 0
    var sold: Int64 = 0
    for (i, c) in counts.enumerated() {
        let books = Int64(outcome.confirmedUnits[i])
        let soldNow = c.sold - base[i].sold
        oversold += max(0, soldNow - sellable[i]) + max(0, books - sellable[i])
        // Units are conserved: what was on sale or in backup is now on sale, in backup, or sold in this run.
        if soldNow != books || c.held != 0 || c.available + c.held + c.backup + soldNow != sellable[i] || c.available < 0 {
            mismatches += 1
        }
        sold += soldNow
    }

    let h = outcome.histogram
    let us = { (p: Double) in Double(h.valueAtPercentile(p)) / 1000 }
    var curve: [[Double]] = []
    for p in [50.0, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999] where h.totalCount > 0 {
        curve.append([p, us(p)])
    }
    let t = outcome.tally
    var result = RunResult(
        backend: target.kind.rawValue, scenario: spec.scenario, connections: spec.connections, pipeline: nil, rate: nil,
        ops_per_sec: outcome.opsPerSecond, requests: t.answered, duration_s: outcome.windowSeconds,
        p50_us: us(50), p90_us: us(90), p99_us: us(99), p999_us: us(99.9), max_us: Double(h.max) / 1000,
        reservations_granted: t.reservesGranted, refused: t.refused, confirmed: t.confirmed, released: t.released,
        left_to_expire: t.leftToExpire, token_gone: t.tokenGone,
        errors: t.failed + t.connectionErrors + t.protocolErrors + t.undrained, stalled_ticks: t.backlogged,
        oversold: oversold, accounting_mismatches: mismatches, units_staged: sellable.reduce(0, +),
        units_sold: sold, sell_out_ms: outcome.sellOutMs, all_sold_ms: outcome.allSoldMs, sweeper: sweeperStats,
        redis_persistence: target.kind == .redis ? target.persistence.label : nil,
        stockd_sync: target.kind == .stockd ? target.stockdSync : nil, latency_curve: curve)
    switch spec.pacing {
    case .closed(let depth): result.pipeline = depth
    case .open(let rate, _): result.rate = rate
    }
    return result
}

struct EngineOutcome {
    var tally = Tally()
    var histogram = Histogram<UInt64>(lowestDiscernibleValue: 100, highestTrackableValue: 200_000_000_000,
                                      numberOfSignificantValueDigits: .three)
    var confirmedUnits: [UInt64]
    var opsPerSecond = 0.0
    var windowSeconds = 0.0
    var sellOutMs: Double?
    var allSoldMs: Double?
}

/// The libuv part: workers on threads (the first on this one), then merge.
/// `units`: what the SKUs can sell in all (sizes the confirm-time log; "all sold" is reaching it).
func runEngine(_ spec: RunSpec, target: BackendTarget, names: [String], units: Int, label: String) throws -> EngineOutcome {
    let totalStock = min(units, 50_000_000)
    let config = UnsafeMutablePointer<EngineConfig>.allocate(capacity: 1)
    config.initialize(to: EngineConfig(
        pacing: spec.pacing, connections: spec.connections, threads: spec.threads,
        durationNs: UInt64(spec.durationSeconds * 1e9), warmupNs: UInt64(spec.warmupSeconds * 1e9),
        requests: spec.requests, mix: spec.mix, chooser: SKUChooser(count: spec.skus, shape: spec.shape),
        quantity: 1, ttlMs: spec.ttlMs, skuCount: spec.skus, seed: spec.seed,
        confirmTimesCapacity: spec.scenario == "flash-sale" ? totalStock + 1 : 0,
        progress: spec.progress, label: label))
    let scripts = target.scripts
    let makeWire: () -> Wire = {
        switch target.kind {
        case .stockd: return Wire(stockd: StockdWire(skus: names), redis: nil)
        case .redis:
            return Wire(stockd: nil, redis: RedisWire(skus: names, reserveSHA: scripts!.reserve,
                                                      confirmSHA: scripts!.confirm, releaseSHA: scripts!.release))
        }
    }
    var workers: [UnsafeMutablePointer<EngineWorker>] = []
    var first = 0
    for t in 0..<spec.threads {
        let loop = UnsafeMutablePointer<uv_loop_t>.allocate(capacity: 1)
        check(uv_loop_init(loop), "uv_loop_init")
        let w = UnsafeMutablePointer<EngineWorker>.allocate(capacity: 1)
        w.initialize(to: EngineWorker(loop: loop, index: t, config: UnsafePointer(config)))
        loop.pointee.data = UnsafeMutableRawPointer(w)
        let share = spec.connections / spec.threads + (t < spec.connections % spec.threads ? 1 : 0)
        if case .open(let rate, let arrivals) = spec.pacing {
            let perThreadRate = rate / Double(spec.threads)
            w.pointee.arrivalIntervalNs = 1e9 / perThreadRate
            if let arrivals {
                w.pointee.arrivalsTarget = arrivals / spec.threads + (t < arrivals % spec.threads ? 1 : 0)
            }
        }
        w.start(port: target.port, count: share, makeWire: makeWire, firstConnection: first)
        first += share
        workers.append(w)
    }
    var threads: [pthread_t] = []
    for w in workers.dropFirst() {
        var thread = pthread_t()
        guard pthread_create(&thread, nil, engineThread, UnsafeMutableRawPointer(w)) == 0 else {
            throw BenchError("pthread_create failed")
        }
        threads.append(thread)
    }
    workers[0].run()
    for thread in threads { pthread_join(thread, nil) }
    if spec.progress { writeStderr("\r\u{1B}[2K") }

    var out = EngineOutcome(confirmedUnits: [UInt64](repeating: 0, count: spec.skus))
    var confirmTimes: [UInt64] = []
    var earliestStart = UInt64.max
    var exhausted = [UInt64](repeating: 0, count: spec.skus)
    for w in workers {
        let p = w.pointee
        out.histogram.add(p.histogram)
        let t = p.tally
        out.tally.add(t)
        for i in 0..<spec.skus {
            out.confirmedUnits[i] += p.confirmedUnits[i]
            let at = p.exhaustedAt[i]
            if at != 0 && (exhausted[i] == 0 || at < exhausted[i]) { exhausted[i] = at }
        }
        let seconds = Double(p.windowEndNs &- p.windowStartNs) / 1e9
        // Each thread timed its own window; the rates add up.
        if p.windowStartNs > 0 && p.windowEndNs > p.windowStartNs {
            out.opsPerSecond += Double(t.answered) / seconds
            out.windowSeconds = max(out.windowSeconds, seconds)
        }
        if p.startNs > 0 { earliestStart = min(earliestStart, p.startNs) }
        confirmTimes.append(contentsOf: UnsafeBufferPointer(start: p.confirmTimes, count: p.confirmTimesCount))
    }
    if spec.scenario == "flash-sale" && earliestStart != .max {
        if !exhausted.contains(0), let last = exhausted.max() {
            out.sellOutMs = Double(last &- earliestStart) / 1e6
        }
        if confirmTimes.count >= units && units > 0 {
            confirmTimes.sort()
            out.allSoldMs = Double(confirmTimes[units - 1] &- earliestStart) / 1e6
        }
    }
    if out.tally.connectionErrors > 0 && out.tally.answered == 0 {
        throw BenchError("\(target.kind.rawValue) at \(target.host):\(target.port): no connection succeeded")
    }
    return out
}

func formatRate(_ r: Double) -> String {
    if r >= 1e6 { return String(format: "%.2fM/s", r / 1e6) }
    if r >= 1e3 { return String(format: "%.1fk/s", r / 1e3) }
    return String(format: "%.0f/s", r)
}

func formatSeconds(_ s: Double) -> String { String(format: "%.1f s", s) }
