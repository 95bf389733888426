#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The end of the last segment cut by a crash: bytes from `offset` to the
/// end of the file were dropped (or, in a read-only check, would be).
public struct TornTail: Sendable, Equatable, CustomStringConvertible {
    public let path: String
    /// Where the torn record starts (= the file's length after repair).
    public let offset: Int64
    /// Bytes from `offset` to the end of the file.
    public let droppedBytes: Int64
    /// What was wrong with the record at `offset`.
    public let reason: String

    public init(path: String, offset: Int64, droppedBytes: Int64, reason: String) {
        self.path = path
        self.offset = offset
        self.droppedBytes = droppedBytes
        self.reason = reason
    }

    public var description: String {
        "\(path): torn tail at byte \(offset), \(droppedBytes) bytes (\(reason))"
    }
}

/// What reading one segment found.
public struct SegmentSummary: Sendable, Equatable {
    public let segment: SegmentFile
    /// Valid records read.
    public var records = 0
    /// Bytes of valid records (where the torn tail, if any, starts).
    public var validBytes: Int64 = 0
    /// Smallest and largest seq read (0 when no records).
    public var minSeq: UInt64 = 0
    public var maxSeq: UInt64 = 0
    /// The torn tail, if the segment had one.
    public var tornTail: TornTail?
    /// Zero bytes after the last record up to the end of the file: the
    /// unused part of a preallocated segment (the normal state of the open
    /// segment, and of one closed before it was full). Not a torn tail.
    public var zeroTailBytes: Int64 = 0
}

/// Reads segment files record by record.
///
/// # End of data
///
/// Segments are preallocated (see JournalWriter): records from byte 0, then
/// zeros to the end of the file. A record never starts with four zero bytes
/// (its length is at least 21), so at a record boundary, zeros up to the
/// end of the file are the end of the data in ANY segment — the open one,
/// or one closed before it was full (at shutdown). That is the normal state,
/// reported as `zeroTailBytes`, not as a torn tail, and never truncated.
/// Zeros followed by non-zero bytes are corruption (in the last segment too:
/// see "Torn tail or corruption").
///
/// # Torn tail or corruption
///
/// A crash can cut the last write short: the file then ends inside a
/// record, or the record is followed by zeros (the preallocated space, or
/// on file systems that extend the size before the data lands). Only the
/// LAST segment can end that way, because the writer syncs a segment before
/// it starts the next. So in the last segment a record is a *torn tail* when
///   - the file ends inside its header or before its stated length, or
///   - it fails its checks (bad length or checksum) and every byte after its
///     stated end — or after its start, when the length itself is unusable —
///     up to the end of the file is zero.
/// The tail is reported and, when repairing, cut off (`ftruncate` + fsync).
/// Anything else that is not a valid record — in an earlier segment, or
/// followed by non-zero bytes, or with a good checksum but an unknown kind or
/// a bad field — is corruption: `JournalError.corrupt` naming the file and
/// byte offset. Nothing is ever skipped silently.
public enum JournalReader {
    static let chunkBytes = 1 << 20

