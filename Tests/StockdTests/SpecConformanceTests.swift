import Foundation
import Glibc
import StockProtocol
import Testing
import TestSupport

// The rules PROTOCOL.md states where an independent client implementer had
// to guess, each over TCP against a real stockd: the session's HELLO order,
// the check order (size, role, … payload), STOCK_SET's flags, bundle totals,
// idempotency keys, QUANTITY_INVALID for on-hand above 2^40, the customer
// limit before the stock, STOCK_LIST past the end, the alert levels, which
// no-op changes give events, BUSY for SUBSCRIBE, and a feed's end at a stop.

@Suite(.ownThread, .serialized) struct SpecConformanceTests {
    // MARK: helpers

    static func hello(_ name: String = "spec", credential: String = "") -> Request {
        .hello(Hello(clientName: Array(name.utf8), credential: Array(credential.utf8)))
    }

    /// The journal's durable end (STATS `journal.durable_seq`).
    static func durableSeq(_ c: RawClient) throws -> UInt64 {
        guard let v = try c.stats()["journal.durable_seq"] else { throw HarnessError("no journal.durable_seq in STATS") }
        return v
    }

    /// Subscribes on a connection of its own from `from` (with `kinds`) and
    /// returns the events, progress markers left out, until an event or a
    /// progress marker reaches `through`; every wait is bounded by `timeout`.
    static func feedEvents(_ server: StockdProcess, from: UInt64, through: UInt64, kinds: UInt16 = 0,
                           timeout: Double = 10) throws -> [FeedEvent] {
        let c = try server.connect()
        defer { c.close() }
        let answer = try c.request(.subscribe(Subscribe(from: from, credit: 10_000, kinds: kinds)))
        guard case .subscribed = answer.body else { throw HarnessError("SUBSCRIBE answered \(answer)") }
        var events: [FeedEvent] = []
        let deadline = monotonicSeconds() + timeout
        while true {
            let remaining = deadline - monotonicSeconds()
            guard remaining > 0 else {
                throw HarnessError("the feed did not reach offset \(through) within \(timeout) s: \(events.map(\.kind.name))")
            }
            let frame = try c.readResponse(timeout: remaining)
            guard case .event(let e) = frame.body else { throw HarnessError("not an event on the feed: \(frame)") }
            if e.kind != .progress { events.append(e) }
            if e.offset >= through { return events }
        }
    }

    // MARK: 1. HELLO order (§3.4)

    @Test("HELLO after UNAUTHENTICATED answers, or after a HELLO refused for its client name, succeeds; then a second HELLO is HELLO_OUT_OF_ORDER")
    func helloAfterRefusedRequests() throws {
        let dir = try TempDirectory(prefix: "spec-hello")
        defer { dir.remove() }
        let server = try StockdProcess(["--auth-file", try AuthTests.authFile(dir)], catalog: "HELLO-A,10\n")
        let c = try server.connect()
        #expect(try c.reserve("HELLO-A", 1).status == .unauthenticated)
        #expect(try c.stockGet("HELLO-A").status == .unauthenticated)
        // A HELLO refused for its client name (a control character) does not count either.
        let badName = try c.request(Self.hello("bell\u{7}", credential: AuthTests.checkoutSecret))
        #expect(badName.status == .invalidArgument, "\(badName)")
        let ok = try c.request(Self.hello(credential: AuthTests.checkoutSecret))
        #expect(ok.helloReply?.role == .checkout, "\(ok)")
        #expect(try c.reserve("HELLO-A", 1).status == .ok)
        #expect(try c.request(Self.hello(credential: AuthTests.adminSecret)).status == .helloOutOfOrder)
        // The session is as it was: still checkout.
        #expect(try c.stockSet("HELLO-A", onHand: 50).status == .forbidden)
        #expect(try c.info("HELLO-A").reserved == 1)
    }

