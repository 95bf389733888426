import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

@Suite("Compaction", .cpuHeavy)
struct CompactionTests {
    /// Seq and largest seq of every record in `segments`.
    static func seqs(_ segments: [SegmentFile]) throws -> (all: Set<UInt64>, maxBySegment: [String: UInt64]) {
        var all = Set<UInt64>()
        var maxBy: [String: UInt64] = [:]
        for s in segments {
            let summary = try JournalReader.read(s, isLast: false, repairTornTail: false) { r, _ in all.insert(r.seq) }
            maxBy[s.path] = summary.maxSeq
        }
        return (all, maxBy)
    }

    /// Randomized histories, written slightly out of order across many
    /// segments (seqs of neighbouring segments interleave), sometimes on top
    /// of a snapshot; compaction over all but the last segment; recovery
    /// afterwards gives the state of a full replay.
    @Test(arguments: 1...6 as ClosedRange<UInt64>)
    func compactionThenRecoveryEqualsFullReplay(seed: UInt64) throws {
        let dir = TempDirectory("compact")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0xC0_0000 + seed, skus: 4 + Int(seed % 8))
        let records = gen.generate(4000)
        var rng = SplitMix64(seed: seed)
        let window = 4 + Int(rng.next(below: 40))
        try writeJournal(shuffledInWindows(records, window: window, seed: seed), to: dir.path, segmentBytes: 8192,
                         maxBatch: 10, seed: seed)
        let s0 = seed % 2 == 0 ? Int(rng.next(below: 2000)) : 0
        if s0 > 0 { try Snapshots.write(try replay(records[0..<s0]), wallTimeMs: 0, directory: dir.path) }
        let segments = try SegmentFiles.list(in: dir.path)
        let closed = Array(segments.dropLast())
        #expect(closed.count > 20)
        let (inClosed, maxBy) = try Self.seqs(closed)
        // Oracle: S is the end of the contiguous run from S0 in the closed segments.
        var s = UInt64(s0)
        while inClosed.contains(s + 1) { s += 1 }

        let result = try Compaction.run(dataDirectory: dir.path, closedSegments: closed, nowWallMs: 77)
        #expect(result.snapshotSeq == s && result.previousSnapshotSeq == UInt64(s0) && result.wroteSnapshot)
        #expect(result.recordsReplayed == Int(s) - s0 && result.segmentsRead == closed.count)
        #expect(result.recordsRead == inClosed.count)
        let (snapshotState, header) = try Snapshots.load(result.snapshot!)
        #expect(differences(snapshotState, try replay(records[0..<Int(s)])) == [] && header.wallTimeMs == 77)
        // Removed: exactly the closed segments wholly at or below S; the open one untouched.
        let removed = closed.filter { maxBy[$0.path]! <= s }.map(\.path)
        #expect(result.segmentsRemoved == removed && !removed.isEmpty)
        #expect(result.segmentsKept == closed.filter { maxBy[$0.path]! > s }.map(\.path))
        #expect(try SegmentFiles.list(in: dir.path).map(\.path) == segments.map(\.path).filter { !removed.contains($0) })
        #expect(try Snapshots.list(in: dir.path) == [result.snapshot!], "older snapshots removed")
        #expect(result.bytesFreed >= Int64(removed.count) * 8192)

        let recovered = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(differences(recovered.state, try replay(records)) == [])
        #expect(recovered.snapshotSeq == s && recovered.nextSeq == 4001 && recovered.gapAt == nil)
        #expect(recovered.tornTail == nil && recovered.recordsReplayed == 4000 - Int(s))
        // Kept segments' records at or below S are ignored by recovery.
        let keptCovered = try Self.seqs(try SegmentFiles.list(in: dir.path)).all.filter { $0 <= s }.count
        #expect(recovered.recordsCoveredBySnapshot == keptCovered)

