@testable import StockCore
import StockProtocol
import Testing
import TestSupport

@Suite(.cpuHeavy) struct CoreOperationTests {
    @Test func reserveConfirmReleaseAndEveryTokenStatus() throws {
        let f = Fixture(stock: [("JACKET-RED-M", 10)])
        let a = try f.reserve("JACKET-RED-M", 3)
        #expect(a.available == 7 && a.deadlineCoreMs == f.now + 90_000 && !a.replayed)
        #expect(f.info("JACKET-RED-M") == StockInfo(onHand: 10, available: 7, reserved: 3, confirmed: 0, reservations: 1))
        let c = try f.core.confirm(Confirm(token: a.token), nowMs: f.now, on: f.worker)
        #expect(c == ConfirmReply(confirmed: 3, returned: 0))
        expectFailure(.tokenConfirmed) { try f.core.confirm(Confirm(token: a.token), nowMs: f.now, on: f.worker) }
        expectFailure(.tokenConfirmed) { try f.core.release(a.token, nowMs: f.now, on: f.worker) }

        let b = try f.reserve("JACKET-RED-M", 2)
        #expect(try f.core.release(b.token, nowMs: f.now, on: f.worker) == 2)
        expectFailure(.tokenReleased) { try f.core.release(b.token, nowMs: f.now, on: f.worker) }
        expectFailure(.tokenReleased) { try f.core.confirm(Confirm(token: b.token), nowMs: f.now, on: f.worker) }
        expectFailure(.tokenReleased) {
            try f.core.extend(Extend(token: b.token, ttlMs: 1000), nowMs: f.now, on: f.worker)
        }
        #expect(f.info("JACKET-RED-M") == StockInfo(onHand: 10, available: 7, reserved: 0, confirmed: 3, reservations: 2))

        // Forged: right slot and generation, wrong secret; wrong generation; slot beyond the slab.
        let live = try f.reserve("JACKET-RED-M", 1)
        var forged = live.token
        forged.secret ^= 1
        expectFailure(.tokenUnknown) { try f.core.release(forged, nowMs: f.now, on: f.worker) }
        forged = live.token
        forged.generation += 1
        expectFailure(.tokenUnknown) { try f.core.confirm(Confirm(token: forged), nowMs: f.now, on: f.worker) }
        expectFailure(.tokenUnknown) {
            try f.core.release(Token(slot: 1 << 29, generation: 1, secret: 7), nowMs: f.now, on: f.worker)
        }
        expectFailure(.tokenUnknown) {
            try f.core.release(Token(slot: 0, generation: 0, secret: 0), nowMs: f.now, on: f.worker)
        }
        #expect(try f.core.release(live.token, nowMs: f.now, on: f.worker) == 1)
        f.expectInvariants()
    }

    @Test func reserveRefusals() throws {
        var f = Fixture(stock: [("CAP-BLACK", 5)])
        expectFailure(.unknownSKU, .unknownSKU(line: 0)) { try f.reserve("NOPE", 1) }
        expectFailure(.outOfStock, .outOfStock(line: 0, available: 5)) { try f.reserve("CAP-BLACK", 6) }
        expectFailure(.quantityInvalid) { try f.reserve("CAP-BLACK", 0) }
        expectFailure(.quantityInvalid) { try f.reserve("CAP-BLACK", Limits.maxQuantity + 1) }
        expectFailure(.ttlTooLong, .ttlTooLong(maxTTLMs: Limits.maxTTLCeilingMs)) {
            try f.reserve("CAP-BLACK", 1, ttl: Limits.maxTTLCeilingMs + 1)
        }
        _ = try f.reserve("CAP-BLACK", 5)
        expectFailure(.outOfStock, .outOfStock(line: 0, available: 0)) { try f.reserve("CAP-BLACK", 1) }
        f.now += 1
        f.expectInvariants()
    }

