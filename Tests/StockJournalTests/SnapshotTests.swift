import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

@Suite("Snapshots", .cpuHeavy)
struct SnapshotTests {
    @Test func roundTrip() throws {
        let dir = TempDirectory("snap")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x54A9_0001)
        let state = try replay(gen.generate(4000))
        let file = try Snapshots.write(state, wallTimeMs: 1234, directory: dir.path)
        #expect(file.name == "snapshot-00000000000000004000.snap")
        #expect(dir.names() == [file.name], "no .tmp left")
        let (loaded, header) = try Snapshots.load(file)
        #expect(differences(loaded, state) == [])
        #expect(loaded == state)
        #expect(header == SnapshotHeader(seq: 4000, wallTimeMs: 1234, skuCount: UInt64(state.skuCount),
                                         tokenCount: UInt64(state.tokenCount),
                                         customerSoldCount: UInt64(state.customerSold.count)))
        // The empty state too.
        let empty = try Snapshots.write(JournalState(), wallTimeMs: 1, directory: dir.path)
        #expect(try Snapshots.load(empty).0 == JournalState())
    }

    /// A version-1 snapshot (before backup units: no backup field) still loads, with backup 0.
    @Test func versionOneSnapshotsStillLoad() throws {
        let dir = TempDirectory("snapv1")
        defer { dir.remove() }
        var state = JournalState()
        try state.apply(SequencedRecord(seq: 1, timeMs: 1, record: .stockSet(sku: SKU("OLD-A")!, onHand: 7,
                                                                            lowStockThreshold: 1, perCustomerLimit: 2)))
        try state.apply(SequencedRecord(seq: 2, timeMs: 2, record: .stockSet(sku: SKU("OLD-BB")!, onHand: 3,
                                                                            lowStockThreshold: 0, perCustomerLimit: 0)))
        let file = try Snapshots.write(state, wallTimeMs: 5, directory: dir.path)
        // Rewrite it as version 1: version field 1, each SKU entry without its trailing backup u64, no
        // decided-token section (version 3's count u64) nor epoch history (version 4's count u64, last), new checksum.
        var b = [UInt8](FileManager.default.contents(atPath: file.path)!)
        b[8] = 1
        var v1 = Array(b[0..<56])
        var at = 56
        for _ in 0..<2 {
            let entry = 1 + Int(b[at]) + 32
            v1 += b[at..<(at + entry)]
            #expect(b[(at + entry)..<(at + entry + 8)].allSatisfy { $0 == 0 })  // backup 0
            at += entry + 8
        }
        #expect(b[(b.count - 20)..<(b.count - 4)].allSatisfy { $0 == 0 })  // no decided tokens, no terms
        v1 += b[at..<(b.count - 20)]
        let crc = v1.withUnsafeBytes { CRC32C.extend(0, $0) }
        v1 += withUnsafeBytes(of: crc.littleEndian) { Array($0) }
        #expect(FileManager.default.createFile(atPath: file.path, contents: Data(v1)))
        let (loaded, _) = try Snapshots.load(file)
        #expect(loaded == state && loaded.sku(SKU("OLD-A")!)?.backup == 0)
    }

    /// Full replay == snapshot at a random cut + replay of the rest, field by field.
    @Test(arguments: 1...8 as ClosedRange<UInt64>)
    func snapshotPlusReplayEqualsFullReplay(seed: UInt64) throws {
        let dir = TempDirectory("equiv")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x54A9_1000 + seed, skus: 3 + Int(seed % 10))
        let records = gen.generate(3000)
        let full = try replay(records)
        var rng = SplitMix64(seed: seed)
        let cut = Int(rng.next(below: UInt64(records.count + 1)))
        let file = try Snapshots.write(try replay(records[0..<cut]), wallTimeMs: 0, directory: dir.path)
        let resumed = try replay(records[cut...], onto: try Snapshots.load(file).0)
        #expect(differences(resumed, full) == [], "cut \(cut)")
        #expect(resumed == full)
    }

    /// Every single-byte corruption of a snapshot is refused.
    @Test func corruptSnapshotsAreRefused() throws {
        let dir = TempDirectory("snapbad")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x54A9_0002, skus: 3)
        let file = try Snapshots.write(try replay(gen.generate(60)), wallTimeMs: 1, directory: dir.path)
        let good = dir.read(file.name)
        var rng = SplitMix64(seed: 3)
        for i in good.indices {
            var bytes = good
            bytes[i] ^= UInt8(1 + rng.next(below: 255))
            dir.write(file.name, bytes)
            #expect(throws: JournalError.self) { try Snapshots.load(file) }
        }
        dir.write(file.name, Array(good.dropLast(1)))
        #expect(throws: JournalError.self) { try Snapshots.load(file) }
        dir.write(file.name, [])
        #expect(throws: JournalError.badSnapshot(path: file.path, reason: "empty file")) { try Snapshots.load(file) }
    }

    /// removeCovered deletes snapshots below the seq and segments wholly at
    /// or below it, never the newest segment; what is left still recovers.
    @Test func removeCovered() throws {
        let dir = TempDirectory("retire")
        defer { dir.remove() }
        var gen = HistoryGenerator(seed: 0x54A9_0003)
        let records = gen.generate(2000)
        try writeJournal(records, to: dir.path, segmentBytes: 4096)
        let older = try Snapshots.write(try replay(records[0..<500]), wallTimeMs: 0, directory: dir.path)
        dir.write(Snapshots.name(seq: 400) + ".tmp", [1, 2, 3])
        let snap = try Snapshots.write(try replay(records[0..<1500]), wallTimeMs: 0, directory: dir.path)
        let before = try SegmentFiles.list(in: dir.path)
        let removed = try Snapshots.removeCovered(upTo: snap.seq, in: dir.path)
        #expect(removed.snapshots.sorted() == [older.path, dir.file(Snapshots.name(seq: 400) + ".tmp")].sorted())
        let after = try SegmentFiles.list(in: dir.path)
        #expect(after.count + removed.segments.count == before.count && !removed.segments.isEmpty)
        #expect(after.last == before.last)
        for s in after.dropLast() {
            var maxSeq: UInt64 = 0
            _ = try JournalReader.read(s, isLast: false, repairTornTail: false) { r, _ in maxSeq = max(maxSeq, r.seq) }
            #expect(maxSeq > snap.seq)
        }
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        #expect(result.snapshotSeq == 1500 && result.recordsReplayed == 500)
        #expect(differences(result.state, try replay(records)) == [])
        // Everything covered: all segments but the newest go.
        let all = try Snapshots.write(try replay(records), wallTimeMs: 0, directory: dir.path)
        try Snapshots.removeCovered(upTo: all.seq, in: dir.path)
        #expect(try SegmentFiles.list(in: dir.path) == [before.last!])
        #expect(try Snapshots.list(in: dir.path) == [all])
    }
}
