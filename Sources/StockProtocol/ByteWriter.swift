/// A reusable, growable output buffer that frames are encoded into.
///
/// The server keeps one per connection and the client one per connection:
/// `removeAll()` keeps the capacity, so encoding in steady state allocates
/// nothing. A frame is written with `beginFrame`, its fields, then `endFrame`,
/// which patches the length prefix — no intermediate payload buffer.
public struct ByteWriter: Sendable {
    /// The encoded bytes.
    public private(set) var bytes: [UInt8]

    /// An empty buffer with room for `capacity` bytes.
    public init(capacity: Int = 4096) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Bytes written.
    public var count: Int { bytes.count }

    /// Forgets the content, keeps the capacity.
    public mutating func removeAll() { bytes.removeAll(keepingCapacity: true) }

    /// Drops the first `n` bytes (after a partial write), keeping the capacity.
    public mutating func removeFirst(_ n: Int) { bytes.removeFirst(n) }

    /// Drops bytes after `count` (used to roll back a frame that would exceed a limit).
    public mutating func truncate(to count: Int) {
        bytes.removeSubrange(count..<bytes.count)
    }

    /// Appends one byte.
    @inline(__always) public mutating func writeU8(_ v: UInt8) { bytes.append(v) }
    /// Appends a u16 LE.
    @inline(__always) public mutating func writeU16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
    }
    /// Appends a u32 LE.
    @inline(__always) public mutating func writeU32(_ v: UInt32) {
        writeU16(UInt16(truncatingIfNeeded: v))
        writeU16(UInt16(truncatingIfNeeded: v >> 16))
    }
    /// Appends a u64 LE.
    @inline(__always) public mutating func writeU64(_ v: UInt64) {
        writeU32(UInt32(truncatingIfNeeded: v))
        writeU32(UInt32(truncatingIfNeeded: v >> 32))
    }
    /// Appends an i64 LE (two's complement).
    @inline(__always) public mutating func writeI64(_ v: Int64) { writeU64(UInt64(bitPattern: v)) }

    /// Appends a token's 16 bytes.
    public mutating func writeToken(_ t: Token) {
        writeU32(t.slot)
        writeU32(t.generation)
        writeU64(t.secret)
    }

    /// Appends raw bytes.
    public mutating func writeBytes(_ b: UnsafeRawBufferPointer) { bytes.append(contentsOf: b) }

    /// Appends a `str8` from inline bytes.
    public mutating func writeShort(_ s: ShortBytes) {
        writeU8(UInt8(s.count))
        s.withUnsafeBytes { bytes.append(contentsOf: $0) }
    }

    /// Appends a `str8` from an array (precondition: at most 255 bytes).
    public mutating func writeArray8(_ a: [UInt8]) {
        precondition(a.count <= 255, "str8 holds at most 255 bytes")
        writeU8(UInt8(a.count))
        bytes.append(contentsOf: a)
    }

    /// Starts a frame: writes the header with a zero length and returns the
    /// offset to hand to `endFrame`.
    public mutating func beginFrame(opcode: UInt8, requestID: UInt32, response: Bool, status: UInt8 = 0) -> Int {
        let start = bytes.count
        writeU32(0)
        writeU8(opcode)
        writeU8(response ? FrameHeader.responseFlag : 0)
        writeU8(status)
        writeU8(0)
        writeU32(requestID)
        return start
    }

    /// Completes the frame started at `start` by patching its length prefix.
    public mutating func endFrame(_ start: Int) {
        let length = UInt32(bytes.count - start - Limits.lengthPrefixSize)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: length.littleEndian, toByteOffset: start, as: UInt32.self)
        }
    }
}
