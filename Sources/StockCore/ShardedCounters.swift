import Atomics

// # Sharded stock counters
//
// Every SKU's `available`, `reserved` and `confirmed` units are split into
// one signed 64-bit counter per shard (one shard per worker thread). Shard s
// of every SKU lives in its own array, 128-byte aligned, so two workers
// serving the same hot SKU write to different cache lines; a worker's
// counters for neighbouring SKUs share lines only with itself.
//
// ## Reserve (take q units of SKU k on shard s)
// 1. Fast path: compare-exchange `available[s][k]` from v to v - q while
//    v >= q. No lock; one cache line that this worker mostly owns.
// 2. Slow path (the own shard is short): take SKU k's stripe lock, then
//    sweep all shards, own shard first, taking min(v, still needed) from each
//    with a compare-exchange. When the sweep gathered q units, it also moves
//    half of what it left in each sibling into the own shard (rebalancing, so
//    the next reserves here take the fast path again). When a sweep gathered
//    less than q, it sweeps again — up to three sweeps, stopping early when a
//    sweep finds nothing — and if still short, puts everything it took back
//    into the own shard and reports out-of-stock.
// 3. `reserved[s][k] += q` (relaxed add). Release, expiry, confirm and stock
//    changes add to their own worker's shard of whichever counter they move
//    units into, and subtract from their own shard of the counter they move
//    units out of, so a single `reserved` or `confirmed` shard may be
//    negative; only sums are meaningful.
//
// ## Why it is exact
// - `available[s][k]` never goes below zero: every decrement is a
//   compare-exchange from an observed v >= amount. So Σ available >= 0, and
//   no reservation is granted units that are not there: nothing is oversold.
// - Units move between shards only on the slow path, and every slow path
//   for SKU k holds k's stripe lock, so at most one thread moves k's units
//   between shards at a time, and units taken by a sweep are either granted
//   or put back before the lock is released: no unit is ever "in flight"
//   where a sweep cannot see it, except inside a fast-path reserve (then it
//   is being sold) or a release (then it was not yet available).
// - Hence out-of-stock is reported only after a sweep visited every shard
//   while holding the lock and found fewer than q units in total: each unit
//   that was available when the sweep began either was taken by the sweep,
//   or was taken by a concurrent fast-path reserve (and sold). The last unit
//   is always found.
// - At quiescence each sum is exact, and for every SKU
//   on_hand = Σ available + Σ reserved + Σ confirmed + backup
//   (`StockCore.checkInvariants`). on_hand and backup change only under the
//   stripe lock (stock set / adjust, stage, backup moves), which takes units
//   with the same sweep.

/// Per-SKU, per-shard counters plus per-SKU stock policy.
final class ShardedCounters: @unchecked Sendable {
    let shards: Int
    let capacity: Int
    /// Distance between two shards' arrays, a multiple of 16 words (128 bytes).
    let stride: Int
    let available: AtomicCounters
    let reserved: AtomicCounters
    let confirmed: AtomicCounters
    /// Reservations granted (a count of operations, not units; monotonic).
    /// Sharded like the others so counting costs no shared cache line.
    let reservations: AtomicCounters
    /// Per SKU: on-hand (changed only under the SKU's stripe lock).
    let onHand: AtomicCounters
    /// Per SKU: units on hand held back from sale (changed only under the SKU's stripe lock).
    let backup: AtomicCounters
    /// Per SKU: low-stock threshold << 32 | per-customer limit.
    let policy: AtomicWords
    /// Per SKU: last announced alert level (`AlertLevel` raw value).
    let alert: AtomicWords
    let locks: StripedLocks

    init(shards: Int, capacity: Int) {
        precondition(shards >= 1 && capacity >= 1)
        self.shards = shards
        self.capacity = capacity
        stride = (capacity + 15) / 16 * 16
        available = AtomicCounters(count: shards * stride)
        reserved = AtomicCounters(count: shards * stride)
        confirmed = AtomicCounters(count: shards * stride)
        reservations = AtomicCounters(count: shards * stride)
        onHand = AtomicCounters(count: capacity)
        backup = AtomicCounters(count: capacity)
        policy = AtomicWords(count: capacity)
        alert = AtomicWords(count: capacity)
        locks = StripedLocks(count: 4096)
    }

    deinit {
        available.deallocate()
        reserved.deallocate()
        confirmed.deallocate()
        reservations.deallocate()
        onHand.deallocate()
        backup.deallocate()
        policy.deallocate()
        alert.deallocate()
    }

    @inline(__always) func at(_ shard: Int, _ sku: UInt32) -> Int {
        assert(shard >= 0 && shard < shards)
        return shard * stride + Int(sku)
    }

