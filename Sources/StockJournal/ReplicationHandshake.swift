/// The primary's answer to a REPL_HELLO (PROTOCOL.md §10).
public enum HandshakeDecision: Sendable, Equatable {
    /// The standby's journal is a prefix of the primary's: send records from `from` on (OK, `start`).
    case stream(from: UInt64)
    /// The standby holds records the primary does not: it must cut its journal back to `to` (TRUNCATE_TO).
    case truncate(to: UInt64)
    /// The standby's last term is not in the primary's history: no automatic repair (DIVERGED).
    case diverged
    /// The standby has seen a newer epoch than the primary's own: this primary is stale (STALE_EPOCH).
    case staleEpoch
}

/// The divergence check of docs/replication.md §3 ("Divergent histories"),
/// as a pure function of the primary's epoch history and the hello.
///
/// Why it is safe (§3): the primary's journal is the one history, and it
/// holds every committed record (it was in the ISR when promoted). A term's
/// records are all written by that term's one primary and reach every node
/// in one stream, so two nodes that both hold records of term e agree on
/// them up to where the shorter one ends. Hence a standby whose last record
/// is (e, seq) holds a prefix of the primary's journal iff seq ≤ end(e),
/// the primary's last seq of term e; above it, it holds records of e the
/// primary never got — never committed, so cutting them loses nothing
/// acknowledged. An epoch the primary has no start record of is a history
/// it cannot judge: diverged, never a guessed cut point.
public enum ReplicationHandshake {
    /// `primaryEpoch`: the primary's term; `history`: its epoch history
    /// (JournalState.epochs); `primaryLastSeq`: the last seq it holds. The
    /// rest is the standby's REPL_HELLO: the highest epoch it has seen, and
    /// its last gap-free record's term (`lastEpoch`, 0: before any term
    /// start) and seq (`lastSeq`; both 0 for an empty journal).
    public static func decide(primaryEpoch: UInt64, history: [TermStart], primaryLastSeq: UInt64,
                              highestEpoch: UInt64, lastEpoch: UInt64, lastSeq: UInt64) -> HandshakeDecision {
        assert((history.last?.epoch ?? 0) <= primaryEpoch && (history.last?.firstSeq ?? 0) <= primaryLastSeq,
               "the primary's history is its own journal's, up to its own term")
        // A standby holding a record of an epoch has seen it, whatever its highest-epoch field says.
        guard max(highestEpoch, lastEpoch) <= primaryEpoch else { return .staleEpoch }
        if lastEpoch == 0 && lastSeq == 0 { return .stream(from: 1) }
        guard let end = termEnd(lastEpoch, lastSeq: lastSeq, history: history, primaryLastSeq: primaryLastSeq)
        else { return .diverged }
        return lastSeq <= end ? .stream(from: lastSeq + 1) : .truncate(to: end)
    }

    /// end(e) in the primary's journal for a standby whose last record is
    /// (`epoch`, `lastSeq`); nil when the primary cannot place that record.
    private static func termEnd(_ epoch: UInt64, lastSeq: UInt64, history: [TermStart],
                                primaryLastSeq: UInt64) -> UInt64? {
        guard epoch != 0 else {
            // Records before any term start (a journal begun before replication, the one every node of the
            // cluster was made from): that "term" ends where the primary's first term starts.
            return history.first.map { $0.firstSeq - 1 } ?? primaryLastSeq
        }
        guard let term = JournalState.term(epoch, in: history, lastSeq: primaryLastSeq) else { return nil }
        // A record of term e lies at or after e's start record; a hello below it names no record the primary
        // could have sent, so it is not a history the primary shares.
        return lastSeq >= term.start ? term.end : nil
    }
}
