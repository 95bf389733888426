/// Feeds records, in whatever order the segments hold them, to a
/// `JournalState` in seq order, stopping at the first missing seq.
///
/// Records arrive almost sorted (each worker's buffer is in order; buffers
/// interleave within a batch or two), so a record is applied as soon as it
/// is the next seq and otherwise waits in `pending` until its predecessors
/// arrive. Memory stays at the reordering window — unless a seq is missing,
/// in which case everything after it waits and is finally dropped: those
/// records were never acknowledged (a response waits for every record up to
/// its own to be durable).
///
/// Recovery and verification use it; the server can use it too, to keep a
/// shadow state for snapshots from records in the order batches hand them over.
public struct Replayer: Sendable {
    /// The state: every record up to `state.lastSeq` applied.
    public private(set) var state: JournalState
    /// The seq the starting state covers (its snapshot's).
    public let base: UInt64
    private var pending: [UInt64: SequencedRecord] = [:]
    /// Records applied.
    public private(set) var replayed = 0
    /// Records at or below `base` (already in the snapshot), ignored.
    public private(set) var covered = 0
    /// Largest seq offered, applied or not (`base` if larger).
    public private(set) var highestSeen: UInt64
    /// The latest `timeMs` of the records applied (`lastTimeMs` given to init if later): the
    /// journal's own clock, which a promotion never lets run backwards (docs/replication.md §5).
    public private(set) var lastTimeMs: UInt64

    /// Starts from `state` (a snapshot's, or empty); records up to its `lastSeq` are ignored.
    /// `fateLimit`, when given, bounds the decided tokens remembered (FateMemory).
    public init(state: JournalState, fateLimit: Int? = nil, lastTimeMs: UInt64 = 0) {
        self.lastTimeMs = lastTimeMs
        var state = state
        if let fateLimit { state.fateLimit = fateLimit }
        self.state = state
        base = state.lastSeq
        highestSeen = state.lastSeq
    }

    /// Takes one record (read at `offset` of `path`, for error messages):
    /// applies it and any waiting successors if it is the next seq, keeps it
    /// otherwise. Throws on a duplicate seq or a record that does not apply.
    public mutating func offer(_ r: SequencedRecord, path: String, offset: Int64) throws(JournalError) {
        highestSeen = max(highestSeen, r.seq)
        if r.seq <= base {
            covered += 1
            return
        }
        let next = state.lastSeq + 1
        if r.seq == next {
            try state.apply(r)
            replayed += 1
            lastTimeMs = max(lastTimeMs, r.timeMs)
            try drain()
            checkProgress()
        } else if r.seq < next || pending.updateValue(r, forKey: r.seq) != nil {
            throw .duplicateSeq(seq: r.seq, path: path, offset: offset)
        }
    }

    /// A record at or below `base` that the reader did not decode (the snapshot holds it).
    public mutating func skipCovered(_ seq: UInt64) {
        precondition(seq <= base, "only covered records may be skipped undecoded")
        highestSeen = max(highestSeen, seq)
        covered += 1
    }

    private mutating func drain() throws(JournalError) {
        while !pending.isEmpty, let r = pending.removeValue(forKey: state.lastSeq + 1) {
            try state.apply(r)
            replayed += 1
            lastTimeMs = max(lastTimeMs, r.timeMs)
        }
        assert(pending[state.lastSeq + 1] == nil, "drained up to the next missing seq")
    }

    /// What must hold after every applied record: the state moved exactly
    /// one seq per record applied, past nothing the replay has not seen.
    private func checkProgress() {
        precondition(state.lastSeq == base + UInt64(replayed), "one seq per record applied, no gaps")
        precondition(highestSeen >= state.lastSeq, "nothing applied beyond what was offered")
    }

    /// The first missing seq, if records after it are waiting.
    public var gapAt: UInt64? { pending.isEmpty ? nil : state.lastSeq + 1 }
    /// Records waiting behind the gap (dropped when reading ends).
    public var droppedAfterGap: Int { pending.count }
    /// Whether record `seq` is waiting behind the gap (offered, not applied yet).
    func isPending(_ seq: UInt64) -> Bool { pending[seq] != nil }
}
