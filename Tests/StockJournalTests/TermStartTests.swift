import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

/// The term start record (kind 12, docs/replication.md §1): its codec, the
/// epoch history it builds in `JournalState`, the divergence lookup
/// `termEnd`, and the history's way through snapshots, compaction,
/// recovery, truncation and verification.
@Suite("Term start records", .cpuHeavy)
struct TermStartTests {
    static let nodeA = ShortBytes("stockd-a")!, nodeB = ShortBytes("stockd-b")!, nodeC = ShortBytes("stockd-c")!
    static let sku = SKU("TERM-SKU")!

    static func rec(_ seq: UInt64, _ r: JournalRecord) -> SequencedRecord {
        SequencedRecord(seq: seq, timeMs: 1_700_000_000_000 + seq, record: r)
    }

    static func stock(_ seq: UInt64, _ onHand: UInt64 = 5) -> SequencedRecord {
        rec(seq, .stockSet(sku: sku, onHand: onHand, lowStockThreshold: 0, perCustomerLimit: 0))
    }

    /// Seqs 1...8: stock, term 5 (a) at 2, stock 3-4, term 9 (b) at 5, stock 6, term 20 (c) at 7, stock 8.
    static func threeTerms() -> [SequencedRecord] {
        [stock(1), rec(2, .termStarted(epoch: 5, node: nodeA)), stock(3), stock(4),
         rec(5, .termStarted(epoch: 9, node: nodeB)), stock(6), rec(7, .termStarted(epoch: 20, node: nodeC)), stock(8)]
    }

    static let threeTermsHistory = [TermStart(epoch: 5, firstSeq: 2, node: nodeA),
                                    TermStart(epoch: 9, firstSeq: 5, node: nodeB),
                                    TermStart(epoch: 20, firstSeq: 7, node: nodeC)]

