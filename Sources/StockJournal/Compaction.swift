#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// # Compaction while the server runs
//
// Every so often the journal thread, right after a rotation, hands the
// CLOSED segments (`JournalWriter.closedSegments()`) to a background thread
// that calls `Compaction.run`:
//   1. load the newest valid snapshot (seq S0; none: the empty state at 0);
//   2. read the given segments read-only — they are closed, so fully synced:
//      a bad record is corruption (an error), never a torn tail, and nothing
//      is truncated — replaying records above S0 in seq order (`Replayer`),
//      up to the first missing seq: the contiguous run S0+1 … S. The missing
//      seq is normally in the open segment (workers' buffers reach the file
//      slightly out of order, so a closed segment can hold seqs above ones
//      the open segment holds);
//   3. if S > S0, write the snapshot of S (tmp, fsync, rename, directory fsync);
//   4. only then delete the given segments whose every record is ≤ S —
//      the oldest of them, beyond the event feed's retention budget
//      (Retention.swift) — and the snapshots (and `.tmp` leftovers) below S,
//      then fsync the directory.
// Segments holding any record above S stay; recovery (and the next
// compaction) ignores their records ≤ the snapshot's seq.
//
// Crash safety: nothing is deleted before the snapshot covering it is
// durable, and everything deleted is covered by it (records ≤ S, snapshots
// < S), so a crash at any point leaves a directory that recovers to the same
// state: before step 3 completes, the old snapshot and every segment are
// still there; after it, the new snapshot plus every record above S.
//
// A given segment that no longer exists is skipped (`segmentsMissing`):
// only a compaction deletes closed segments, and only covered ones.
//
// Concurrency: it touches only the segment files it is given, snapshot
// files and the directory's fsync — never the open segment, nor the
// writer's prepared file — so it runs alongside the writer appending,
// rotating and preparing. Run one compaction at a time (and not alongside
// `Recovery.finish`). It does not expire tokens: the snapshot is the replay
// of the records, exactly as recovery would rebuild it before its expiry step.

/// What `Compaction.run` did.
public struct CompactionResult: Sendable {
    /// The snapshot now covering the journal's start: the one written, or
    /// the existing one when nothing new could be replayed (nil: none).
    public var snapshot: SnapshotFile?
    /// Its seq (S; 0 without a snapshot).
    public var snapshotSeq: UInt64
    /// The seq of the snapshot the replay started from (S0).
    public var previousSnapshotSeq: UInt64
    /// Whether a new snapshot was written (S > S0).
    public var wroteSnapshot: Bool
    /// Segments read.
    public var segmentsRead: Int
    /// Given segments that no longer existed (deleted by an earlier
    /// compaction after they were listed): skipped.
    public var segmentsMissing: [String]
    /// Valid records read from them.
    public var recordsRead: Int
    /// Records applied on top of the previous snapshot (S − S0).
    public var recordsReplayed: Int
    /// Records at or below S0, ignored.
    public var recordsCoveredBefore: Int
    /// Records above S (after the first missing seq), left for later.
    public var recordsAfterGap: Int
    /// The first seq the given segments lack (S + 1) when records above it were read.
    public var gapAt: UInt64?
    /// Segment files deleted (paths).
    public var segmentsRemoved: [String]
    /// Given segments kept: holding records above S, or within the retention budget.
    public var segmentsKept: [String]
    /// The feed floor after the deletions (nil: nothing deleted).
    public var feedFloor: UInt64? = nil
    /// Snapshot files (and `.tmp` leftovers) deleted.
    public var snapshotsRemoved: [String]
    /// Bytes of the deleted files (segments at their preallocated size).
    public var bytesFreed: Int64
    /// Time `run` took.
    public var elapsed: Duration
}

