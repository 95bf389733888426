/// Reads little-endian fields from a payload. A value type over a borrowed
/// buffer: no allocation, bounds checked on every read, throws `.malformed`
/// when the payload is shorter than its layout.
public struct ByteReader {
    @usableFromInline let base: UnsafeRawBufferPointer
    /// Offset of the next unread byte.
    public internal(set) var offset: Int = 0

    /// A reader over `bytes`; the caller keeps them alive while reading.
    public init(_ bytes: UnsafeRawBufferPointer) { base = bytes }

    /// Bytes not yet read.
    public var remaining: Int { base.count - offset }

    @inline(__always)
    mutating func take(_ n: Int) throws(Status) -> Int {
        guard n <= base.count - offset else { throw .malformed }
        defer { offset += n }
        return offset
    }

    /// Reads one byte.
    public mutating func readU8() throws(Status) -> UInt8 { base[try take(1)] }
    /// Reads a u16 LE.
    public mutating func readU16() throws(Status) -> UInt16 {
        UInt16(littleEndian: base.loadUnaligned(fromByteOffset: try take(2), as: UInt16.self))
    }
    /// Reads a u32 LE.
    public mutating func readU32() throws(Status) -> UInt32 {
        UInt32(littleEndian: base.loadUnaligned(fromByteOffset: try take(4), as: UInt32.self))
    }
    /// Reads a u64 LE.
    public mutating func readU64() throws(Status) -> UInt64 {
        UInt64(littleEndian: base.loadUnaligned(fromByteOffset: try take(8), as: UInt64.self))
    }
    /// Reads an i64 LE (two's complement).
    public mutating func readI64() throws(Status) -> Int64 { Int64(bitPattern: try readU64()) }

    /// Reads a 16-byte token.
    public mutating func readToken() throws(Status) -> Token {
        Token(slot: try readU32(), generation: try readU32(), secret: try readU64())
    }

    /// Reads `n` bytes as a view into the payload.
    public mutating func readBytes(_ n: Int) throws(Status) -> UnsafeRawBufferPointer {
        let at = try take(n)
        return UnsafeRawBufferPointer(rebasing: base[at..<(at + n)])
    }

    /// Reads a `str8` (u8 length + bytes) of at most `max` bytes into inline storage.
    /// Longer → `tooLong` (the caller picks the status: `invalidSKU`, `invalidArgument`).
    public mutating func readShort(max: Int = ShortBytes.capacity, tooLong: Status) throws(Status) -> ShortBytes {
        let n = Int(try readU8())
        let bytes = try readBytes(n)
        guard n <= max else { throw tooLong }
        return ShortBytes(bytes)
    }

    /// Reads a `str8` into a new array (for fields rarer than the hot path: names, credentials).
    public mutating func readArray8() throws(Status) -> [UInt8] {
        let n = Int(try readU8())
        return Array(try readBytes(n))
    }

    /// Throws `.malformed` unless every byte was consumed.
    public func finish() throws(Status) {
        guard offset == base.count else { throw .malformed }
    }
}
