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

    /// Before any allocation: marks `used` as taken (restored tokens) and
    /// every other slot below the highest one as free. False if a slot repeats.
    func restore(used: [UInt32]) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        precondition(highWater == 0 && recycled.isEmpty, "restore after slots were handed out")
        guard let top = used.max() else { return true }
        var taken = [Bool](repeating: false, count: Int(top) + 1)
        for s in used {
            if taken[Int(s)] { return false }
            taken[Int(s)] = true
        }
        // Highest first, so the free ones are handed out lowest first.
        for s in stride(from: Int(top), through: 0, by: -1) where !taken[s] { recycled.append(UInt32(s)) }
        highWater = Int(top) + 1
        return true
    }

    /// Slots ever handed out (an upper bound for scans).
    var used: Int {
        lock.lock()
        defer { lock.unlock() }
        return highWater
    }
}