    @Test("HELLO_OUT_OF_ORDER counts decoded requests: an operation's failure counts, MALFORMED, UNKNOWN_OPCODE and INVALID_SKU do not")
    func helloOrderCountsDecodedRequests() throws {
        let server = try StockdProcess(catalog: "ORDER-A,1\n")
        // Refused before being decoded: HELLO still works afterwards.
        let early = try server.connect()
        #expect(try early.rawRequest(opcode: Opcode.stockGet.rawValue, payload: [5, 0x41]).status == .malformed)
        #expect(try early.rawRequest(opcode: 0x6A, payload: []).status == .unknownOpcode)
        #expect(try early.stockGet("BAD\u{1}SKU").status == .invalidSKU)
        // Without authentication the credential is ignored and the role is admin.
        let reply = try early.request(Self.hello(credential: "not-a-credential-anywhere"))
        #expect(reply.helloReply?.role == .admin, "\(reply)")

        // Decoded, then refused by the operation: it counts.
        let unknownSKU = try server.connect()
        #expect(try unknownSKU.reserve("NO-SUCH-SKU", 1).status == .unknownSKU)
        #expect(try unknownSKU.request(Self.hello()).status == .helloOutOfOrder)
        let unknownToken = try server.connect()
        #expect(try unknownToken.release(Token(slot: 3, generation: 9, secret: 99)).status == .tokenUnknown)
        #expect(try unknownToken.request(Self.hello()).status == .helloOutOfOrder)
        // A successful request counts (the connections stay usable).
        let read = try server.connect()
        #expect(try read.info("ORDER-A").onHand == 1)
        #expect(try read.request(Self.hello()).status == .helloOutOfOrder)
        #expect(try read.ping().status == .ok)
    }

    // MARK: 2. Check order (§4)

    @Test("check order: the frame's size first, then the role (before header bits and payload); unassigned opcodes need no role")
    func roleBeforeHeaderAndPayload() throws {
        let dir = try TempDirectory(prefix: "spec-order")
        defer { dir.remove() }
        let server = try StockdProcess(["--auth-file", try AuthTests.authFile(dir)], catalog: "ORDER-B,10\n")
        let anon = try server.connect()
        // A MALFORMED payload, and bad header bits, on an opcode that needs a role: UNAUTHENTICATED.
        #expect(try anon.rawRequest(opcode: Opcode.reserve.rawValue, payload: [1, 2, 3]).status == .unauthenticated)
        try anon.send(Wire.rawFrame(opcode: Opcode.reserve.rawValue, id: 501, payload: [1, 2, 3], flags: 0x02))
        let bits = try anon.readResponse()
        #expect(bits.requestID == 501 && bits.status == .unauthenticated, "\(bits)")
        // Opcodes that need no role are judged on: UNKNOWN_OPCODE, MALFORMED header bits.
        #expect(try anon.rawRequest(opcode: 0x6A, payload: [9]).status == .unknownOpcode)
        #expect(try anon.rawRequest(opcode: Opcode.event.rawValue, payload: []).status == .unknownOpcode)
        try anon.send(Wire.rawFrame(opcode: Opcode.ping.rawValue, id: 502, reserved: 1))
        let ping = try anon.readResponse()
        #expect(ping.requestID == 502 && ping.status == .malformed, "\(ping)")

        // Checkout: an admin opcode with a malformed payload is FORBIDDEN; its own opcodes are judged on.
        let shop = try server.connect()
        #expect(try AuthTests.role(AuthTests.hello(shop, AuthTests.checkoutSecret)) == .checkout)
        #expect(try shop.rawRequest(opcode: Opcode.stockSet.rawValue, payload: [0xFF]).status == .forbidden)
        #expect(try shop.rawRequest(opcode: Opcode.stockGet.rawValue, payload: []).status == .malformed)

        // The size comes before the role: FRAME_TOO_LARGE echoes the opcode byte and the request id, then EOF.
        let big = try server.connect()
        try big.send(Wire.rawFrame(opcode: Opcode.stockSet.rawValue, id: 777, length: 70_000))
        let drain = try big.readUntilClosed(timeout: 5)
        #expect(drain.closed && drain.responses.count == 1, "\(drain.responses)")
        if let r = drain.responses.first {
            #expect(r.status == .frameTooLarge && r.requestID == 777 && r.opcode == Opcode.stockSet.rawValue, "\(r)")
        }
        #expect(try anon.ping().status == .ok, "the refusals kept the connection")
    }

