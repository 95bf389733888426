import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

@Suite("Segment files", .cpuHeavy)
struct SegmentTests {
    /// Reads every record of `dir` in file order.
    static func readAll(_ dir: String, repair: Bool = false) throws -> ([SequencedRecord], JournalReader.Summary) {
        var out: [SequencedRecord] = []
        let summary = try JournalReader.readAll(directory: dir, repairTornTail: repair) { r, _, _ in out.append(r) }
        return (out, summary)
    }

    @Test(arguments: [true, false])
    func writerReaderRoundTripWithRotation(preallocate: Bool) throws {
        let dir = TempDirectory("rotate")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x5E6_0001)
        let records = gen.generate(3000)
        try writeJournal(records, to: dir.path, segmentBytes: 8192, maxBatch: 20, preallocate: preallocate)
        let segments = try SegmentFiles.list(in: dir.path)
        #expect(segments.count > 10)
        // Named after their first record; a batch is never split, so each
        // closed segment holds at least segmentBytes of records and at most
        // one batch more. Preallocated: the file is at least segmentBytes,
        // zeros after the records; otherwise it ends with them.
        let (read, summary) = try Self.readAll(dir.path)
        #expect(read == records)
        #expect(summary.tornTail == nil)
        for (i, s) in summary.segments.enumerated() {
            #expect(s.segment.name == SegmentFiles.name(firstSeq: s.minSeq))
            let size = Int64(dir.read(s.segment.name).count)
            if i < segments.count - 1 { #expect(s.validBytes >= 8192 && s.validBytes < 8192 + 20 * 250) }
            #expect(s.zeroTailBytes == size - s.validBytes)
            #expect(preallocate ? size >= 8192 : s.zeroTailBytes == 0)
        }
        #expect(segments.first?.name == "journal-00000000000000000001.log")
        #expect(!dir.names().contains(SegmentFiles.preparedName), "close() removes the prepared file")
    }

    /// What the sync-latency benchmark (`make bench-journal`) used to assert as a test: ~3 KB batches
    /// of RESERVE records, each appended and synced, across rotations while the next segment is
    /// prepared in the background, all read back. No timing is checked.
    @Test(arguments: [false, true])
    func syncedBatchesReadBackAcrossRotations(preallocate: Bool) throws {
        let dir = TempDirectory(preallocate ? "lat-prealloc" : "lat-append")
        defer { dir.remove() }
        let segmentBytes: Int64 = 1 << 20
        let writer = try JournalWriter(directory: dir.path, segmentBytes: segmentBytes, preallocate: preallocate)
        // As the benchmark does: let init's background preparation finish (bounded).
        let deadline = ContinuousClock.now + .seconds(10)
        while preallocate && !writer.nextSegmentReady && ContinuousClock.now < deadline { usleep(1000) }
        let buffer = RecordBuffer(capacity: 8192)
        let customer = ShortBytes("viewer-000123")!
        var seq: UInt64 = 0
        for b in 0..<800 {
            buffer.reset()
            while buffer.count < 3000 {
                seq += 1
                RecordCodec.encode(SequencedRecord(seq: seq, timeMs: 1_700_000_000_000 + seq, record: .reserved(
                    token: Token(slot: UInt32(seq), generation: 1, secret: seq &* 0x9E37_79B9_7F4A_7C15),
                    sku: SKU("aurora-jacket-\(b % 100)")!, quantity: 1, deadlineWallMs: 1_800_000_000_000,
                    customer: customer, idempotencyKey: .empty, bundle: false)), into: buffer)
            }
            try writer.append(buffer)
            try writer.sync()
        }
        try writer.close()
        #expect(writer.segmentsCreated >= 3, "2.4 MB in 1 MiB segments rotates")
        var read: UInt64 = 0
        var last: UInt64 = 0
        _ = try JournalReader.readAll(directory: dir.path, repairTornTail: false) { r, _, _ in
            read += 1
            last = r.seq
        }
        #expect(read == seq && last == seq)
    }

