import StockJournal
import StockProtocol
import Testing
import TestSupport

@Suite("Verify", .cpuHeavy)
struct VerifyTests {
    @Test func goodDirectory() throws {
        let dir = TempDirectory("vgood")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x7E1F_0001)
        let records = gen.generate(1200)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        try Snapshots.write(try replay(records[0..<700]), wallTimeMs: 0, directory: dir.path)
        let report = JournalVerifier.verify(dataDirectory: dir.path)
        print(report)
        #expect(report.ok && report.findings.allSatisfy { $0.severity == .info })
        #expect(report.snapshotsFound == 1 && report.snapshotsValid == 1 && report.records == 1200)
        #expect(report.seqRange == 1...1200 && report.gaps.isEmpty && report.replayedTo == 1200)
        #expect(report.description.hasSuffix("OK"))
        // Preallocated segments: zero tails, info lines only.
        #expect(report.zeroTailBytes > 0 && report.tornTail == nil)
        #expect(report.findings.contains { $0.message.contains("unused (zero) bytes") })
    }

    @Test func tornDirectoryIsReportedNotRepaired() throws {
        let dir = TempDirectory("vtorn")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x7E1F_0002)
        try writeJournal(gen.generate(300), to: dir.path)
        let last = try SegmentFiles.list(in: dir.path).last!
        let end = Int(try JournalReader.read(last, isLast: true, repairTornTail: false) { _, _ in }.validBytes)
        var torn = dir.read(last.name)
        for i in (end - 5)..<end { torn[i] = 0 }  // the record's last bytes never landed
        dir.write(last.name, torn)
        let report = JournalVerifier.verify(dataDirectory: dir.path)
        #expect(report.ok && report.tornTail != nil && report.records == 299)
        #expect(report.findings.contains { $0.severity == .warning && $0.message.contains("torn tail") })
        #expect(dir.read(last.name) == torn, "verify is read-only")
    }

    @Test func corruptDirectory() throws {
        let dir = TempDirectory("vbad")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x7E1F_0003)
        var records = gen.generate(800)
        records.remove(at: 700)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        let segments = try SegmentFiles.list(in: dir.path)
        var bytes = dir.read(segments[1].name)
        bytes[50] ^= 0x10
        dir.write(segments[1].name, bytes)
        let report = JournalVerifier.verify(dataDirectory: dir.path)
        print(report)
        #expect(!report.ok && report.description.hasSuffix("FAILED"))
        guard case .corrupt(let path, let offset, _)? = report.corruption.first else {
            Issue.record("no corruption reported")
            return
        }
        #expect(path == segments[1].path && offset <= 50 && report.corruption.count == 1)
        #expect(report.gaps.contains { $0.contains(701) })
        #expect(report.segments == segments.count)
    }

    @Test func missingDirectoryAndBadReplay() throws {
        #expect(!JournalVerifier.verify(dataDirectory: "/nonexistent/stockd-data").ok)
        let dir = TempDirectory("vreplay")
        defer { dir.remove() }
        let r = SequencedRecord(seq: 1, timeMs: 0, record: .stockAdjusted(sku: SKU("ghost")!, delta: 1, reason: 0))
        try writeJournal([r], to: dir.path)
        let report = JournalVerifier.verify(dataDirectory: dir.path)
        #expect(!report.ok && report.replayError == .replay(seq: 1, reason: "unknown SKU ghost"))
    }
}
