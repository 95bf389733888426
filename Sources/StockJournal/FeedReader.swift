#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How far the journal's segment files are known to be durable: records
/// in segments named below `segmentFirstSeq` are complete to the end of
/// their file; in the segment named `segmentFirstSeq`, to byte `bytes`
/// (`Int64.max`: that segment is closed too). The journal thread publishes
/// it after every fdatasync, before it publishes the durable watermark.
public struct SyncedEnd: Sendable, Equatable {
    public var segmentFirstSeq: UInt64
    public var bytes: Int64

    public init(segmentFirstSeq: UInt64, bytes: Int64) {
        self.segmentFirstSeq = segmentFirstSeq
        self.bytes = bytes
    }

    /// Nothing synced yet.
    public static let none = SyncedEnd(segmentFirstSeq: 0, bytes: 0)
}

/// Why a feed cannot go on.
public enum FeedReadError: Error, Sendable, Equatable {
    /// A record the watermark says is durable is in no segment: it was
    /// compacted away (or was never in the segments this reader could see).
    case missing(seq: UInt64)
    /// A segment holds bytes that are not a valid record.
    case corrupt(String)
}

/// Reads the journal's records in sequence order, from a given offset, as
/// they become durable — the event feed's source (one reader per
/// subscriber, on the feed thread).
///
/// Segment files hold records slightly out of order (each worker hands its
/// own buffer over; see JournalPipeline), so records read ahead of the next
/// offset wait in `pending` until it arrives. Sequence numbers have no gaps
/// (Recovery.swift keeps them gap-free across restarts), so a record at or
/// below the durable watermark that is in no readable segment — once every
/// synced byte has been read — was compacted away: `FeedReadError.missing`.
///
/// Bounded: it reads at most `chunkBytes` per step and holds at most
/// `maxPending` records ahead of the next offset (far above the real
/// reordering window of a few thousand).
public final class FeedReader {
    public static let chunkBytes = 256 << 10
    public static let maxPending = 1 << 18

    /// The next offset to hand out.
    public private(set) var next: UInt64
    /// Records read ahead of `next`.
    public var pendingCount: Int { raw ? rawPending.count : pending.count }
    /// Bytes a raw reader holds for them (waiting records and, until a rewrite, handed-out ones).
    public var rawBytesHeld: Int { rawArena.count }

    private let directory: String
    private var segments: [SegmentFile] = []
    private var index = 0
    private var file: PosixFile?
    private var fileOffset: Int64 = 0
    private var pending: [UInt64: SequencedRecord] = [:]
    /// Offsets read ahead that the filter rejected (never decoded).
    private var skipped = Set<UInt64>()
    private let buffer: UnsafeMutableRawPointer
    private let filter: RecordFilter?
    /// Raw mode (`readRaw`): records read ahead are kept as their framed bytes in `rawArena`
    /// (seq → offset), never decoded. The replication sender forwards the journal's own bytes:
    /// decoding every record and encoding it again was most of its time.
    private let raw: Bool
    private var rawPending: [UInt64: Int] = [:]
    private var rawArena: [UInt8] = []
    /// Bytes of `rawArena` still waiting (the rest were handed out or replaced).
    private var rawLiveBytes = 0

    /// Which records a reader decodes and hands out, judged on the raw
    /// record: its kind byte and its SKU's bytes (empty for `extended`).
    /// Rejected records only move the position.
    public typealias RecordFilter = (_ kind: UInt8, _ sku: UnsafeRawBufferPointer) -> Bool