    @Test func writerRefusesToReuseASegmentName() throws {
        let dir = TempDirectory("exists")
        defer { dir.remove() }
        let r = SequencedRecord(seq: 7, timeMs: 1, record: .extended(token: Token(slot: 1, generation: 1, secret: 1), deadlineWallMs: 2))
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

    /// Records of the last segment, with their offsets, and where the records end.
    static func lastSegmentLayout(_ dir: TempDirectory) throws -> (SegmentFile, [Int64], Int64) {
        let last = try SegmentFiles.list(in: dir.path).last!
        var offsets: [Int64] = []
        let s = try JournalReader.read(last, isLast: true, repairTornTail: false) { _, off in offsets.append(off) }
        return (last, offsets, s.validBytes)
    }

    /// A crash at every byte of the last record of the last segment — the
    /// file cut there, or the rest of the file zeros (the preallocated
    /// space) — is a torn tail: reported, truncated, every earlier record
    /// kept. Unless nothing but zeros is left of the record: that is the
    /// normal end of the data, neither reported nor truncated.
    @Test func tornTailAtEveryByteOfTheLastRecord() throws {
        let dir = TempDirectory("torn")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x5E6_0002)
        let records = gen.generate(400)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        let (last, offsets, end) = try Self.lastSegmentLayout(dir)
        let original = dir.read(last.name)
        #expect(original.count >= 4096 && original[Int(end)...].allSatisfy { $0 == 0 }, "preallocated")
        let start = Int(offsets.last!)
        let recordSize = Int(end) - start
        for k in 0..<recordSize {
            for zeroFill in [false, true] {
                let content = zeroFill ? Array(original[0..<(start + k)]) + [UInt8](repeating: 0, count: original.count - start - k)
                                       : Array(original[0..<(start + k)])
                dir.write(last.name, content)
                let (read, summary) = try Self.readAll(dir.path, repair: true)
                if content == original {  // zeroing bytes that were zero changes nothing
                    #expect(read == records)
                    continue
                }
                #expect(read == Array(records.dropLast()), "cut at \(k), zeros \(zeroFill)")
                // (A record's first byte can be 0 itself: a length of 256.)
                if content[start...].allSatisfy({ $0 == 0 }) {
                    #expect(summary.tornTail == nil, "cut at \(k), zeros \(zeroFill)")
                    #expect(summary.segments.last?.zeroTailBytes == Int64(content.count - start))
                    #expect(dir.read(last.name) == content, "a zero tail is left alone")
                } else {
                    #expect(summary.tornTail == TornTail(path: last.path, offset: Int64(start),
                                                         droppedBytes: Int64(content.count - start),
                                                         reason: summary.tornTail?.reason ?? ""),
                            "cut at \(k), zeros \(zeroFill)")
                    #expect(dir.read(last.name) == Array(original[0..<start]), "truncated to the record's start")
                }
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
        let (last, offsets, _) = try Self.lastSegmentLayout(dir)
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

    /// Zeros after the last record are the end of the data — in the last
    /// segment and in a closed one (closed before it was full) — neither a
    /// torn tail nor truncated; zeros followed by data are corruption.
    @Test(arguments: [true, false])
    func zeroTails(preallocate: Bool) throws {
        let dir = TempDirectory("zeros")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x5E6_0005)
        let records = gen.generate(150)
        // Two writers, as across a restart: the first segment is closed before it is full.
        try writeJournal(Array(records[0..<50]), to: dir.path, segmentBytes: 1 << 20, preallocate: preallocate)
        try writeJournal(Array(records[50...]), to: dir.path, segmentBytes: 1 << 20, preallocate: preallocate)
        let segments = try SegmentFiles.list(in: dir.path)
        #expect(segments.count == 2)
        if !preallocate {  // make the zero tails by hand
            for s in segments { dir.write(s.name, dir.read(s.name) + [UInt8](repeating: 0, count: 3000)) }
        }
        let before = segments.map { dir.read($0.name) }
        let (read, summary) = try Self.readAll(dir.path, repair: true)
        #expect(read == records && summary.tornTail == nil)
        for (k, s) in summary.segments.enumerated() {
            #expect(s.zeroTailBytes > 0 && s.zeroTailBytes == Int64(before[k].count) - s.validBytes)
        }
        #expect(segments.map { dir.read($0.name) } == before, "nothing truncated")
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        let expected = try replay(records)
        #expect(result.tornTail == nil && result.recordsReplayed == 150 && result.state == expected)
        #expect(segments.map { dir.read($0.name) } == before, "nothing truncated")

        // Data in the zero tail of the closed segment: corruption, named where the data is.
        let end = Int(summary.segments[0].validBytes)
        var bytes = before[0]
        bytes[end + 700] = 1
        dir.write(segments[0].name, bytes)
        var error = journalError { _ = try Self.readAll(dir.path, repair: true) }
        #expect(error == .corrupt(path: segments[0].path, offset: Int64(end),
                                  reason: "zeros where a record should start, then non-zero data at byte \(end + 700)"))
        // In the last segment too.
        dir.write(segments[0].name, before[0])
        let lastEnd = Int(summary.segments[1].validBytes)
        bytes = before[1]
        bytes[bytes.count - 1] = 0xFF
        dir.write(segments[1].name, bytes)
        error = journalError { _ = try Self.readAll(dir.path, repair: true) }
        guard case .corrupt(let path, let offset, _)? = error else {
            Issue.record("data after zeros in the last segment: \(String(describing: error))")
            return
        }
        #expect(path == segments[1].path && offset == Int64(lastEnd))
        #expect(dir.read(segments[1].name) == bytes, "nothing repaired")

        // An empty newest segment (created, crash before the first write) is fine; so is one of zeros only.
        dir.write(segments[1].name, before[1])
        dir.write(SegmentFiles.name(firstSeq: 151), [])
        #expect(try Self.readAll(dir.path).0 == records)
        dir.write(SegmentFiles.name(firstSeq: 151), [UInt8](repeating: 0, count: 4096))
        let (again, s2) = try Self.readAll(dir.path)
        #expect(again == records && s2.tornTail == nil && s2.segments.last?.zeroTailBytes == 4096)
    }

    /// A new segment is the prepared file renamed (same inode, full size,
    /// zeros after the records), and the next one is prepared in the background.
    @Test func rotationUsesThePreparedFile() throws {
        let dir = TempDirectory("prep")
        defer { dir.remove() }
        let segmentBytes: Int64 = 16 << 10
        var gen = HistoryGenerator(seed: 0x5E6_0006)
        let records = gen.generate(4000)
        let writer = try JournalWriter(directory: dir.path, segmentBytes: segmentBytes)
        let buffer = RecordBuffer()
        var i = 0
        var renamed = 0
        while i < records.count {
            let n = min(records.count - i, 10)
            buffer.reset()
            for r in records[i..<(i + n)] { RecordCodec.encode(r, into: buffer) }
            let opens = writer.currentSegment == nil
            let prepared = opens ? try waitForFile(dir, SegmentFiles.preparedName) : nil
            try writer.append(buffer)
            try writer.sync()
            if opens, let prepared, let segment = writer.currentSegment ?? writer.lastClosedSegment {
                let actual = try inode(segment.path)
                #expect(actual == prepared, "\(segment.name) is the prepared file: \(inodes(dir))")
                renamed += 1
            }
            i += n
        }
        #expect(renamed == writer.segmentsCreated && writer.segmentsCreated > 10)
        #expect(writer.preparedSegmentsUsed + writer.preparationsWaitedFor == writer.segmentsCreated)
        #expect(writer.segmentsPreparedInline == 0 && writer.preparationFailures == 0)
        try writer.close()
        #expect(!dir.names().contains(SegmentFiles.preparedName))
        let (read, summary) = try Self.readAll(dir.path)
        #expect(read == records && summary.tornTail == nil)
        for (k, s) in summary.segments.enumerated() {
            let size = Int64(dir.read(s.segment.name).count)
            if k < summary.segments.count - 1 {
                #expect(s.validBytes >= segmentBytes && size == max(segmentBytes, s.validBytes))
            } else {
                #expect(size == segmentBytes && s.zeroTailBytes == segmentBytes - s.validBytes)
            }
        }
    }

    /// A leftover prepared file (a crash) is never used as it is: the writer
    /// prepares a fresh one, and `Recovery.finish` removes leftovers.
    @Test func leftoverPreparedFiles() throws {
        let dir = TempDirectory("leftover")
        defer { dir.remove() }
        var rng = SplitMix64(seed: 9)
        dir.write(SegmentFiles.preparedName, rng.bytes(4096))  // garbage of the segment's size
        var gen = HistoryGenerator(seed: 0x5E6_0007)
        let records = gen.generate(100)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        #expect(try Self.readAll(dir.path).0 == records)
        #expect(!dir.names().contains(SegmentFiles.preparedName))
        dir.write(SegmentFiles.preparedName, [UInt8](repeating: 0, count: 4096))
        let report = JournalVerifier.verify(dataDirectory: dir.path)
        #expect(report.ok && report.preparedFiles == [dir.file(SegmentFiles.preparedName)])
        #expect(report.findings.contains { $0.severity == .info && $0.message.contains("prepared segment, never used") })
        #expect(report.findings.allSatisfy { $0.severity == .info })
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        let expected = try replay(records)
        #expect(result.state == expected && result.tornTail == nil)
        #expect(dir.names().contains(SegmentFiles.preparedName), "run changes nothing")
        try Recovery.finish(result, dataDirectory: dir.path, nowWallMs: 0)
        #expect(dir.names() == [FeedFloor.fileName, Snapshots.name(seq: 100)])
    }

    /// `close()` (and deinit) stop a preparation in progress instead of
    /// finishing a file nobody will use, and remove it.
    @Test func closeStopsThePreparation() throws {
        let dir = TempDirectory("prepstop")
        defer { dir.remove() }
        let clock = ContinuousClock()
        let t0 = clock.now
        let writer = try JournalWriter(directory: dir.path, segmentBytes: 1 << 30)  // ~13 s of paced zero-fill
        _ = try waitForFile(dir, SegmentFiles.preparedName)
        try writer.close()
        #expect(clock.now - t0 < .seconds(1))
        #expect(dir.names().isEmpty)
        do {
            _ = try JournalWriter(directory: dir.path, segmentBytes: 1 << 30)
        }
        #expect(clock.now - t0 < .seconds(2))
        #expect(dir.names().isEmpty, "deinit: \(dir.names())")
    }

    /// Background preparations failing (ENOSPC) poison nothing: the journal
    /// thread prepares the segment itself.
    @Test func failedBackgroundPreparationFallsBackInline() throws {
        let dir = TempDirectory("prepfail")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x5E6_0008)
        let records = gen.generate(1000)
        let writer = try JournalWriter(directory: dir.path, segmentBytes: 8192,
                                       preparationFault: { _, background in background ? ENOSPC : nil })
        try append(records, to: writer)
        #expect(writer.segmentsCreated > 5)
        #expect(writer.segmentsPreparedInline == writer.segmentsCreated)
        #expect(writer.preparationFailures == writer.segmentsCreated && writer.lastPreparationFailure?.isNoSpace == true)
        try writer.close()
        #expect(try Self.readAll(dir.path).0 == records)
        #expect(try SegmentFiles.list(in: dir.path).allSatisfy { dir.read($0.name).count >= 8192 }, "preallocated inline")
    }

    /// No space for the next segment at all: the writer keeps appending to
    /// the open segment and fails, with ENOSPC, only when it needs the next one.
    @Test func noSpaceForTheNextSegmentFailsTheWriterAtRotation() throws {
        let dir = TempDirectory("prepnospace")
        defer { dir.remove() }
        let attempts = Counter()
        var gen = HistoryGenerator(seed: 0x5E6_0009)
        let records = gen.generate(1000)
        let writer = try JournalWriter(directory: dir.path, segmentBytes: 8192,
                                       preparationFault: { _, _ in attempts.next() == 0 ? nil : ENOSPC })
        let buffer = RecordBuffer()
        var i = 0
        var error: JournalError?
        while i < records.count && error == nil {
            let n = min(records.count - i, 5)
            buffer.reset()
            for r in records[i..<(i + n)] { RecordCodec.encode(r, into: buffer) }
            let needsSegment = writer.currentSegment == nil && writer.segmentsCreated > 0
            error = journalError {
                try writer.append(buffer)
                try writer.sync()
            }
            #expect((error != nil) == needsSegment, "fails exactly when the second segment is needed")
            i += n
        }
        #expect(error?.isNoSpace == true && writer.segmentsCreated == 1 && writer.segmentsClosed == 1)
        let later = journalError { try writer.sync() }
        guard case .writerFailed(let cause)? = later else {
            Issue.record("not poisoned: \(String(describing: later))")
            return
        }
        #expect(cause.isNoSpace && later?.isNoSpace == true)
        #expect(!dir.names().contains(SegmentFiles.preparedName), "failed preparations leave no file")
        // Everything acknowledged before the failure is there.
        let (read, _) = try Self.readAll(dir.path)
        #expect(read == Array(records[0..<read.count]) && read.count >= 8192 / 250)
    }
}