    @Test("check order: the rate limit comes before the payload (a malformed RESERVE with an empty bucket is RATE_LIMITED)")
    func rateLimitBeforePayload() throws {
        let server = try StockdProcess(["--reserve-rate", "1", "--reserve-burst", "1"], catalog: "RATE-A,10\n")
        let c = try server.connect()
        // Both in one write, so the server reads them in one burst (one clock reading: no refill in between).
        let first = c.freshID()
        let second = c.freshID()
        try c.send(Wire.frame(.reserve(Reserve(sku: sku("RATE-A"), quantity: 1)), id: first)
                   + Wire.rawFrame(opcode: Opcode.reserve.rawValue, id: second, payload: [1, 2, 3]))
        let answers = try c.readResponses(2)
        #expect(answers[0].requestID == first && answers[0].status == .ok, "\(answers[0])")
        #expect(answers[1].requestID == second && answers[1].status == .rateLimited, "\(answers[1])")
        // Other opcodes are not rate-limited: their payload is judged.
        #expect(try c.rawRequest(opcode: Opcode.release.rawValue, payload: [1, 2, 3]).status == .malformed)
    }

    // MARK: 3. STOCK_SET flags, bundle totals (§4)

    @Test("STOCK_SET: a flag bit clear leaves that field unchanged, and the field must be 0 on the wire")
    func stockSetFlagClearKeepsField() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        let created = try #require(try c.stockSet("FLAGS-A", onHand: 10, threshold: 3, limit: 2).stockInfo)
        #expect(created.lowStockThreshold == 3 && created.perCustomerLimit == 2, "\(created)")
        // No flag: on-hand set, threshold and limit kept.
        let plain = try #require(try c.stockSet("FLAGS-A", onHand: 20).stockInfo)
        #expect(plain.onHand == 20 && plain.lowStockThreshold == 3 && plain.perCustomerLimit == 2, "\(plain)")
        // The threshold only: the limit is kept.
        let threshold = try #require(try c.stockSet("FLAGS-A", onHand: 20, threshold: 7).stockInfo)
        #expect(threshold.lowStockThreshold == 7 && threshold.perCustomerLimit == 2, "\(threshold)")
        // The limit only, set to 0 (none): the threshold is kept.
        let limit = try #require(try c.stockSet("FLAGS-A", onHand: 20, limit: 0).stockInfo)
        #expect(limit.lowStockThreshold == 7 && limit.perCustomerLimit == 0, "\(limit)")

