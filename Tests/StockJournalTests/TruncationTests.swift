import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

/// Cutting a journal back to a seq (a node rejoining behind a new primary,
/// docs/replication.md §3): recovery afterwards gives exactly the replay of
/// the records kept, and a cut that would lose kept records changes nothing.
@Suite("Truncation", .cpuHeavy)
struct TruncationTests {
    /// Out-of-order records across many segments, cut at a random seq: the
    /// state is the replay of the first S records; numbering goes on at S+1.
    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func cutAtRandomSeq(seed: UInt64) throws {
        let dir = TempDirectory("trunc")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x7C07_0000 + seed)
        let records = gen.generate(2000)
        try writeJournal(shuffledInWindows(records, window: 12, seed: seed), to: dir.path, segmentBytes: 4096,
                         maxBatch: 10, seed: seed)
        var rng = SplitMix64(seed: seed)
        let s = UInt64(1 + rng.next(below: 1998))
        let result = try Truncation.run(dataDirectory: dir.path, keepingThrough: s)
        #expect(result.recordsCut == 2000 - Int(s) && result.highestBefore == 2000)
        #expect(!result.segmentsRewritten.isEmpty || !result.segmentsRemoved.isEmpty)
        let recovered = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(differences(recovered.state, try replay(records[0..<Int(s)])) == [])
        #expect(recovered.nextSeq == s + 1 && recovered.droppedAfterGap == 0 && recovered.highestSeqSeen == s)
        // Idempotent: a second run (a crash after the first) finds nothing to cut.
        let again = try Truncation.run(dataDirectory: dir.path, keepingThrough: s)
        #expect(again.recordsCut == 0 && again.segmentsRewritten.isEmpty && again.segmentsRemoved.isEmpty)
    }

    /// A snapshot above the cut goes (it includes cut records); one below it stays and is the base.
    @Test func snapshotsAboveTheCutGo() throws {
        let dir = TempDirectory("trunc-snap")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x7C07_0101)
        let records = gen.generate(1000)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        let low = try Snapshots.write(try replay(records[0..<300]), wallTimeMs: 0, directory: dir.path)
        let high = try Snapshots.write(try replay(records[0..<800]), wallTimeMs: 0, directory: dir.path)
        let result = try Truncation.run(dataDirectory: dir.path, keepingThrough: 500)
        #expect(result.snapshotsRemoved == [high.path] && result.recordsCut == 500)
        #expect(try Snapshots.list(in: dir.path) == [low])
        let recovered = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(recovered.snapshotSeq == 300 && recovered.nextSeq == 501)
        #expect(differences(recovered.state, try replay(records[0..<500])) == [])
    }

    /// Compaction folded the closed segments into a snapshot S and deleted
    /// them and the older snapshot: cutting at 301 would lose 1...301 (they
    /// are only in S), so it is refused and the directory is left exactly as it was.
    @Test func refusedWhenKeptRecordsAreOnlyInACutSnapshot() throws {
        let dir = TempDirectory("trunc-gap")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x7C07_0102)
        let records = gen.generate(1000)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        let closed = try SegmentFiles.list(in: dir.path).dropLast()
        try Snapshots.write(try replay(records[0..<300]), wallTimeMs: 0, directory: dir.path)
        let compacted = try Compaction.run(dataDirectory: dir.path, closedSegments: Array(closed), nowWallMs: 0)
        #expect(compacted.wroteSnapshot && !compacted.segmentsRemoved.isEmpty)
        let before = dir.names().map { ($0, dir.read($0)) }
        do {
            _ = try Truncation.run(dataDirectory: dir.path, keepingThrough: 300 + 1)
            Issue.record("a truncation that loses kept records was accepted")
        } catch {
            guard case let .snapshotGap(_, badSeq, usableSeq, _) = error else {
                Issue.record("expected snapshotGap, got \(error)")
                return
            }
            #expect(badSeq == compacted.snapshotSeq && usableSeq == 0)
        }
        let after = dir.names().map { ($0, dir.read($0)) }
        #expect(before.map(\.0) == after.map(\.0) && before.map(\.1) == after.map(\.1), "nothing changed on disk")
    }
}
