import Atomics

/// The shared reserve of free token slots behind the workers' private caches.
///
/// Never-used slots are handed out by bumping `highWater`; recycled slots
/// come back in batches from workers whose private cache overflowed. A
/// worker touches the pool once per `batch` allocations or frees, so its
/// lock is amortised over a batch and never taken per request.
final class SlotPool: @unchecked Sendable {
    static let batch = 256
    let capacity: Int
    private var recycled: [UInt32] = []
    private var highWater = 0
    private let lockWord: UnsafeMutablePointer<Int.AtomicRepresentation>
    private let lock: SpinLock

    init(capacity: Int) {
        self.capacity = capacity
        lockWord = .allocate(capacity: 1)
        lockWord.initialize(to: .init(0))
        lock = SpinLock(word: UnsafeAtomic(at: lockWord))
    }

    deinit { lockWord.deallocate() }

    /// Moves up to `batch` free slots into `cache`; returns how many.
    func refill(_ cache: inout [UInt32]) -> Int {
        lock.lock()
        defer { lock.unlock() }
        let fromRecycled = min(SlotPool.batch, recycled.count)
        if fromRecycled > 0 {
            cache.append(contentsOf: recycled[(recycled.count - fromRecycled)...])
            recycled.removeLast(fromRecycled)
            return fromRecycled
        }
        let fresh = min(SlotPool.batch, capacity - highWater)
        for i in 0..<fresh { cache.append(UInt32(highWater + i)) }
        highWater += fresh
        return fresh
    }

    /// Takes back `batch` slots from the end of `cache`.
    func giveBack(_ cache: inout [UInt32], count n: Int) {
        lock.lock()
        defer { lock.unlock() }
        recycled.append(contentsOf: cache[(cache.count - n)...])
        cache.removeLast(n)
        assert(recycled.count <= capacity)
    }

    /// Slots ever handed out (an upper bound for scans).
    var used: Int {
        lock.lock()
        defer { lock.unlock() }
        return highWater
    }
}
