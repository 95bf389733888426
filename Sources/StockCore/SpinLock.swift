import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// A test-and-test-and-set spin lock over one atomic word, for the core's
/// rare paths (stealing across shards, stock changes, the side tables).
/// It yields the CPU after a bounded spin: the tests run more threads than
/// cores, and a preempted holder must get to run.
struct SpinLock {
    let word: UnsafeAtomic<Int>

    @inline(__always)
    func lock() {
        var spins = 0
        while true {
            if word.load(ordering: .relaxed) == 0,
               word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
                return
            }
            spins += 1
            if spins >= 64 {
                sched_yield()
                spins = 0
            }
        }
    }

    @inline(__always)
    func unlock() {
        assert(word.load(ordering: .relaxed) == 1, "unlock of a free lock")
        word.store(0, ordering: .releasing)
    }

    @inline(__always)
    func withLock<R>(_ body: () throws(Failure) -> R) throws(Failure) -> R {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// `count` spin locks, each on its own 128-byte line, chosen by hash.
final class StripedLocks: @unchecked Sendable {
    private let words: UnsafeMutablePointer<Int.AtomicRepresentation>
    private let mask: Int
    private static let stride = 16  // 16 × 8 bytes = 128 bytes apart: no false sharing

    init(count: Int) {
        precondition(count > 0 && count & (count - 1) == 0, "stripe count must be a power of two")
        mask = count - 1
        words = .allocate(capacity: count * StripedLocks.stride)
        words.initialize(repeating: .init(0), count: count * StripedLocks.stride)
    }

    deinit { words.deallocate() }

    @inline(__always)
    /// The stripe `key` maps to (two keys on one stripe share its lock).
    func stripe(for key: Int) -> Int { key & mask }

    func lock(for key: Int) -> SpinLock {
        SpinLock(word: UnsafeAtomic(at: words + (key & mask) * StripedLocks.stride))
    }
}
