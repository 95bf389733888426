// # The standby's journal (docs/replication.md §2, "Standby")
//
// A standby writes the records its primary streams (REPL_ROUND, PROTOCOL.md
// §10: the journal's own encoding, back to back) into its own data directory
// through the same `JournalWriter` the primary uses (same segment rules), and
// keeps a shadow `JournalState` — what it restores its core from when it is
// promoted — through a `Replayer`, exactly as recovery rebuilds one: records
// come in the order the primary wrote them, which is not seq order, and are
// applied in seq order.
//
// Two watermarks:
//   - `received`: every record up to it is appended (and, after
//     `applyDeferred`, applied: the shadow state's lastSeq);
//   - `durable`: every record up to it is appended and fdatasynced — what
//     REPL_ACK may report.
// Records above `received` wait behind the first missing seq. Applying runs
// on a thread of its own (`ShadowApplier`): the receiver appends, syncs and
// acks while the batches before are applied, so a commit on the primary never
// waits for the shadow state; `state`, `lastTimeMs`, `applyDeferred` and
// `close` wait until every appended batch is applied.
//
// # Records beyond a gap
//
// A batch is one append, so records beyond a gap are on disk before they
// count: neither watermark covers them until the gap is filled. That is safe
// because the ack names only `durable`, a gap-free prefix: the primary never
// counts them as held here. If the standby stops before the gap is filled,
// its recovery drops them (the Replayer stops at the first missing seq, and
// Recovery.finish rewrites them out of the segments), losing nothing anyone
// was told about; after the next hello the primary streams them again from
// the standby's last seq + 1. If the gap is filled, they are exactly the
// records the primary would have sent again.
//
// # Checks
//
// Before anything is written, in this order: the bytes are exactly `count`
// whole records (frame, checksum, decode) and nothing else; every seq is new
// (above `received`, not waiting, not twice in the batch); the records left
// waiting behind a gap afterwards are at most `maxPending`. Any failure there
// writes nothing and changes nothing.
//
// Whether a record applies (`JournalState.apply`) cannot be known before it
// is written: one beyond a gap is applied only when the gap fills, batches
// later. So a record the shadow state refuses (`doesNotApply`) is already on
// disk, above `received`. The state is not harmed — apply checks before it
// changes anything, so it holds every record before the refused one — but the
// histories have diverged (or the primary is broken): the log takes no more
// records, like DIVERGED, no automatic repair. The refused record was never
// acknowledged (it is above `received`, so above `durable`); recovery of this
// directory stops at it (`JournalError.replay`) until the node cuts its
// journal back (`Truncation.run(dataDirectory:keepingThrough:)` to `received`).
//
// # Starting
//
// `init` takes what recovery rebuilt from the directory, after
// `Recovery.finish` (its snapshot makes every record up to `state.lastSeq`
// durable, and it rewrites records beyond a gap out of the segments, so a
// resend of them cannot put a seq on disk twice). A standby recovers with
// nothing expired and no startup records (`nowWallMs: 0`: deadlines are wall
// ms, never 0): expiries are the primary's to journal, and a record this node
// made up would sit at a seq the primary fills with another record. After a
// lost connection the same holds: recover again and make a new log, because
// the primary resends from the last gap-free seq + 1, records this log holds
// beyond a gap included.

/// Why a batch of replicated records was refused.
public enum ReplicaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bytes are not exactly `count` whole, valid records: a bad frame,
    /// checksum or field, a count that does not match, bytes left over.
    /// Nothing was written.
    case malformed(String)
    /// A seq this log already has: at or below `received`, waiting behind a
    /// gap, or twice in the batch. Nothing was written.
    case duplicate(seq: UInt64)
    /// The shadow state refuses record `seq` (a divergent history, see the
    /// top of ReplicaLog.swift); it holds every record before it, and the log
    /// takes no more.
    case doesNotApply(seq: UInt64, reason: String)
    /// The batch would leave `waiting` records behind a gap, more than
    /// `limit` (`ReplicaLog.maxPending`). Nothing was written.
    case tooFarAhead(waiting: Int, limit: Int)
    /// Writing or syncing the journal failed (the writer refuses further use, JournalWriter).
    case journal(JournalError)

    public var description: String {
        switch self {
        case .malformed(let why): "malformed replication records: \(why)"
        case .duplicate(let seq): "replicated record seq \(seq) is already held"
        case let .doesNotApply(seq, reason): "replicated record seq \(seq) does not apply: \(reason)"
        case let .tooFarAhead(waiting, limit): "\(waiting) replicated records would wait behind a gap (limit \(limit))"
        case .journal(let e): "replica journal: \(e)"
        }
    }
}

