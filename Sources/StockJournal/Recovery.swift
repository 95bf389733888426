#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import StockProtocol

// # Recovery
//
// `Recovery.run` rebuilds the state from the data directory:
//   1. create the directory if missing;
//   2. load the newest valid snapshot (a bad one is passed over only if the
//      journal still holds every record up to its seq — otherwise
//      `.snapshotGap`, since acknowledged changes would be lost);
//   3. read every segment, cutting a torn tail off the last one (reported);
//      corruption anywhere else stops recovery with the file and offset.
//      Zeros after the last record of a segment are its unused preallocated
//      space, not a tail to cut (JournalReader, "End of data");
//   4. replay records above the snapshot's seq in seq order, stopping at
//      the first missing seq: what follows was never acknowledged and is
//      dropped (counted);
//   5. expire tokens whose deadline has passed (`expired` records with the
//      next seqs, applied so the state is final).
// Then `Recovery.finish` makes that the journal's truth, in this order:
//   a. rewrites the segments holding dropped records without them (temp
//      file, fsync, rename): the seqs after the gap are issued again from
//      now on, so no old file may still hold them — which keeps the event
//      feed's offsets gap-free across restarts;
//   b. cuts the unused preallocated zeros off the previous run's open segment,
//      and deletes a segment that holds no record at all (a crash between the
//      writer's rename of its prepared file and its first write);
//   c. writes the startup records (the expiries of step 5, and whatever the
//      caller adds, e.g. SKUs staged from a catalog) as a segment of their
//      own, so the event feed hands them on like any other change;
//   d. writes a snapshot of the state (durable), then deletes the oldest
//      segments beyond the feed's retention budget, and older snapshots.
// A crash anywhere inside `finish` is harmless: before (a) completes the
// gap is still there and the next recovery drops the same records; after
// it they are gone; the startup segment (c) replays onto the state it was
// made from; the snapshot (d) covers every segment it lets go.

/// A token found expired at recovery (its deadline passed while stockd was down).
public struct ExpiredAtRecovery: Sendable, Equatable {
    public var token: Token
    public var lines: [TokenLine]
    public var deadlineWallMs: UInt64
    public var customer: ShortBytes
    /// The `expired` records applied for it, one per line (not in any segment;
    /// `finish`'s snapshot makes them durable).
    public var records: [SequencedRecord]
}

/// What `Recovery.run` rebuilt and found.
public struct RecoveryResult: Sendable {
    /// The final state: `state.lastSeq == nextSeq - 1`.
    public var state: JournalState
    /// The seq the server issues next.
    public var nextSeq: UInt64
    /// The snapshot the replay started from (nil: none, empty state at seq 0).
    public var snapshot: SnapshotFile?
    /// Its seq (0 without one).
    public var snapshotSeq: UInt64
    /// Newer snapshots passed over as bad (safe: the journal covered them).
    public var skippedSnapshots: [SkippedSnapshot]
    /// Segment files read.
    public var segments: Int
    /// Valid records read from them.
    public var recordsRead: Int
    /// Records applied on top of the snapshot.
    public var recordsReplayed: Int
    /// Records at or below the snapshot's seq (ignored).
    public var recordsCoveredBySnapshot: Int
    /// The torn tail cut off the last segment, if any.
    public var tornTail: TornTail?
    /// Bytes cut (0 without a torn tail).
    public var tornBytes: Int64 { tornTail?.droppedBytes ?? 0 }
    /// The first missing seq when records after it were dropped.
    public var gapAt: UInt64?
    /// Records dropped after that gap.
    public var droppedAfterGap: Int
    /// The largest seq found on disk (dropped records included).
    public var highestSeqSeen: UInt64
    /// The last seq replayed (before the expiries of step 5): records above
    /// it on disk are the dropped ones.
    public var replayedThrough: UInt64
    /// What reading each segment found (oldest first).
    public var segmentSummaries: [SegmentSummary]
    /// Tokens expired at recovery, by deadline.
    public var expiredAtRecovery: [ExpiredAtRecovery]
    /// The latest time of a record replayed (0: none; a snapshot keeps no record times).
    public var lastTimeMs: UInt64
    /// Time `run` took.
    public var elapsed: Duration
}

