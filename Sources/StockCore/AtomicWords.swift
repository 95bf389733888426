import Atomics

/// A preallocated array of 64-bit atomic words. The core keeps every shared
/// counter in buffers like this one, never in separately allocated objects:
/// placement, not the atomic type, decides false sharing (shared notes).
struct AtomicWords: @unchecked Sendable {
    let base: UnsafeMutablePointer<UInt64.AtomicRepresentation>
    let count: Int

    /// `count` words, zeroed, starting on a 128-byte boundary.
    init(count: Int) {
        precondition(count > 0)
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 8, alignment: 128)
        base = raw.bindMemory(to: UInt64.AtomicRepresentation.self, capacity: count)
        base.initialize(repeating: .init(0), count: count)
    }

    func deallocate() { UnsafeMutableRawPointer(base).deallocate() }

    @inline(__always)
    subscript(i: Int) -> UnsafeAtomic<UInt64> {
        assert(i >= 0 && i < count, "atomic word index out of range")
        return UnsafeAtomic(at: base + i)
    }
}

/// The same for signed counters (available, reserved and confirmed shards,
/// which may individually go negative while their sum cannot).
struct AtomicCounters: @unchecked Sendable {
    let base: UnsafeMutablePointer<Int64.AtomicRepresentation>
    let count: Int

    init(count: Int) {
        precondition(count > 0)
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 8, alignment: 128)
        base = raw.bindMemory(to: Int64.AtomicRepresentation.self, capacity: count)
        base.initialize(repeating: .init(0), count: count)
    }

    func deallocate() { UnsafeMutableRawPointer(base).deallocate() }

    @inline(__always)
    subscript(i: Int) -> UnsafeAtomic<Int64> {
        assert(i >= 0 && i < count, "atomic counter index out of range")
        return UnsafeAtomic(at: base + i)
    }
}