/// The standby's side of journal replication (see the top of ReplicaLog.swift).
/// One thread uses it (the receiver).
public final class ReplicaLog {
    /// Records that may wait behind a gap by default: far above the real
    /// reordering window (a round's worker buffers), the feed's bound too.
    public static let defaultMaxPending = FeedReader.maxPending
    /// Records appended but not yet applied to the shadow state at most by default (`ShadowApplier`):
    /// beyond it `append` waits for the applier.
    public static let defaultMaxQueuedRecords = ShadowApplier.defaultMaxQueuedRecords

    /// Highest seq such that every record up to it is written and fdatasynced.
    public private(set) var durable: UInt64
    /// Highest seq such that every record up to it is appended (synced or not).
    public private(set) var received: UInt64
    /// The shadow state: every record up to `received` applied, in seq order (waits for the
    /// applier to take every batch appended so far).
    public var state: JournalState {
        applier.drained { $0.state }.value  // a refusal is kept and thrown by the next append or sync
    }
    /// The latest record time applied to the shadow state (the journal's clock, `Replayer.lastTimeMs`).
    public var lastTimeMs: UInt64 {
        applier.drained { $0.lastTimeMs }.value
    }
    /// The epoch of the term the record at `received` belongs to (REPL_HELLO's `last_epoch`; 0: none).
    public var lastEpoch: UInt64 { state.currentEpoch }
    /// The `doesNotApply` that stopped the log, once the applier met it (top of this file).
    public var refusal: ReplicaError? { applier.refused }
    /// Records appended beyond a gap, waiting for it to be filled.
    public var waiting: Int { beyond.count }
    /// The first missing seq, when records beyond it wait.
    public var gapAt: UInt64? { beyond.isEmpty ? nil : received + 1 }
    /// Seqs appended beyond the first missing one.
    private var beyond = Set<UInt64>()
    /// Most records that may wait behind a gap.
    public let maxPending: Int

    private let writer: JournalWriter
    /// Owns the shadow state's `Replayer`: appended batches are applied there, off the
    /// receiver's path (a `doesNotApply` there stops the log: every later append throws it).
    private let applier: ShadowApplier
    private var closed = false

    /// `state`: what recovery rebuilt from `directory` (after `Recovery.finish`,
    /// with nothing expired: see "Starting" at the top of this file); its
    /// lastSeq is the last gap-free seq on disk. `segmentBytes` and `fateLimit`
    /// as for the primary's writer and recovery; `lastTimeMs` the latest record time recovery saw.
    public init(directory: String, state: JournalState, segmentBytes: Int64, fateLimit: Int,
                lastTimeMs: UInt64 = 0, maxPending: Int = ReplicaLog.defaultMaxPending,
                maxQueuedRecords: Int = ReplicaLog.defaultMaxQueuedRecords) throws(JournalError) {
        precondition(maxPending >= 0, "maxPending is a count")
        writer = try JournalWriter(directory: directory, segmentBytes: segmentBytes)
        applier = ShadowApplier(replayer: Replayer(state: state, fateLimit: fateLimit, lastTimeMs: lastTimeMs),
                                maxQueuedRecords: maxQueuedRecords)
        durable = state.lastSeq
        received = state.lastSeq
        self.maxPending = maxPending
    }

    deinit {
        applier.stop()  // a log dropped without close (a failed truncation): its thread ends with it
    }

    /// Takes one batch: exactly `count` records filling `records`, in any seq
    /// order. Checks them all, appends them (one write), and queues them for
    /// the shadow state (`ShadowApplier`), holding those beyond a gap (top of this file).
    public func append(records: UnsafeRawBufferPointer, count: Int) throws(ReplicaError) {
        precondition(!closed, "no appends after close: the directory may have another writer now")
        precondition(count >= 0, "a record count is never negative (REPL_ROUND's is a u16)")
        if let refusal { throw refusal }
        let batch = try Self.parse(records, count: count)
        try checkNew(batch)
        guard !batch.isEmpty else { return }
        do throws(JournalError) { try writer.append(records) } catch { throw .journal(error) }
        if beyond.isEmpty && Self.isRun(batch, after: received) {
            received += UInt64(batch.count)  // the usual case: the primary sends in seq order
        } else {
            for r in batch { beyond.insert(r.seq) }
            while beyond.remove(received + 1) != nil { received += 1 }
        }
        // Waits while the applier is `maxQueuedRecords` behind: the acks slow down, memory does not grow.
        applier.enqueue(batch)
        assert(durable <= received, "nothing is durable that was not received")
    }