    /// Calls `body` with every record of `segment` and its byte offset, in file order.
    /// `isLast`: whether a torn tail is allowed; `repairTornTail`: truncate it.
    ///
    /// Records at or below `decodeAbove` are checksummed but not decoded nor
    /// handed to `body` (`covered` counts them): a snapshot already holds
    /// them, and the feed's retained segments are mostly such records.
    public static func read(_ segment: SegmentFile, isLast: Bool, repairTornTail: Bool, decodeAbove: UInt64 = 0,
                            covered: ((UInt64) -> Void)? = nil,
                            _ body: (SequencedRecord, Int64) throws(JournalError) -> Void)
        throws(JournalError) -> SegmentSummary
    {
        try frames(segment, isLast: isLast, repairTornTail: repairTornTail) { (bytes, offset) throws(JournalError) in
            let seq = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 9, as: UInt64.self))
            if seq <= decodeAbove {
                covered?(seq)
                return seq
            }
            let record: SequencedRecord
            do throws(RecordCorruption) { record = try RecordCodec.decodeFramed(bytes) } catch {
                throw .corrupt(path: segment.path, offset: offset, reason: error.description)
            }
            try body(record, offset)
            return record.seq
        }
    }

    /// What `readAll` found.
    public struct Summary: Sendable, Equatable {
        public var segments: [SegmentSummary] = []
        public var records: Int { segments.reduce(0) { $0 + $1.records } }
        public var tornTail: TornTail? { segments.last?.tornTail }
    }

    /// Calls `body` with every record of every segment in `directory`, in
    /// file order (segments oldest first), with its segment and offset.
    public static func readAll(directory: String, repairTornTail: Bool, decodeAbove: UInt64 = 0,
                               covered: ((UInt64) -> Void)? = nil,
                               _ body: (SequencedRecord, SegmentFile, Int64) throws(JournalError) -> Void)
        throws(JournalError) -> Summary
    {
        let segments = try SegmentFiles.list(in: directory)
        var summary = Summary()
        for (i, segment) in segments.enumerated() {
            summary.segments.append(try read(segment, isLast: i == segments.count - 1, repairTornTail: repairTornTail,
                                             decodeAbove: decodeAbove, covered: covered) {
                (r, offset) throws(JournalError) in try body(r, segment, offset)
            })
        }
        return summary
    }

    /// The largest seq in `segment` (checksums verified, payloads not decoded).
    static func maxSeq(of segment: SegmentFile) throws(JournalError) -> UInt64 {
        try frames(segment, isLast: false, repairTornTail: false) { (bytes, _) throws(JournalError) in
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 9, as: UInt64.self))
        }.maxSeq
    }

    /// The framing loop: calls `visit` with each record that passes its
    /// length and checksum checks (`visit` returns its seq), classifies the
    /// first one that does not (torn tail or corruption, see above).
    static func frames(_ segment: SegmentFile, isLast: Bool, repairTornTail: Bool,
                       _ visit: (UnsafeRawBufferPointer, Int64) throws(JournalError) -> UInt64)
        throws(JournalError) -> SegmentSummary
    {
        let f = try PosixFile.open(segment.path, repairTornTail && isLast ? O_RDWR : O_RDONLY)
        defer { f.closeQuietly() }
        var chunk = Chunk(file: f)
        defer { chunk.deallocate() }
        var summary = SegmentSummary(segment: segment)
        while true {
            try chunk.fill(atLeast: RecordCodec.maxRecordBytes)
            if chunk.isEmpty { break }
            let offset = chunk.offset
            if chunk.startsWithZeroLength {
                // The end of the data, if only zeros follow (see "End of data").
                if let nonZero = try chunk.firstNonZero() {
                    throw .corrupt(path: segment.path, offset: offset,
                                   reason: "zeros where a record should start, then non-zero data at byte \(nonZero)")
                }
                summary.zeroTailBytes = chunk.offset - offset
                break
            }
            switch RecordCodec.frame(chunk.view) {
            case .frame(let n):
                let seq = try visit(UnsafeRawBufferPointer(rebasing: chunk.view[0..<n]), offset)
                summary.minSeq = summary.records == 0 ? seq : min(summary.minSeq, seq)
                summary.maxSeq = max(summary.maxSeq, seq)
                summary.records += 1
                chunk.consume(n)
                summary.validBytes = chunk.offset
            case .needMore:
                // `fill` holds maxRecordBytes unless the file ends first: cut by EOF.
                let tail = try chunk.skipToEnd()
                guard isLast else { throw .corrupt(path: segment.path, offset: offset, reason: "record cut by end of file") }
                summary.tornTail = TornTail(path: segment.path, offset: offset, droppedBytes: tail,
                                            reason: "record cut by end of file")
            case .corrupt(let why):
                let statedEnd: Int
                if case .badLength = why { statedEnd = 0 } else {
                    statedEnd = 4 + Int(UInt32(littleEndian: chunk.view.loadUnaligned(as: UInt32.self)))
                }
                chunk.consume(statedEnd)
                let zeros = try chunk.restIsZero()
                guard isLast && zeros else {
                    let more = zeros ? "" : ", followed by non-zero data"
                    throw .corrupt(path: segment.path, offset: offset, reason: why.description + more)
                }
                let end = chunk.offset
                summary.tornTail = TornTail(path: segment.path, offset: offset, droppedBytes: end - offset,
                                            reason: why.description + ", then only zeros")
            }
            if summary.tornTail != nil { break }
        }
        if repairTornTail, let torn = summary.tornTail {
            try f.truncate(to: torn.offset)
            try f.syncAll()
        }
        return summary
    }
}

