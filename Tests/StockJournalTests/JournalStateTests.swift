import StockJournal
import StockProtocol
import Testing
import TestSupport

@Suite("Journal state", .cpuHeavy)
struct JournalStateTests {
    let a = SKU("jacket-red-M")!, b = SKU("beanie")!
    let t1 = Token(slot: 1, generation: 1, secret: 11), t2 = Token(slot: 2, generation: 1, secret: 22)
    let alice = ShortBytes("alice")!

    func rec(_ seq: UInt64, _ r: JournalRecord) -> SequencedRecord { SequencedRecord(seq: seq, timeMs: 1000 + seq, record: r) }

    @Test func semantics() throws {
        var s = JournalState()
        try s.apply(rec(1, .stockSet(sku: a, onHand: 10, lowStockThreshold: 2, perCustomerLimit: 3)))
        try s.apply(rec(2, .stockSet(sku: b, onHand: 5, lowStockThreshold: 0, perCustomerLimit: 0)))
        try s.apply(rec(3, .reserved(token: t1, sku: a, quantity: 4, deadlineWallMs: 9000, customer: alice,
                                     idempotencyKey: .empty, bundle: false)))
        #expect(s.sku(a) == SKUState(sku: a, onHand: 10, reserved: 4, lowStockThreshold: 2, perCustomerLimit: 3))
        try s.apply(rec(4, .extended(token: t1, deadlineWallMs: 12000)))
        #expect(s.tokens[t1]?.deadlineWallMs == 12000)
        try s.apply(rec(5, .confirmed(token: t1, sku: a, quantity: 3, returned: 1, orderReference: .empty)))
        #expect(s.sku(a) == SKUState(sku: a, onHand: 10, reserved: 0, confirmed: 3, lowStockThreshold: 2, perCustomerLimit: 3))
        #expect(s.tokens.isEmpty)
        #expect(s.customerSold == [CustomerSKU(customer: alice, sku: a): 3])
        // A bundle: one record per line, the token goes with its last line.
        try s.apply(rec(6, .reserved(token: t2, sku: a, quantity: 2, deadlineWallMs: 9000, customer: .empty,
                                     idempotencyKey: ShortBytes("k")!, bundle: true)))
        try s.apply(rec(7, .reserved(token: t2, sku: b, quantity: 5, deadlineWallMs: 9000, customer: .empty,
                                     idempotencyKey: ShortBytes("k")!, bundle: true)))
        #expect(s.sku(b)?.available == 0)
        try s.apply(rec(8, .released(token: t2, sku: b, quantity: 5)))
        #expect(s.tokens[t2]?.lines == [TokenLine(sku: a, quantity: 2)])
        try s.apply(rec(9, .expired(token: t2, sku: a, quantity: 2)))
        #expect(s.tokens.isEmpty && s.sku(a)?.reserved == 0 && s.sku(b)?.available == 5)
        try s.apply(rec(10, .stockAdjusted(sku: a, delta: -7, reason: 1)))
        #expect(s.sku(a)?.available == 0)
        #expect(s.lastSeq == 10 && s.skus.map(\.sku) == [a, b])
        try s.checkInvariants()
    }

