import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

@Suite("Segment files")
struct SegmentTests {
    /// Reads every record of `dir` in file order.
    static func readAll(_ dir: String, repair: Bool = false) throws -> ([SequencedRecord], JournalReader.Summary) {
        var out: [SequencedRecord] = []
        let summary = try JournalReader.readAll(directory: dir, repairTornTail: repair) { r, _, _ in out.append(r) }
        return (out, summary)
    }

    @Test func writerReaderRoundTripWithRotation() throws {
        let dir = TempDirectory("rotate")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x5E6_0001)
        let records = gen.generate(3000)
        try writeJournal(records, to: dir.path, segmentBytes: 8192, maxBatch: 20)
        let segments = try SegmentFiles.list(in: dir.path)
        #expect(segments.count > 10)
        // Named after their first record; a batch is never split, so each
        // closed segment is at least segmentBytes and at most one batch more.
        let (read, summary) = try Self.readAll(dir.path)
        #expect(read == records)
        #expect(summary.tornTail == nil)
        for (i, s) in summary.segments.enumerated() {
            #expect(s.segment.name == SegmentFiles.name(firstSeq: s.minSeq))
            let size = Int64(dir.read(s.segment.name).count)
            if i < segments.count - 1 { #expect(size >= 8192 && size < 8192 + 20 * 250) }
        }
        #expect(segments.first?.name == "journal-00000000000000000001.log")
    }

    @Test func writerRefusesToReuseASegmentName() throws {
        let dir = TempDirectory("exists")
        defer { dir.remove() }
        let r = SequencedRecord(seq: 7, timeMs: 1, record: .extended(token: Token(slot: 1, generation: 1, secret: 1), deadlineMs: 2))
        let bytes = RecordCodec.encode(r)
        dir.write(SegmentFiles.name(firstSeq: 7), [])
        let writer = try JournalWriter(directory: dir.path)
        #expect(throws: JournalError.self) { try bytes.withUnsafeBytes { try writer.append($0) } }
        // Poisoned: later calls fail with the first cause.
        let error = journalError { try writer.sync() }
        guard case .writerFailed(let cause)? = error else {
            Issue.record("sync after a failure: \(String(describing: error))")
            return
        }
        #expect(cause.errno == EEXIST)
        #expect(!cause.isNoSpace)
        #expect(JournalError.io(operation: "write", path: "x", errno: ENOSPC).isNoSpace)
        #expect(JournalError.writerFailed(cause: .io(operation: "write", path: "x", errno: ENOSPC)).isNoSpace)
    }

    /// Records of the last segment, with their offsets.
    static func lastSegmentLayout(_ dir: TempDirectory) throws -> (SegmentFile, [Int64]) {
        let last = try SegmentFiles.list(in: dir.path).last!
        var offsets: [Int64] = []
        _ = try JournalReader.read(last, isLast: true, repairTornTail: false) { _, off in offsets.append(off) }
        return (last, offsets)
    }

