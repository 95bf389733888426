import Atomics
import StockProtocol

/// One worker thread's private part of the core: its counter shard, its
/// timing wheel, its cache of free token slots, the ring of recently
/// decided slots it remembers, its secret source and its statistics.
///
/// Not thread-safe and not `Sendable`: a worker is created for one thread
/// and used only there (which is also why its stored properties skip the
/// dynamic exclusivity checks: no overlapping access is possible).
/// Several workers may share a shard (correctness does not depend on it;
/// only cache-line traffic does).
public final class Worker {
    public let shard: Int
    unowned(unsafe) let core: StockCore  // the core outlives its workers (checked unowned costs atomics)
    let wheel: TimingWheel
    @exclusivity(unchecked) var freeSlots: [UInt32] = []
    /// Recently decided slots, oldest first, reused only when nothing else is free.
    @exclusivity(unchecked) private var fateRing: [UInt32]
    @exclusivity(unchecked) private var fateHead = 0
    @exclusivity(unchecked) private var fateCount = 0
    @exclusivity(unchecked) var secrets = SecretSource()
    @exclusivity(unchecked) var rearm: [(UInt64, UInt64)] = []
    let counters: AtomicCounters
    /// Receives every state change this worker makes (journal, event feed).
    @exclusivity(unchecked) public var onChange: ((Change) -> Void)?

    init(core: StockCore, shard: Int, nowMs: UInt64, fateMemory: Int, counters: AtomicCounters) {
        self.core = core
        self.shard = shard
        wheel = TimingWheel(nowMs: nowMs)
        fateRing = [UInt32](repeating: 0, count: max(fateMemory, 1))
        if fateMemory == 0 { fateRing = [] }
        self.counters = counters
        freeSlots.reserveCapacity(SlotPool.batch * 3)
        rearm.reserveCapacity(1024)
    }

    // The statistics block belongs to the core (STATS keeps counting a
    // worker's past work after the worker is gone).
    deinit { secrets.deallocate() }

    /// Bumps one of this worker's statistics (single writer: a load and a
    /// store, no read-modify-write, no shared cache line).
    @inline(__always) func count(_ stat: WorkerStat, _ by: Int64 = 1) {
        let c = counters[stat.rawValue]
        c.store(c.load(ordering: .relaxed) &+ by, ordering: .relaxed)
    }

    /// Reports a change; the `Change` (about 100 bytes) is built only when
    /// someone listens.
    @inline(__always) func emit(_ change: @autoclosure () -> Change) {
        if let sink = onChange { sink(change()) }
    }

    /// A free slot, or nil at capacity. Order: private cache, shared pool,
    /// then the oldest remembered fate.
    @inline(__always) func allocateSlot() -> UInt32? {
        if let s = freeSlots.popLast() { return s }
        if core.slotPool.refill(&freeSlots) > 0 { return freeSlots.popLast() }
        if fateCount > 0 { return popOldestFate() }
        return nil
    }

    /// Gives back a slot that was allocated but never published.
    @inline(__always) func unallocate(_ slot: UInt32) { freeSlots.append(slot) }

    /// A slot whose fate was just decided: remembered for a while, then freed.
    @inline(__always) func retire(_ slot: UInt32) {
        guard !fateRing.isEmpty else { return free(slot) }
        if fateCount == fateRing.count { free(popOldestFate()) }
        fateRing[(fateHead + fateCount) % fateRing.count] = slot
        fateCount += 1
    }

    private func popOldestFate() -> UInt32 {
        assert(fateCount > 0)
        let s = fateRing[fateHead]
        fateHead = (fateHead + 1) % fateRing.count
        fateCount -= 1
        return s
    }

    private func free(_ slot: UInt32) {
        freeSlots.append(slot)
        if freeSlots.count >= SlotPool.batch * 2 { core.slotPool.giveBack(&freeSlots, count: SlotPool.batch) }
    }

    /// Fires due expiries: at most `budget` wheel entries per call, so an
    /// expiry burst is spread over loop iterations instead of stalling them.
    /// Returns the number of tokens expired.
    @discardableResult
    public func tick(nowMs: UInt64, budget: Int = 10_000) -> Int {
        core.tick(self, nowMs: nowMs, budget: budget)
    }

    /// When the wheel next needs a tick (for arming a timer), or nil.
    public var nextWakeMs: UInt64? { wheel.nextWakeMs }

    /// Wheel entries pending (live tokens scheduled here, plus stale ones not yet skipped).
    public var scheduled: Int { wheel.count }
}

/// Per-worker statistics, summed by `StockCore.stats()`.
enum WorkerStat: Int, CaseIterable {
    case reserves, reserveFailures, bundles, confirms, releases, expiries, extends
    case issued, decided, stockChanges, idempotentReplays
    static var count: Int { allCases.count }
}