    /// Backup units: held back from available, released back, and counted by
    /// every check (a set below reserved + confirmed + backup is refused).
    @Test func backupUnits() throws {
        var s = JournalState()
        try s.apply(rec(1, .stockSet(sku: a, onHand: 10, lowStockThreshold: 0, perCustomerLimit: 0)))
        try s.apply(rec(2, .backupChanged(sku: a, delta: 4, backup: 4)))
        #expect(s.sku(a) == SKUState(sku: a, onHand: 10, backup: 4) && s.sku(a)?.available == 6)
        try s.apply(rec(3, .reserved(token: t1, sku: a, quantity: 6, deadlineWallMs: 9000, customer: .empty,
                                     idempotencyKey: .empty, bundle: false)))
        #expect(throws: JournalError.self) {
            var copy = s
            try copy.apply(rec(4, .stockSet(sku: a, onHand: 9, lowStockThreshold: 0, perCustomerLimit: 0)))
        }
        try s.apply(rec(4, .backupChanged(sku: a, delta: -3, backup: 1)))
        #expect(s.sku(a)?.available == 3)
        // A stage lowering backup and on-hand together: backup first, then on-hand (StockCore.applyStaged).
        try s.apply(rec(5, .backupChanged(sku: a, delta: -1, backup: 0)))
        try s.apply(rec(6, .stockSet(sku: a, onHand: 6, lowStockThreshold: 0, perCustomerLimit: 0)))
        #expect(s.sku(a) == SKUState(sku: a, onHand: 6, reserved: 6))
        try s.checkInvariants()
    }

    /// Refused records name their seq and leave the state unchanged.
    @Test func refusals() throws {
        var s = JournalState()
        try s.apply(rec(1, .stockSet(sku: a, onHand: 3, lowStockThreshold: 0, perCustomerLimit: 0)))
        try s.apply(rec(2, .reserved(token: t1, sku: a, quantity: 2, deadlineWallMs: 1, customer: .empty,
                                     idempotencyKey: .empty, bundle: false)))
        let before = s
        let bad: [(JournalRecord, String)] = [
            (.stockAdjusted(sku: b, delta: 1, reason: 0), "unknown SKU"),
            (.reserved(token: t2, sku: a, quantity: 2, deadlineWallMs: 1, customer: .empty, idempotencyKey: .empty, bundle: false), "available -1"),
            (.reserved(token: t1, sku: a, quantity: 1, deadlineWallMs: 1, customer: .empty, idempotencyKey: .empty, bundle: false), "reserved twice"),
            (.released(token: t2, sku: a, quantity: 2), "unknown token"),
            (.released(token: t1, sku: a, quantity: 1), "no line"),
            (.confirmed(token: t1, sku: a, quantity: 2, returned: 1, orderReference: .empty), "no line"),
            (.stockSet(sku: a, onHand: 1, lowStockThreshold: 0, perCustomerLimit: 0), "available -1"),
            (.stockAdjusted(sku: a, delta: -4, reason: 0), "on-hand -1"),
            (.extended(token: t2, deadlineWallMs: 5), "unknown token"),
            (.backupChanged(sku: a, delta: 2, backup: 2), "available -1"),
            (.backupChanged(sku: a, delta: -1, backup: 0), "changed by -1 is not 0"),
            (.backupChanged(sku: a, delta: 1, backup: 2), "changed by 1 is not 2"),
            (.backupChanged(sku: b, delta: 1, backup: 1), "unknown SKU"),
        ]
        for (r, why) in bad {
            let error = refusal(&s, rec(3, r))
            guard case .replay(let seq, let reason)? = error else {
                Issue.record("\(r): \(String(describing: error))")
                continue
            }
            #expect(seq == 3)
            #expect(reason.contains(why), "\(reason)")
            #expect(s == before)
        }
        #expect(throws: JournalError.replay(seq: 2, reason: "not after seq 2")) {
            try s.apply(rec(2, .extended(token: t1, deadlineWallMs: 5)))
        }
    }

    /// The error `apply` throws, nil if it accepted the record.
    func refusal(_ s: inout JournalState, _ r: SequencedRecord) -> JournalError? {
        do throws(JournalError) {
            try s.apply(r)
            return nil
        } catch {
            return error
        }
    }

    @Test func randomHistoriesKeepInvariants() throws {
        for seed in 1...5 as ClosedRange<UInt64> {
            var gen = HistoryGenerator(seed: seed)
            let records = gen.generate(5000)
            let s = try replay(records)
            try s.checkInvariants()
            #expect(s.lastSeq == 5000 && s.tokenCount > 0 && s.skuCount == 12)
        }
    }
}
