import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

@Suite("Recovery", .cpuHeavy)
struct RecoveryTests {
    @Test func emptyAndMissingDirectory() throws {
        let dir = TempDirectory("fresh")
        defer { dir.remove() }
        let path = dir.file("a/b/data")
        let result = try Recovery.run(dataDirectory: path, nowWallMs: 5)
        #expect(result.nextSeq == 1 && result.state == JournalState() && result.snapshot == nil)
        let snap = try Recovery.finish(result, dataDirectory: path, nowWallMs: 5).snapshot
        #expect(snap.name == "snapshot-00000000000000000000.snap")
        let again = try Recovery.run(dataDirectory: path, nowWallMs: 6)
        #expect(again.nextSeq == 1 && again.snapshotSeq == 0 && again.snapshot == snap)
    }

    /// Records written slightly out of order (worker buffers interleaving),
    /// across segments, with a snapshot in the middle: the same state as a
    /// straight replay.
    @Test(arguments: 1...4 as ClosedRange<UInt64>)
    func outOfOrderWindowAndSnapshot(seed: UInt64) throws {
        let dir = TempDirectory("window")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x2EC0_0000 + seed)
        let records = gen.generate(3000)
        var rng = SplitMix64(seed: seed)
        var shuffled = records
        var i = 0
        while i < shuffled.count {  // shuffle within windows of up to 16
            let n = min(shuffled.count - i, 1 + Int(rng.next(below: 16)))
            shuffled[i..<(i + n)].shuffle(using: &rng)
            i += n
        }
        try writeJournal(shuffled, to: dir.path, segmentBytes: 8192, maxBatch: 10, seed: seed)
        let cut = Int(rng.next(below: 3000))
        try Snapshots.write(try replay(records[0..<cut]), wallTimeMs: 0, directory: dir.path)
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(differences(result.state, try replay(records)) == [])
        #expect(result.recordsReplayed == 3000 - cut && result.recordsCoveredBySnapshot == cut)
        #expect(result.nextSeq == 3001 && result.droppedAfterGap == 0 && result.gapAt == nil)
    }

    /// One record missing in the middle: replay stops there, the rest is
    /// dropped and counted; `finish` takes the dropped records off the disk,
    /// so numbering continues right after the last record replayed (the
    /// event feed's offsets stay gap-free).
    /// A crash between the writer's rename of its prepared segment and its first write leaves a
    /// zero-filled segment named with the seq issued next (the crash test found one). Recovery
    /// deletes it, so the startup records and the next writer can take that name.
    @Test func aSegmentWithoutRecordsIsRemovedAndItsNameReused() throws {
        let dir = TempDirectory("empty-segment")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0xE5E6)
        let records = gen.generate(5)
        try writeJournal(records, to: dir.path, segmentBytes: 1 << 20, maxBatch: 5, seed: 1)
        let empty = dir.path + "/" + SegmentFiles.name(firstSeq: 6)
        #expect(FileManager.default.createFile(atPath: empty, contents: Data(count: 4096)))
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 1)
        #expect(result.nextSeq == 6)
        let extra = SequencedRecord(seq: 6, timeMs: 1, record: .stockSet(sku: SKU("NEW")!, onHand: 3, lowStockThreshold: 0,
                                                                          perCustomerLimit: 0))
        var state = result.state
        try state.apply(extra)
        var staged = result
        staged.state = state
        staged.nextSeq = 7
        try Recovery.finish(staged, dataDirectory: dir.path, nowWallMs: 1, startupRecords: [extra])
        let writer = try JournalWriter(directory: dir.path, preallocate: false)
        let buffer = RecordBuffer()
        RecordCodec.encode(SequencedRecord(seq: 7, timeMs: 2, record: .stockSet(sku: SKU("NEW")!, onHand: 4,
                                                                                 lowStockThreshold: 0, perCustomerLimit: 0)),
                           into: buffer)
        try writer.append(buffer)
        try writer.close()
        let again = try Recovery.run(dataDirectory: dir.path, nowWallMs: 2)
        #expect(again.nextSeq == 8 && again.state.sku(SKU("NEW")!)?.onHand == 4)
    }

    @Test func gapStopsReplay() throws {
        let dir = TempDirectory("gap")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x2EC0_0101)
        let records = gen.generate(1000)
        var missing = records
        missing.remove(at: 599)  // seq 600
        try writeJournal(missing, to: dir.path, segmentBytes: 4096)
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(result.gapAt == 600 && result.droppedAfterGap == 400 && result.recordsReplayed == 599)
        #expect(result.highestSeqSeen == 1000 && result.nextSeq == 600)
        var expected = try replay(records[0..<599])
        #expect(differences(result.state, expected).filter { !$0.hasPrefix("lastSeq") } == [])
        try Recovery.finish(result, dataDirectory: dir.path, nowWallMs: 0)
        #expect(try SegmentFiles.list(in: dir.path).isEmpty)
        let again = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        expected = result.state
        #expect(again.state == expected && again.nextSeq == 600 && again.droppedAfterGap == 0)
    }

    /// Dropped records never come back: `finish` rewrites the segments that
    /// hold them (keeping every segment, with a retention budget), the
    /// expiries at recovery become records of their own, and a second
    /// recovery — or one after a crash before `finish` — finds the same state.
    @Test func droppedRecordsAreNeverResurrected() throws {
        let dir = TempDirectory("resurrect")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x2EC0_0102)
        var records = gen.generate(500)
        records.remove(at: 299)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: UInt64.max)  // expire everything
        #expect(!result.expiredAtRecovery.isEmpty && result.replayedThrough == 299)
        // A crash before finish: the same recovery again.
        let before = try Recovery.run(dataDirectory: dir.path, nowWallMs: UInt64.max)
        #expect(before.state == result.state && before.nextSeq == result.nextSeq)
        try Recovery.finish(result, dataDirectory: dir.path, nowWallMs: 0, retainBytes: 1 << 30)
        // On disk: records 1...299, then exactly the expiries, each seq once.
        var seen: [UInt64: JournalRecord] = [:]
        _ = try JournalReader.readAll(directory: dir.path, repairTornTail: false) { (r, _, _) throws(JournalError) in
            #expect(seen.updateValue(r.record, forKey: r.seq) == nil, "seq \(r.seq) twice")
        }
        #expect(Set(seen.keys) == Set(1..<result.nextSeq))
        let expiries = result.expiredAtRecovery.flatMap(\.records)
        #expect(expiries.allSatisfy { seen[$0.seq] == $0.record })
        let again = try Recovery.run(dataDirectory: dir.path, nowWallMs: UInt64.max)
        #expect(again.state == result.state && again.nextSeq == result.nextSeq && again.droppedAfterGap == 0)
    }

    @Test func expiryAtRecovery() throws {
        let dir = TempDirectory("expiry")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x2EC0_0103)
        gen.settlePercent = 20
        let records = gen.generate(2000)
        try writeJournal(records, to: dir.path)
        let full = try replay(records)
        let deadlines = full.tokens.values.map(\.deadlineWallMs).sorted()
        #expect(deadlines.count > 10)
        let now = deadlines[deadlines.count / 2]
        let due = full.tokens.values.filter { $0.deadlineWallMs <= now }
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: now)
        #expect(Set(result.expiredAtRecovery.map(\.token)) == Set(due.map(\.token)))
        #expect(result.expiredAtRecovery.map(\.deadlineWallMs) == result.expiredAtRecovery.map(\.deadlineWallMs).sorted())
        #expect(result.state.tokens.values.allSatisfy { $0.deadlineWallMs > now })
        #expect(result.state.tokenCount == full.tokenCount - due.count)
        let lines = due.reduce(0) { $0 + $1.lines.count }
        #expect(result.nextSeq == 2001 + UInt64(lines))
        #expect(result.expiredAtRecovery.flatMap(\.records).map(\.seq) == Array(2001..<(2001 + UInt64(lines))))
        let heldBefore = due.reduce(Int64(0)) { $0 + $1.lines.reduce(0) { $0 + Int64($1.quantity) } }
        #expect(result.state.reservedUnits == full.reservedUnits - heldBefore)
        try result.state.checkInvariants()
        // finish: the journal is empty, and the next recovery starts at nextSeq with nothing due.
        try Recovery.finish(result, dataDirectory: dir.path, nowWallMs: now)
        #expect(dir.names().filter { $0 != FeedFloor.fileName } == [Snapshots.name(seq: result.nextSeq - 1)])
        let again = try Recovery.run(dataDirectory: dir.path, nowWallMs: now)
        #expect(again.state == result.state && again.expiredAtRecovery.isEmpty && again.nextSeq == result.nextSeq)
    }

    /// A torn tail — part of a record, then the zeros of the preallocated
    /// segment, or the end of the file — is cut and reported; recovery goes
    /// on with the rest. The zeros alone are no torn tail.
    @Test(arguments: [true, false])
    func tornTailIsTruncated(preallocate: Bool) throws {
        let dir = TempDirectory("rtorn")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x2EC0_0104)
        let records = gen.generate(300)
        try writeJournal(records, to: dir.path, preallocate: preallocate)
        let last = try SegmentFiles.list(in: dir.path).last!
        let bytes = dir.read(last.name)
        let clean = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(clean.tornTail == nil && dir.read(last.name) == bytes)
        let end = Int(try JournalReader.read(last, isLast: true, repairTornTail: false) { _, _ in }.validBytes)
        #expect(preallocate ? bytes.count == 4096 && end < bytes.count : end == bytes.count)
        let partial = RecordCodec.encode(SequencedRecord(
            seq: 301, timeMs: 0, record: .extended(token: Token(slot: 1, generation: 1, secret: 1),
                                                 deadlineWallMs: 0x0102_0304_0506_0708))).dropLast(7)
        var torn = bytes
        torn.replaceSubrange(end..<min(bytes.count, end + partial.count), with: partial)
        dir.write(last.name, torn)
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(result.tornTail?.offset == Int64(end) && result.tornBytes == Int64(torn.count - end))
        #expect(result.state == (try replay(records)) && result.nextSeq == 301)
        #expect(dir.read(last.name) == Array(bytes[0..<end]))
    }

    /// A bad newest snapshot: recovery falls back to an older one while the
    /// journal covers the difference, and refuses once it no longer does.
    @Test func badSnapshotFallback() throws {
        let dir = TempDirectory("fallback")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x2EC0_0105)
        let records = gen.generate(1500)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        try Snapshots.write(try replay(records[0..<300]), wallTimeMs: 0, directory: dir.path)
        let newest = try Snapshots.write(try replay(records[0..<1000]), wallTimeMs: 0, directory: dir.path)
        var bytes = dir.read(newest.name)
        bytes[bytes.count / 2] ^= 0xFF
        dir.write(newest.name, bytes)
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(result.snapshotSeq == 300 && result.skippedSnapshots.map(\.file) == [newest])
        #expect(result.state == (try replay(records)))
        // Segments up to 1000 retired (as after that snapshot was written): now the gap is real.
        for s in try SegmentFiles.list(in: dir.path).dropLast() {
            var maxSeq: UInt64 = 0
            _ = try JournalReader.read(s, isLast: false, repairTornTail: false) { r, _ in maxSeq = max(maxSeq, r.seq) }
            if maxSeq <= 1000 { try FileManager.default.removeItem(atPath: s.path) }
        }
        let error = journalError { _ = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0) }
        guard case .snapshotGap(let bad, let badSeq, let usable, _)? = error else {
            Issue.record("recovered across a gap the journal does not cover: \(String(describing: error))")
            return
        }
        #expect(bad == newest.path && badSeq == 1000 && usable == 300)
    }

    /// Corruption in an earlier segment stops recovery and changes nothing.
    @Test func corruptionStopsRecovery() throws {
        let dir = TempDirectory("rcorrupt")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x2EC0_0106)
        try writeJournal(gen.generate(600), to: dir.path, segmentBytes: 4096)
        let first = try SegmentFiles.list(in: dir.path)[0]
        var bytes = dir.read(first.name)
        bytes[100] ^= 0x01
        dir.write(first.name, bytes)
        let names = dir.names()
        let error = journalError { _ = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0) }
        guard case .corrupt(let path, let offset, _)? = error else {
            Issue.record("corruption not reported: \(String(describing: error))")
            return
        }
        #expect(path == first.path && offset <= 100)
        #expect(dir.names() == names)
    }

    /// A duplicated seq (the same record twice) is an error naming where.
    @Test func duplicateSeq() throws {
        let dir = TempDirectory("dup")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x2EC0_0107)
        var records = gen.generate(100)
        records.append(records[40])
        try writeJournal(records, to: dir.path, segmentBytes: 1 << 20)
        // Where each record sits, as the reader finds them (no replay): the copy is the last one.
        var located: [(seq: UInt64, path: String, offset: Int64)] = []
        _ = try JournalReader.readAll(directory: dir.path, repairTornTail: false) { r, segment, offset in
            located.append((r.seq, segment.path, offset))
        }
        let copy = try #require(located.last)
        let original = try #require(located.first { $0.seq == records[40].seq })
        #expect(located.count == 101 && copy.seq == records[40].seq && original.offset < copy.offset)
        #expect(try SegmentFiles.list(in: dir.path).map(\.path) == [copy.path])
        // The error names the duplicated seq and the copy (the second occurrence): its file and byte offset.
        let error = journalError { _ = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0) }
        #expect(error == .duplicateSeq(seq: records[40].seq, path: copy.path, offset: copy.offset),
                "\(String(describing: error))")
    }
}
