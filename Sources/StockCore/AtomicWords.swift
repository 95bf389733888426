import Atomics

/// A preallocated array of atomic integers. The core keeps every shared
/// counter in buffers like this one, never in separately allocated objects:
/// placement, not the atomic type, decides false sharing (shared notes).
struct AtomicBuffer<Value: AtomicInteger>: @unchecked Sendable
where Value.AtomicRepresentation.Value == Value {
    let base: UnsafeMutablePointer<Value.AtomicRepresentation>
    let count: Int

    /// `count` zeroed values, starting on a 128-byte boundary.
    init(count: Int) {
        precondition(count > 0)
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: count * MemoryLayout<Value.AtomicRepresentation>.stride, alignment: 128)
        base = raw.bindMemory(to: Value.AtomicRepresentation.self, capacity: count)
        base.initialize(repeating: Value.AtomicRepresentation(Value.zero), count: count)
    }

    func deallocate() { UnsafeMutableRawPointer(base).deallocate() }

    @inline(__always)
    subscript(i: Int) -> UnsafeAtomic<Value> {
        assert(i >= 0 && i < count, "atomic index out of range")
        return UnsafeAtomic(at: base + i)
    }
}

/// Unsigned words: token slots, catalog table, policies.
typealias AtomicWords = AtomicBuffer<UInt64>

/// Signed counters: available, reserved and confirmed shards, which may
/// individually go negative while their sum cannot.
typealias AtomicCounters = AtomicBuffer<Int64>
