import CCRC32C
import StockProtocol

// # Record format (version 1)
//
// A segment file is records back to back from byte 0, nothing else: no
// file header, so a file is valid at every record boundary and records only
// ever go after the last one. The writer preallocates segments with zeros
// (JournalWriter), so the records are followed by zeros to the end of the
// file; no record starts with a zero length (JournalReader, "End of data").
// All integers little-endian.
//
// | offset | size | field                                                      |
// |-------:|-----:|------------------------------------------------------------|
// |      0 |    4 | length: bytes after this field = 21 + payload (21...508)    |
// |      4 |    4 | crc32c of the bytes after this field (offset 8 ..< 4+length)|
// |      8 |    1 | kind (below)                                               |
// |      9 |    8 | seq (global sequence number, >= 1)                          |
// |     17 |    8 | timeMs (Unix epoch ms when the change happened)             |
// |     25 |    … | payload by kind                                            |
//
// | kind | record        | payload                                                                   |
// |-----:|---------------|---------------------------------------------------------------------------|
// |    1 | stockSet      | sku str8, onHand u64, lowStockThreshold u32, perCustomerLimit u32           |
// |    2 | stockAdjusted | sku str8, delta i64, reason u8                                             |
// |    3 | reserved      | token, sku str8, quantity u32, deadlineWallMs u64, customer str8,              |
// |      |               | idempotencyKey str8, flags u8 (bit 0: bundle; other bits 0), line u8, lines u8 |
// |    4 | confirmed     | token, sku str8, quantity u32, returned u32, orderReference str8,          |
// |      |               | customer str8, line u8, lines u8                                           |
// |    5 | released      | token, sku str8, quantity u32, customer str8, line u8, lines u8            |
// |    6 | expired       | token, sku str8, quantity u32, customer str8, line u8, lines u8            |
// |    7 | extended      | token, deadlineWallMs u64                                                      |
// |    8 | lowStock      | sku str8, available u64 (an alert: no state; for the event feed)           |
// |    9 | soldOut       | sku str8                                                                  |
// |   10 | backInStock   | sku str8, available u64                                                   |
// |   11 | backupChanged | sku str8, delta i64, backup u64 (after)                                   |
// |   12 | termStarted   | epoch u64 (1...2^63-1), node str8 (1...64 bytes)                          |
//
// str8 = u8 length + bytes (a SKU 1...64 bytes, other strings 0...64);
// token = its 16 wire bytes: slot u32, generation u32, secret u64 (as the protocol).
// `line u8, lines u8` (the line's place in its token) and, for kinds 4-6,
// `customer` were added for the event feed; a record that ends before them
// (written by an earlier build) decodes with customer empty, line 0 of 1.
// Kind 12 (a new primary's term start, docs/replication.md §1) came with
// replication; a build before it reads one as `unknownKind(12)`, which is
// right: it cannot follow a replicated journal's epoch history.
//
// The largest record (reserved with three 64-byte strings) is 251 bytes;
// `maxRecordBytes` (512) leaves room for growth and bounds what a reader
// trusts in a length field. The checksum covers kind..payload, not the length:
// a damaged length shows up as a checksum mismatch over the wrong span, or as
// an out-of-range length.

/// The kind byte of a record.
public enum RecordKind: UInt8, Sendable, CaseIterable {
    case stockSet = 1, stockAdjusted, reserved, confirmed, released, expired, extended
    case lowStock, soldOut, backInStock, backupChanged, termStarted
}

extension JournalRecord {
    /// This record's kind byte.
    public var kind: RecordKind {
        switch self {
        case .stockSet: .stockSet
        case .stockAdjusted: .stockAdjusted
        case .reserved: .reserved
        case .confirmed: .confirmed
        case .released: .released
        case .expired: .expired
        case .extended: .extended
        case .lowStock: .lowStock
        case .soldOut: .soldOut
        case .backInStock: .backInStock
        case .backupChanged: .backupChanged
        case .termStarted: .termStarted
        }
    }
}

/// Why bytes are not a record.
public enum RecordCorruption: Error, Sendable, Equatable, CustomStringConvertible {
    /// The length field is outside 21...508.
    case badLength(UInt32)
    /// The stored checksum does not match the bytes.
    case badChecksum(stored: UInt32, computed: UInt32)
    /// The kind byte is not one of `RecordKind`.
    case unknownKind(UInt8)
    /// A field is out of range, or the payload is shorter or longer than its layout.
    case badField(String)