    /// A reader handing out offsets from `from` (>= 1), the records `filter` accepts.
    /// With `raw`, records are handed out as their framed bytes (`readRaw`) instead of decoded (`read`).
    public init(directory: String, from: UInt64, filter: RecordFilter? = nil, raw: Bool = false) throws(JournalError) {
        precondition(from >= 1, "offsets start at 1")
        self.directory = directory
        self.filter = filter
        self.raw = raw
        next = from
        buffer = .allocate(byteCount: Self.chunkBytes, alignment: 16)
        segments = try SegmentFiles.list(in: directory)
        // Start one segment before the last one named at or below `from`:
        // a segment can hold a few records below its successor's name.
        let atOrBelow = segments.lastIndex { $0.firstSeq <= from } ?? 0
        index = max(0, atOrBelow - 1)
    }

    deinit {
        file?.closeQuietly()
        buffer.deallocate()
    }

    /// Hands `body` the records the filter accepts from `next` on, in
    /// order, while they are at or below `durable` (every record up to it
    /// lies within `synced`), at most `limit` of them; rejected ones move
    /// the position without counting. Returns how many it handed out.
    public func read(durable: UInt64, synced: SyncedEnd, limit: Int,
                     _ body: (SequencedRecord) -> Void) throws(FeedReadError) -> Int {
        precondition(!raw, "a raw reader hands out bytes (readRaw)")
        var handed = 0
        while handed < limit && next <= durable {
            if skipFiltered() { continue }
            if let r = pending.removeValue(forKey: next) {
                body(r)
                next += 1
                handed += 1
                continue
            }
            try readAhead(synced)
        }
        return handed
    }

    /// Moves past `next` if the filter rejected it; whether it did.
    private func skipFiltered() -> Bool {
        guard !skipped.isEmpty && skipped.remove(next) != nil else { return false }
        next += 1
        return true
    }

    /// `next` is not read yet: reads on, within `maxPending` records read ahead.
    private func readAhead(_ synced: SyncedEnd) throws(FeedReadError) {
        guard try readMore(synced) else { throw .missing(seq: next) }
        if pendingCount + skipped.count > Self.maxPending { throw .missing(seq: next) }
    }

    /// `read` for a raw reader: hands `body` each record's framed bytes (length, checksum and all,
    /// as the segment holds them; valid only during the call), in seq order, while at or below
    /// `durable`, at most `limit` records and — past the first — `maxBytes` bytes.
    public func readRaw(durable: UInt64, synced: SyncedEnd, limit: Int, maxBytes: Int,
                        _ body: (UnsafeRawBufferPointer) -> Void) throws(FeedReadError) -> Int {
        precondition(raw, "readRaw needs a reader made with raw: true")
        var handed = 0
        var bytes = 0
        while handed < limit && next <= durable {
            if skipFiltered() { continue }
            if let at = rawPending.removeValue(forKey: next) {
                let n = rawLength(at: at)
                if handed > 0 && bytes + n > maxBytes {
                    rawPending[next] = at  // the next call starts with it
                    break
                }
                rawArena.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
                rawLiveBytes -= n
                bytes += n
                next += 1
                handed += 1
                continue
            }
            try readAhead(synced)
        }
        reclaimArena()
        return handed
    }

