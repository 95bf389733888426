// # Truncation: cutting a journal back to a sequence number
//
// A node that rejoins a replicated cluster may hold records the new primary
// never received — it journaled them as primary, or received them from one,
// and they were never committed (docs/replication.md §3, "Divergent
// histories"). Before it follows the new primary it cuts its journal back
// to the last seq both share: `Truncation.run(dataDirectory:keepingThrough:)`.
//
// Offline only: no writer may be running on the directory (stockd holds its
// lock; this runs before recovery, or from a tool).
//
//   1. Read every segment (cutting a torn tail off the last one, as recovery
//      does) and check that the records ≤ S that must survive are all there:
//      the newest snapshot ≤ S plus a gap-free run of records up to S. A
//      snapshot above S whose segments compaction already deleted would
//      make that impossible: then nothing is changed and `.snapshotGap` says so.
//   2. Delete the snapshots above S, and fsync the directory — first, so a
//      crash cannot leave a snapshot that includes cut records beside
//      segments that no longer hold them.
//   3. Rewrite each segment holding records above S without them (temp file,
//      fsync, rename: Recovery.rewrite); delete a segment left empty, and the
//      writer's prepared file; fsync the directory.
// A crash part-way leaves a directory that recovers to a state at or above S
// that is a prefix of the old one; running the truncation again finishes it.

/// What `Truncation.run` did.
public struct TruncationResult: Sendable, Equatable {
    /// The seq kept through (S).
    public var keptThrough: UInt64
    /// The largest seq on disk before (the records above S were cut).
    public var highestBefore: UInt64
    /// Records cut (those above S).
    public var recordsCut: Int
    /// Segments rewritten without their records above S.
    public var segmentsRewritten: [String]
    /// Segments deleted (every record in them was above S).
    public var segmentsRemoved: [String]
    /// Snapshots deleted (they covered records above S).
    public var snapshotsRemoved: [String]
}

public enum Truncation {
    /// Cuts every record above `seq` out of `dataDirectory` (see the top of Truncation.swift).
    public static func run(dataDirectory: String, keepingThrough seq: UInt64) throws(JournalError) -> TruncationResult {
        let dir = DataDirectory(dataDirectory)
        let snapshots = try Snapshots.list(in: dataDirectory)
        let base = snapshots.last { $0.seq <= seq }?.seq ?? 0
        var present = Set<UInt64>()
        var highest: UInt64 = 0
        var cut = 0
        let read = try JournalReader.readAll(directory: dataDirectory, repairTornTail: true) {
            (r, _, _) throws(JournalError) in
            highest = max(highest, r.seq)
            if r.seq > seq { cut += 1 } else if r.seq > base { present.insert(r.seq) }
        }
        // 1. What survives must be whole: the snapshot at `base`, then base+1 ... seq.
        if present.count != Int(seq - base) {
            let reached = (base + 1...max(base + 1, seq)).first { !present.contains($0) }.map { $0 - 1 } ?? seq
            let bad = snapshots.first { $0.seq > seq }
            throw .snapshotGap(badSnapshot: bad?.path ?? "(none)", badSeq: bad?.seq ?? seq, usableSeq: base,
                               journalReached: reached)
        }
        precondition(present.count == Int(seq - base), "records base+1 ... S all present")

        // 2. Snapshots above S go first.
        var result = TruncationResult(keptThrough: seq, highestBefore: max(highest, snapshots.last?.seq ?? 0),
                                      recordsCut: cut, segmentsRewritten: [], segmentsRemoved: [],
                                      snapshotsRemoved: [])
        for s in snapshots where s.seq > seq {
            try dir.remove(s.name)
            result.snapshotsRemoved.append(s.path)
        }
        if !result.snapshotsRemoved.isEmpty { try dir.sync() }

        // 3. Segments without their records above S.
        for summary in read.segments where summary.maxSeq > seq {
            let kept = try Recovery.rewrite(summary.segment, keepingThrough: seq)
            precondition(kept <= seq, "a rewritten segment holds nothing above S")
            if try dir.size(of: summary.segment.name) == 0 {
                try dir.remove(summary.segment.name)
                result.segmentsRemoved.append(summary.segment.path)
            } else {
                result.segmentsRewritten.append(summary.segment.path)
            }
        }
        for name in try dir.names() where SegmentFiles.isPrepared(name) || name.hasSuffix(".rewrite") {
            try dir.remove(name)
        }
        try dir.sync()
        return result
    }
}