    public var description: String {
        switch self {
        case .badLength(let n): "bad length \(n)"
        case .badChecksum(let s, let c): "bad checksum (stored \(hex32(s)), computed \(hex32(c)))"
        case .unknownKind(let k): "unknown kind \(k)"
        case .badField(let f): "bad field: \(f)"
        }
    }
}

func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
}

/// What `RecordCodec.decode` found at the start of a buffer.
public enum RecordDecodeResult: Sendable, Equatable {
    /// A whole, valid record of `bytes` bytes.
    case record(SequencedRecord, bytes: Int)
    /// The buffer ends inside the record (its header or its stated length).
    case needMore
    /// The bytes are not a valid record.
    case corrupt(RecordCorruption)
}

/// Encoding and decoding of journal records (format at the top of this file).
public enum RecordCodec {
    /// The record format's version (the heading of this file), carried in
    /// the replication config fingerprint (ConfigFingerprint): nodes whose
    /// records do not mean the same must not replicate into each other.
    public static let formatVersion: UInt8 = 1
    /// Upper bound of an encoded record, length field included.
    public static let maxRecordBytes = 512
    /// Bytes before the payload: length, crc, kind, seq, timeMs.
    public static let headerBytes = 25
    /// Smallest and largest value of the length field.
    static let minLength = UInt32(headerBytes - 4)
    static let maxLength = UInt32(maxRecordBytes - 4)

    /// Appends `r` to `buffer`. No allocation unless the buffer must grow.
    public static func encode(_ r: SequencedRecord, into buffer: RecordBuffer) {
        let p = buffer.reserve(maxRecordBytes)
        let n = encode(r, at: p)
        buffer.commitRecord(n, seq: r.seq)
    }

    /// Writes `r` at `p` (which has room for `maxRecordBytes`) and returns its size.
    static func encode(_ r: SequencedRecord, at p: UnsafeMutableRawPointer) -> Int {
        var w = RawWriter(p, at: 8)
        w.u8(r.record.kind.rawValue)
        w.u64(r.seq)
        w.u64(r.timeMs)
        switch r.record {
        case let .stockSet(sku, onHand, threshold, limit):
            w.str8(sku); w.u64(onHand); w.u32(threshold); w.u32(limit)
        case let .stockAdjusted(sku, delta, reason):
            w.str8(sku); w.u64(UInt64(bitPattern: delta)); w.u8(reason)
        case let .reserved(token, sku, quantity, deadline, customer, key, bundle, line, lines):
            w.token(token); w.str8(sku); w.u32(quantity); w.u64(deadline)
            w.str8(customer); w.str8(key); w.u8(bundle ? 1 : 0); w.u8(line); w.u8(lines)
        case let .confirmed(token, sku, quantity, returned, order, customer, line, lines):
            w.token(token); w.str8(sku); w.u32(quantity); w.u32(returned); w.str8(order)
            w.str8(customer); w.u8(line); w.u8(lines)
        case let .released(token, sku, quantity, customer, line, lines),
             let .expired(token, sku, quantity, customer, line, lines):
            w.token(token); w.str8(sku); w.u32(quantity); w.str8(customer); w.u8(line); w.u8(lines)
        case let .extended(token, deadline):
            w.token(token); w.u64(deadline)
        case let .lowStock(sku, available), let .backInStock(sku, available):
            w.str8(sku); w.u64(available)
        case let .soldOut(sku):
            w.str8(sku)
        case let .backupChanged(sku, delta, backup):
            w.str8(sku); w.u64(UInt64(bitPattern: delta)); w.u64(backup)
        case let .termStarted(epoch, node):
            // What decode refuses must never be written: it would make the journal unreadable at this record.
            precondition(epoch >= 1 && epoch <= UInt64(Int64.max) && !node.isEmpty,
                         "a term start record names an epoch in 1...Int64.max and a node")
            w.u64(epoch); w.str8(node)
        }
        let n = w.at
        // Cannot fail: the largest record is 251 bytes (see the table above).
        assert(n <= maxRecordBytes, "record larger than maxRecordBytes")
        p.storeBytes(of: UInt32(n - 4).littleEndian, as: UInt32.self)
        let crc = ccrc32c_extend(0, p + 8, n - 8)
        p.storeBytes(of: crc.littleEndian, toByteOffset: 4, as: UInt32.self)
        return n
    }

    /// Encodes one record into a new array (tests, rare paths).
    public static func encode(_ r: SequencedRecord) -> [UInt8] {
        let b = RecordBuffer(capacity: maxRecordBytes)
        encode(r, into: b)
        return b.bytes
    }

