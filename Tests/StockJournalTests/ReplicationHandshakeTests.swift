import StockJournal
import StockProtocol
import Testing
import TestSupport

/// The primary's answer to a REPL_HELLO (docs/replication.md §3 "Divergent
/// histories", PROTOCOL.md §10): a table of hellos against one history, and
/// generated histories against an oracle that scans the records.
@Suite("Replication handshake", .cpuHeavy)
struct ReplicationHandshakeTests {
    static let node = ShortBytes("node-a")!

    /// Terms 3 (seqs 11...40), 7 (41...100) and 12 (101...150, current); seqs 1...10 before any term.
    static let history = [TermStart(epoch: 3, firstSeq: 11, node: node), TermStart(epoch: 7, firstSeq: 41, node: node),
                          TermStart(epoch: 12, firstSeq: 101, node: node)]

    struct Hello: Sendable, CustomTestStringConvertible {
        var highest: UInt64
        var epoch: UInt64
        var seq: UInt64
        var expected: HandshakeDecision
        var why: String
        var testDescription: String { "(\(highest), \(epoch), \(seq)) → \(expected): \(why)" }

        init(_ highest: UInt64, _ epoch: UInt64, _ seq: UInt64, _ expected: HandshakeDecision, _ why: String) {
            self.highest = highest
            self.epoch = epoch
            self.seq = seq
            self.expected = expected
            self.why = why
        }
    }

    static let table: [Hello] = [
        Hello(13, 12, 150, .staleEpoch, "the standby has heard of a newer primary"),
        Hello(13, 0, 0, .staleEpoch, "stale before anything else, empty journal too"),
        Hello(12, 13, 151, .staleEpoch, "it holds a record of a newer term"),
        Hello(0, 0, 0, .stream(from: 1), "empty journal"),
        Hello(12, 0, 0, .stream(from: 1), "empty journal that has seen epochs"),
        Hello(0, 0, 5, .stream(from: 6), "before any term: a prefix of the primary's seqs 1...10"),
        Hello(0, 0, 10, .stream(from: 11), "before any term, up to the first term start"),
        Hello(0, 0, 11, .truncate(to: 10), "before any term, beyond the first term start"),
        Hello(3, 3, 11, .stream(from: 12), "term 3's start record only"),
        Hello(12, 3, 40, .stream(from: 41), "term 3 to its end"),
        Hello(3, 3, 41, .truncate(to: 40), "term 3 past where the primary's term 3 ended"),
        Hello(3, 3, 500, .truncate(to: 40), "far past it"),
        Hello(7, 7, 100, .stream(from: 101), "term 7 to its end"),
        Hello(7, 7, 101, .truncate(to: 100), "term 7, one record past its end"),
        Hello(12, 12, 120, .stream(from: 121), "the current term"),
        Hello(12, 12, 150, .stream(from: 151), "caught up"),
        Hello(12, 12, 151, .truncate(to: 150), "the current term past the primary's last seq"),
        Hello(12, 12, 10_000, .truncate(to: 150), "far past it"),
        Hello(12, 5, 45, .diverged, "an epoch between two known ones"),
        Hello(12, 1, 5, .diverged, "an epoch below the first"),
        Hello(12, 11, 120, .diverged, "an epoch just below the current one"),
        Hello(12, 7, 30, .diverged, "a record of term 7 before term 7 started"),
        Hello(12, 3, 0, .diverged, "a term and no record"),
    ]

    @Test(arguments: table)
    func decision(_ hello: Hello) {
        let d = ReplicationHandshake.decide(primaryEpoch: 12, history: Self.history, primaryLastSeq: 150,
                                            highestEpoch: hello.highest, lastEpoch: hello.epoch, lastSeq: hello.seq)
        #expect(d == hello.expected, "\(hello.why)")
    }

    /// Records before any term, against a primary without one (its end is its last seq) and one whose
    /// journal begins with a term start (nothing before it is shared).
    @Test func beforeAnyTerm() {
        func decide(_ history: [TermStart], _ lastSeq: UInt64) -> HandshakeDecision {
            ReplicationHandshake.decide(primaryEpoch: 4, history: history, primaryLastSeq: 60, highestEpoch: 4,
                                        lastEpoch: 0, lastSeq: lastSeq)
        }
        #expect(decide([], 50) == .stream(from: 51))
        #expect(decide([], 60) == .stream(from: 61))
        #expect(decide([], 61) == .truncate(to: 60))
        let fromOne = [TermStart(epoch: 4, firstSeq: 1, node: Self.node)]
        #expect(decide(fromOne, 3) == .truncate(to: 0))
        #expect(decide(fromOne, 0) == .stream(from: 1))
    }

    /// The highest epoch equal to the primary's is not stale; one above is, whatever the journal holds.
    @Test func staleOnlyAbove() {
        func decide(_ highest: UInt64, _ lastEpoch: UInt64, _ lastSeq: UInt64) -> HandshakeDecision {
            ReplicationHandshake.decide(primaryEpoch: 12, history: Self.history, primaryLastSeq: 150,
                                        highestEpoch: highest, lastEpoch: lastEpoch, lastSeq: lastSeq)
        }
        for highest: UInt64 in [0, 1, 12] { #expect(decide(highest, 12, 150) == .stream(from: 151)) }
        for highest: UInt64 in [13, .max] { #expect(decide(highest, 3, 11) == .staleEpoch) }
    }

    /// Generated histories with many terms: a standby holding any prefix of
    /// the primary's journal streams from right after it; one holding a term's
    /// records plus some the primary never got of that term is cut back to
    /// where the primary's term ended; an epoch the primary never had is
    /// diverged. The oracle finds terms by scanning the records.
    @Test(arguments: 1...3 as ClosedRange<UInt64>)
    func generatedHistories(seed: UInt64) throws {
        var gen = HistoryGenerator(seed: 0x4A4D_0000 + seed)
        gen.termPerMille = 30
        let records = gen.generate(1500)
        let primary = try replay(records)
        let starts = records.compactMap { r -> (epoch: UInt64, seq: UInt64)? in
            if case let .termStarted(e, _) = r.record { return (e, r.seq) } else { return nil }
        }
        #expect(starts.count >= 10 && primary.epochs.count == starts.count)
        let epoch = primary.currentEpoch, last = primary.lastSeq
        func decide(_ lastEpoch: UInt64, _ lastSeq: UInt64) -> HandshakeDecision {
            ReplicationHandshake.decide(primaryEpoch: epoch, history: primary.epochs, primaryLastSeq: last,
                                        highestEpoch: epoch, lastEpoch: lastEpoch, lastSeq: lastSeq)
        }
        /// The epoch of the term record `seq` belongs to (0: before any).
        func termOf(_ seq: UInt64) -> UInt64 { starts.last { $0.seq <= seq }?.epoch ?? 0 }

        for k in 0...last {
            #expect(decide(termOf(k), k) == .stream(from: k + 1), "prefix \(k)")
        }
        for (i, start) in starts.enumerated() {
            let end = i + 1 < starts.count ? starts[i + 1].seq - 1 : last
            for extra: UInt64 in [1, 2, 50] {
                #expect(decide(start.epoch, end + extra) == .truncate(to: end), "term \(start.epoch) + \(extra)")
            }
            if start.epoch > 1 && (i == 0 || starts[i - 1].epoch < start.epoch - 1) {
                #expect(decide(start.epoch - 1, start.seq) == .diverged, "epoch \(start.epoch - 1) unknown")
            }
        }
        let beforeFirst = starts[0].seq - 1
        #expect(decide(0, beforeFirst + 1) == .truncate(to: beforeFirst))
    }
}