    @Test func atCapacityAndSlotReuse() throws {
        // One worker: its fate memory is capped at capacity / (4 × shards).
        let f = Fixture(tokens: 64, shards: 1, stock: [("SKU", 1000)])
        var tokens: [Token] = []
        for _ in 0..<64 { tokens.append(try f.reserve("SKU", 1).token) }
        expectFailure(.atCapacity) { try f.reserve("SKU", 1) }
        #expect(f.info("SKU").available == 936)
        for t in tokens { _ = try f.core.release(t, nowMs: f.now, on: f.worker) }
        // Capacity comes back; remembered fates answer until their slot is reused.
        expectFailure(.tokenReleased) { try f.core.release(tokens[63], nowMs: f.now, on: f.worker) }
        var again: [Token] = []
        for _ in 0..<64 { again.append(try f.reserve("SKU", 1).token) }
        expectFailure(.atCapacity) { try f.reserve("SKU", 1) }
        // Every old token now names a reused slot: stale.
        for t in tokens { expectFailure(.tokenUnknown) { try f.core.release(t, nowMs: f.now, on: f.worker) } }
        f.expectInvariants()
    }

    @Test func partialConfirmReturnsTheRest() throws {
        let f = Fixture(stock: [("BAG", 10)])
        let r = try f.reserve("BAG", 4)
        expectFailure(.quantityInvalid) { try f.core.confirm(Confirm(token: r.token, quantity: 5), nowMs: f.now, on: f.worker) }
        let c = try f.core.confirm(Confirm(token: r.token, quantity: 1, orderReference: ShortBytes("ORD-1")!),
                                   nowMs: f.now, on: f.worker)
        #expect(c == ConfirmReply(confirmed: 1, returned: 3))
        #expect(f.info("BAG") == StockInfo(onHand: 10, available: 9, reserved: 0, confirmed: 1, reservations: 1))
        f.expectInvariants()
    }

    @Test func expiryAtExactlyTheDeadline() throws {
        var f = Fixture(stock: [("HOODIE", 3)])
        let r = try f.reserve("HOODIE", 2, ttl: 200)
        #expect(r.deadlineCoreMs == Fixture.t0 + 200)
        f.now = Fixture.t0 + 199
        #expect(f.worker.tick(nowMs: f.now) == 0)
        #expect(f.info("HOODIE").reserved == 2)
        f.now = Fixture.t0 + 200
        #expect(f.worker.tick(nowMs: f.now) == 1)
        #expect(f.info("HOODIE") == StockInfo(onHand: 3, available: 3, reserved: 0, confirmed: 0, reservations: 1))
        expectFailure(.tokenExpired) { try f.core.confirm(Confirm(token: r.token), nowMs: f.now, on: f.worker) }
        f.expectInvariants()
    }

    @Test func accessAtTheDeadlineExpiresBeforeTheWheelDoes() throws {
        var f = Fixture(stock: [("HOODIE", 3)])
        let early = try f.reserve("HOODIE", 1, ttl: 100)
        let late = try f.reserve("HOODIE", 1, ttl: 100)
        f.now = Fixture.t0 + 99
        #expect(try f.core.confirm(Confirm(token: early.token), nowMs: f.now, on: f.worker).confirmed == 1)
        f.now = Fixture.t0 + 100
        expectFailure(.tokenExpired) { try f.core.confirm(Confirm(token: late.token), nowMs: f.now, on: f.worker) }
        #expect(f.info("HOODIE") == StockInfo(onHand: 3, available: 2, reserved: 0, confirmed: 1, reservations: 2))
        // The wheel finds both entries stale: nothing expires twice.
        #expect(f.worker.tick(nowMs: f.now + 10) == 0)
        #expect(f.core.stats().expiries == 1)
        f.expectInvariants()
    }