    /// The length and checksum check alone: `.record`'s size, or why not.
    /// The reader uses it to tell a torn tail from corruption before decoding.
    public static func frame(_ bytes: UnsafeRawBufferPointer) -> FrameResult {
        guard bytes.count >= 4 else { return .needMore }
        let length = UInt32(littleEndian: bytes.loadUnaligned(as: UInt32.self))
        guard length >= minLength, length <= maxLength else { return .corrupt(.badLength(length)) }
        let n = Int(length) + 4
        guard bytes.count >= n else { return .needMore }
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let computed = ccrc32c_extend(0, bytes.baseAddress! + 8, n - 8)
        guard stored == computed else { return .corrupt(.badChecksum(stored: stored, computed: computed)) }
        return .frame(bytes: n)
    }

    /// The seq of a framed record (`frame` accepted it): after length, checksum and kind.
    @inline(__always)
    public static func seq(ofFrame record: UnsafeRawBufferPointer) -> UInt64 {
        UInt64(littleEndian: record.loadUnaligned(fromByteOffset: 9, as: UInt64.self))
    }

    /// The SKU bytes of a framed record (empty for `extended` and
    /// `termStarted`, or if the record is too short to hold one:
    /// `decodeFramed` reports that).
    public static func skuBytes(_ record: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let at: Int
        switch RecordKind(rawValue: record[8]) {
        case .stockSet, .stockAdjusted, .lowStock, .soldOut, .backInStock, .backupChanged: at = headerBytes
        case .reserved, .confirmed, .released, .expired: at = headerBytes + Token.size
        case .extended, .termStarted, nil: return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        guard record.count > at, record.count >= at + 1 + Int(record[at]) else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(rebasing: record[(at + 1)..<(at + 1 + Int(record[at]))])
    }

    /// The result of `frame`.
    public enum FrameResult: Sendable, Equatable {
        case frame(bytes: Int)
        case needMore
        case corrupt(RecordCorruption)
    }

    /// Decodes the record at the start of `bytes`.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> RecordDecodeResult {
        switch frame(bytes) {
        case .needMore: return .needMore
        case .corrupt(let why): return .corrupt(why)
        case .frame(let n):
            do {
                return .record(try decodeFramed(UnsafeRawBufferPointer(rebasing: bytes[0..<n])), bytes: n)
            } catch {
                return .corrupt(error)
            }
        }
    }

    /// Decodes a record whose length and checksum `frame` has accepted.
    static func decodeFramed(_ bytes: UnsafeRawBufferPointer) throws(RecordCorruption) -> SequencedRecord {
        var r = RawReader(bytes, at: 8)
        let kindByte = try r.u8()
        guard let kind = RecordKind(rawValue: kindByte) else { throw .unknownKind(kindByte) }
        let seq = try r.u64()
        let time = try r.u64()
        let record: JournalRecord
        switch kind {
        case .stockSet:
            record = .stockSet(sku: try r.sku(), onHand: try r.u64(), lowStockThreshold: try r.u32(),
                               perCustomerLimit: try r.u32())
        case .stockAdjusted:
            record = .stockAdjusted(sku: try r.sku(), delta: Int64(bitPattern: try r.u64()), reason: try r.u8())
        case .reserved:
            let token = try r.token(), sku = try r.sku(), quantity = try r.u32(), deadline = try r.u64()
            let customer = try r.str8(), key = try r.str8(), flags = try r.u8()
            guard flags & ~1 == 0 else { throw .badField("reserved flags \(flags)") }
            let (line, lines) = r.remaining == 0 ? (0, 1) : (try r.u8(), try r.u8())
            record = .reserved(token: token, sku: sku, quantity: quantity, deadlineWallMs: deadline,
                               customer: customer, idempotencyKey: key, bundle: flags == 1, line: line, lines: lines)
        case .confirmed:
            let token = try r.token(), sku = try r.sku(), quantity = try r.u32(), returned = try r.u32()
            let order = try r.str8()
            let (customer, line, lines) = try r.lineTail()
            record = .confirmed(token: token, sku: sku, quantity: quantity, returned: returned, orderReference: order,
                                customer: customer, line: line, lines: lines)
        case .released, .expired:
            let token = try r.token(), sku = try r.sku(), quantity = try r.u32()
            let (customer, line, lines) = try r.lineTail()
            record = kind == .released
                ? .released(token: token, sku: sku, quantity: quantity, customer: customer, line: line, lines: lines)
                : .expired(token: token, sku: sku, quantity: quantity, customer: customer, line: line, lines: lines)
        case .extended:
            record = .extended(token: try r.token(), deadlineWallMs: try r.u64())
        case .lowStock:
            record = .lowStock(sku: try r.sku(), available: try r.u64())
        case .soldOut:
            record = .soldOut(sku: try r.sku())
        case .backInStock:
            record = .backInStock(sku: try r.sku(), available: try r.u64())
        case .backupChanged:
            record = .backupChanged(sku: try r.sku(), delta: try r.i64(), backup: try r.u64())
        case .termStarted:
            let epoch = try r.u64()
            // Epochs are etcd revisions: from 1, and int64 (the event feed carries one as an i64).
            guard epoch >= 1 && epoch <= UInt64(Int64.max) else { throw .badField("epoch \(epoch)") }
            let node = try r.str8()
            guard !node.isEmpty else { throw .badField("empty node id") }
            record = .termStarted(epoch: epoch, node: node)
        }
        guard r.at == bytes.count else { throw .badField("\(bytes.count - r.at) bytes after the payload") }
        return SequencedRecord(seq: seq, timeMs: time, record: record)
    }
}