        // A field whose bit is clear but is not 0 on the wire: INVALID_ARGUMENT, nothing changes.
        func payload(flags: UInt8, expected: UInt64, threshold: UInt32, limit: UInt32) -> [UInt8] {
            var p: [UInt8] = [flags]
            p += Wire.u64(30)  // on_hand
            p += Wire.u64(expected)
            p += Wire.u32(threshold)
            p += Wire.u32(limit)
            p += Wire.str8("FLAGS-A")
            return p
        }
        for (name, p) in [("threshold", payload(flags: 0, expected: 0, threshold: 9, limit: 0)),
                          ("limit", payload(flags: 0b010, expected: 0, threshold: 9, limit: 4)),
                          ("expected_on_hand", payload(flags: 0, expected: 20, threshold: 0, limit: 0))] {
            #expect(try c.rawRequest(opcode: Opcode.stockSet.rawValue, payload: p).status == .invalidArgument, "\(name)")
        }
        #expect(try c.info("FLAGS-A") == StockInfo(onHand: 20, available: 20, reserved: 0, confirmed: 0,
                                                   lowStockThreshold: 7, perCustomerLimit: 0))
    }

    @Test("CONFIRM and RELEASE of a bundle answer the total over its lines")
    func bundleTotals() throws {
        let server = try StockdProcess(catalog: "TOT-A,10\nTOT-B,10\n")
        let c = try server.connect()
        let lines = [BundleLine(sku: sku("TOT-A"), quantity: 2), BundleLine(sku: sku("TOT-B"), quantity: 3)]
        let sold = try #require(try c.request(.reserveBundle(ReserveBundle(lines: lines))).bundle)
        #expect(try c.confirm(sold.token).confirmReply == ConfirmReply(confirmed: 5, returned: 0))
        let back = try #require(try c.request(.reserveBundle(ReserveBundle(lines: lines))).bundle)
        #expect(try c.release(back.token).releasedUnits == 5)
        #expect(try c.info("TOT-A") == StockInfo(onHand: 10, available: 8, reserved: 0, confirmed: 2, reservations: 2))
        #expect(try c.info("TOT-B") == StockInfo(onHand: 10, available: 7, reserved: 0, confirmed: 3, reservations: 2))
    }

    // MARK: 4. Idempotency (§4 RESERVE)

    @Test("idempotency: a replay with another ttl answers the original token and deadline (the one in force after EXTEND), whatever the stock now")
    func replayIgnoresTTL() throws {
        let server = try StockdProcess(catalog: "IDEM-A,10\n")
        let c = try server.connect()
        let first = try c.reserveOK("IDEM-A", 2, ttlMs: 60_000, customer: "cust", key: "k-ttl")
        let longer = try c.reserveOK("IDEM-A", 2, ttlMs: 600_000, customer: "cust", key: "k-ttl")
        #expect(longer.token == first.token)
        #expect(longer.expiresAtMs == first.expiresAtMs, "a replay does not move the deadline")
        let byDefault = try c.reserveOK("IDEM-A", 2, ttlMs: 0, customer: "cust", key: "k-ttl")
        #expect(byDefault.token == first.token && byDefault.expiresAtMs == first.expiresAtMs)
        // Keys are per server: another connection replays too.
        let other = try server.connect().reserveOK("IDEM-A", 2, ttlMs: 5_000, customer: "cust", key: "k-ttl")
        #expect(other.token == first.token && other.expiresAtMs == first.expiresAtMs)
        #expect(try c.info("IDEM-A").reserved == 2, "nothing reserved twice")

        // After an EXTEND, a replay answers the deadline in force.
        let extended = try #require(try c.extend(first.token, ttlMs: 120_000).extendedTo)
        #expect(extended > first.expiresAtMs)
        let afterExtend = try c.reserveOK("IDEM-A", 2, ttlMs: 60_000, customer: "cust", key: "k-ttl")
        #expect(afterExtend.token == first.token && afterExtend.expiresAtMs == extended)

        // Sold out meanwhile: the replay is still answered, with the current available.
        _ = try c.reserveOK("IDEM-A", 8)
        let replay = try c.reserve("IDEM-A", 2, ttlMs: 60_000, customer: "cust", key: "k-ttl")
        #expect(replay.reservation == Reservation(token: first.token, expiresAtMs: extended, available: 0), "\(replay)")
        // A replay is still checked against the TTL maximum.
        #expect(try c.reserve("IDEM-A", 2, ttlMs: 3_600_001, customer: "cust", key: "k-ttl").status == .ttlTooLong)
    }

    @Test("idempotency: once its token is released, confirmed or past its deadline, the key reserves anew")
    func keyForgottenOnceDecided() throws {
        let server = try StockdProcess(catalog: "IDEM-B,100\n")
        let c = try server.connect()
        let first = try c.reserveOK("IDEM-B", 3, key: "k-reuse")
        #expect(try c.release(first.token).status == .ok)
        let second = try c.reserveOK("IDEM-B", 3, key: "k-reuse")
        #expect(second.token != first.token, "a released token's key reserved anew")
        #expect(try c.confirm(second.token).status == .ok)
        let third = try c.reserveOK("IDEM-B", 3, key: "k-reuse")
        #expect(third.token != second.token && third.token != first.token, "a confirmed token's key reserved anew")
        // Past its deadline (100 ms hold; the wait is bounded, not measured).
        let short = try c.reserveOK("IDEM-B", 1, ttlMs: 100, key: "k-short")
        sleepSeconds(0.3)
        let after = try c.reserveOK("IDEM-B", 1, ttlMs: 60_000, key: "k-short")
        #expect(after.token != short.token, "an expired token's key reserved anew")
        #expect(try c.confirm(short.token).status == .tokenExpired)
        #expect(try c.info("IDEM-B") == StockInfo(onHand: 100, available: 93, reserved: 4, confirmed: 3, reservations: 5))
    }

    @Test("idempotency: RESERVE and RESERVE_BUNDLE share one key space; a bundle's lines are compared in order")
    func keySpaceSharedAndLinesOrdered() throws {
        let server = try StockdProcess(catalog: "IDEM-C,10\nIDEM-D,10\n")
        let c = try server.connect()
        let key = { (k: String) in ShortBytes(k)! }
        _ = try c.reserveOK("IDEM-C", 2, key: "k-shared")
        // A one-line bundle of the same SKU and quantity under a RESERVE's key: a conflict.
        let same = ReserveBundle(lines: [BundleLine(sku: sku("IDEM-C"), quantity: 2)], idempotencyKey: key("k-shared"))
        #expect(try c.request(.reserveBundle(same)).status == .idempotencyConflict)

        let cd = [BundleLine(sku: sku("IDEM-C"), quantity: 1), BundleLine(sku: sku("IDEM-D"), quantity: 1)]
        let bundle = try #require(try c.request(.reserveBundle(
            ReserveBundle(lines: cd, ttlMs: 60_000, idempotencyKey: key("k-bundle")))).bundle)
        // A RESERVE under a bundle's key: a conflict.
        #expect(try c.reserve("IDEM-C", 1, key: "k-bundle").status == .idempotencyConflict)
        // The same lines in the other order: a conflict; the same order with another ttl: the original.
        let dc = ReserveBundle(lines: Array(cd.reversed()), ttlMs: 60_000, idempotencyKey: key("k-bundle"))
        #expect(try c.request(.reserveBundle(dc)).status == .idempotencyConflict)
        let replay = try c.request(.reserveBundle(ReserveBundle(lines: cd, ttlMs: 300_000, idempotencyKey: key("k-bundle"))))
        #expect(replay.bundle == bundle, "\(replay)")
        #expect(try c.info("IDEM-C").reserved == 3)
        #expect(try c.info("IDEM-D").reserved == 1)
    }

    // MARK: 5. Statuses (§4)

    @Test("STOCK_ADJUST that would take on-hand above 2^40 is QUANTITY_INVALID and changes nothing")
    func adjustAboveMaximum() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        #expect(try c.stockSet("HUGE", onHand: Limits.maxStock - 5).status == .ok)
        let over = try c.request(.stockAdjust(StockAdjust(sku: sku("HUGE"), delta: 6, reason: .restock)))
        #expect(over.status == .quantityInvalid, "\(over)")
        #expect(try c.info("HUGE").onHand == Limits.maxStock - 5)
        let exact = try c.request(.stockAdjust(StockAdjust(sku: sku("HUGE"), delta: 5, reason: .restock)))
        #expect(exact.stockInfo?.onHand == Limits.maxStock, "exactly 2^40 is allowed: \(exact)")
    }

    @Test("the customer limit is checked before the stock: a request over both answers CUSTOMER_LIMIT")
    func customerLimitBeforeStock() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        #expect(try c.stockSet("LIM-A", onHand: 3, limit: 2).status == .ok)
        #expect(try c.stockSet("LIM-B", onHand: 1).status == .ok)
        let both = try c.reserve("LIM-A", 5, customer: "alice")
        #expect(both.status == .customerLimit)
        #expect(both.detail == .customerLimit(line: 0, remaining: 2))
        // Without a customer the same request is short of stock.
        #expect(try c.reserve("LIM-A", 5).detail == .outOfStock(line: 0, available: 3))
        // A bundle: every line's limit before any line's stock (line 0 is out of stock, line 1 over its limit).
        let bundle = ReserveBundle(lines: [BundleLine(sku: sku("LIM-B"), quantity: 4), BundleLine(sku: sku("LIM-A"), quantity: 5)],
                                   customer: ShortBytes("alice")!)
        #expect(try c.request(.reserveBundle(bundle)).detail == .customerLimit(line: 1, remaining: 2))
        #expect(try c.info("LIM-A").reserved == 0)
        #expect(try c.info("LIM-B").reserved == 0)
    }

    @Test("STOCK_LIST with a cursor at or past the end: OK, an empty page, next_cursor 0xFFFFFFFF")
    func listPastTheEnd() throws {
        let server = try StockdProcess(catalog: "L-1,1\nL-2,2\nL-3,3\n")
        let c = try server.connect()
        for cursor: UInt32 in [3, 4, 1_000_000, Limits.listEnd] {
            let r = try c.request(.stockList(StockList(cursor: cursor, limit: 10)))
            #expect(r.status == .ok, "cursor \(cursor): \(r)")
            #expect(r.page == StockPage(nextCursor: Limits.listEnd, entries: []), "cursor \(cursor): \(r)")
        }
        let last = try #require(try c.request(.stockList(StockList(cursor: 2, limit: 10))).page)
        #expect(last.entries.map(\.sku.string) == ["L-3"] && last.nextCursor == Limits.listEnd)
    }

    // MARK: 6. Alerts and events (§9)

    @Test("alerts: sold out → 4 with threshold 5 is back_in_stock and no low_stock; low_stock only from normal; a SKU created empty has not sold out")
    func alertLevelChanges() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        let from = try Self.durableSeq(c) + 1
        func adjust(_ sku: String, _ delta: Int64) throws {
            let r = try c.request(.stockAdjust(StockAdjust(sku: SKU(sku)!, delta: delta, reason: .correction)))
            guard r.status == .ok else { throw HarnessError("STOCK_ADJUST \(sku) \(delta): \(r)") }
        }
        #expect(try c.stockSet("ALERT-A", onHand: 3, threshold: 5).status == .ok)  // created at 3: normal → low
        try adjust("ALERT-A", -3)  // 0: sold out
        try adjust("ALERT-A", 4)  // 4 ≤ 5: back in stock, and no low_stock
        try adjust("ALERT-A", 10)  // 14: low → normal, no event
        _ = try c.reserveOK("ALERT-A", 10)  // 4: normal → low
        #expect(try c.stockSet("ALERT-B", onHand: 0, threshold: 5).status == .ok)  // created empty: no sold_out
        #expect(try c.stockSet("ALERT-B", onHand: 4).status == .ok)  // normal → low (threshold kept)
        let through = try Self.durableSeq(c)
        var alerts: UInt16 = 0
        for kind in [EventKind.lowStock, .soldOut, .backInStock] { alerts |= UInt16(1) << UInt16(kind.rawValue) }
        let events = try Self.feedEvents(server, from: from, through: through, kinds: alerts)
        let seen = events.map { "\($0.sku.string) \($0.kind.name) \($0.quantity)" }
        #expect(seen == ["ALERT-A low_stock 3", "ALERT-A sold_out 0", "ALERT-A back_in_stock 4", "ALERT-A low_stock 4",
                         "ALERT-B low_stock 4"], "\(seen)")
    }

    @Test("no-op changes: STOCK_SET to the same values is still a stock_set; an EXTEND that does not move the deadline and a BACKUP_RELEASE of nothing give no event")
    func noOpChanges() throws {
        let server = try StockdProcess(catalog: "NOOP-A,10\n")
        let c = try server.connect()
        let hold = try c.reserveOK("NOOP-A", 1, ttlMs: 600_000)
        let from = try Self.durableSeq(c) + 1
        #expect(try c.stockSet("NOOP-A", onHand: 10).status == .ok)  // on-hand as it was
        let kept = try c.extend(hold.token, ttlMs: 1_000)  // earlier than the deadline in force
        #expect(kept.extendedTo == hold.expiresAtMs, "\(kept)")
        let none = try c.request(.backupRelease(BackupMove(sku: sku("NOOP-A"), quantity: 0)))
        #expect(none.stockInfo?.backup == 0, "\(none)")
        // A change after them, to read the feed up to.
        #expect(try c.request(.stockAdjust(StockAdjust(sku: sku("NOOP-A"), delta: 1, reason: .correction))).status == .ok)
        let through = try Self.durableSeq(c)
        let events = try Self.feedEvents(server, from: from, through: through)
        #expect(events.map(\.kind) == [.stockSet, .stockAdjusted], "\(events.map(\.kind.name))")
        #expect(events.first?.quantity == 10)
        #expect(through == from + 1, "exactly two records: \(from)...\(through)")
    }

    // MARK: 7. Feed limits and stop (§9, §6)

    @Test("SUBSCRIBE beyond --max-subscribers: BUSY with the SUBSCRIBE's request id, then EOF; a request behind it is not answered")
    func subscribeBusyCloses() throws {
        let server = try StockdProcess(["--max-subscribers", "1"])
        let first = try server.connect()
        let answer = try first.request(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 1)))
        guard case .subscribed = answer.body else {
            Issue.record("the first SUBSCRIBE: \(answer)")
            return
        }
        let second = try server.connect()
        let id = second.freshID()
        try second.send(Wire.frame(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 1)), id: id)
                        + Wire.frame(.ping, id: id + 1))
        let drain = try second.readUntilClosed(timeout: 5)
        #expect(drain.closed, "the connection is closed after BUSY")
        #expect(drain.responses.count == 1, "\(drain.responses)")
        if let r = drain.responses.first {
            #expect(r.status == .busy && r.requestID == id && r.opcode == Opcode.subscribe.rawValue, "\(r)")
        }
        first.close()
    }

    @Test("SIGTERM ends a feed with an EVENT frame SHUTTING_DOWN carrying the SUBSCRIBE's request id, then EOF")
    func feedEndsWithShuttingDown() throws {
        let server = try StockdProcess(catalog: "FSTOP,5\n")
        let feed = try server.connect()
        let id = feed.freshID()
        try feed.send(Wire.frame(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 10)), id: id))
        guard case .subscribed = try feed.readResponse().body else { throw HarnessError("SUBSCRIBE refused") }
        // An event through it: the feed thread has the connection.
        #expect(try server.connect().stockSet("FSTOP", onHand: 6).status == .ok)
        var sawEvent = false
        while !sawEvent {
            let frame = try feed.readResponse(timeout: 10)
            guard case .event(let e) = frame.body else { throw HarnessError("not an event: \(frame)") }
            sawEvent = e.kind == .stockSet
        }
        Glibc.kill(server.pid, SIGTERM)
        let drain = try feed.readUntilClosed(timeout: 10)
        #expect(drain.closed && !drain.reset, "EOF after the last frame")
        let last = try #require(drain.responses.last, "no frame after SIGTERM")
        #expect(last.status == .shuttingDown && last.opcode == Opcode.event.rawValue && last.requestID == id, "\(last)")
        #expect(drain.responses.dropLast().allSatisfy { $0.status == .ok }, "\(drain.responses)")
        let exit = try #require(server.terminate(timeout: 10))
        #expect(exit.code == 0, "\(exit)")
    }
}