    @Test func extendPushesTheDeadlineAndNeverShortens() throws {
        var f = Fixture(stock: [("SCARF", 1)])
        let r = try f.reserve("SCARF", 1, ttl: 100)
        f.now = Fixture.t0 + 50
        #expect(try f.core.extend(Extend(token: r.token, ttlMs: 200), nowMs: f.now, on: f.worker) == Fixture.t0 + 250)
        #expect(try f.core.extend(Extend(token: r.token, ttlMs: 10), nowMs: f.now, on: f.worker) == Fixture.t0 + 250)
        expectFailure(.ttlTooLong) {
            try f.core.extend(Extend(token: r.token, ttlMs: Limits.maxTTLCeilingMs + 1), nowMs: f.now, on: f.worker)
        }
        f.now = Fixture.t0 + 100
        #expect(f.worker.tick(nowMs: f.now) == 0)  // re-armed, not expired
        f.now = Fixture.t0 + 249
        #expect(f.worker.tick(nowMs: f.now) == 0)
        #expect(f.info("SCARF").reserved == 1)
        f.now = Fixture.t0 + 250
        #expect(f.worker.tick(nowMs: f.now) == 1)
        #expect(f.info("SCARF").available == 1)
        expectFailure(.tokenExpired) { try f.core.extend(Extend(token: r.token, ttlMs: 100), nowMs: f.now, on: f.worker) }
        f.expectInvariants()
    }

