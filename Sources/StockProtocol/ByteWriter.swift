/// A reusable, growable output buffer that frames are encoded into.
///
/// The server keeps one per connection and the client one per connection:
/// `removeAll()` keeps the capacity, so encoding in steady state allocates
/// nothing. A frame is written with `beginFrame`, its fields, then `endFrame`,
/// which patches the length prefix — no intermediate payload buffer.
///
/// Storage is one raw allocation written with unaligned stores (one capacity
/// check per field, not per byte); copies share it until one of them writes
/// (copy-on-write), so the type keeps value semantics.
public struct ByteWriter: @unchecked Sendable {
    final class Storage {
        var base: UnsafeMutableRawPointer
        var capacity: Int
        var count = 0

        init(capacity: Int) {
            self.capacity = max(capacity, 64)
            base = .allocate(byteCount: self.capacity, alignment: 16)
        }

        deinit { base.deallocate() }

        func copy() -> Storage {
            let s = Storage(capacity: capacity)
            s.base.copyMemory(from: base, byteCount: count)
            s.count = count
            return s
        }
    }

    private var storage: Storage

    /// An empty buffer with room for `capacity` bytes.
    public init(capacity: Int = 4096) {
        storage = Storage(capacity: capacity)
    }

    /// Bytes written.
    public var count: Int { storage.count }

    /// A copy of the encoded bytes (tests, rare paths; hot paths use `withUnsafeBytes`).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Calls `body` with a view of the encoded bytes.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(rawView)
    }

    @usableFromInline var rawView: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.base, count: storage.count)
    }

    /// Forgets the content, keeps the capacity.
    public mutating func removeAll() {
        unique()
        storage.count = 0
    }

    /// Drops the first `n` bytes (after a partial write), keeping the capacity.
    public mutating func removeFirst(_ n: Int) {
        precondition(n >= 0 && n <= count)
        unique()
        let s = storage
        (s.base).copyMemory(from: s.base + n, byteCount: s.count - n)
        s.count -= n
    }

    /// Drops bytes after `count` (used to roll back a frame that would exceed a limit).
    public mutating func truncate(to count: Int) {
        precondition(count >= 0 && count <= self.count)
        unique()
        storage.count = count
    }

    @inline(__always) private mutating func unique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }

    /// Makes room for `n` more bytes and returns where they go.
    @inline(__always) private mutating func reserve(_ n: Int) -> UnsafeMutableRawPointer {
        unique()
        let s = storage
        if s.count + n > s.capacity { grow(s.count + n) }
        let at = storage.base + storage.count
        storage.count += n
        return at
    }

    private mutating func grow(_ needed: Int) {
        var c = storage.capacity
        while c < needed { c *= 2 }
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: c, alignment: 16)
        bigger.copyMemory(from: storage.base, byteCount: storage.count)
        storage.base.deallocate()
        storage.base = bigger
        storage.capacity = c
    }

    /// Appends one byte.
    @inline(__always) public mutating func writeU8(_ v: UInt8) { reserve(1).storeBytes(of: v, as: UInt8.self) }
    /// Appends a u16 LE.
    @inline(__always) public mutating func writeU16(_ v: UInt16) {
        reserve(2).storeBytes(of: v.littleEndian, as: UInt16.self)
    }
    /// Appends a u32 LE.
    @inline(__always) public mutating func writeU32(_ v: UInt32) {
        reserve(4).storeBytes(of: v.littleEndian, as: UInt32.self)
    }
    /// Appends a u64 LE.
    @inline(__always) public mutating func writeU64(_ v: UInt64) {
        reserve(8).storeBytes(of: v.littleEndian, as: UInt64.self)
    }
    /// Appends an i64 LE (two's complement).
    @inline(__always) public mutating func writeI64(_ v: Int64) { writeU64(UInt64(bitPattern: v)) }

    /// Appends a token's 16 bytes.
    public mutating func writeToken(_ t: Token) {
        let p = reserve(16)
        p.storeBytes(of: t.slot.littleEndian, as: UInt32.self)
        p.storeBytes(of: t.generation.littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: t.secret.littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// Appends raw bytes.
    public mutating func writeBytes(_ b: UnsafeRawBufferPointer) {
        guard let src = b.baseAddress, b.count > 0 else { return }
        reserve(b.count).copyMemory(from: src, byteCount: b.count)
    }

    /// Appends a `str8` from inline bytes.
    public mutating func writeShort(_ s: ShortBytes) {
        writeU8(UInt8(s.count))
        s.withUnsafeBytes { writeBytes($0) }
    }

    /// Appends a `str8` from an array (precondition: at most 255 bytes).
    public mutating func writeArray8(_ a: [UInt8]) {
        precondition(a.count <= 255, "str8 holds at most 255 bytes")
        writeU8(UInt8(a.count))
        a.withUnsafeBytes { writeBytes($0) }
    }

    /// Starts a frame: writes the header with a zero length and returns the
    /// offset to hand to `endFrame`.
    public mutating func beginFrame(opcode: UInt8, requestID: UInt32, response: Bool, status: UInt8 = 0) -> Int {
        let start = count
        let p = reserve(Limits.headerSize)
        p.storeBytes(of: 0, as: UInt32.self)
        p.storeBytes(of: opcode, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: response ? FrameHeader.responseFlag : 0, toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: status, toByteOffset: 6, as: UInt8.self)
        p.storeBytes(of: 0, toByteOffset: 7, as: UInt8.self)
        p.storeBytes(of: requestID.littleEndian, toByteOffset: 8, as: UInt32.self)
        return start
    }

    /// Completes the frame started at `start` by patching its length prefix.
    public mutating func endFrame(_ start: Int) {
        precondition(start >= 0 && start + Limits.headerSize <= count, "endFrame without beginFrame")
        unique()
        let length = UInt32(count - start - Limits.lengthPrefixSize)
        storage.base.storeBytes(of: length.littleEndian, toByteOffset: start, as: UInt32.self)
    }
}