        // Again, with nothing new: no snapshot, nothing removed, same state.
        let again = try Compaction.run(dataDirectory: dir.path, closedSegments: Array(try SegmentFiles.list(in: dir.path).dropLast()),
                                       nowWallMs: 78)
        #expect(!again.wroteSnapshot && again.snapshotSeq == s && again.segmentsRemoved.isEmpty)
        // Given a list that names segments already deleted: skipped, reported.
        let stale = try Compaction.run(dataDirectory: dir.path, closedSegments: closed, nowWallMs: 79)
        #expect(stale.segmentsMissing == removed && stale.segmentsRemoved.isEmpty && stale.snapshotSeq == s)
        #expect(try Recovery.run(dataDirectory: dir.path, nowWallMs: 0).state == recovered.state)
    }

    /// A crash at any point of a compaction: the snapshot only half written
    /// (a `.tmp`), written but no segment deleted, some deleted — recovery
    /// gives the same state every time.
    @Test func crashAtEveryStep() throws {
        let dir = TempDirectory("compact-crash")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0xC0_1000)
        let records = gen.generate(3000)
        try writeJournal(shuffledInWindows(records, window: 24, seed: 5), to: dir.path, segmentBytes: 8192, maxBatch: 10)
        try Snapshots.write(try replay(records[0..<500]), wallTimeMs: 0, directory: dir.path)
        let expected = try replay(records)

        // The complete compaction on a copy tells what it writes and deletes.
        let copy = TempDirectory("compact-crash-copy")
        defer { copy.remove() }
        for name in dir.names() { copy.write(name, dir.read(name)) }
        let done = try Compaction.run(dataDirectory: copy.path,
                                      closedSegments: try SegmentFiles.list(in: copy.path).dropLast(), nowWallMs: 1)
        let snapshotName = done.snapshot!.name
        let removedNames = done.segmentsRemoved.map { String($0.split(separator: "/").last!) }
        #expect(removedNames.count > 5 && done.snapshotsRemoved.count == 1)

        func recoversTheSame(_ label: String) throws {
            let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
            #expect(differences(result.state, expected) == [], "\(label)")
            #expect(result.nextSeq == 3001 && result.gapAt == nil, "\(label)")
        }
        try recoversTheSame("before")
        // Crash inside Snapshots.write: a partial .tmp.
        dir.write(snapshotName + ".tmp", Array(copy.read(snapshotName).prefix(100)))
        try recoversTheSame("partial tmp")
        // The snapshot durable, nothing deleted yet.
        dir.write(snapshotName, copy.read(snapshotName))
        try FileManager.default.removeItem(atPath: dir.file(snapshotName + ".tmp"))
        try recoversTheSame("snapshot written")
        // Some segments deleted, in order, then all of them, then the old snapshot.
        for (i, name) in removedNames.enumerated() {
            try FileManager.default.removeItem(atPath: dir.file(name))
            if i % 3 == 0 || i == removedNames.count - 1 { try recoversTheSame("\(i + 1) segments deleted") }
        }
        try FileManager.default.removeItem(atPath: dir.file(Snapshots.name(seq: 500)))
        try recoversTheSame("old snapshot deleted")
        // The feed floor is raised before the deletions this simulation made by hand.
        #expect(dir.names() == copy.names().filter { $0 != FeedFloor.fileName })
        // A compaction resumed after the crash finishes the job (and changes nothing if it had).
        let resumed = try Compaction.run(dataDirectory: dir.path, closedSegments: Array(try SegmentFiles.list(in: dir.path).dropLast()),
                                         nowWallMs: 2)
        #expect(!resumed.wroteSnapshot && resumed.segmentsRemoved.isEmpty && resumed.snapshotSeq == done.snapshotSeq)
    }

    /// The closed segments end with a gap — a seq that is still in the open
    /// segment: S stops before it, segments holding seqs above S stay, and
    /// recovery (snapshot + kept segments + open segment) is complete.
    @Test func gapInTheClosedSegments() throws {
        let dir = TempDirectory("compact-gap")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0xC0_2000)
        let records = gen.generate(3000)
        // Seq 1700 reaches the journal last (a worker's buffer handed over late).
        var order = shuffledInWindows(records, window: 8, seed: 3)
        let late = order.firstIndex { $0.seq == 1700 }!
        order.append(order.remove(at: late))
        try writeJournal(order, to: dir.path, segmentBytes: 8192, maxBatch: 10)
        let segments = try SegmentFiles.list(in: dir.path)
        let closed = Array(segments.dropLast())
        let (inClosed, maxBy) = try Self.seqs(closed)
        #expect(!inClosed.contains(1700) && inClosed.contains(1701))

        let result = try Compaction.run(dataDirectory: dir.path, closedSegments: closed, nowWallMs: 0)
        #expect(result.snapshotSeq == 1699 && result.gapAt == 1700)
        #expect(result.recordsAfterGap == inClosed.filter { $0 > 1700 }.count)
        let expected = try replay(records[0..<1699])
        #expect(try Snapshots.load(result.snapshot!).0 == expected)
        let kept = closed.filter { maxBy[$0.path]! > 1699 }
        #expect(result.segmentsKept == kept.map(\.path) && kept.count > 5)
        #expect(try SegmentFiles.list(in: dir.path) == kept + [segments.last!])

        let recovered = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(differences(recovered.state, try replay(records)) == [])
        #expect(recovered.nextSeq == 3001 && recovered.snapshotSeq == 1699 && recovered.gapAt == nil)
        #expect(recovered.recordsCoveredBySnapshot > 0, "kept segments hold records the snapshot covers")
        #expect(recovered.recordsReplayed == 3000 - 1699)
    }

    /// A damaged record in a closed segment is corruption: an error, nothing written or deleted.
    @Test func corruptionStopsCompaction() throws {
        let dir = TempDirectory("compact-bad")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0xC0_3000)
        try writeJournal(gen.generate(1500), to: dir.path, segmentBytes: 8192, maxBatch: 10)
        let segments = try SegmentFiles.list(in: dir.path)
        var bytes = dir.read(segments[3].name)
        bytes[300] ^= 0x20
        dir.write(segments[3].name, bytes)
        let names = dir.names()
        let error = journalError {
            _ = try Compaction.run(dataDirectory: dir.path, closedSegments: Array(segments.dropLast()), nowWallMs: 0)
        }
        guard case .corrupt(let path, _, _)? = error else {
            Issue.record("corruption not reported: \(String(describing: error))")
            return
        }
        #expect(path == segments[3].path && dir.names() == names)
        // A torn-looking end in a closed segment is corruption as well (never truncated).
        dir.write(segments[3].name, Array(bytes.prefix(150)))
        #expect(throws: JournalError.self) {
            try Compaction.run(dataDirectory: dir.path, closedSegments: Array(segments.dropLast()), nowWallMs: 0)
        }
        #expect(dir.read(segments[3].name).count == 150 && dir.names() == names)
    }

    /// The server's pattern: compactions over `closedSegments()` on another
    /// thread, started at rotations while the writer keeps appending,
    /// rotating and preparing; then recovery equals the full replay.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func concurrentWithTheWriter(seed: UInt64) throws {
        let dir = TempDirectory("compact-live")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0xC0_4000 + seed)
        let records = gen.generate(8000)
        let order = shuffledInWindows(records, window: 12, seed: seed)
        let writer = try JournalWriter(directory: dir.path, segmentBytes: 8192)
        let runner = BackgroundCompactions(directory: dir.path)
        let buffer = RecordBuffer()
        var i = 0
        var closedSeen = 0
        var sinceCompaction = 0
        var rng = SplitMix64(seed: seed)
        while i < order.count {
            let n = min(order.count - i, 1 + Int(rng.next(below: 12)))
            buffer.reset()
            for r in order[i..<(i + n)] { RecordCodec.encode(r, into: buffer) }
            try writer.append(buffer)
            try writer.sync()
            i += n
            sinceCompaction += n
            if writer.segmentsClosed != closedSeen {  // a rotation
                closedSeen = writer.segmentsClosed
                if sinceCompaction >= 500 {
                    let closed = try writer.closedSegments()
                    if runner.start(closed) { sinceCompaction = 0 }
                }
            }
        }
        runner.wait()
        try writer.close()
        #expect(runner.errors.isEmpty, "\(runner.errors)")
        #expect(runner.results.count >= 5 && runner.results.contains { !$0.segmentsRemoved.isEmpty })
        let seqs = runner.results.map(\.snapshotSeq)
        #expect(seqs == seqs.sorted())
        let recovered = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(differences(recovered.state, try replay(records)) == [])
        #expect(recovered.nextSeq == 8001 && recovered.gapAt == nil && recovered.tornTail == nil)
        #expect(try Snapshots.list(in: dir.path).count == 1)
    }
}

/// One compaction at a time on a background thread (as the server would run them).
final class BackgroundCompactions: @unchecked Sendable {
    let directory: String
    private let lock = NSCondition()
    private var running = false
    private(set) var results: [CompactionResult] = []
    private(set) var errors: [JournalError] = []

    init(directory: String) { self.directory = directory }

    /// Starts a compaction over `segments` unless one is running.
    func start(_ segments: [SegmentFile]) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !running else { return false }
        running = true
        let directory = self.directory
        Thread {
            let outcome = Result { () throws(JournalError) in
                try Compaction.run(dataDirectory: directory, closedSegments: segments, nowWallMs: 0)
            }
            self.lock.lock()
            switch outcome {
            case .success(let r): self.results.append(r)
            case .failure(let e): self.errors.append(e)
            }
            self.running = false
            self.lock.broadcast()
            self.lock.unlock()
        }.start()
        return true
    }

    func wait() {
        lock.lock()
        while running { lock.wait() }
        lock.unlock()
    }
}
