import TestSupport
import Atomics
import Foundation
@testable import StockCore
import StockProtocol
import Testing

/// N threads (more than cores) hammer the core with a seeded mix of
/// reserve / confirm / release / extend, on their own and on each other's
/// tokens, while a clock thread moves time and every thread ticks its own
/// wheel. At the end: nothing oversold, conservation holds, every token
/// issued had exactly one fate.
/// A value behind a pthread mutex (NSLock). Not `Synchronization.Mutex`: it
/// sleeps on a raw futex, which ThreadSanitizer cannot see, so every access
/// under it would be reported as a race.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

@Suite(.serialized, .cpuHeavy) struct CoreConcurrencyTests {
    struct Outcome: Sendable {
        var issued: [Token] = []
        var decided: [Token] = []
        var confirmedUnits: [Int64]
    }

    static func hammer(threads: Int, shards: Int, skus: Int, stockEach: UInt64, opsPerThread: Int,
                       bundles: Bool, seed: UInt64) throws -> (StockCore, [Outcome]) {
        var config = CoreConfig()
        config.shardCount = shards
        config.tokenCapacity = 1 << 18
        config.skuCapacity = max(skus, 16)
        config.fateMemoryPerWorker = 1 << 10
        let clock = ManagedAtomic<UInt64>(Fixture.t0)
        let core = try StockCore(config: config, nowMs: Fixture.t0)
        let admin = core.makeWorker(shard: 0, nowMs: Fixture.t0)
        for i in 0..<skus {
            _ = try core.setStock(StockSet(sku: SKU("SKU-\(i)")!, onHand: stockEach), nowMs: Fixture.t0, on: admin)
        }
        let shared = Locked<[Token]>([])  // tokens any thread may act on
        let results = Locked<[Outcome]>([])
        let running = ManagedAtomic<Int>(threads)
        let finished = ManagedAtomic<Int>(0)
        let clockThread = Thread {
            while running.load(ordering: .acquiring) > 0 {
                clock.wrappingIncrement(by: 1, ordering: .releasing)
                usleep(200)
            }
        }
        clockThread.start()
        for t in 0..<threads {
            let thread = Thread {
                let w = core.makeWorker(shard: t % shards, nowMs: Fixture.t0)
                var out = Outcome(confirmedUnits: [Int64](repeating: 0, count: skus))
                w.onChange = { change in
                    switch change.detail {
                    case .reserved(let l, _, _, _): if out.issued.last != l.token { out.issued.append(l.token) }
                    case .confirmed(let l, _, _), .released(let l), .expired(let l):
                        if out.decided.last != l.token { out.decided.append(l.token) }
                        if change.kind == .confirmed { out.confirmedUnits[Int(change.sku!.index)] += l.quantity }
                    default: break
                    }
                }
                var rng = SplitMix64(seed: seed &+ UInt64(t))
                var mine: [Token] = []
                for i in 0..<opsPerThread {
                    let now = clock.load(ordering: .acquiring)
                    if i % 64 == 0 { w.tick(nowMs: now, budget: 256) }
                    let dice = rng.next() % 100
                    // Skewed: most traffic on SKU-0, the hot one.
                    let sku = rng.next() % 4 == 0 ? Int(rng.next() % UInt64(skus)) : 0
                    let q = UInt32(1 + rng.next() % 3)
                    if dice < 45 {
                        let ttl = UInt32(1 + rng.next() % 40)  // short: many expire mid-run
                        let outcome: ReserveOutcome?
                        if bundles && dice < 15 && skus > 1 {
                            let other = 1 + Int(rng.next() % UInt64(skus - 1))
                            let lines = [BundleLine(sku: SKU("SKU-\(sku == other ? 0 : sku)")!, quantity: q),
                                         BundleLine(sku: SKU("SKU-\(other)")!, quantity: 1)]
                            outcome = try? core.reserveBundle(ReserveBundle(lines: lines, ttlMs: ttl), nowMs: now, on: w)
                        } else {
                            outcome = try? core.reserve(Reserve(sku: SKU("SKU-\(sku)")!, quantity: q, ttlMs: ttl),
                                                        nowMs: now, on: w)
                        }
                        if let outcome {
                            if rng.next() % 2 == 0 { mine.append(outcome.token) } else {
                                shared.withLock { $0.append(outcome.token) }
                            }
                        }
                    } else {
                        // Act on one of my tokens, a shared one, or an old (maybe decided) one.
                        var token: Token? = mine.popLast()
                        if token == nil || rng.next() % 2 == 0 {
                            if let t = token { mine.append(t) }
                            token = shared.withLock { $0.isEmpty ? nil : $0.remove(at: Int(rng.next() % UInt64($0.count))) }
                        }
                        guard let token else { continue }
                        switch dice {
                        case 45..<75: _ = try? core.confirm(Confirm(token: token), nowMs: now, on: w)
                        case 75..<90: _ = try? core.release(token, nowMs: now, on: w)
                        default:
                            _ = try? core.extend(Extend(token: token, ttlMs: 20), nowMs: now, on: w)
                            shared.withLock { $0.append(token) }
                        }
                        // Sometimes try the same token again: it must be refused.
                        if rng.next() % 8 == 0 { _ = try? core.release(token, nowMs: now, on: w) }
                    }
                }
                // Everyone stops acting; then each expires what is left on its wheel.
                running.wrappingDecrement(ordering: .releasing)
                while running.load(ordering: .acquiring) > 0 { usleep(100) }
                while w.tick(nowMs: Fixture.t0 + 10_000_000, budget: 100_000) > 0 {}
                w.onChange = nil
                results.withLock { $0.append(out) }
                finished.wrappingIncrement(ordering: .releasing)
            }
            thread.stackSize = 1 << 22
            thread.start()
        }
        while finished.load(ordering: .acquiring) < threads { usleep(1000) }
        // Tokens left in the pool or in no wheel: none — every token was scheduled on its issuer's wheel.
        return (core, results.withLock { $0 })
    }