/// Rebuilding the state at startup.
public enum Recovery {
    /// Recovers `dataDirectory` (see the comment at the top of Recovery.swift).
    /// Truncates a torn tail; changes nothing else on disk. `fateLimit`: the
    /// core's total fate memory (decided tokens remembered, FateMemory).
    public static func run(dataDirectory: String, nowWallMs: UInt64, fateLimit: Int = FateMemory.defaultLimit)
        throws(JournalError) -> RecoveryResult
    {
        let clock = ContinuousClock()
        let start = clock.now
        try DataDirectory(dataDirectory).create()
        let loaded = try Snapshots.loadNewestValid(in: dataDirectory)
        var replayer = Replayer(state: loaded.state, fateLimit: fateLimit)
        let base = replayer.base
        let read = try JournalReader.readAll(directory: dataDirectory, repairTornTail: true, decodeAbove: base,
                                             covered: { replayer.skipCovered($0) }) {
            (r, segment, offset) throws(JournalError) in try replayer.offer(r, path: segment.path, offset: offset)
        }
        var state = replayer.state
        precondition(base == (loaded.file?.seq ?? 0), "the replay starts at the snapshot's seq")
        precondition(state.lastSeq == base + UInt64(replayer.replayed), "step 4 applied one seq per record, no gaps")
        precondition(replayer.gapAt.map { $0 == state.lastSeq + 1 } ?? (replayer.droppedAfterGap == 0),
                     "only records behind the first missing seq are dropped")
        precondition(replayer.highestSeen >= state.lastSeq)
        if let bad = loaded.skipped.first, bad.file.seq > state.lastSeq {
            throw .snapshotGap(badSnapshot: bad.file.path, badSeq: bad.file.seq, usableSeq: replayer.base,
                               journalReached: state.lastSeq)
        }
        let replayedThrough = state.lastSeq
        let expired = try expire(&state, nowWallMs: nowWallMs)
        precondition(state.lastSeq == replayedThrough + UInt64(expired.reduce(0) { $0 + $1.records.count }),
                     "step 5's expiries number right after the replay")
        precondition(state.tokens.values.allSatisfy { $0.deadlineWallMs > nowWallMs },
                     "after step 5 no live token is past its deadline")
        try state.checkInvariants()
        return RecoveryResult(
            state: state, nextSeq: state.lastSeq + 1, snapshot: loaded.file, snapshotSeq: replayer.base,
            skippedSnapshots: loaded.skipped, segments: read.segments.count, recordsRead: read.records,
            recordsReplayed: replayer.replayed, recordsCoveredBySnapshot: replayer.covered, tornTail: read.tornTail,
            gapAt: replayer.gapAt, droppedAfterGap: replayer.droppedAfterGap, highestSeqSeen: replayer.highestSeen,
            replayedThrough: replayedThrough, segmentSummaries: read.segments, expiredAtRecovery: expired,
            lastTimeMs: replayer.lastTimeMs, elapsed: clock.now - start)
    }

    /// Expires every token due at `nowWallMs`, earliest deadline first, with
    /// one `expired` record per line numbered after `state.lastSeq`.
    public static func expire(_ state: inout JournalState, nowWallMs: UInt64) throws(JournalError) -> [ExpiredAtRecovery] {
        let due = state.tokens.values.filter { $0.deadlineWallMs <= nowWallMs }.sorted {
            ($0.deadlineWallMs, $0.token.slot, $0.token.generation) < ($1.deadlineWallMs, $1.token.slot, $1.token.generation)
        }
        var out: [ExpiredAtRecovery] = []
        out.reserveCapacity(due.count)
        for t in due {
            var records: [SequencedRecord] = []
            for (i, line) in t.lines.enumerated() {
                let r = SequencedRecord(seq: state.lastSeq + 1, timeMs: nowWallMs,
                                        record: .expired(token: t.token, sku: line.sku, quantity: line.quantity,
                                                         customer: t.customer, line: UInt8(truncatingIfNeeded: i),
                                                         lines: UInt8(truncatingIfNeeded: t.lines.count)))
                try state.apply(r)
                records.append(r)
            }
            out.append(ExpiredAtRecovery(token: t.token, lines: t.lines, deadlineWallMs: t.deadlineWallMs,
                                         customer: t.customer, records: records))
        }
        return out
    }