/// Unchecked little-endian stores at a running offset (the caller reserved
/// `maxRecordBytes`, which bounds every record).
struct RawWriter {
    let p: UnsafeMutableRawPointer
    var at: Int

    @inline(__always) init(_ p: UnsafeMutableRawPointer, at: Int) {
        self.p = p
        self.at = at
    }

    @inline(__always) mutating func u8(_ v: UInt8) {
        p.storeBytes(of: v, toByteOffset: at, as: UInt8.self)
        at += 1
    }

    @inline(__always) mutating func u16(_ v: UInt16) {
        p.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt16.self)
        at += 2
    }

    @inline(__always) mutating func u32(_ v: UInt32) {
        p.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt32.self)
        at += 4
    }

    @inline(__always) mutating func u64(_ v: UInt64) {
        p.storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt64.self)
        at += 8
    }

    @inline(__always) mutating func token(_ t: Token) {
        u32(t.slot); u32(t.generation); u64(t.secret)
    }

    @inline(__always) mutating func str8(_ s: ShortBytes) {
        u8(UInt8(s.count))
        s.withUnsafeBytes { b in
            if b.count > 0 { (p + at).copyMemory(from: b.baseAddress!, byteCount: b.count) }
        }
        at += s.count
    }
}

/// Bounds-checked little-endian loads; a short payload is `.badField`.
struct RawReader {
    let b: UnsafeRawBufferPointer
    var at: Int

    init(_ b: UnsafeRawBufferPointer, at: Int) {
        self.b = b
        self.at = at
    }

    @inline(__always) mutating func take(_ n: Int) throws(RecordCorruption) -> Int {
        guard b.count - at >= n else { throw .badField("payload too short") }
        defer { at += n }
        return at
    }

    @inline(__always) mutating func u8() throws(RecordCorruption) -> UInt8 { b[try take(1)] }

    var remaining: Int { b.count - at }

    @inline(__always) mutating func u16() throws(RecordCorruption) -> UInt16 {
        UInt16(littleEndian: b.loadUnaligned(fromByteOffset: try take(2), as: UInt16.self))
    }

    @inline(__always) mutating func i64() throws(RecordCorruption) -> Int64 { Int64(bitPattern: try u64()) }

    @inline(__always) mutating func u32() throws(RecordCorruption) -> UInt32 {
        UInt32(littleEndian: b.loadUnaligned(fromByteOffset: try take(4), as: UInt32.self))
    }

    @inline(__always) mutating func u64() throws(RecordCorruption) -> UInt64 {
        UInt64(littleEndian: b.loadUnaligned(fromByteOffset: try take(8), as: UInt64.self))
    }

    @inline(__always) mutating func token() throws(RecordCorruption) -> Token {
        Token(slot: try u32(), generation: try u32(), secret: try u64())
    }

    /// A str8 of 0...64 bytes.
    mutating func str8() throws(RecordCorruption) -> ShortBytes {
        let n = Int(try u8())
        guard n <= ShortBytes.capacity else { throw .badField("string of \(n) bytes") }
        let at = try take(n)
        return ShortBytes(UnsafeRawBufferPointer(rebasing: b[at..<(at + n)]))
    }

    /// `customer str8, line u8, lines u8` at the end of a settling record,
    /// or their defaults when the record ends before them (an earlier build).
    mutating func lineTail() throws(RecordCorruption) -> (ShortBytes, UInt8, UInt8) {
        guard remaining > 0 else { return (.empty, 0, 1) }
        return (try str8(), try u8(), try u8())
    }

    /// A str8 of 1...64 bytes (SKU text is the server's to validate; here only its size).
    mutating func sku() throws(RecordCorruption) -> SKU {
        let s = try str8()
        guard !s.isEmpty else { throw .badField("empty SKU") }
        return s
    }
}