    /// A crash at every byte of the last record of the last segment — the
    /// file cut there, or the rest of the record zeroed — is a torn tail:
    /// reported, truncated, every earlier record kept.
    @Test func tornTailAtEveryByteOfTheLastRecord() throws {
        let dir = TempDirectory("torn")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x5E6_0002)
        let records = gen.generate(400)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        let (last, offsets) = try Self.lastSegmentLayout(dir)
        let original = dir.read(last.name)
        let start = Int(offsets.last!)
        let recordSize = original.count - start
        for k in 0..<recordSize {
            for zeroFill in [false, true] {
                let content = zeroFill ? Array(original[0..<(start + k)]) + [UInt8](repeating: 0, count: recordSize - k)
                                       : Array(original[0..<(start + k)])
                dir.write(last.name, content)
                let (read, summary) = try Self.readAll(dir.path, repair: true)
                if content == original {  // zeroing bytes that were zero changes nothing
                    #expect(read == records)
                    continue
                }
                #expect(read == Array(records.dropLast()), "cut at \(k), zeros \(zeroFill)")
                if k == 0 && !zeroFill {
                    #expect(summary.tornTail == nil)
                } else {
                    #expect(summary.tornTail == TornTail(path: last.path, offset: Int64(start),
                                                         droppedBytes: Int64(content.count - start),
                                                         reason: summary.tornTail?.reason ?? ""))
                }
                #expect(dir.read(last.name) == Array(original[0..<start]), "truncated to the record's start")
            }
        }
    }

    /// A damaged record in an earlier segment is corruption, never a torn tail.
    @Test func corruptRecordInTheMiddleNamesFileAndOffset() throws {
        let dir = TempDirectory("corrupt")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x5E6_0003)
        try writeJournal(gen.generate(600), to: dir.path, segmentBytes: 4096)
        let segments = try SegmentFiles.list(in: dir.path)
        let victim = segments[segments.count / 2]
        var offsets: [Int64] = []
        _ = try JournalReader.read(victim, isLast: false, repairTornTail: false) { _, off in offsets.append(off) }
        let target = offsets[offsets.count / 2]
        var bytes = dir.read(victim.name)
        bytes[Int(target) + 12] ^= 0x40
        dir.write(victim.name, bytes)
        #expect(throws: JournalError.corrupt(path: victim.path, offset: target,
                                             reason: try corruptReason(dir.path))) {
            try Self.readAll(dir.path, repair: true)
        }
        #expect(dir.read(victim.name) == bytes, "nothing repaired")

        // The same cut short in an earlier segment: corruption too.
        dir.write(victim.name, Array(bytes[0..<(Int(target) + 10)]))
        #expect(throws: JournalError.corrupt(path: victim.path, offset: target, reason: "record cut by end of file")) {
            try Self.readAll(dir.path, repair: true)
        }
    }

    /// In the last segment, a bad record followed by more non-zero data is corruption.
    @Test func badRecordFollowedByDataInLastSegmentIsCorruption() throws {
        let dir = TempDirectory("corrupt-last")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x5E6_0004)
        try writeJournal(gen.generate(200), to: dir.path, segmentBytes: 1 << 20)
        let (last, offsets) = try Self.lastSegmentLayout(dir)
        var bytes = dir.read(last.name)
        let target = offsets[offsets.count - 3]
        bytes[Int(target) + 20] ^= 1
        dir.write(last.name, bytes)
        let error = journalError { _ = try Self.readAll(dir.path, repair: true) }
        guard case .corrupt(let path, let offset, let reason)? = error else {
            Issue.record("corruption not reported: \(String(describing: error))")
            return
        }
        #expect(path == last.path && offset == target)
        #expect(reason.contains("checksum") && reason.contains("non-zero"))
        #expect(dir.read(last.name) == bytes)
        // Garbage length in the last segment with data after: corruption as well.
        bytes[Int(target) + 20] ^= 1
        bytes[Int(target) + 3] = 0x7F
        dir.write(last.name, bytes)
        #expect(throws: JournalError.self) { try Self.readAll(dir.path, repair: true) }
    }

    /// Zeros after the last record (a size extended before its data landed)
    /// are a torn tail; so is a last segment holding only a partial header.
    @Test func zerosAndEmptySegments() throws {
        let dir = TempDirectory("zeros")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x5E6_0005)
        let records = gen.generate(50)
        try writeJournal(records, to: dir.path, segmentBytes: 1 << 20)
        let (last, _) = try Self.lastSegmentLayout(dir)
        let original = dir.read(last.name)
        dir.write(last.name, original + [UInt8](repeating: 0, count: 3000))
        let (read, summary) = try Self.readAll(dir.path, repair: true)
        #expect(read == records)
        #expect(summary.tornTail?.offset == Int64(original.count) && summary.tornTail?.droppedBytes == 3000)
        #expect(dir.read(last.name) == original)
        // An empty newest segment (created, crash before the first write) is fine.
        dir.write(SegmentFiles.name(firstSeq: 51), [])
        #expect(try Self.readAll(dir.path).0 == records)
    }
}

/// The reason the reader gives for the damaged record (checked separately for its shape).
private func corruptReason(_ dir: String) throws -> String {
    let error = journalError { _ = try JournalReader.readAll(directory: dir, repairTornTail: false) { _, _, _ in } }
    guard case .corrupt(_, _, let reason)? = error else { return "" }
    #expect(reason.contains("bad checksum") && reason.contains("non-zero"))
    return reason
}