    /// Recomputes a record's checksum after a test changed its bytes.
    static func reseal(_ b: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(b.count - 4).littleEndian) { for i in 0..<4 { b[i] = $0[i] } }
        let crc = b.withUnsafeBytes { CRC32C.extend(0, UnsafeRawBufferPointer(rebasing: $0[8...])) }
        withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { b[4 + i] = $0[i] } }
    }

    // MARK: - codec

    @Test func codecRoundTripAndLayout() {
        let longest = ShortBytes(bytes: [UInt8](repeating: 0x6E, count: 64))!
        for (epoch, node) in [(UInt64(1), ShortBytes("n")!), (4711, Self.nodeB), (UInt64(Int64.max), longest)] {
            let r = SequencedRecord(seq: 42, timeMs: 7, record: .termStarted(epoch: epoch, node: node))
            let bytes = RecordCodec.encode(r)
            // Header, epoch u64, node str8 (format table at the top of RecordCodec.swift).
            #expect(bytes.count == RecordCodec.headerBytes + 8 + 1 + node.count)
            #expect(bytes[8] == 12 && RecordKind.termStarted.rawValue == 12)
            #expect(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 25, as: UInt64.self) } == epoch.littleEndian)
            #expect(bytes.withUnsafeBytes { RecordCodec.decode($0) } == .record(r, bytes: bytes.count))
            // No SKU: a SUBSCRIBE with a SKU prefix never matches it.
            #expect(bytes.withUnsafeBytes { RecordCodec.skuBytes($0).count } == 0)
        }
    }

    /// Epoch 0, an epoch beyond Int64, an empty node id and a short payload, behind a valid checksum.
    @Test func codecRejectsBadFields() {
        let good = RecordCodec.encode(Self.rec(3, .termStarted(epoch: 5, node: ShortBytes("n")!)))
        func decoded(_ b: [UInt8]) -> RecordDecodeResult { b.withUnsafeBytes { RecordCodec.decode($0) } }
        #expect(decoded(good) == .record(Self.rec(3, .termStarted(epoch: 5, node: ShortBytes("n")!)), bytes: 35))

        func withEpoch(_ e: UInt64) -> [UInt8] {
            var b = good
            withUnsafeBytes(of: e.littleEndian) { for i in 0..<8 { b[25 + i] = $0[i] } }
            Self.reseal(&b)
            return b
        }
        #expect(decoded(withEpoch(0)) == .corrupt(.badField("epoch 0")))
        #expect(decoded(withEpoch(1 << 63)) == .corrupt(.badField("epoch \(UInt64(1) << 63)")))
        #expect(decoded(withEpoch(.max)) == .corrupt(.badField("epoch \(UInt64.max)")))

        var emptyNode = Array(good.dropLast())  // node length 0, its byte gone
        emptyNode[33] = 0
        Self.reseal(&emptyNode)
        #expect(decoded(emptyNode) == .corrupt(.badField("empty node id")))

        var short = good
        short[33] = 2  // claims a 2-byte node id, holds 1
        Self.reseal(&short)
        #expect(decoded(short) == .corrupt(.badField("payload too short")))

        var trailing = good + [0]
        Self.reseal(&trailing)
        #expect(decoded(trailing) == .corrupt(.badField("1 bytes after the payload")))
    }

    /// The feed's event: kind 12, the epoch in quantity, the node in order, nothing else.
    @Test func feedEvent() {
        let e = FeedEvent(Self.rec(9, .termStarted(epoch: 4711, node: Self.nodeB)))
        #expect(e == FeedEvent(offset: 9, timeMs: 1_700_000_000_009, kind: .termStarted, quantity: 4711,
                               order: Self.nodeB))
        #expect(e.kind.rawValue == 12 && e.kind.name == "term_started" && EventKind(name: "term_started") == .termStarted)
        #expect(e.sku.isEmpty && e.customer.isEmpty && e.aux == 0 && e.line == 0 && e.lines == 0)
        #expect(EventKind.allKindsMask & EventKind.termStarted.bit != 0)
        #expect(!Subscribe(from: 0, credit: 1, skuPrefix: ShortBytes("T")!).matches(kind: e.kind, sku: e.sku))
    }

    // MARK: - the epoch history

    @Test func historyAndTermEnd() throws {
        var s = JournalState()
        #expect(s.currentEpoch == 0 && s.epochs.isEmpty && s.termEnd(of: 0) == nil && s.termEnd(of: 1) == nil)
        for r in Self.threeTerms() { try s.apply(r) }
        try s.checkInvariants()
        #expect(s.epochs == Self.threeTermsHistory)
        #expect(s.currentEpoch == 20 && s.lastSeq == 8)
        #expect(s.sku(Self.sku)?.onHand == 5 && s.skuCount == 1, "a term start changes no counts")
        // A term ends the seq before the next term start; the current one at lastSeq.
        #expect(s.termEnd(of: 5) == 4)
        #expect(s.termEnd(of: 9) == 6)
        #expect(s.termEnd(of: 20) == 8)
        // Unknown epochs: none, below the first, between two known ones, above the current.
        for e: UInt64 in [0, 1, 4, 6, 8, 19, 21, .max] { #expect(s.termEnd(of: e) == nil, "epoch \(e)") }

        // §3's decision for a standby whose last record is (epoch, seq).
        func isPrefix(_ e: UInt64, _ seq: UInt64) -> Bool? { s.termEnd(of: e).map { seq <= $0 } }
        #expect(isPrefix(5, 3) == true)
        #expect(isPrefix(5, 4) == true, "up to the term's last record")
        #expect(isPrefix(5, 5) == false, "beyond the end: truncate to 4")
        #expect(isPrefix(9, 6) == true && isPrefix(9, 7) == false)
        #expect(isPrefix(20, 8) == true && isPrefix(20, 9) == false, "the current term ends at lastSeq")
        #expect(isPrefix(7, 3) == nil, "epoch unknown: diverged")

        // The current term grows with the journal; closed terms do not.
        try s.apply(Self.stock(9, 6))
        #expect(s.termEnd(of: 20) == 9 && s.termEnd(of: 9) == 6 && s.currentEpoch == 20)
    }

    /// A journal that starts with a term start, and terms of one record each.
    @Test func termsAtTheEdges() throws {
        var s = JournalState()
        try s.apply(Self.rec(1, .termStarted(epoch: 1, node: Self.nodeA)))
        #expect(s.termEnd(of: 1) == 1 && s.currentEpoch == 1)
        try s.apply(Self.rec(2, .termStarted(epoch: 2, node: Self.nodeA)))
        #expect(s.termEnd(of: 1) == 1 && s.termEnd(of: 2) == 2)
        try s.apply(Self.rec(3, .termStarted(epoch: UInt64(Int64.max), node: Self.nodeB)))
        #expect(s.termEnd(of: 2) == 2 && s.termEnd(of: UInt64(Int64.max)) == 3)
        #expect(s.epochs.map(\.firstSeq) == [1, 2, 3])
        try s.checkInvariants()
    }

    /// An epoch not above the current one is refused at its seq; nothing changes.
    @Test func nonIncreasingEpochIsRefused() throws {
        var s = JournalState()
        for r in Self.threeTerms() { try s.apply(r) }
        let before = s
        for (epoch, why) in [(UInt64(20), "not after epoch 20"), (9, "not after epoch 20"), (1, "not after epoch 20")] {
            #expect(throws: JournalError.replay(seq: 9, reason: "term start of epoch \(epoch) \(why)")) {
                try s.apply(Self.rec(9, .termStarted(epoch: epoch, node: Self.nodeA)))
            }
            #expect(s == before)
        }
        #expect(throws: JournalError.replay(seq: 9, reason: "term start of epoch 21 without a node id")) {
            try s.apply(Self.rec(9, .termStarted(epoch: 21, node: .empty)))
        }
        #expect(s == before)
        // Epoch 0 is never after anything: an empty state refuses it too.
        var empty = JournalState()
        #expect(throws: JournalError.replay(seq: 1, reason: "term start of epoch 0 not after epoch 0")) {
            try empty.apply(Self.rec(1, .termStarted(epoch: 0, node: Self.nodeA)))
        }
        #expect(empty == JournalState())
        // The next epoch up is fine, at the next seq.
        try s.apply(Self.rec(9, .termStarted(epoch: 21, node: Self.nodeA)))
        #expect(s.currentEpoch == 21 && s.epochs.count == 4 && s.termEnd(of: 20) == 8)
    }

    // MARK: - snapshots

    @Test func snapshotVersionFourRoundTrip() throws {
        let dir = TempDirectory("term-snap")
        defer { dir.remove() }
        var s = JournalState()
        for r in Self.threeTerms() { try s.apply(r) }
        let file = try Snapshots.write(s, wallTimeMs: 3, directory: dir.path)
        let bytes = dir.read(file.name)
        #expect(bytes[8] == 4 && bytes[9..<12].allSatisfy { $0 == 0 }, "format version 4")
        let (loaded, _) = try Snapshots.load(file)
        #expect(loaded == s && loaded.epochs == Self.threeTermsHistory && loaded.termEnd(of: 9) == 6)

        // Random histories with failovers: the snapshot holds the history, and replaying on from it
        // ends where a full replay does.
        var gen = HistoryGenerator(seed: 0x7E52_0001, skus: 5)
        gen.termPerMille = 15
        let records = gen.generate(3000)
        let full = try replay(records)
        #expect(full.epochs.count > 10)
        for cut in [0, 1, 1500, 3000] {
            let f = try Snapshots.write(try replay(records[0..<cut]), wallTimeMs: 0, directory: dir.path)
            let (head, _) = try Snapshots.load(f)
            #expect(head.epochs == full.epochs.filter { $0.firstSeq <= UInt64(cut) }, "cut \(cut)")
            let resumed = try replay(records[cut...], onto: head)
            #expect(differences(resumed, full) == [] && resumed == full, "cut \(cut)")
        }
    }

    /// A version-3 snapshot (no epoch history) still loads, with an empty history;
    /// the same bytes with a history section are not version 3.
    @Test func versionThreeSnapshotStillLoads() throws {
        let dir = TempDirectory("term-snapv3")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x7E52_0002, skus: 3)
        let state = try replay(gen.generate(200))
        #expect(state.epochs.isEmpty)
        let file = try Snapshots.write(state, wallTimeMs: 5, directory: dir.path)
        let v4 = dir.read(file.name)
        #expect(v4[(v4.count - 12)..<(v4.count - 4)].allSatisfy { $0 == 0 }, "term count 0, last before the checksum")
        func sealed(_ body: [UInt8]) -> [UInt8] {
            body + withUnsafeBytes(of: body.withUnsafeBytes { CRC32C.extend(0, $0) }.littleEndian) { Array($0) }
        }
        var v3 = Array(v4[0..<(v4.count - 12)])
        v3[8] = 3
        dir.write(file.name, sealed(v3))
        let (loaded, _) = try Snapshots.load(file)
        #expect(loaded == state && loaded.epochs.isEmpty && loaded.currentEpoch == 0)

        var v3WithTerms = Array(v4[0..<(v4.count - 4)])
        v3WithTerms[8] = 3
        dir.write(file.name, sealed(v3WithTerms))
        #expect(throws: JournalError.badSnapshot(path: file.path, reason: "bad field: 8 bytes after the body")) {
            try Snapshots.load(file)
        }
        var v5 = v3WithTerms
        v5[8] = 5
        dir.write(file.name, sealed(v5))
        #expect(throws: JournalError.badSnapshot(path: file.path, reason: "bad field: format version 5")) {
            try Snapshots.load(file)
        }
    }

    /// A snapshot whose history does not hold together (epochs out of order,
    /// a term starting after the snapshot's seq) is refused, checksum or not.
    @Test func badHistoryInASnapshotIsRefused() throws {
        let dir = TempDirectory("term-snapbad")
        defer { dir.remove() }
        var s = JournalState()
        for r in Self.threeTerms() { try s.apply(r) }
        let file = try Snapshots.write(s, wallTimeMs: 3, directory: dir.path)
        let good = dir.read(file.name)
        // The last term entry: epoch u64, firstSeq u64, node str8 ("stockd-c"), then the checksum.
        let last = good.count - 4 - (8 + 8 + 1 + Self.nodeC.count)
        func patched(at offset: Int, _ v: UInt64) -> [UInt8] {
            var b = Array(good[0..<(good.count - 4)])
            withUnsafeBytes(of: v.littleEndian) { for i in 0..<8 { b[offset + i] = $0[i] } }
            return b + withUnsafeBytes(of: b.withUnsafeBytes { CRC32C.extend(0, $0) }.littleEndian) { Array($0) }
        }
        for (label, bytes) in [("epoch 9 again", patched(at: last, 9)), ("epoch 0", patched(at: last, 0)),
                               ("first seq after the snapshot", patched(at: last + 8, 9)),
                               ("first seq before the previous term's", patched(at: last + 8, 4))] {
            dir.write(file.name, bytes)
            #expect(throws: JournalError.self, "\(label)") { try Snapshots.load(file) }
        }
        dir.write(file.name, patched(at: last + 8, 8))  // a term of one record is fine
        #expect(try Snapshots.load(file).0.termEnd(of: 9) == 7)
    }

    // MARK: - recovery, compaction, truncation, verify

    /// Compaction deletes the segments holding the term start records; the
    /// snapshot keeps the history, so recovery still knows every term.
    @Test func recoveryAcrossCompactionKeepsTheHistory() throws {
        let dir = TempDirectory("term-compact")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x7E52_0003, skus: 6)
        gen.termPerMille = 10
        let records = gen.generate(3000)
        let full = try replay(records)
        try writeJournal(shuffledInWindows(records, window: 8, seed: 3), to: dir.path, segmentBytes: 8192,
                         maxBatch: 10, seed: 3)
        let closed = Array(try SegmentFiles.list(in: dir.path).dropLast())
        let result = try Compaction.run(dataDirectory: dir.path, closedSegments: closed, nowWallMs: 1)
        #expect(result.wroteSnapshot && !result.segmentsRemoved.isEmpty)
        // Some term start records are gone from the segments: only the snapshot holds them now.
        var onDisk: [UInt64] = []
        for segment in try SegmentFiles.list(in: dir.path) {
            _ = try JournalReader.read(segment, isLast: false, repairTornTail: false) { r, _ in
                if case .termStarted = r.record { onDisk.append(r.seq) }
            }
        }
        let allStarts = full.epochs.map(\.firstSeq)
        #expect(allStarts.contains { !onDisk.contains($0) && $0 <= result.snapshotSeq })

        let recovered = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(recovered.state.epochs == full.epochs && recovered.state.currentEpoch == full.currentEpoch)
        for t in full.epochs { #expect(recovered.state.termEnd(of: t.epoch) == full.termEnd(of: t.epoch)) }

        // Recovery's own snapshot (finish) lets every segment go; the history survives that too.
        try Recovery.finish(recovered, dataDirectory: dir.path, nowWallMs: 2)
        let again = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(again.state.epochs == full.epochs && again.snapshotSeq == recovered.state.lastSeq)
    }

    /// §3's repair: cut a journal back to where a term ended; the later terms leave its history.
    @Test func truncationToATermEnd() throws {
        let dir = TempDirectory("term-trunc")
        defer { dir.remove() }
        try writeJournal(Self.threeTerms(), to: dir.path, segmentBytes: 4096, maxBatch: 2)
        var s = JournalState()
        for r in Self.threeTerms() { try s.apply(r) }
        let end = try #require(s.termEnd(of: 5))
        _ = try Truncation.run(dataDirectory: dir.path, keepingThrough: end)
        let recovered = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(recovered.state.lastSeq == 4 && recovered.state.currentEpoch == 5)
        #expect(recovered.state.epochs == [Self.threeTermsHistory[0]] && recovered.state.termEnd(of: 9) == nil)
    }

    /// Verify replays term start records like any other (no counts change) and reports the history;
    /// a journal whose epochs go backwards fails it.
    @Test func verifyReportsTheHistory() throws {
        let dir = TempDirectory("term-verify")
        defer { dir.remove() }
        try writeJournal(Self.threeTerms(), to: dir.path)
        let report = JournalVerifier.verify(dataDirectory: dir.path)
        #expect(report.ok && report.replayedTo == 8 && report.epochs == Self.threeTermsHistory)
        #expect(report.findings.contains { $0.message == "epoch history: 3 terms; current epoch 20 (node stockd-c, from seq 7)" })

        let bad = TempDirectory("term-verify-bad")
        defer { bad.remove() }
        try writeJournal(Self.threeTerms() + [Self.rec(9, .termStarted(epoch: 20, node: Self.nodeA))], to: bad.path)
        let badReport = JournalVerifier.verify(dataDirectory: bad.path)
        #expect(!badReport.ok && badReport.replayedTo == 8)
        #expect(badReport.replayError == .replay(seq: 9, reason: "term start of epoch 20 not after epoch 20"))
    }
}
