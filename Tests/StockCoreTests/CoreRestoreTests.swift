@testable import StockCore
import StockProtocol
import Testing
import TestSupport

/// Restoring a core from what a journal remembers (stock, live tokens,
/// customers' sold units): the restored core answers exactly like the first.
@Suite(.cpuHeavy) struct CoreRestoreTests {
    /// Collects `Change`s as a journal would.
    final class Recorder: @unchecked Sendable {
        var changes: [Change] = []
    }

    @Test func restoredTokensKeepWorkingWithTheirSideTables() throws {
        let a = Fixture(stock: [("JACKET", 10), ("CAP", 5)])
        _ = try a.set("JACKET", 10, limit: 4)
        let rec = Recorder()
        a.worker.onChange = { rec.changes.append($0) }
        let keyed = try a.reserve("JACKET", 3, ttl: 60_000, customer: "c-1", key: "k-1")
        let bundle = try a.core.reserveBundle(
            ReserveBundle(lines: [BundleLine(sku: SKU("JACKET")!, quantity: 1), BundleLine(sku: SKU("CAP")!, quantity: 2)],
                          ttlMs: 60_000), nowMs: a.now, on: a.worker)
        let sold = try a.reserve("CAP", 1, customer: "c-1")
        _ = try a.core.confirm(Confirm(token: sold.token), nowMs: a.now, on: a.worker)

        // Rebuild from the change stream, as recovery does from the journal.
        var b = Fixture(stock: [])
        b.now = a.now
        try b.core.restoreStock(SKU("JACKET")!, onHand: 10, confirmed: 0, lowStockThreshold: 0, perCustomerLimit: 4)
        try b.core.restoreStock(SKU("CAP")!, onHand: 5, confirmed: 1, lowStockThreshold: 0, perCustomerLimit: 0)
        try b.core.restoreCustomerSold(customer: ShortBytes("c-1")!, sku: SKU("CAP")!, units: 1)
        var restored: [LiveToken] = []
        for token in [keyed.token, bundle.token] {
            var live: LiveToken?
            for c in rec.changes where c.token == token {
                guard case let .reserved(line, deadline, key, isBundle) = c.detail else { continue }
                let sku = try #require(c.sku)
                #expect(sku.name == a.core.sku(at: sku.index), "a change names its SKU")
                let held = TokenLine(sku: sku.name, quantity: UInt32(line.quantity))
                if live == nil {
                    live = LiveToken(token: token, lines: [], deadlineWallMs: deadline, customer: line.customer,
                                     idempotencyKey: key, bundle: isBundle)
                }
                live?.lines.append(held)
            }
            restored.append(try #require(live))
        }
        try b.core.restoreTokens(restored, nowMs: b.now, workers: [b.worker])

        for sku in ["JACKET", "CAP"] { #expect(b.info(sku) == a.info(sku).withReservations(0), "\(sku)") }
        b.expectInvariants()
        // The idempotency key still names its hold; the customer limit still counts it.
        let retry = try b.reserve("JACKET", 3, ttl: 60_000, customer: "c-1", key: "k-1")
        #expect(retry.token == keyed.token && retry.replayed)
        expectFailure(.customerLimit) { try b.reserve("JACKET", 2, customer: "c-1") }
        // New tokens take other slots; restored ones confirm, release and expire as before.
        let fresh = try b.reserve("JACKET", 1)
        #expect(fresh.token.slot != keyed.token.slot && fresh.token.slot != bundle.token.slot)
        #expect(try b.core.confirm(Confirm(token: keyed.token, quantity: 2), nowMs: b.now, on: b.worker)
                == ConfirmReply(confirmed: 2, returned: 1))
        #expect(try b.core.release(bundle.token, nowMs: b.now, on: b.worker) == 3)
        expectFailure(.tokenUnknown) {
            try b.core.release(Token(slot: keyed.token.slot, generation: keyed.token.generation, secret: 1),
                               nowMs: b.now, on: b.worker)
        }
        #expect(b.info("JACKET").confirmed == 2 && b.info("CAP").available == 4)
        b.expectInvariants()
    }

    @Test func restoredHoldsExpireAtTheirDeadline() throws {
        var b = Fixture(stock: [])
        try b.core.restoreStock(SKU("HAT")!, onHand: 3, confirmed: 0, lowStockThreshold: 0, perCustomerLimit: 0)
        let t = Token(slot: 7, generation: 3, secret: 0xABCDEF)
        try b.core.restoreTokens([LiveToken(token: t, lines: [TokenLine(sku: SKU("HAT")!, quantity: 2)],
                                                deadlineWallMs: b.now + 500, customer: .empty, idempotencyKey: .empty,
                                                bundle: false)], nowMs: b.now, workers: [b.worker])
        #expect(b.info("HAT").reserved == 2)
        b.now += 499
        #expect(b.worker.tick(nowMs: b.now) == 0)
        b.now += 1
        #expect(b.worker.tick(nowMs: b.now) == 1)
        #expect(b.info("HAT").available == 3)
        b.expectInvariants()
    }

    @Test func aJournalThatDoesNotAddUpIsRefused() throws {
        let b = Fixture(stock: [])
        try b.core.restoreStock(SKU("HAT")!, onHand: 1, confirmed: 0, lowStockThreshold: 0, perCustomerLimit: 0)
        let line = [TokenLine(sku: SKU("HAT")!, quantity: 2)]
        #expect(throws: RestoreError.self) {
            try b.core.restoreTokens([LiveToken(token: Token(slot: 1, generation: 1, secret: 1), lines: line,
                                                    deadlineWallMs: b.now + 10, customer: .empty, idempotencyKey: .empty,
                                                    bundle: false)], nowMs: b.now, workers: [b.worker])
        }
        let one = [TokenLine(sku: SKU("HAT")!, quantity: 1)]
        let twice = LiveToken(token: Token(slot: 2, generation: 1, secret: 1), lines: one, deadlineWallMs: b.now + 10,
                                  customer: .empty, idempotencyKey: .empty, bundle: false)
        let c = Fixture(stock: [])
        try c.core.restoreStock(SKU("HAT")!, onHand: 5, confirmed: 0, lowStockThreshold: 0, perCustomerLimit: 0)
        #expect(throws: RestoreError.self) { try c.core.restoreTokens([twice, twice], nowMs: c.now, workers: [c.worker]) }
        #expect(throws: RestoreError.self) {
            try c.core.restoreStock(SKU("HAT")!, onHand: 5, confirmed: 0, lowStockThreshold: 0, perCustomerLimit: 0)
        }
    }

    @Test func restoredFatesAnswerLikeTheOriginalsUntilTheirSlotIsReused() throws {
        // 64 slots, 1 shard: the ring holds 64 / 4 = 16 fates.
        let b = Fixture(tokens: 64, shards: 1, stock: [])
        try b.core.restoreStock(SKU("HAT")!, onHand: 100, confirmed: 3, lowStockThreshold: 0, perCustomerLimit: 0)
        let live = LiveToken(token: Token(slot: 40, generation: 2, secret: 4040),
                                 lines: [TokenLine(sku: SKU("HAT")!, quantity: 1)], deadlineWallMs: b.now + 60_000,
                                 customer: .empty, idempotencyKey: .empty, bundle: false)
        // 20 decided tokens, oldest first: only the newest 16 fit the ring.
        let outcomes: [DecidedFate] = [.confirmed, .released, .expired]
        var fates: [RestoredFate] = []
        for i in 0..<20 {
            let token = Token(slot: UInt32(i), generation: UInt32(i + 1), secret: UInt64(1000 + i))
            fates.append(RestoredFate(token: token, fate: outcomes[i % 3]))
        }
        try b.core.restoreTokens([live], nowMs: b.now, fates: fates, workers: [b.worker])
        for f in fates.prefix(4) {
            // Not kept: its slot is free, never reused yet, but its state was not restored.
            expectFailure(.tokenUnknown) { try b.core.release(f.token, nowMs: b.now, on: b.worker) }
        }
        for f in fates.suffix(16) {
            let status: Status = switch f.fate {
            case .confirmed: .tokenConfirmed
            case .released: .tokenReleased
            case .expired: .tokenExpired
            }
            expectFailure(status) { try b.core.confirm(Confirm(token: f.token), nowMs: b.now, on: b.worker) }
            expectFailure(status) { try b.core.extend(Extend(token: f.token, ttlMs: 1000), nowMs: b.now, on: b.worker) }
            // A wrong secret in a remembered slot is still a forgery.
            var forged = f.token
            forged.secret ^= 1
            expectFailure(.tokenUnknown) { try b.core.release(forged, nowMs: b.now, on: b.worker) }
        }
        #expect(b.info("HAT").reserved == 1 && b.info("HAT").available == 96)
        // Filling the table: free slots first (64 - 1 live - 16 remembered), then the oldest remembered.
        var granted: [ReserveOutcome] = []
        for _ in 0..<47 { granted.append(try b.reserve("HAT", 1)) }
        var keptSlots: Set<UInt32> = [40]
        for f in fates.suffix(16) { keptSlots.insert(f.token.slot) }
        let grantedSlots = Set(granted.map { (g: ReserveOutcome) -> UInt32 in g.token.slot })
        #expect(grantedSlots.isDisjoint(with: keptSlots) && grantedSlots.count == 47)
        let reused = try b.reserve("HAT", 1)
        #expect(reused.token.slot == fates[4].token.slot, "the oldest remembered fate gives up its slot first")
        #expect(reused.token.generation == fates[4].token.generation + 1)
        expectFailure(.tokenUnknown) { try b.core.confirm(Confirm(token: fates[4].token), nowMs: b.now, on: b.worker) }
        expectFailure(.tokenExpired) { try b.core.confirm(Confirm(token: fates[5].token), nowMs: b.now, on: b.worker) }
        b.expectInvariants()
    }

    @Test func aFateInALiveTokensSlotIsRefused() throws {
        let b = Fixture(stock: [])
        try b.core.restoreStock(SKU("HAT")!, onHand: 5, confirmed: 0, lowStockThreshold: 0, perCustomerLimit: 0)
        let live = LiveToken(token: Token(slot: 3, generation: 2, secret: 1),
                                 lines: [TokenLine(sku: SKU("HAT")!, quantity: 1)], deadlineWallMs: b.now + 60_000,
                                 customer: .empty, idempotencyKey: .empty, bundle: false)
        #expect(throws: RestoreError.self) {
            try b.core.restoreTokens([live], nowMs: b.now,
                                     fates: [RestoredFate(token: Token(slot: 3, generation: 1, secret: 9), fate: .confirmed)],
                                     workers: [b.worker])
        }
    }
}

extension StockInfo {
    func withReservations(_ n: UInt64) -> StockInfo {
        var c = self
        c.reservations = n
        return c
    }
}
