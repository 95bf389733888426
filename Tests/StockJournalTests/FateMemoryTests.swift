import Foundation
@testable import StockJournal
import StockProtocol
import Testing
import TestSupport

/// The decided tokens the journal remembers across restarts (FateMemory):
/// what replay keeps, what a reused slot forgets, the bound, and the
/// snapshot round trip.
@Suite("Fate memory", .cpuHeavy)
struct FateMemoryTests {
    let a = SKU("FATE-SKU")!

    func rec(_ seq: UInt64, _ r: JournalRecord) -> SequencedRecord { SequencedRecord(seq: seq, timeMs: 1000 + seq, record: r) }

    func reserved(_ t: Token, _ q: UInt32 = 1, bundle: Bool = false) -> JournalRecord {
        .reserved(token: t, sku: a, quantity: q, deadlineWallMs: 9000, customer: .empty, idempotencyKey: .empty, bundle: bundle)
    }

    /// A state with `a` stocked at 1,000 (seq 1).
    func stocked(limit: Int = FateMemory.defaultLimit) throws -> JournalState {
        var s = JournalState()
        s.fateLimit = limit
        try s.apply(rec(1, .stockSet(sku: a, onHand: 1000, lowStockThreshold: 0, perCustomerLimit: 0)))
        return s
    }