    @Test func bundleIsAllOrNothing() throws {
        let f = Fixture(stock: [("JACKET", 5), ("BELT", 3), ("CAP", 9)])
        func bundle(_ lines: [(String, UInt32)]) throws(Failure) -> ReserveOutcome {
            try f.core.reserveBundle(ReserveBundle(lines: lines.map { BundleLine(sku: SKU($0.0)!, quantity: $0.1) }),
                                     nowMs: f.now, on: f.worker)
        }
        expectFailure(.outOfStock, .outOfStock(line: 1, available: 3)) { try bundle([("JACKET", 2), ("BELT", 4), ("CAP", 1)]) }
        expectFailure(.unknownSKU, .unknownSKU(line: 2)) { try bundle([("JACKET", 2), ("BELT", 1), ("NOPE", 1)]) }
        expectFailure(.invalidArgument) { try bundle([("JACKET", 1), ("JACKET", 1)]) }
        #expect(f.info("JACKET").available == 5 && f.info("BELT").available == 3 && f.info("CAP").available == 9)
        let ok = try bundle([("JACKET", 2), ("BELT", 3)])
        #expect(f.info("JACKET").reserved == 2 && f.info("BELT").available == 0)
        f.expectInvariants()
        expectFailure(.quantityInvalid) { try f.core.confirm(Confirm(token: ok.token, quantity: 1), nowMs: f.now, on: f.worker) }
        #expect(try f.core.confirm(Confirm(token: ok.token), nowMs: f.now, on: f.worker) == ConfirmReply(confirmed: 5, returned: 0))
        #expect(f.info("JACKET").confirmed == 2 && f.info("BELT").confirmed == 3)
        let again = try bundle([("JACKET", 1), ("CAP", 2)])
        #expect(try f.core.release(again.token, nowMs: f.now, on: f.worker) == 3)
        #expect(f.info("JACKET").available == 3 && f.info("CAP").available == 9)
        // Granted bundles count once per line; refused ones not at all.
        #expect(f.info("JACKET").reservations == 2 && f.info("BELT").reservations == 1
                && f.info("CAP").reservations == 1)
        f.expectInvariants()
    }

    @Test func perCustomerLimitCountsHeldAndSoldUnits() throws {
        let f = Fixture(stock: [("LIPSTICK-01", 100)])
        _ = try f.set("LIPSTICK-01", 100, limit: 3)
        let a = try f.reserve("LIPSTICK-01", 2, customer: "cust-1")
        expectFailure(.customerLimit, .customerLimit(line: 0, remaining: 1)) { try f.reserve("LIPSTICK-01", 2, customer: "cust-1") }
        let b = try f.reserve("LIPSTICK-01", 1, customer: "cust-1")
        expectFailure(.customerLimit, .customerLimit(line: 0, remaining: 0)) { try f.reserve("LIPSTICK-01", 1, customer: "cust-1") }
        _ = try f.reserve("LIPSTICK-01", 3, customer: "cust-2")  // another customer is not affected
        _ = try f.reserve("LIPSTICK-01", 5)  // nor is a request without a customer
        _ = try f.core.release(b.token, nowMs: f.now, on: f.worker)  // released units no longer count
        let c = try f.reserve("LIPSTICK-01", 1, customer: "cust-1")
        _ = try f.core.confirm(Confirm(token: a.token, quantity: 1), nowMs: f.now, on: f.worker)  // 1 sold, 1 returned
        _ = try f.reserve("LIPSTICK-01", 1, customer: "cust-1")  // sold 1 + held 1 + 1 = 3
        expectFailure(.customerLimit) { try f.reserve("LIPSTICK-01", 1, customer: "cust-1") }
        _ = c
        f.expectInvariants()
    }

    @Test func idempotentRetryReturnsTheOriginal() throws {
        let f = Fixture(stock: [("SNEAKER-42", 10)])
        let a = try f.reserve("SNEAKER-42", 2, key: "checkout-777")
        let retry = try f.reserve("SNEAKER-42", 2, key: "checkout-777")
        #expect(retry.token == a.token && retry.replayed && retry.deadlineCoreMs == a.deadlineCoreMs)
        #expect(f.info("SNEAKER-42").reserved == 2)
        expectFailure(.idempotencyConflict) { try f.reserve("SNEAKER-42", 3, key: "checkout-777") }
        expectFailure(.idempotencyConflict) { try f.reserve("SNEAKER-42", 2, customer: "c", key: "checkout-777") }
        _ = try f.core.release(a.token, nowMs: f.now, on: f.worker)
        let fresh = try f.reserve("SNEAKER-42", 2, key: "checkout-777")  // the key died with its token
        #expect(fresh.token != a.token && !fresh.replayed)
        #expect(f.core.stats().idempotencyEntries == 1)
        #expect(f.info("SNEAKER-42").reservations == 2, "a replay is not a new reservation")
        f.expectInvariants()
    }

    @Test func stockSetCompareAndSetAndShrinkRules() throws {
        let f = Fixture()
        #expect(try f.set("TEE-S", 10) == StockInfo(onHand: 10, available: 10, reserved: 0, confirmed: 0))
        expectFailure(.stockChanged, .stockChanged(current: 10)) { try f.set("TEE-S", 20, expected: 9) }
        expectFailure(.stockChanged, .stockChanged(current: 0)) { try f.set("NEW-SKU", 5, expected: 3) }
        #expect(f.core.index(of: SKU("NEW-SKU")!) == nil)  // a failed compare-and-set creates nothing
        #expect(try f.set("TEE-S", 20, expected: 10).onHand == 20)
        let r = try f.reserve("TEE-S", 15)
        expectFailure(.insufficientAvailable, .insufficientAvailable(available: 5)) { try f.set("TEE-S", 14) }
        #expect(try f.set("TEE-S", 15).available == 0)
        _ = try f.core.release(r.token, nowMs: f.now, on: f.worker)
        let adjust = { (d: Int64) throws(Failure) -> StockInfo in
            try f.core.adjustStock(StockAdjust(sku: SKU("TEE-S")!, delta: d, reason: .restock), nowMs: f.now, on: f.worker)
        }
        #expect(try adjust(5).onHand == 20)
        expectFailure(.insufficientAvailable, .insufficientAvailable(available: 20)) { try adjust(-21) }
        #expect(try adjust(-20) == StockInfo(onHand: 0, available: 0, reserved: 0, confirmed: 0, reservations: 1))
        expectFailure(.quantityInvalid) { try adjust(0) }
        expectFailure(.unknownSKU) {
            try f.core.adjustStock(StockAdjust(sku: SKU("NOPE")!, delta: 1), nowMs: f.now, on: f.worker)
        }
        f.expectInvariants()
    }

    @Test func listPagesThroughTheCatalog() throws {
        let f = Fixture()
        for i in 0..<250 { _ = try f.set("SKU-\(i)", UInt64(i)) }
        var cursor: UInt32 = 0
        var seen: [String] = []
        while cursor != Limits.listEnd {
            let page = f.core.list(cursor: cursor, limit: 100)
            seen += page.entries.map { $0.sku.string }
            #expect(page.entries.allSatisfy { $0.info.onHand == UInt64($0.sku.string.dropFirst(4))! })
            cursor = page.nextCursor
        }
        #expect(seen == (0..<250).map { "SKU-\($0)" })
        #expect(f.core.list(cursor: 250, limit: 10).entries.isEmpty)
    }

    @Test func catalogCapacityIsEnforced() throws {
        let f = Fixture(skus: 3)
        for i in 0..<3 { _ = try f.set("S\(i)", 1) }
        expectFailure(.atCapacity) { try f.set("S3", 1) }
        #expect(try f.set("S1", 2).onHand == 2)  // existing SKUs still change
    }

    /// An extension concerns a whole token: a bundle's names no SKU (the slot's item word holds
    /// the bundle marker, not a catalog index), and its deadline is on the core's clock.
    @Test func anExtensionReportsItsTokenAndNoSKU() throws {
        let f = Fixture()
        _ = try f.set("A", 5)
        _ = try f.set("B", 5)
        let bundle = try f.core.reserveBundle(
            ReserveBundle(lines: [BundleLine(sku: SKU("A")!, quantity: 1), BundleLine(sku: SKU("B")!, quantity: 2)],
                          ttlMs: 1000), nowMs: f.now, on: f.worker)
        var changes: [Change] = []
        f.worker.onChange = { changes.append($0) }
        let until = try f.core.extend(Extend(token: bundle.token, ttlMs: 60_000), nowMs: f.now, on: f.worker)
        #expect(until == f.now + 60_000)
        #expect(changes == [Change(sku: nil, timeMs: f.now,
                                   detail: .extended(token: bundle.token, deadlineCoreMs: f.now + 60_000))])
        _ = try f.core.release(bundle.token, nowMs: f.now, on: f.worker)
        let released = changes.dropFirst().compactMap { c -> (String, Int64, UInt8, UInt8)? in
            guard case let .released(l) = c.detail, let sku = c.sku else { return nil }
            return (sku.name.description, l.quantity, l.index, l.count)
        }
        #expect(released.map(\.0) == ["A", "B"] && released.map(\.1) == [1, 2])
        #expect(released.map(\.2) == [0, 1] && released.allSatisfy { $0.3 == 2 })
    }

    @Test func changesAreReportedWithAlerts() throws {
        let f = Fixture()
        var changes: [Change] = []
        f.worker.onChange = { changes.append($0) }
        _ = try f.set("DROP-1", 3, threshold: 1)
        let a = try f.reserve("DROP-1", 2)  // available 1 <= threshold
        let b = try f.reserve("DROP-1", 1)  // sold out
        _ = try f.core.release(b.token, nowMs: f.now, on: f.worker)  // back in stock
        _ = try f.core.confirm(Confirm(token: a.token, orderReference: ShortBytes("ORD-9")!), nowMs: f.now, on: f.worker)
        let kinds = changes.map(\.kind)
        #expect(kinds == [.stockSet, .reserved, .lowStock, .reserved, .soldOut, .released, .backInStock, .confirmed])
        guard case let .confirmed(line, returned, order)? = changes.last?.detail else {
            Issue.record("the last change is not a confirm")
            return
        }
        #expect(order == ShortBytes("ORD-9")! && line.quantity == 2 && returned == 0 && line.customer.isEmpty)
        #expect(changes.allSatisfy { $0.sku?.name == SKU("DROP-1")! })
        #expect(changes[1].token == a.token)
    }

    @Test func aMillionTokensExpiringInOneMillisecondAreSpreadOverTicks() throws {
        let n = 1_000_000
        var f = Fixture(tokens: n + 1024, skus: 16, shards: 1, stock: [("HOT", UInt64(n))])
        for _ in 0..<n { _ = try f.reserve("HOT", 1, ttl: 1000) }
        #expect(f.info("HOT").available == 0)
        f.now += 1000
        var ticks = 0
        var total = 0
        while true {
            let expired = f.worker.tick(nowMs: f.now, budget: 50_000)
            #expect(expired <= 50_000)
            if expired == 0 { break }
            total += expired
            ticks += 1
        }
        #expect(total == n && ticks == 20)
        #expect(f.info("HOT") == StockInfo(onHand: UInt64(n), available: UInt64(n), reserved: 0, confirmed: 0,
                                           reservations: UInt64(n)))
        #expect(f.core.stats().expiries == UInt64(n) && f.core.stats().liveTokens == 0)
        f.expectInvariants()
    }
}