    /// The size of the framed record kept at `at` in `rawArena` (its length field + 4).
    private func rawLength(at: Int) -> Int {
        rawArena.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt32.self))) + 4 }
    }

    /// Bounds `rawArena`: emptied when nothing waits (the usual case after a read), otherwise
    /// rewritten with only the records still waiting once it passes four chunks and is at least
    /// half garbage (so a large backlog is not copied again on every read: amortised O(1)).
    private func reclaimArena() {
        assert(rawLiveBytes >= 0 && rawLiveBytes <= rawArena.count, "live bytes \(rawLiveBytes) of \(rawArena.count)")
        if rawPending.isEmpty {
            rawArena.removeAll(keepingCapacity: true)
            rawLiveBytes = 0
            return
        }
        guard rawArena.count > max(4 * Self.chunkBytes, 2 * rawLiveBytes) else { return }
        var kept: [UInt8] = []
        kept.reserveCapacity(rawLiveBytes)
        var moved = [UInt64: Int](minimumCapacity: rawPending.count)
        for (seq, at) in rawPending {
            moved[seq] = kept.count
            kept.append(contentsOf: rawArena[at..<(at + rawLength(at: at))])
        }
        rawPending = moved
        rawArena = kept
        rawLiveBytes = kept.count
    }

    /// Reads the next chunk of the current segment (or moves to the next
    /// segment). False when every synced byte has been read.
    private func readMore(_ synced: SyncedEnd) throws(FeedReadError) -> Bool {
        if index >= segments.count {
            guard refreshSegments() else { return false }
        }
        let segment = segments[index]
        if segment.firstSeq > synced.segmentFirstSeq { return false }  // nothing of it is durable yet
        let f: PosixFile
        if let file {
            f = file
        } else {
            do throws(JournalError) { f = try PosixFile.open(segment.path, O_RDONLY) } catch {
                // Deleted by compaction since it was listed: the records it held are gone.
                index += 1
                return true
            }
            file = f
            fileOffset = 0
        }
        let limit = segment.firstSeq == synced.segmentFirstSeq ? synced.bytes : Int64.max
        let want = Int(min(Int64(Self.chunkBytes), limit - fileOffset))
        guard want > 0 else { return segment.firstSeq < synced.segmentFirstSeq ? nextSegment() : false }
        let n: Int
        do throws(JournalError) { n = try f.read(into: buffer, count: want, at: fileOffset) } catch {
            throw .corrupt("\(error)")
        }
        var used = 0
        var endOfData = n == 0
        while used < n {
            let view = UnsafeRawBufferPointer(start: buffer + used, count: n - used)
            if view.count >= 4 && view.loadUnaligned(as: UInt32.self) == 0 {
                endOfData = true  // the preallocated zeros after the last record
                break
            }
            switch RecordCodec.frame(view) {
            case .frame(let bytes):
                let record = UnsafeRawBufferPointer(rebasing: view[0..<bytes])
                let seq = RecordCodec.seq(ofFrame: record)
                if seq >= next {
                    if let filter, !filter(record[8], RecordCodec.skuBytes(record)) {
                        skipped.insert(seq)
                    } else if raw {
                        if let replaced = rawPending.updateValue(rawArena.count, forKey: seq) {
                            rawLiveBytes -= rawLength(at: replaced)
                        }
                        rawArena.append(contentsOf: record)
                        rawLiveBytes += record.count
                    } else {
                        do throws(RecordCorruption) { pending[seq] = try RecordCodec.decodeFramed(record) } catch {
                            throw .corrupt("\(segment.path) at byte \(fileOffset + Int64(used)): \(error)")
                        }
                    }
                }
                used += bytes
            case .needMore:
                if used == 0 && n < want {
                    // A record cut by the end of the file or of the synced bytes: in a closed
                    // segment that is corruption (never torn: it was synced before the next one began).
                    if limit == Int64.max {
                        throw .corrupt("\(segment.path): record cut at byte \(fileOffset)")
                    }
                    return false
                }
                fileOffset += Int64(used)
                return used > 0 || n == want
            case .corrupt(let why):
                throw .corrupt("\(segment.path) at byte \(fileOffset + Int64(used)): \(why)")
            }
        }
        fileOffset += Int64(used)
        if endOfData && limit == Int64.max { return nextSegment() }
        return used > 0
    }

    private func nextSegment() -> Bool {
        file?.closeQuietly()
        file = nil
        fileOffset = 0
        index += 1
        return true
    }

    /// Picks up segments created since the last listing; false if none.
    private func refreshSegments() -> Bool {
        let last = segments.last?.firstSeq ?? 0
        guard let all = try? SegmentFiles.list(in: directory) else { return false }
        let newer = all.filter { $0.firstSeq > last }
        guard !newer.isEmpty else { return false }
        segments = Array(segments[index...]) + newer
        index = 0
        return true
    }
}