/// Folding closed segments into a snapshot while the writer keeps appending
/// (see the comment at the top of Compaction.swift).
public enum Compaction {
    /// Compacts `closedSegments` of `dataDirectory` (comment at the top of
    /// Compaction.swift). `nowWallMs` stamps the snapshot. Throws on
    /// corruption, a replay that does not add up, or I/O failure — having
    /// deleted nothing unless the new snapshot was already durable.
    ///
    /// Covered segments are deleted only beyond `retainBytes` (newest kept,
    /// see Retention.swift); `willRaiseFloor` hears the new feed floor
    /// before any segment goes.
    public static func run(dataDirectory: String, closedSegments: [SegmentFile], nowWallMs: UInt64,
                           retainBytes: Int64 = 0, fateLimit: Int = FateMemory.defaultLimit,
                           willRaiseFloor: ((UInt64) -> Void)? = nil)
        throws(JournalError) -> CompactionResult
    {
        let clock = ContinuousClock()
        let start = clock.now
        let loaded = try Snapshots.loadNewestValid(in: dataDirectory)
        let s0 = loaded.state.lastSeq
        let (read, replayer) = try readClosed(closedSegments, onto: Replayer(state: loaded.state, fateLimit: fateLimit))

        // The snapshot of S, durable before anything goes.
        let state = replayer.state
        let s = state.lastSeq
        precondition(s == s0 + UInt64(replayer.replayed), "the replay is the contiguous run S0+1 ... S")
        precondition(replayer.gapAt.map { $0 == s + 1 } ?? true, "the records left wait behind seq S+1")
        var snapshot = loaded.file
        var wrote = false
        if s > s0 {
            try state.checkInvariants()
            snapshot = try Snapshots.write(state, wallTimeMs: nowWallMs, directory: dataDirectory)
            wrote = true
            precondition(snapshot?.seq == s, "the snapshot written covers exactly S")
        }

        var result = CompactionResult(
            snapshot: snapshot, snapshotSeq: snapshot?.seq ?? 0, previousSnapshotSeq: s0, wroteSnapshot: wrote,
            segmentsRead: read.present.count, segmentsMissing: read.missing, recordsRead: read.records,
            recordsReplayed: replayer.replayed, recordsCoveredBefore: replayer.covered,
            recordsAfterGap: replayer.droppedAfterGap, gapAt: replayer.gapAt,
            segmentsRemoved: [], segmentsKept: [], snapshotsRemoved: [], bytesFreed: 0, elapsed: .zero)
        if let covering = snapshot {
            precondition(covering.seq == s, "the covering snapshot is S's (S0's when nothing was added)")
            try removeCovered(read, by: covering, in: dataDirectory, retainBytes: retainBytes,
                              willRaiseFloor: willRaiseFloor, into: &result)
        } else {
            // No snapshot at all (nothing replayed onto the empty state): nothing is covered.
            precondition(s == 0, "records were replayed, so a snapshot was written")
            result.segmentsKept = read.present.map(\.segment.path)
        }
        result.elapsed = clock.now - start
        return result
    }

    /// What reading the closed segments found.
    struct ClosedRead {
        /// Segments read, oldest first, each with its largest seq.
        var present: [(segment: SegmentFile, maxSeq: UInt64)] = []
        /// Given segments gone since they were listed.
        var missing: [String] = []
        var records = 0
    }

    /// Reads `segments` (checksums, decoding, replay onto `start` as records arrive).
    private static func readClosed(_ segments: [SegmentFile], onto start: Replayer)
        throws(JournalError) -> (ClosedRead, Replayer)
    {
        var replayer = start
        var read = ClosedRead()
        let s0 = replayer.base
        for segment in segments.sorted() {
            let summary: SegmentSummary
            do throws(JournalError) {
                summary = try JournalReader.read(segment, isLast: false, repairTornTail: false, decodeAbove: s0,
                                                 covered: { replayer.skipCovered($0) }) {
                    (r, offset) throws(JournalError) in try replayer.offer(r, path: segment.path, offset: offset)
                }
            } catch {
                // Gone since it was listed: only a compaction deletes a closed segment, and only
                // what a durable snapshot covers. Without it the replay may stop earlier; that is all.
                if case .io("open", _, ENOENT) = error {
                    read.missing.append(segment.path)
                    continue
                }
                throw error
            }
            read.present.append((segment, summary.maxSeq))
            read.records += summary.records
        }
        return (read, replayer)
    }

    /// Deletes the segments whose every record `covering` (durable) holds,
    /// oldest first, beyond the retention budget; then older snapshots and
    /// `.tmp` leftovers of them (a crash inside `Snapshots.write`).
    private static func removeCovered(_ read: ClosedRead, by covering: SnapshotFile, in dataDirectory: String,
                                      retainBytes: Int64, willRaiseFloor: ((UInt64) -> Void)?,
                                      into result: inout CompactionResult) throws(JournalError)
    {
        let dir = DataDirectory(dataDirectory)
        var covered: [Retention.Covered] = []
        var keptBytes: Int64 = 0
        for (segment, maxSeq) in read.present {
            if maxSeq <= covering.seq {
                covered.append(Retention.Covered(segment: segment, maxSeq: maxSeq))
            } else {
                keptBytes += try dir.size(of: segment.name) ?? 0
            }
        }
        let pruned = try Retention.prune(directory: dataDirectory, covered: covered, snapshotSeq: covering.seq,
                                         keptBytes: keptBytes, retainBytes: retainBytes,
                                         willRaiseFloor: willRaiseFloor)
        result.bytesFreed += pruned.bytesFreed
        result.segmentsRemoved = pruned.removed
        result.feedFloor = pruned.floor
        result.segmentsKept = read.present.map(\.segment.path).filter { !pruned.removed.contains($0) }
        for name in try dir.names() {
            let seq = parseTwentyDigits(name, prefix: Snapshots.prefix, suffix: Snapshots.suffix)
                ?? parseTwentyDigits(name, prefix: Snapshots.prefix, suffix: Snapshots.tmpSuffix)
            if let seq, seq < covering.seq {
                precondition(name != covering.name, "never the covering snapshot")
                result.bytesFreed += try dir.size(of: name) ?? 0
                try dir.remove(name)
                result.snapshotsRemoved.append(dir.file(name))
            }
        }
        if !result.segmentsRemoved.isEmpty || !result.snapshotsRemoved.isEmpty { try dir.sync() }
    }
}