/// Appends `records` in batches of 10, syncing each.
func append(_ records: [SequencedRecord], to writer: JournalWriter, batch: Int = 10) throws {
    let buffer = RecordBuffer()
    var i = 0
    while i < records.count {
        let n = min(records.count - i, batch)
        buffer.reset()
        for r in records[i..<(i + n)] { RecordCodec.encode(r, into: buffer) }
        try writer.append(buffer)
        try writer.sync()
        i += n
    }
}

/// The inode number of `path`.
func inode(_ path: String) throws -> UInt64 {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
}

/// The inode of `name` in `dir` once it exists (polls up to 10 s).
func waitForFile(_ dir: TempDirectory, _ name: String) throws -> UInt64 {
    for _ in 0..<10_000 {
        if FileManager.default.fileExists(atPath: dir.file(name)) { return try inode(dir.file(name)) }
        usleep(1000)
    }
    Issue.record("\(name) never appeared")
    return 0
}

/// A thread-safe counter for `@Sendable` test hooks.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    /// The value before incrementing it.
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value - 1
    }
}

/// The reason the reader gives for the damaged record (checked separately for its shape).
private func corruptReason(_ dir: String) throws -> String {
    let error = journalError { _ = try JournalReader.readAll(directory: dir, repairTornTail: false) { _, _, _ in } }
    guard case .corrupt(_, _, let reason)? = error else { return "" }
    #expect(reason.contains("bad checksum") && reason.contains("non-zero"))
    return reason
}

/// Every name in `dir` with its inode (failure messages).
func inodes(_ dir: TempDirectory) -> String {
    dir.names().map { "\($0):\((try? inode(dir.file($0))) ?? 0)" }.joined(separator: " ")
}