    @Test func replayRemembersEachFateUntilTheSlotIsReused() throws {
        var s = try stocked()
        let t1 = Token(slot: 1, generation: 1, secret: 11), t2 = Token(slot: 2, generation: 1, secret: 22)
        let t3 = Token(slot: 3, generation: 1, secret: 33)
        try s.apply(rec(2, reserved(t1)))
        try s.apply(rec(3, reserved(t2)))
        try s.apply(rec(4, reserved(t3)))
        try s.apply(rec(5, .confirmed(token: t1, sku: a, quantity: 1, returned: 0, orderReference: .empty)))
        try s.apply(rec(6, .released(token: t2, sku: a, quantity: 1)))
        try s.apply(rec(7, .expired(token: t3, sku: a, quantity: 1)))
        #expect(s.fates.oldestFirst == [DecidedToken(token: t1, fate: .confirmed, seq: 5),
                                        DecidedToken(token: t2, fate: .released, seq: 6),
                                        DecidedToken(token: t3, fate: .expired, seq: 7)])
        // Slot 2 reused by a new token: the released one is forgotten.
        try s.apply(rec(8, reserved(Token(slot: 2, generation: 2, secret: 44))))
        #expect(s.fates.bySlot[2] == nil && s.fates.count == 2)
        try s.checkInvariants()
    }

    @Test func aBundleIsDecidedWithItsLastLine() throws {
        var s = try stocked()
        let b = SKU("FATE-B")!
        try s.apply(rec(2, .stockSet(sku: b, onHand: 5, lowStockThreshold: 0, perCustomerLimit: 0)))
        let t = Token(slot: 7, generation: 3, secret: 77)
        try s.apply(rec(3, reserved(t, 2, bundle: true)))
        try s.apply(rec(4, .reserved(token: t, sku: b, quantity: 1, deadlineWallMs: 9000, customer: .empty,
                                     idempotencyKey: .empty, bundle: true, line: 1, lines: 2)))
        try s.apply(rec(5, .confirmed(token: t, sku: a, quantity: 2, returned: 0, orderReference: .empty)))
        #expect(s.fates.count == 0, "one line still held: not decided yet")
        try s.apply(rec(6, .confirmed(token: t, sku: b, quantity: 1, returned: 0, orderReference: .empty)))
        #expect(s.fates.oldestFirst == [DecidedToken(token: t, fate: .confirmed, seq: 6)])
    }

    @Test func theBoundKeepsTheNewestAndTheOrderArrayStaysBounded() throws {
        var s = try stocked(limit: 100)
        var seq: UInt64 = 1
        // 5,000 tokens over 300 slots: slots are reused, fates pile up beyond the bound.
        for i in 0..<5_000 {
            let t = Token(slot: UInt32(i % 300), generation: UInt32(i / 300 + 1), secret: UInt64(i))
            seq += 1
            try s.apply(rec(seq, reserved(t)))
            seq += 1
            try s.apply(rec(seq, .released(token: t, sku: a, quantity: 1)))
            #expect(s.fates.count <= 100)
        }
        let kept = s.fates.oldestFirst
        #expect(kept.count == 100)
        #expect(kept.map(\.token.secret) == (4_900..<5_000).map { UInt64($0) }, "the newest 100, oldest first")
        try s.checkInvariants()
        // Lowering the bound forgets the oldest.
        s.fateLimit = 10
        #expect(s.fates.oldestFirst.map(\.token.secret) == (4_990..<5_000).map { UInt64($0) })
        s.fateLimit = 0
        #expect(s.fates.count == 0)
    }

    @Test func snapshotsCarryTheFatesAndOlderSnapshotsLoadWithout() throws {
        var s = try stocked()
        let t1 = Token(slot: 1, generation: 9, secret: 0xAB), t2 = Token(slot: 5, generation: 2, secret: 0xCD)
        let live = Token(slot: 6, generation: 1, secret: 0xEF)
        try s.apply(rec(2, reserved(t1)))
        try s.apply(rec(3, reserved(t2)))
        try s.apply(rec(4, reserved(live)))
        try s.apply(rec(5, .expired(token: t2, sku: a, quantity: 1)))
        try s.apply(rec(6, .confirmed(token: t1, sku: a, quantity: 1, returned: 0, orderReference: .empty)))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fates-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = try Snapshots.write(s, wallTimeMs: 42, directory: dir)
        let (loaded, _) = try Snapshots.load(file)
        #expect(loaded == s)
        #expect(loaded.fates.oldestFirst == [DecidedToken(token: t2, fate: .expired, seq: 5),
                                             DecidedToken(token: t1, fate: .confirmed, seq: 6)])
        #expect(loaded.tokens.keys.map { $0 } == [live])
        // Recovery with a smaller bound keeps the newest.
        let recovered = try Recovery.run(dataDirectory: dir, nowWallMs: 0, fateLimit: 1)
        #expect(recovered.state.fates.oldestFirst == [DecidedToken(token: t1, fate: .confirmed, seq: 6)])
    }

    /// A fates section that passes the checksum but does not hold up is a bad snapshot, never a crash.
    @Test func aBadFatesSectionIsABadSnapshot() throws {
        var s = try stocked()
        let t = Token(slot: 2, generation: 1, secret: 7)
        try s.apply(rec(2, reserved(t)))
        try s.apply(rec(3, .released(token: t, sku: a, quantity: 1)))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fates-bad-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = try Snapshots.write(s, wallTimeMs: 1, directory: dir)
        let good = [UInt8](FileManager.default.contents(atPath: file.path)!)
        // The last 4 bytes are the checksum; before them the epoch history's count u64 (0, version 4), and
        // before that the fates: count u64, token[16], fate u8, seq u64.
        let fatesEnd = good.count - 4 - 8
        let fateAt = fatesEnd - 8 - 1, countAt = fatesEnd - 8 - 1 - 16 - 8
        for (what, patch) in [("fate 9", { (b: inout [UInt8]) in b[fateAt] = 9 }),
                              ("count beyond the file", { (b: inout [UInt8]) in b[countAt + 6] = 1 })] {
            var b = good
            patch(&b)
            let body = Array(b[0..<(b.count - 4)])
            let crc = body.withUnsafeBytes { CRC32C.extend(0, $0) }
            b = body + withUnsafeBytes(of: crc.littleEndian) { Array($0) }
            #expect(FileManager.default.createFile(atPath: file.path, contents: Data(b)))
            #expect(throws: JournalError.self, "\(what)") { _ = try Snapshots.load(file) }
        }
    }

    @Test func aDecidedSlotThatIsAlsoLiveIsAnInvariantViolation() throws {
        let t = Token(slot: 3, generation: 1, secret: 1)
        let live = LiveToken(token: Token(slot: 3, generation: 2, secret: 2), lines: [TokenLine(sku: a, quantity: 1)],
                             deadlineWallMs: 9000, customer: .empty, idempotencyKey: .empty, bundle: false)
        let state = try JournalState(skus: [SKUState(sku: a, onHand: 10, reserved: 1)], tokens: [live.token: live],
                                     customerSold: [:], lastSeq: 10,
                                     decided: [DecidedToken(token: t, fate: .released, seq: 4)])
        #expect(throws: JournalError.self) { try state.checkInvariants() }
    }
}
