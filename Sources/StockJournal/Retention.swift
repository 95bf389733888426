#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// # Retention: which segments outlive their snapshot
//
// A segment whose every record a durable snapshot covers is no longer
// needed for recovery, but the event feed serves offsets from segment
// files, so covered segments are kept — the newest first — up to a byte
// budget (`--feed-retention`), and only older ones are deleted.
//
// The **feed floor** is the oldest offset the feed can still serve: every
// record at or above it is in a segment file. Deleting a segment raises it
// past the largest seq the segment held. It lives in a small file of its
// own (`feed-floor`, decimal), raised durably *before* a deletion, so that
// after a crash the floor is never below what is really on disk.

/// The feed floor file of a data directory.
public enum FeedFloor {
    public static let fileName = "feed-floor"

    /// The stored floor, or nil when the directory never deleted a segment
    /// under this scheme.
    public static func read(directory: String) throws(JournalError) -> UInt64? {
        try DurableCounter.read(directory: directory, fileName: fileName)
    }

    /// Makes `seq` the stored floor if it is higher (temp file, fsync,
    /// rename, directory fsync). Returns the floor now stored.
    @discardableResult
    public static func raise(directory: String, to seq: UInt64) throws(JournalError) -> UInt64 {
        try DurableCounter.raise(directory: directory, fileName: fileName, to: seq, initial: 1)
    }
}

/// A number in a small file of its own (decimal) that only goes up, durably:
/// the feed floor, and a node's highest epoch seen (NodeEpoch).
enum DurableCounter {
    /// The stored value, or nil when the file does not exist. A value below 1 is corruption.
    static func read(directory: String, fileName: String) throws(JournalError) -> UInt64? {
        let path = DataDirectory(directory).file(fileName)
        let f: PosixFile
        do throws(JournalError) { f = try PosixFile.open(path, O_RDONLY) } catch {
            if case .io(_, _, ENOENT) = error { return nil }
            throw error
        }
        defer { f.closeQuietly() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 32, alignment: 1)
        defer { buffer.deallocate() }
        let n = try f.read(into: buffer.baseAddress!, count: 32, at: 0)
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: buffer[0..<n]), as: UTF8.self).trimmingNewline
        guard let v = UInt64(text), v >= 1 else {
            throw .corrupt(path: path, offset: 0, reason: "not a positive number: \(text)")
        }
        return v
    }

    /// Stores `value` if it is above the stored one (`initial` when there is
    /// none): temp file, fsync, rename, directory fsync. Returns what is stored.
    static func raise(directory: String, fileName: String, to value: UInt64, initial: UInt64)
        throws(JournalError) -> UInt64
    {
        let current = try read(directory: directory, fileName: fileName) ?? initial
        guard value > current else { return current }
        let dir = DataDirectory(directory)
        let tmp = fileName + ".tmp"
        try dir.remove(tmp)
        let f = try PosixFile.open(dir.file(tmp), O_WRONLY | O_CREAT | O_EXCL)
        do throws(JournalError) {
            let text = Array("\(value)\n".utf8)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: text.count, alignment: 1)
            defer { buffer.deallocate() }
            buffer.copyBytes(from: text)
            try f.writeAll(UnsafeRawBufferPointer(buffer))
            try f.syncAll()
            try f.close()
        } catch {
            f.closeQuietly()
            throw error
        }
        try dir.rename(tmp, to: fileName)
        try dir.sync()
        let stored = try read(directory: directory, fileName: fileName)
        precondition(stored == value, "the stored value is the one written")
        return value
    }
}

/// The highest replication epoch a node has seen (docs/replication.md §3):
/// stored before the node acts on a frame of a new epoch, so that after a
/// restart it still refuses every frame of a lower one.
public enum NodeEpoch {
    public static let fileName = "epoch"

    /// The stored epoch; 0 when the node has never seen one.
    public static func read(directory: String) throws(JournalError) -> UInt64 {
        try DurableCounter.read(directory: directory, fileName: fileName) ?? 0
    }

    /// Stores `epoch` if it is above the stored one; returns the epoch now
    /// stored (higher than `epoch` means `epoch` is stale).
    @discardableResult
    public static func raise(directory: String, to epoch: UInt64) throws(JournalError) -> UInt64 {
        precondition(epoch >= 1, "epochs are etcd revisions, from 1")
        return try DurableCounter.raise(directory: directory, fileName: fileName, to: epoch, initial: 0)
    }
}

/// Deleting covered segments beyond the retention budget.
public enum Retention {
    /// A segment that a snapshot covers, with what deleting it needs.
    public struct Covered: Sendable {
        public var segment: SegmentFile
        /// Its largest seq (the floor goes above it when it is deleted).
        public var maxSeq: UInt64
        public init(segment: SegmentFile, maxSeq: UInt64) {
            self.segment = segment
            self.maxSeq = maxSeq
        }
    }

    /// What `prune` did.
    public struct Pruned: Sendable {
        public var removed: [String] = []
        public var bytesFreed: Int64 = 0
        /// The floor after pruning (nil: unchanged, nothing deleted).
        public var floor: UInt64?
    }

    /// Deletes the oldest of `covered` (every one covered by the durable
    /// snapshot of `snapshotSeq`: checked, a segment holding a record above
    /// it is a caller's bug that would lose acknowledged changes) until the
    /// covered ones left take at most `retainBytes`.
    /// `keptBytes`: bytes of other segments (not covered, or open) that
    /// count against the budget too. Raises the floor durably first, and
    /// tells `willRaiseFloor` before deleting anything. Does not fsync the
    /// directory afterwards (the caller does, once for all its changes).
    public static func prune(directory: String, covered: [Covered], snapshotSeq: UInt64, keptBytes: Int64,
                             retainBytes: Int64, willRaiseFloor: ((UInt64) -> Void)? = nil)
        throws(JournalError) -> Pruned
    {
        for c in covered {
            precondition(c.maxSeq <= snapshotSeq, "deleting \(c.segment.name): the snapshot does not cover it")
        }
        precondition(keptBytes >= 0 && retainBytes >= 0, "byte counts are never negative")
        let dir = DataDirectory(directory)
        let sorted = covered.sorted { $0.segment < $1.segment }
        var sizes: [Int64] = []
        for c in sorted { sizes.append(try dir.size(of: c.segment.name) ?? 0) }
        var total = keptBytes + sizes.reduce(0, +)
        var cut = 0
        // Empty files (a rewrite that kept nothing) hold nothing to serve: they go too.
        while cut < sorted.count && (total > retainBytes || sizes[cut] == 0) {
            total -= sizes[cut]
            cut += 1
        }
        var result = Pruned()
        guard cut > 0 else { return result }
        // Every record of the deleted segments goes below the floor; a
        // segment overlaps its neighbours by a few records, so the floor is
        // the largest seq of any deleted one, plus one.
        let floor = sorted[0..<cut].map(\.maxSeq).max()! + 1
        precondition(floor <= snapshotSeq + 1, "the floor never passes what the snapshot covers")
        willRaiseFloor?(floor)
        result.floor = try FeedFloor.raise(directory: directory, to: floor)
        precondition(result.floor! >= floor, "the floor is durable at or above every deleted record before any goes")
        for i in 0..<cut {
            try dir.remove(sorted[i].segment.name)
            result.removed.append(sorted[i].segment.path)
            result.bytesFreed += sizes[i]
        }
        return result
    }
}

extension String {
    var trimmingNewline: String {
        var s = self
        while let last = s.last, last == "\n" || last == "\r" || last == "\0" { s.removeLast() }
        return s
    }
}