    /// Waits until every batch appended so far is applied to the shadow state, in arrival order.
    /// A record it refuses stops the log (`doesNotApply`, top of this file); with the apply after
    /// the ack, that record may have been acknowledged as held — it is, on disk — but this node's
    /// state cannot follow it, so it must never be promoted (the promotion fails on it).
    public func applyDeferred() throws(ReplicaError) {
        let (applied, refusal) = applier.drained { $0.state.lastSeq }
        if let refusal { throw refusal }
        assert(applied == received, "the shadow state holds exactly the gap-free records")
    }

    /// fdatasyncs what was appended; then `durable` is what `received` was
    /// before the sync (every record up to it was appended before it). Returns `durable`.
    @discardableResult
    public func sync() throws(ReplicaError) -> UInt64 {
        precondition(!closed, "no syncs after close")
        let through = received
        do throws(JournalError) { try writer.sync() } catch { throw .journal(error) }
        precondition(through >= durable, "durable only grows")
        durable = through
        return durable
    }

    /// Syncs and closes the writer (promotion, or shutdown); the log takes nothing afterwards.
    public func close() throws(ReplicaError) {
        precondition(!closed, "closed once")
        try applyDeferred()
        applier.stop()
        let through = received
        do throws(JournalError) { try writer.close() } catch { throw .journal(error) }
        durable = through
        closed = true
    }

    /// Decodes exactly `count` records that fill `bytes`.
    static func parse(_ bytes: UnsafeRawBufferPointer, count: Int) throws(ReplicaError) -> [SequencedRecord] {
        var out: [SequencedRecord] = []
        // `count` comes off the wire: reserve no more than the bytes can hold.
        out.reserveCapacity(min(count, bytes.count / RecordCodec.headerBytes))
        var at = 0
        while out.count < count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[at...])
            // Built only for an error: an interpolated string per record was the receiver's largest cost.
            func place() -> String { "record \(out.count + 1) of \(count) at byte \(at)" }
            switch RecordCodec.frame(rest) {
            case .needMore:
                throw .malformed(rest.isEmpty ? "\(out.count) records, not \(count)" : "\(place()) is cut short")
            case .corrupt(let why):
                throw .malformed("\(place()): \(why)")
            case .frame(let n):
                let r: SequencedRecord
                do throws(RecordCorruption) {
                    r = try RecordCodec.decodeFramed(UnsafeRawBufferPointer(rebasing: rest[0..<n]))
                } catch {
                    throw .malformed("\(place()): \(error)")
                }
                guard r.seq >= 1 else { throw .malformed("\(place()): seq 0") }
                out.append(r)
                at += n
            }
        }
        guard at == bytes.count else { throw .malformed("\(bytes.count - at) bytes after \(count) records") }
        return out
    }

    /// Every seq new, and the records waiting behind a gap afterwards within `maxPending`.
    private func checkNew(_ batch: [SequencedRecord]) throws(ReplicaError) {
        // Consecutive seqs right after `received`, nothing waiting: all new, none left waiting.
        if beyond.isEmpty && Self.isRun(batch, after: received) { return }
        var seqs = Set<UInt64>(minimumCapacity: batch.count)
        for r in batch {
            guard r.seq > received, !beyond.contains(r.seq), seqs.insert(r.seq).inserted else {
                throw .duplicate(seq: r.seq)
            }
        }
        let waiting = waitingAfter(seqs)
        guard waiting <= maxPending else { throw .tooFarAhead(waiting: waiting, limit: maxPending) }
    }

    /// Whether `batch` holds exactly the seqs `after + 1`, `after + 2`, ... in that order.
    static func isRun(_ batch: [SequencedRecord], after: UInt64) -> Bool {
        var next = after + 1
        for r in batch {
            guard r.seq == next else { return false }
            next += 1
        }
        return true
    }

    /// Records that would wait behind a gap once `seqs` (all new) are offered:
    /// those waiting now and the new ones, less the run from `received + 1`
    /// that they complete.
    private func waitingAfter(_ seqs: Set<UInt64>) -> Int {
        var next = received + 1
        while seqs.contains(next) || beyond.contains(next) { next += 1 }
        let after = beyond.count + seqs.count - Int(next - received - 1)
        assert(after >= 0, "a completed run holds only records offered")
        return after
    }
}
