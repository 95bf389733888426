/// A reusable append buffer that records are encoded into.
///
/// Each worker keeps one: `encode` appends with unaligned stores through a
/// raw pointer (one capacity check per record, not per field), `reset()`
/// forgets the content and keeps the memory, so in steady state encoding
/// allocates nothing. It also remembers the first and largest sequence
/// number it holds, which the writer uses to name segments.
///
/// A class so a filled buffer can be handed to the journal thread and a
/// fresh one swapped in without copying bytes. `@unchecked Sendable`: it has
/// no locks; one thread uses it at a time, and whatever hands it over (a
/// lock, a queue) provides the ordering. For the same reason the stored
/// properties opt out of dynamic exclusivity checks, which otherwise cost a
/// thread-local lookup per access (a third of an encode).
public final class RecordBuffer: @unchecked Sendable {
    @exclusivity(unchecked) @usableFromInline var base: UnsafeMutableRawPointer
    @exclusivity(unchecked) @usableFromInline var capacity: Int
    /// Bytes held.
    @exclusivity(unchecked) public private(set) var count = 0
    /// Records held.
    @exclusivity(unchecked) public private(set) var recordCount = 0
    /// Sequence number of the first record appended since `reset()` (0 when empty).
    @exclusivity(unchecked) public private(set) var firstSeq: UInt64 = 0
    /// Largest sequence number appended since `reset()` (0 when empty).
    @exclusivity(unchecked) public private(set) var maxSeq: UInt64 = 0

    /// An empty buffer with room for `capacity` bytes (grown by doubling when needed).
    public init(capacity: Int = 64 * 1024) {
        self.capacity = max(capacity, RecordCodec.maxRecordBytes)
        base = .allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    /// Whether no bytes are held.
    public var isEmpty: Bool { count == 0 }

    /// Forgets the content, keeps the capacity.
    public func reset() {
        count = 0
        recordCount = 0
        firstSeq = 0
        maxSeq = 0
    }

    /// Calls `body` with a view of the bytes held.
    @inlinable
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// A copy of the bytes (tests, rare paths).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Appends raw bytes (snapshots, tests); no record bookkeeping.
    public func append(_ bytes: UnsafeRawBufferPointer) {
        guard let src = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count).copyMemory(from: src, byteCount: bytes.count)
        count += bytes.count
    }

    /// Where the next `n` bytes go; the caller writes them, then calls
    /// `commit`. Grows (copying) only when the free space is short.
    @inline(__always)
    func reserve(_ n: Int) -> UnsafeMutableRawPointer {
        assert(n >= 0)
        if capacity - count < n { grow(count + n) }
        assert(capacity - count >= n)
        return base + count
    }

    /// Counts `n` bytes written after `reserve` as one record with `seq`.
    @inline(__always)
    func commitRecord(_ n: Int, seq: UInt64) {
        assert(n >= RecordCodec.headerBytes && n <= RecordCodec.maxRecordBytes, "one whole record")
        assert(count + n <= capacity, "commit only what reserve made room for")
        assert(seq >= 1, "records are numbered from 1")
        count += n
        if recordCount == 0 { firstSeq = seq }
        if seq > maxSeq { maxSeq = seq }
        recordCount += 1
    }

    /// Counts `n` bytes written after `reserve` (not a record: snapshots).
    @inline(__always)
    func commitBytes(_ n: Int) {
        assert(n >= 0 && count + n <= capacity, "commit only what reserve made room for")
        count += n
    }

    private func grow(_ needed: Int) {
        var c = capacity
        while c < needed { c *= 2 }
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: c, alignment: 16)
        bigger.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = bigger
        capacity = c
    }
}