    /// Makes `result` the journal's truth (steps a-d at the top of this
    /// file): `startupRecords` are records the caller applied to
    /// `result.state` after `run` (numbered right after the expiries);
    /// `retainBytes` is the event feed's retention budget for covered
    /// segments (0: keep none, as before the feed existed). Call after
    /// `run`, before creating the `JournalWriter`, which then continues at
    /// `result.nextSeq`. Returns the snapshot and the feed floor.
    @discardableResult
    public static func finish(_ result: RecoveryResult, dataDirectory: String, nowWallMs: UInt64,
                              startupRecords: [SequencedRecord] = [], retainBytes: Int64 = 0)
        throws(JournalError) -> (snapshot: SnapshotFile, feedFloor: UInt64)
    {
        precondition(result.state.lastSeq + 1 == result.nextSeq, "finish takes the state of run (plus startupRecords)")
        let dir = DataDirectory(dataDirectory)
        var covered: [Retention.Covered] = []
        // a, b: dropped records out; the last segment's unused zeros off.
        for (i, summary) in result.segmentSummaries.enumerated() {
            let isLast = i == result.segmentSummaries.count - 1
            if summary.records == 0 {
                // A segment without a record: the writer renames its prepared (zero-filled) file into
                // place before the first write, so a crash between the two leaves one. It holds
                // nothing, and its name is the seq issued next: the next writer must be able to take it.
                try dir.remove(summary.segment.name)
                continue
            }
            var maxSeq = summary.maxSeq
            if summary.maxSeq > result.replayedThrough {
                precondition(result.gapAt != nil, "records above the replay exist only behind a gap")
                maxSeq = try rewrite(summary.segment, keepingThrough: result.replayedThrough)
            } else if isLast && summary.zeroTailBytes > 0 {
                let f = try PosixFile.open(summary.segment.path, O_RDWR)
                defer { f.closeQuietly() }
                try f.truncate(to: summary.validBytes)
                try f.syncAll()
            }
            precondition(maxSeq <= result.replayedThrough, "after (a) no file holds a seq that will be issued again")
            covered.append(Retention.Covered(segment: summary.segment, maxSeq: maxSeq))
        }
        // c: the startup records, as a segment of their own.
        let startup = result.expiredAtRecovery.flatMap(\.records) + startupRecords
        if let first = startup.first {
            precondition(first.seq == result.replayedThrough + 1 && startup.last!.seq == result.nextSeq - 1,
                         "startup records must number replayedThrough+1 ... nextSeq-1")
            let writer = try JournalWriter(directory: dataDirectory, preallocate: false)
            let buffer = RecordBuffer(capacity: startup.count * 128)
            for r in startup { RecordCodec.encode(r, into: buffer) }
            try writer.append(buffer)
            try writer.close()
            let name = SegmentFiles.name(firstSeq: first.seq)
            covered.append(Retention.Covered(segment: SegmentFile(name: name, path: dir.file(name), firstSeq: first.seq),
                                             maxSeq: result.nextSeq - 1))
        }
        // d: the snapshot, then what it lets go.
        let snapshot = try Snapshots.write(result.state, wallTimeMs: nowWallMs, directory: dataDirectory)
        precondition(snapshot.seq == result.nextSeq - 1, "the snapshot covers every segment, startup one included")
        let pruned = try Retention.prune(directory: dataDirectory, covered: covered, snapshotSeq: snapshot.seq,
                                         keptBytes: 0, retainBytes: retainBytes)
        for name in try dir.names() where SegmentFiles.isPrepared(name) || name.hasSuffix(".rewrite") {
            try dir.remove(name)  // a writer's unused next segment; a rewrite cut short by a crash
        }
        try Snapshots.removeCovered(upTo: snapshot.seq, in: dataDirectory, segments: false)
        try dir.sync()
        let floor: UInt64
        if covered.count == pruned.removed.count {
            floor = try FeedFloor.raise(directory: dataDirectory, to: result.nextSeq)  // nothing left to serve
        } else {
            floor = try FeedFloor.read(directory: dataDirectory) ?? oldestRetained(covered, removed: pruned.removed)
        }
        precondition(floor >= 1 && floor <= result.nextSeq, "the feed floor is an offset the journal has or issues next")
        return (snapshot, floor)
    }

    /// Without a floor file (a directory that never deleted under retention):
    /// the smallest seq of the oldest segment kept.
    private static func oldestRetained(_ covered: [Retention.Covered], removed: [String]) -> UInt64 {
        let kept = covered.filter { !removed.contains($0.segment.path) }.sorted { $0.segment < $1.segment }
        return kept.first.map { $0.segment.firstSeq } ?? 1
    }

    /// Rewrites `segment` with only its records at or below `seq` (temp
    /// file, fsync, rename over, directory fsync); returns their largest seq.
    static func rewrite(_ segment: SegmentFile, keepingThrough seq: UInt64) throws(JournalError) -> UInt64 {
        let buffer = RecordBuffer(capacity: 1 << 20)
        var maxSeq: UInt64 = 0
        _ = try JournalReader.read(segment, isLast: false, repairTornTail: false) { (r, _) throws(JournalError) in
            guard r.seq <= seq else { return }
            RecordCodec.encode(r, into: buffer)
            maxSeq = max(maxSeq, r.seq)
        }
        assert(maxSeq <= seq)
        let dir = DataDirectory(segment.path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            .joined(separator: "/"))
        let tmp = segment.name + ".rewrite"
        try dir.remove(tmp)
        let f = try PosixFile.open(dir.file(tmp), O_WRONLY | O_CREAT | O_EXCL)
        do throws(JournalError) {
            try buffer.withUnsafeBytes { (b) throws(JournalError) in try f.writeAll(b) }
            try f.syncAll()
            try f.close()
        } catch {
            f.closeQuietly()
            throw error
        }
        try dir.rename(tmp, to: segment.name)
        try dir.sync()
        return maxSeq
    }
}