    static func check(_ core: StockCore, _ outcomes: [Outcome], skus: Int, stockEach: UInt64) {
        #expect(core.checkInvariants().isEmpty, "\(core.checkInvariants().prefix(5))")
        var fates: [Token: Int] = [:]
        for o in outcomes { for t in o.decided { fates[t, default: 0] += 1 } }
        var issuedCount = 0
        for o in outcomes {
            for t in o.issued {
                issuedCount += 1
                #expect(fates[t] == 1, "token \(t) decided \(fates[t] ?? 0) times")
            }
        }
        #expect(fates.count == issuedCount, "a decision for a token never issued")
        for i in 0..<skus {
            let info = try! core.stock(SKU("SKU-\(i)")!)
            let sold = outcomes.reduce(Int64(0)) { $0 + $1.confirmedUnits[i] }
            #expect(info.reserved == 0)
            #expect(info.confirmed == UInt64(sold))
            #expect(info.available + info.confirmed == stockEach, "SKU-\(i): units created or lost")
        }
        let stats = core.stats()
        #expect(stats.liveTokens == 0)
        #expect(stats.confirms + stats.releases + stats.expiries == UInt64(issuedCount))
    }

    @Test func oneHotSKU() throws {
        let (core, out) = try Self.hammer(threads: 8, shards: 2, skus: 1, stockEach: 500, opsPerThread: 20_000,
                                          bundles: false, seed: 1)
        Self.check(core, out, skus: 1, stockEach: 500)
        // The stampede sold the SKU out: every unit was granted, none twice.
        #expect(try core.stock(SKU("SKU-0")!).confirmed == 500)
        #expect(out.reduce(0) { $0 + $1.issued.count } > 200)
    }

    @Test func tenThousandSKUs() throws {
        let (core, out) = try Self.hammer(threads: 8, shards: 4, skus: 10_000, stockEach: 5, opsPerThread: 20_000,
                                          bundles: false, seed: 2)
        Self.check(core, out, skus: 10_000, stockEach: 5)
    }

    @Test func bundlesOnSharedStock() throws {
        let (core, out) = try Self.hammer(threads: 8, shards: 2, skus: 20, stockEach: 50, opsPerThread: 20_000,
                                          bundles: true, seed: 3)
        Self.check(core, out, skus: 20, stockEach: 50)
    }

    /// The last unit is always found: stock sits in one shard, takers on the other.
    @Test func lastUnitIsFoundAcrossShards() throws {
        var config = CoreConfig()
        config.shardCount = 4
        config.tokenCapacity = 1024
        let core = try StockCore(config: config, nowMs: 0)
        let w0 = core.makeWorker(shard: 0, nowMs: 0)
        _ = try core.setStock(StockSet(sku: SKU("LAST")!, onHand: 7), nowMs: 0, on: w0)  // spread 2,2,2,1
        let w3 = core.makeWorker(shard: 3, nowMs: 0)
        for _ in 0..<7 { _ = try core.reserve(Reserve(sku: SKU("LAST")!, quantity: 1), nowMs: 0, on: w3) }
        #expect(throws: Failure(.outOfStock, .outOfStock(line: 0, available: 0))) {
            try core.reserve(Reserve(sku: SKU("LAST")!, quantity: 1), nowMs: 0, on: w3)
        }
        #expect(core.checkInvariants().isEmpty)
    }
}
