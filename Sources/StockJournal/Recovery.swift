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
//   5. number past the highest seq seen on disk, dropped records included,
//      so no seq that exists in an old file can ever be issued again;
//   6. expire tokens whose deadline has passed (`expired` records with the
//      next seqs, applied so the state is final, and listed for the event
//      feed).
// Then `Recovery.finish` writes a snapshot of that state and deletes every
// segment and older snapshot, so the server starts on an empty journal whose
// first seq is `nextSeq`. Because of step 5, a crash anywhere inside
// `finish` is harmless: every record left in an old segment is at or below
// the new snapshot's seq and is ignored by the next recovery, so records
// dropped after a gap can never be resurrected by a later, luckier replay.

/// A token found expired at recovery (its deadline passed while stockd was down).
public struct ExpiredAtRecovery: Sendable, Equatable {
    public var token: Token
    public var lines: [TokenLine]
    public var deadlineMs: UInt64
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
    /// Tokens expired at recovery, by deadline.
    public var expiredAtRecovery: [ExpiredAtRecovery]
    /// Time `run` took.
    public var elapsed: Duration
}

/// Rebuilding the state at startup.
public enum Recovery {
    /// Recovers `dataDirectory` (see the comment at the top of Recovery.swift).
    /// Truncates a torn tail; changes nothing else on disk.
    public static func run(dataDirectory: String, nowWallMs: UInt64) throws(JournalError) -> RecoveryResult {
        let clock = ContinuousClock()
        let start = clock.now
        try DataDirectory(dataDirectory).create()
        let loaded = try Snapshots.loadNewestValid(in: dataDirectory)
        var replayer = Replayer(state: loaded.state)
        let read = try JournalReader.readAll(directory: dataDirectory, repairTornTail: true) {
            (r, segment, offset) throws(JournalError) in try replayer.offer(r, path: segment.path, offset: offset)
        }
        var state = replayer.state
        if let bad = loaded.skipped.first, bad.file.seq > state.lastSeq {
            throw .snapshotGap(badSnapshot: bad.file.path, badSeq: bad.file.seq, usableSeq: replayer.base,
                               journalReached: state.lastSeq)
        }
        state.advance(to: replayer.highestSeen)
        let expired = try expire(&state, nowWallMs: nowWallMs)
        try state.checkInvariants()
        return RecoveryResult(
            state: state, nextSeq: state.lastSeq + 1, snapshot: loaded.file, snapshotSeq: replayer.base,
            skippedSnapshots: loaded.skipped, segments: read.segments.count, recordsRead: read.records,
            recordsReplayed: replayer.replayed, recordsCoveredBySnapshot: replayer.covered, tornTail: read.tornTail,
            gapAt: replayer.gapAt, droppedAfterGap: replayer.droppedAfterGap, highestSeqSeen: replayer.highestSeen,
            expiredAtRecovery: expired, elapsed: clock.now - start)
    }

    /// Expires every token due at `nowWallMs`, earliest deadline first, with
    /// one `expired` record per line numbered after `state.lastSeq`.
    static func expire(_ state: inout JournalState, nowWallMs: UInt64) throws(JournalError) -> [ExpiredAtRecovery] {
        let due = state.tokens.values.filter { $0.deadlineMs <= nowWallMs }.sorted {
            ($0.deadlineMs, $0.token.slot, $0.token.generation) < ($1.deadlineMs, $1.token.slot, $1.token.generation)
        }
        var out: [ExpiredAtRecovery] = []
        out.reserveCapacity(due.count)
        for t in due {
            var records: [SequencedRecord] = []
            for line in t.lines {
                let r = SequencedRecord(seq: state.lastSeq + 1, timeMs: nowWallMs,
                                        record: .expired(token: t.token, sku: line.sku, quantity: line.quantity))
                try state.apply(r)
                records.append(r)
            }
            out.append(ExpiredAtRecovery(token: t.token, lines: t.lines, deadlineMs: t.deadlineMs,
                                         customer: t.customer, records: records))
        }
        return out
    }

    /// Makes `result` the only thing on disk: writes its snapshot (durable),
    /// then deletes every segment, every older snapshot, leftover `.tmp`
    /// files and leftover prepared segments (`SegmentFiles.isPrepared`: a
    /// writer's zero-filled next segment, never used). Call after `run`,
    /// before creating the `JournalWriter`; the journal then starts empty at
    /// `result.nextSeq`.
    @discardableResult
    public static func finish(_ result: RecoveryResult, dataDirectory: String, nowWallMs: UInt64)
        throws(JournalError) -> SnapshotFile
    {
        precondition(result.state.lastSeq + 1 == result.nextSeq, "finish takes the result of run unchanged")
        let snapshot = try Snapshots.write(result.state, wallTimeMs: nowWallMs, directory: dataDirectory)
        let dir = DataDirectory(dataDirectory)
        for segment in try SegmentFiles.list(in: dataDirectory) { try dir.remove(segment.name) }
        for name in try dir.names() where SegmentFiles.isPrepared(name) { try dir.remove(name) }
        try Snapshots.removeCovered(upTo: snapshot.seq, in: dataDirectory)
        try dir.sync()
        return snapshot
    }
}