    @inline(__always) func lock(_ sku: UInt32) -> SpinLock { locks.lock(for: Int(sku)) }

    /// The stripe of `sku`'s lock (a stage locks each stripe once).
    func stripe(_ sku: UInt32) -> Int { locks.stripe(for: Int(sku)) }

    /// Takes `q` units of `sku` for `shard`. False when they are not there (see the header comment).
    @inline(__always)
    func take(_ sku: UInt32, _ q: Int64, shard: Int) -> Bool {
        assert(q > 0)
        let own = available[at(shard, sku)]
        var v = own.load(ordering: .relaxed)
        while v >= q {
            let (done, seen) = own.weakCompareExchange(expected: v, desired: v - q, ordering: .acquiringAndReleasing)
            if done { return true }
            v = seen
        }
        let lock = lock(sku)
        lock.lock()
        defer { lock.unlock() }
        return takeLocked(sku, q, shard: shard)
    }

    /// The slow path; the caller holds `sku`'s stripe lock.
    func takeLocked(_ sku: UInt32, _ q: Int64, shard: Int) -> Bool {
        var need = q
        for _ in 0..<3 {
            var gathered: Int64 = 0
            for k in 0..<shards {
                let s = (shard + k) % shards
                let got = grab(sku, shard: s, upTo: need)
                gathered += got
                need -= got
                if need == 0 { break }
            }
            if need == 0 {
                rebalance(sku, into: shard)
                return true
            }
            if gathered == 0 { break }
        }
        if need < q { put(sku, q - need, shard: shard) }
        return false
    }

    /// Takes min(available, upTo) from one shard; returns what it took.
    private func grab(_ sku: UInt32, shard: Int, upTo want: Int64) -> Int64 {
        let a = available[at(shard, sku)]
        var v = a.load(ordering: .relaxed)
        while v > 0 {
            let n = min(v, want)
            let (done, seen) = a.weakCompareExchange(expected: v, desired: v - n, ordering: .acquiringAndReleasing)
            if done { return n }
            v = seen
        }
        return 0
    }

    /// Moves half of each sibling's units into `shard` (caller holds the lock).
    private func rebalance(_ sku: UInt32, into shard: Int) {
        guard shards > 1 else { return }
        var moved: Int64 = 0
        for s in 0..<shards where s != shard {
            let half = available[at(s, sku)].load(ordering: .relaxed) / 2
            if half > 0 { moved += grab(sku, shard: s, upTo: half) }
        }
        if moved > 0 { put(sku, moved, shard: shard) }
    }

    /// Returns `q` units to sale on `shard`.
    @inline(__always)
    func put(_ sku: UInt32, _ q: Int64, shard: Int) {
        assert(q >= 0)
        available[at(shard, sku)].wrappingIncrement(by: q, ordering: .releasing)
    }

    /// Adds `q` units spread evenly over the shards (restock), so every worker starts on its fast path.
    func spread(_ sku: UInt32, _ q: Int64) {
        assert(q >= 0)
        let each = q / Int64(shards)
        var rest = q - each * Int64(shards)
        for s in 0..<shards {
            var n = each
            if rest > 0 { n += 1; rest -= 1 }
            if n > 0 { put(sku, n, shard: s) }
        }
    }

    @inline(__always) func add(_ counters: AtomicCounters, _ sku: UInt32, _ q: Int64, shard: Int) {
        counters[at(shard, sku)].wrappingIncrement(by: q, ordering: .relaxed)
    }

    /// Σ over shards of one counter (exact at quiescence).
    @inline(__always) func sum(_ counters: AtomicCounters, _ sku: UInt32) -> Int64 {
        var t: Int64 = 0
        for s in 0..<shards { t += counters[at(s, sku)].load(ordering: .relaxed) }
        return t
    }

    func threshold(_ sku: UInt32) -> UInt32 { UInt32(truncatingIfNeeded: policy[Int(sku)].load(ordering: .relaxed) >> 32) }
    func customerLimit(_ sku: UInt32) -> UInt32 { UInt32(truncatingIfNeeded: policy[Int(sku)].load(ordering: .relaxed)) }
    func setPolicy(_ sku: UInt32, threshold: UInt32, limit: UInt32) {
        policy[Int(sku)].store(UInt64(threshold) << 32 | UInt64(limit), ordering: .relaxed)
    }
}

/// What a SKU's stock level last announced.
enum AlertLevel: UInt64 {
    case normal = 0
    case low = 1
    case soldOut = 2

    /// The level `available` units stand at against the low-stock threshold (0: none).
    init(available: Int64, threshold: UInt32) {
        self = available <= 0 ? .soldOut : (available <= Int64(threshold) ? .low : .normal)
    }
}