/// A window of a file read in 1 MiB chunks: `view` is the bytes from `offset`
/// on that are in memory. Records never straddle a refill because `fill`
/// keeps at least one maximum record in view until the end of the file.
private struct Chunk {
    let file: PosixFile
    let base = UnsafeMutableRawPointer.allocate(byteCount: JournalReader.chunkBytes, alignment: 16)
    /// File offset of `base[0]`.
    var baseOffset: Int64 = 0
    var lo = 0, hi = 0
    var atEOF = false

    init(file: PosixFile) { self.file = file }

    func deallocate() { base.deallocate() }

    var isEmpty: Bool { lo == hi }
    var offset: Int64 { baseOffset + Int64(lo) }
    var view: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base + lo, count: hi - lo) }

    mutating func consume(_ n: Int) {
        precondition(n <= hi - lo)
        lo += n
    }

    /// Reads until `n` bytes are in view or the file ends.
    mutating func fill(atLeast n: Int) throws(JournalError) {
        guard hi - lo < n, !atEOF else { return }
        if lo > 0 {
            base.copyMemory(from: base + lo, byteCount: hi - lo)  // memmove semantics
            baseOffset += Int64(lo)
            hi -= lo
            lo = 0
        }
        let want = JournalReader.chunkBytes - hi
        let got = try file.read(into: base + hi, count: want, at: baseOffset + Int64(hi))
        hi += got
        if got < want { atEOF = true }
    }

    /// Whether the view starts with a zero length field (four zero bytes,
    /// or fewer bytes left and all zero). No record does.
    var startsWithZeroLength: Bool {
        let v = view
        guard v.count >= 4 else { return v.allSatisfy { $0 == 0 } }
        return v.loadUnaligned(as: UInt32.self) == 0
    }

    /// The file offset of the first non-zero byte from `offset` on, nil if
    /// there is none (then `offset` is the end of the file).
    mutating func firstNonZero() throws(JournalError) -> Int64? {
        while true {
            if !isAllZero(view), let i = view.firstIndex(where: { $0 != 0 }) { return offset + Int64(i) }
            lo = hi
            if atEOF { return nil }
            try fill(atLeast: JournalReader.chunkBytes)
            if isEmpty { return nil }
        }
    }

    /// Whether every byte from `offset` to the end of the file is zero; leaves `offset` at the end.
    mutating func restIsZero() throws(JournalError) -> Bool {
        while true {
            if !isAllZero(view) { return false }
            lo = hi
            if atEOF { return true }
            try fill(atLeast: JournalReader.chunkBytes)
            if isEmpty { return true }
        }
    }

    /// Skips to the end of the file, returning the bytes skipped.
    mutating func skipToEnd() throws(JournalError) -> Int64 {
        let start = offset
        while true {
            lo = hi
            if atEOF { return offset - start }
            try fill(atLeast: JournalReader.chunkBytes)
        }
    }
}

/// Whether every byte of `b` is zero: the first is, and each equals the
/// next (one `memcmp`, fast in debug builds too; a 64 MiB preallocated
/// segment is mostly zeros).
func isAllZero(_ b: UnsafeRawBufferPointer) -> Bool {
    guard let p = b.baseAddress, b.count > 0 else { return true }
    return b[0] == 0 && (b.count == 1 || memcmp(p, p + 1, b.count - 1) == 0)
}
