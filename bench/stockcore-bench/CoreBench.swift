// bench-core: the core alone, release build. Prints figures; not a test.
//   make bench-core        (swift run -c release stockcore-bench)
import Atomics
import CMallocCounter
import Foundation
import StockCore
import StockProtocol

@main
struct CoreBench {
    struct Figure {
        var pairsPerSec: Double
        var allocsPerOp: Double
    }

    static func makeCore(shards: Int, skus: Int, stock: UInt64) -> (StockCore, [Reserve]) {
        var config = CoreConfig()
        config.shardCount = shards
        config.tokenCapacity = 1 << 22
        config.skuCapacity = max(skus, 16)
        let core = try! StockCore(config: config, nowMs: 1)
        let admin = core.makeWorker(shard: 0, nowMs: 1)
        var requests: [Reserve] = []
        for i in 0..<skus {
            let sku = SKU(skus == 1 ? "HOT-LIPSTICK-01" : "SKU-\(i)")!
            _ = try! core.setStock(StockSet(sku: sku, onHand: stock), nowMs: 1, on: admin)
            requests.append(Reserve(sku: sku, quantity: 1))
        }
        return (core, requests)
    }

    /// Reserve+release pairs on `threads` threads (one worker each, own shard).
    static func pairs(threads: Int, skus: Int, pairsPerThread: Int, keyed: Bool = false) -> Figure {
        let (core, base) = makeCore(shards: threads, skus: skus, stock: 1 << 30)
        let requests = keyed ? base.enumerated().map { i, r in
            var r = r
            r.customer = ShortBytes("customer-\(i % 1000)")!
            r.idempotencyKey = ShortBytes("key-\(i)")!
            return r
        } : base
        let ready = ManagedAtomic<Int>(0)
        let go = ManagedAtomic<Bool>(false)
        let done = ManagedAtomic<Int>(0)
        for t in 0..<threads {
            let thread = Thread {
                let w = core.makeWorker(shard: t, nowMs: 1)
                // Warm up: fill the worker's caches and the wheel's block pool.
                for i in 0..<10_000 {
                    let r = try! core.reserve(requests[i % requests.count], nowMs: 1, on: w)
                    _ = try! core.release(r.token, nowMs: 1, on: w)
                }
                ready.wrappingIncrement(ordering: .releasing)
                while !go.load(ordering: .acquiring) {}
                var i = t * 7919
                for _ in 0..<pairsPerThread {
                    let r = try! core.reserve(requests[i % requests.count], nowMs: 2, on: w)
                    _ = try! core.release(r.token, nowMs: 2, on: w)
                    i &+= 1
                }
                w.tick(nowMs: 2)
                done.wrappingIncrement(ordering: .releasing)
            }
            thread.start()
        }
        while ready.load(ordering: .acquiring) < threads { usleep(100) }
        let allocsBefore = malloc_counter_allocations()
        let start = ContinuousClock.now
        go.store(true, ordering: .releasing)
        while done.load(ordering: .acquiring) < threads { usleep(50) }
        let elapsed = ContinuousClock.now - start
        let allocs = malloc_counter_allocations() - allocsBefore
        precondition(core.checkInvariants().isEmpty, "invariants broken in the benchmark")
        let total = Double(threads * pairsPerThread)
        return Figure(pairsPerSec: total / seconds(elapsed), allocsPerOp: Double(allocs) / (2 * total))
    }

    /// Timing wheel: schedule + expire through `StockCore` tokens that time out.
    static func wheelRate(entries: Int) -> Double {
        var config = CoreConfig()
        config.shardCount = 1
        config.tokenCapacity = entries + 1024
        let core = try! StockCore(config: config, nowMs: 0)
        let w = core.makeWorker(shard: 0, nowMs: 0)
        _ = try! core.setStock(StockSet(sku: SKU("W")!, onHand: UInt64(entries)), nowMs: 0, on: w)
        let start = ContinuousClock.now
        for i in 0..<entries {
            _ = try! core.reserve(Reserve(sku: SKU("W")!, quantity: 1, ttlMs: UInt32(1 + i % 1000)), nowMs: 0, on: w)
        }
        var expired = 0
        var now: UInt64 = 0
        while expired < entries {
            now += 1
            expired += w.tick(nowMs: now, budget: 1 << 20)
        }
        return Double(entries) / seconds(ContinuousClock.now - start)
    }

    /// Bytes of memory per live token: slab + wheel entry + free-slot bookkeeping.
    static func bytesPerToken(live: Int) -> Double {
        var config = CoreConfig()
        config.shardCount = 1
        config.tokenCapacity = live
        let core = try! StockCore(config: config, nowMs: 0)
        let w = core.makeWorker(shard: 0, nowMs: 0)
        _ = try! core.setStock(StockSet(sku: SKU("M")!, onHand: UInt64(live)), nowMs: 0, on: w)
        for _ in 0..<live { _ = try! core.reserve(Reserve(sku: SKU("M")!, quantity: 1), nowMs: 0, on: w) }
        return Double(core.tokenMemoryBytes(worker: w)) / Double(live)
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func main() {
        let n = Int(ProcessInfo.processInfo.environment["PAIRS"] ?? "") ?? 5_000_000
        let oneHot = pairs(threads: 1, skus: 1, pairsPerThread: n)
        let twoHot = pairs(threads: 2, skus: 1, pairsPerThread: n / 2)
        let one10k = pairs(threads: 1, skus: 10_000, pairsPerThread: n)
        let two10k = pairs(threads: 2, skus: 10_000, pairsPerThread: n / 2)
        let keyed = pairs(threads: 1, skus: 1, pairsPerThread: n / 10, keyed: true)
        let wheel = wheelRate(entries: 2_000_000)
        let bytes = bytesPerToken(live: 10_000_000)  // also proves a 10M-token table works
        func row(_ name: String, _ f: Figure) {
            print(name.padding(toLength: 40, withPad: " ", startingAt: 0),
                  String(format: "%12.0f pairs/s  %8.1f ns/pair  %.3f allocs/op", f.pairsPerSec, 1e9 / f.pairsPerSec,
                         f.allocsPerOp))
        }
        print("stockd core benchmark (release), reserve+release pairs, \(n) pairs per case")
        row("1 thread, one hot SKU", oneHot)
        row("2 threads, one hot SKU", twoHot)
        row("1 thread, 10,000 SKUs", one10k)
        row("2 threads, 10,000 SKUs", two10k)
        row("1 thread, customer + idempotency key", keyed)
        print(String(format: "timing wheel insert+expire               %12.0f tokens/s", wheel))
        print(String(format: "memory per live token (10M live)         %12.1f bytes", bytes))
        let allocs = max(oneHot.allocsPerOp, twoHot.allocsPerOp, one10k.allocsPerOp, two10k.allocsPerOp)
        print("{\"pairs_per_sec_1t_hot\":\(Int(oneHot.pairsPerSec)),\"pairs_per_sec_2t_hot\":\(Int(twoHot.pairsPerSec)),"
            + "\"pairs_per_sec_1t_10k\":\(Int(one10k.pairsPerSec)),\"pairs_per_sec_2t_10k\":\(Int(two10k.pairsPerSec)),"
            + "\"pairs_per_sec_1t_keyed\":\(Int(keyed.pairsPerSec)),\"allocs_per_op\":\(allocs),"
            + "\"allocs_per_op_keyed\":\(keyed.allocsPerOp),"
            + "\"wheel_tokens_per_sec\":\(Int(wheel)),\"bytes_per_token\":\(String(format: "%.1f", bytes))}")
    }
}
