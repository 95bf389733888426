import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

/// The raw FeedReader the replication sender uses (`readRaw`): the segment's
/// own framed bytes, in seq order from any offset, within a round's record and
/// byte bounds, whatever order the records were written in.
@Suite("Feed reader, raw")
struct FeedReaderRawTests {
    /// Everything the segments hold is readable (closed segments: to their end).
    static func allSynced(_ dir: TempDirectory) throws -> SyncedEnd {
        let last = try #require(try SegmentFiles.list(in: dir.path).last)
        return SyncedEnd(segmentFirstSeq: last.firstSeq, bytes: .max)
    }

    /// Rounds of random record and byte bounds under a durable end that moves up: every record
    /// from `from` once, in seq order, byte for byte as encoded; a round stops at `maxBytes`
    /// unless its first record alone is larger.
    @Test(arguments: [1, 777] as [UInt64])
    func framesInSeqOrderWithinBounds(from: UInt64) throws {
        let dir = TempDirectory("feed-raw")
        defer { dir.remove() }
        let records = historyForFeed(3000, seed: 0x5EED_0F00 + from)
        try writeJournal(shuffledInWindows(records, window: 48, seed: from), to: dir.path, segmentBytes: 4096, maxBatch: 16)
        let synced = try Self.allSynced(dir)
        let reader = try FeedReader(directory: dir.path, from: from, raw: true)
        var rng = SplitMix64(seed: from)
        var expected = from
        var durable = from - 1
        while expected <= 3000 {
            durable = min(3000, durable + 1 + rng.next(below: 400))
            let limit = 1 + Int(rng.next(below: 300))
            let maxBytes = 100 + Int(rng.next(below: 5000))
            var bytes = 0, count = 0
            let handed = try reader.readRaw(durable: durable, synced: synced, limit: limit, maxBytes: maxBytes) { frame in
                let seq = RecordCodec.seq(ofFrame: frame)
                #expect(seq == expected, "seq order")
                #expect(Array(frame) == RecordCodec.encode(records[Int(seq) - 1]), "the record's own bytes, seq \(seq)")
                expected += 1
                bytes += frame.count
                count += 1
            }
            #expect(handed == count && count <= limit && expected - 1 <= durable)
            #expect(count <= 1 || bytes <= maxBytes, "\(count) records, \(bytes) bytes over \(maxBytes)")
            #expect(count == limit || expected == durable + 1 || bytes + RecordCodec.maxRecordBytes > maxBytes, "a round stops only at a bound")
        }
        #expect(reader.next == 3001)
    }

    /// Seq 1 written last: every other record waits (their bytes kept: more than the four chunks
    /// the reader holds before it rewrites them, once half of them are handed out); handed out
    /// ten, then 4,096 at a time, they come out whole across the rewrite.
    @Test func recordsWaitingBehindTheFirstSurviveTheArenaRewrite() throws {
        let dir = TempDirectory("feed-raw-wait")
        defer { dir.remove() }
        let records = historyForFeed(20_000, seed: 0x5EED_0F10)
        try writeJournal(Array(records[1...]) + [records[0]], to: dir.path, segmentBytes: 1 << 20, maxBatch: 64)
        let synced = try Self.allSynced(dir)
        let reader = try FeedReader(directory: dir.path, from: 1, raw: true)
        var expected: UInt64 = 1
        var rounds = 0
        var peak = 0, rewritten = false
        while expected <= 20_000 {
            _ = try reader.readRaw(durable: 20_000, synced: synced, limit: rounds < 5 ? 10 : 4096, maxBytes: 1 << 20) { frame in
                #expect(Array(frame) == RecordCodec.encode(records[Int(expected) - 1]), "seq \(expected)")
                expected += 1
            }
            if rounds == 0 { #expect(reader.pendingCount == 20_000 - 10, "all but the first ten wait") }
            if reader.rawBytesHeld < peak && reader.pendingCount > 0 { rewritten = true }
            peak = max(peak, reader.rawBytesHeld)
            rounds += 1
        }
        #expect(peak > 4 * FeedReader.chunkBytes, "the backlog outgrew four chunks: \(peak) bytes")
        #expect(rewritten, "the arena was rewritten while records still waited")
        #expect(reader.pendingCount == 0 && expected == 20_001)
    }

    /// A record the durable end covers that no segment holds: missing, as for the decoded reader.
    @Test func aMissingRecordIsReported() throws {
        let dir = TempDirectory("feed-raw-missing")
        defer { dir.remove() }
        let records = historyForFeed(50, seed: 0x5EED_0F20)
        try writeJournal(Array(records[0..<20]) + Array(records[21...]), to: dir.path)
        let reader = try FeedReader(directory: dir.path, from: 1, raw: true)
        var got: FeedReadError?
        var handed = 0
        let synced = try Self.allSynced(dir)
        do throws(FeedReadError) {
            _ = try reader.readRaw(durable: 50, synced: synced, limit: 100, maxBytes: 1 << 20) { _ in handed += 1 }
        } catch {
            got = error
        }
        #expect(got == .missing(seq: 21) && handed == 20)
    }
}

/// A valid history of `count` records for the feed tests.
private func historyForFeed(_ count: Int, seed: UInt64) -> [SequencedRecord] {
    var gen = HistoryGenerator(seed: seed)
    return gen.generate(count)
}
