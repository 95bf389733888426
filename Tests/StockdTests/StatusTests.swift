import Foundation
import StockProtocol
import Testing
import TestSupport

// MARK: - 2. Every status the server produces, over the wire

extension StockServerTests {
    @Test("OUT_OF_STOCK carries line and available; a failed bundle line returns earlier lines")
    func outOfStock() throws {
        let server = try StockdProcess(catalog: "SKU-A,5\nSKU-B,3\n")
        let c = try server.connect()
        let r = try c.reserve("SKU-A", 7)
        #expect(r.status == .outOfStock)
        #expect(r.opcode == Opcode.reserve.rawValue)
        #expect(r.detail == .outOfStock(line: 0, available: 5))
        #expect(try c.info("SKU-A") == StockInfo(onHand: 5, available: 5, reserved: 0, confirmed: 0))
        // Retry with what is available succeeds.
        #expect(try c.reserveOK("SKU-A", 5).available == 0)
        #expect(try c.reserve("SKU-A", 1).detail == .outOfStock(line: 0, available: 0))

        let bundle = ReserveBundle(lines: [BundleLine(sku: sku("SKU-B"), quantity: 2),
                                           BundleLine(sku: sku("SKU-A"), quantity: 1)])
        let b = try c.request(.reserveBundle(bundle))
        #expect(b.status == .outOfStock)
        #expect(b.detail == .outOfStock(line: 1, available: 0))
        #expect(try c.info("SKU-B") == StockInfo(onHand: 3, available: 3, reserved: 0, confirmed: 0))
    }

    @Test("UNKNOWN_SKU from GET, RESERVE, ADJUST and a bundle line")
    func unknownSKU() throws {
        let server = try StockdProcess(catalog: "SKU-A,5\n")
        let c = try server.connect()
        let get = try c.stockGet("NOPE")
        #expect(get.status == .unknownSKU)
        #expect(get.detail == .unknownSKU(line: 0))
        #expect(try c.reserve("NOPE", 1).detail == .unknownSKU(line: 0))
        let adj = try c.request(.stockAdjust(StockAdjust(sku: sku("NOPE"), delta: 5, reason: .restock)))
        #expect(adj.status == .unknownSKU)
        let bundle = ReserveBundle(lines: [BundleLine(sku: sku("SKU-A"), quantity: 2),
                                           BundleLine(sku: sku("NOPE"), quantity: 1)])
        let b = try c.request(.reserveBundle(bundle))
        #expect(b.status == .unknownSKU)
        #expect(b.detail == .unknownSKU(line: 1))
        #expect(try c.info("SKU-A").available == 5)
        // ADJUST did not create the SKU.
        #expect(try c.stockGet("NOPE").status == .unknownSKU)
    }

    @Test("TOKEN_UNKNOWN for forged tokens, including a live token with a wrong secret")
    func tokenUnknown() throws {
        let server = try StockdProcess(catalog: "SKU-A,5\n")
        let c = try server.connect()
        let forged = Token(slot: 12_345, generation: 7, secret: 0xDEAD_BEEF)
        #expect(try c.confirm(forged).status == .tokenUnknown)
        #expect(try c.release(forged).status == .tokenUnknown)
        #expect(try c.extend(forged, ttlMs: 1_000).status == .tokenUnknown)
        #expect(try c.release(Token(slot: .max, generation: .max, secret: .max)).status == .tokenUnknown)

        let live = try c.reserveOK("SKU-A", 2)
        var wrong = live.token
        wrong.secret ^= 1
        #expect(try c.release(wrong).status == .tokenUnknown)
        var stale = live.token
        stale.generation &+= 1
        #expect(try c.confirm(stale).status == .tokenUnknown)
        // The real token is untouched by the forgeries.
        #expect(try c.info("SKU-A").reserved == 2)
        #expect(try c.release(live.token).releasedUnits == 2)
    }

    @Test("TOKEN_EXPIRED after the hold's deadline")
    func tokenExpired() throws {
        let server = try StockdProcess(catalog: "SKU-A,5\n")
        let c = try server.connect()
        let res = try c.reserveOK("SKU-A", 2, ttlMs: 100)
        try waitForStock(c, "SKU-A", timeout: 3) { $0.available == 5 && $0.reserved == 0 }
        let r = try c.release(res.token)
        #expect(r.status == .tokenExpired, "\(r)")
        #expect(try c.extend(res.token, ttlMs: 1_000).status == .tokenExpired)
    }

    @Test("TOKEN_CONFIRMED and TOKEN_RELEASED: a token's fate is decided once")
    func tokenFate() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\n")
        let c = try server.connect()
        let sold = try c.reserveOK("SKU-A", 2)
        #expect(try c.confirm(sold.token).confirmReply == ConfirmReply(confirmed: 2, returned: 0))
        #expect(try c.confirm(sold.token).status == .tokenConfirmed)
        #expect(try c.release(sold.token).status == .tokenConfirmed)

        let dropped = try c.reserveOK("SKU-A", 3)
        #expect(try c.release(dropped.token).releasedUnits == 3)
        #expect(try c.release(dropped.token).status == .tokenReleased)
        #expect(try c.confirm(dropped.token).status == .tokenReleased)
        #expect(try c.info("SKU-A") == StockInfo(onHand: 10, available: 8, reserved: 0, confirmed: 2, reservations: 2))
    }

    @Test("STOCK_CHANGED when a compare-and-set's expectation is stale")
    func stockChanged() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\n")
        let c = try server.connect()
        let r = try c.stockSet("SKU-A", onHand: 50, expected: 9)
        #expect(r.status == .stockChanged)
        #expect(r.detail == .stockChanged(current: 10))
        #expect(try c.info("SKU-A").onHand == 10)
        // A new SKU has on-hand 0 for the comparison.
        #expect(try c.stockSet("NEW", onHand: 5, expected: 3).detail == .stockChanged(current: 0))
    }

    @Test("CUSTOMER_LIMIT carries what the customer may still take")
    func customerLimit() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        #expect(try c.stockSet("LIMITED", onHand: 100, limit: 2).status == .ok)
        #expect(try c.reserve("LIMITED", 2, customer: "alice").status == .ok)
        let more = try c.reserve("LIMITED", 1, customer: "alice")
        #expect(more.status == .customerLimit)
        #expect(more.detail == .customerLimit(line: 0, remaining: 0))
        let carol = try c.reserve("LIMITED", 3, customer: "carol")
        #expect(carol.detail == .customerLimit(line: 0, remaining: 2))
        #expect(try c.reserve("LIMITED", 1, customer: "bob").status == .ok)
        // Without a customer the limit does not apply.
        #expect(try c.reserve("LIMITED", 5).status == .ok)
        #expect(try c.info("LIMITED").reserved == 8)
    }

    @Test("QUANTITY_INVALID: zero, above the maximum, above what the token holds, non-zero on a bundle")
    func quantityInvalid() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\nSKU-B,10\n")
        let c = try server.connect()
        #expect(try c.reserve("SKU-A", 0).status == .quantityInvalid)
        #expect(try c.reserve("SKU-A", 1_000_001).status == .quantityInvalid)
        let res = try c.reserveOK("SKU-A", 2)
        #expect(try c.confirm(res.token, quantity: 3).status == .quantityInvalid)
        // The token stays live.
        #expect(try c.confirm(res.token).confirmReply == ConfirmReply(confirmed: 2, returned: 0))
        let b = try #require(try c.request(.reserveBundle(ReserveBundle(lines: [
            BundleLine(sku: sku("SKU-A"), quantity: 1), BundleLine(sku: sku("SKU-B"), quantity: 1),
        ]))).bundle)
        #expect(try c.confirm(b.token, quantity: 1).status == .quantityInvalid)
        #expect(try c.confirm(b.token).confirmReply == ConfirmReply(confirmed: 2, returned: 0))
        #expect(try c.request(.stockAdjust(StockAdjust(sku: sku("SKU-A"), delta: 0))).status == .quantityInvalid)
        #expect(try c.stockSet("SKU-A", onHand: (1 << 40) + 1).status == .quantityInvalid)
    }

    @Test("TTL_TOO_LONG carries the configured maximum (--max-ttl 10s)")
    func ttlTooLong() throws {
        // --default-ttl must not exceed --max-ttl, so it comes down too.
        let server = try StockdProcess(["--max-ttl", "10s", "--default-ttl", "5s"], catalog: "SKU-A,10\n")
        let c = try server.connect()
        let r = try c.reserve("SKU-A", 1, ttlMs: 10_001)
        #expect(r.status == .ttlTooLong)
        #expect(r.detail == .ttlTooLong(maxTTLMs: 10_000))
        // Above the protocol ceiling too: still the server's maximum.
        #expect(try c.reserve("SKU-A", 1, ttlMs: 3_600_001).detail == .ttlTooLong(maxTTLMs: 10_000))
        let bundle = ReserveBundle(lines: [BundleLine(sku: sku("SKU-A"), quantity: 1)], ttlMs: 20_000)
        #expect(try c.request(.reserveBundle(bundle)).detail == .ttlTooLong(maxTTLMs: 10_000))
        let ok = try c.reserveOK("SKU-A", 1, ttlMs: 10_000)
        #expect(try c.extend(ok.token, ttlMs: 10_001).detail == .ttlTooLong(maxTTLMs: 10_000))
        #expect(try c.info("SKU-A").reserved == 1)
        // HELLO tells the same limits.
        let h = try #require(try server.connect().request(.hello(Hello(clientName: []))).helloReply)
        #expect(h.maxTTLMs == 10_000)
        #expect(h.defaultTTLMs == 5_000)
    }

    @Test("INSUFFICIENT_AVAILABLE: held units are never taken back by ADJUST or SET")
    func insufficientAvailable() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\n")
        let c = try server.connect()
        _ = try c.reserveOK("SKU-A", 4)
        let adj = try c.request(.stockAdjust(StockAdjust(sku: sku("SKU-A"), delta: -7, reason: .damage)))
        #expect(adj.status == .insufficientAvailable)
        #expect(adj.detail == .insufficientAvailable(available: 6))
        let set = try c.stockSet("SKU-A", onHand: 3)
        #expect(set.status == .insufficientAvailable)
        #expect(set.detail == .insufficientAvailable(available: 6))
        #expect(try c.info("SKU-A") == StockInfo(onHand: 10, available: 6, reserved: 4, confirmed: 0, reservations: 1))
        // Exactly the available units may go.
        #expect(try c.stockSet("SKU-A", onHand: 4).stockInfo == StockInfo(onHand: 4, available: 0, reserved: 4,
                                                                          confirmed: 0, reservations: 1))
    }

    @Test("IDEMPOTENCY_CONFLICT; a same-parameter retry answers the original token")
    func idempotency() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\nSKU-B,10\n")
        let c = try server.connect()
        let first = try c.reserveOK("SKU-A", 2, customer: "cust", key: "checkout-42")
        let retry = try c.reserveOK("SKU-A", 2, customer: "cust", key: "checkout-42")
        #expect(retry.token == first.token)
        #expect(retry.expiresAtMs == first.expiresAtMs)
        #expect(retry.available == 8)
        #expect(try c.info("SKU-A").reserved == 2)
        #expect(try c.reserve("SKU-A", 3, customer: "cust", key: "checkout-42").status == .idempotencyConflict)
        #expect(try c.reserve("SKU-B", 2, customer: "cust", key: "checkout-42").status == .idempotencyConflict)
        #expect(try c.reserve("SKU-A", 2, customer: "other", key: "checkout-42").status == .idempotencyConflict)
        #expect(try c.info("SKU-A").reserved == 2)
        #expect(try c.info("SKU-B").reserved == 0)
    }

    @Test("INVALID_SKU: empty, 65 bytes, control characters, bad UTF-8")
    func invalidSKU() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        #expect(try c.request(.stockGet(.empty)).status == .invalidSKU)
        #expect(try c.stockGet("TAB\tSKU").status == .invalidSKU)
        let op = Opcode.stockGet.rawValue
        #expect(try c.rawRequest(opcode: op, payload: Wire.str8(String(repeating: "A", count: 65))).status == .invalidSKU)
        #expect(try c.rawRequest(opcode: op, payload: Wire.str8([0x41, 0xC3, 0x28])).status == .invalidSKU)
        #expect(try c.rawRequest(opcode: op, payload: Wire.str8([0x41, 0x7F])).status == .invalidSKU)
        #expect(try c.reserve("", 1).status == .invalidSKU)
        // The connection is kept.
        #expect(try c.ping().status == .ok)
    }

    @Test("INVALID_ARGUMENT: list limit, adjust reason, bundle shape, long customer")
    func invalidArgument() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\n")
        let c = try server.connect()
        #expect(try c.request(.stockList(StockList(cursor: 0, limit: 1001))).status == .invalidArgument)
        var payload = Wire.u64(5) + [7]  // delta 5, reason 7 (unassigned)
        payload += Wire.str8("SKU-A")
        #expect(try c.rawRequest(opcode: Opcode.stockAdjust.rawValue, payload: payload).status == .invalidArgument)
        let dup = ReserveBundle(lines: [BundleLine(sku: sku("SKU-A"), quantity: 1),
                                        BundleLine(sku: sku("SKU-A"), quantity: 1)])
        #expect(try c.request(.reserveBundle(dup)).status == .invalidArgument)
        #expect(try c.request(.reserveBundle(ReserveBundle(lines: []))).status == .invalidArgument)
        let seventeen = (0..<17).map { BundleLine(sku: sku("S\($0)"), quantity: 1) }
        #expect(try c.request(.reserveBundle(ReserveBundle(lines: seventeen))).status == .invalidArgument)
        // RESERVE with a 65-byte customer.
        var reserve = Wire.u32(1) + Wire.u32(0) + Wire.str8("SKU-A")
        reserve += Wire.str8(String(repeating: "c", count: 65)) + Wire.str8("")
        #expect(try c.rawRequest(opcode: Opcode.reserve.rawValue, payload: reserve).status == .invalidArgument)
        #expect(try c.info("SKU-A").reserved == 0)
    }

    @Test("MALFORMED keeps the connection: a PING after it works")
    func malformedKeepsConnection() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        // PING with a trailing byte.
        let r = try c.rawRequest(opcode: Opcode.ping.rawValue, payload: [0])
        #expect(r.status == .malformed)
        #expect(r.opcode == Opcode.ping.rawValue)
        // Header bits not zero.
        try c.send(Wire.rawFrame(opcode: Opcode.ping.rawValue, id: 77, flags: 0x01))
        let flagged = try c.readResponse()
        #expect(flagged.status == .malformed)
        #expect(flagged.requestID == 77)
        try c.send(Wire.rawFrame(opcode: Opcode.stats.rawValue, id: 78, reserved: 1))
        #expect(try c.readResponse().status == .malformed)
        #expect(try c.ping().body == .pong)
    }

    @Test("FRAME_TOO_LARGE echoes the request id and max_frame, then closes")
    func frameTooLarge() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        // Only the header: the server judges the size from it.
        try c.send(Wire.rawFrame(opcode: Opcode.reserve.rawValue, id: 4242, length: 70_000))
        let drain = try c.readUntilClosed(timeout: 3)
        #expect(drain.closed)
        #expect(!drain.reset, "the answer must be followed by EOF, not a reset")
        #expect(drain.responses.count == 1)
        let r = try #require(drain.responses.first)
        #expect(r.status == .frameTooLarge)
        #expect(r.requestID == 4242)
        #expect(r.detail == .frameTooLarge(maxFrame: 65_536))
        // The server is fine.
        #expect(try server.connect().ping().status == .ok)
    }

    @Test("FRAME_TOO_LARGE honours --max-frame; a frame of exactly max_frame is accepted")
    func frameLimitEdge() throws {
        let server = try StockdProcess(["--max-frame", "1024"])
        let c = try server.connect()
        // Exactly 1024 bytes: a PING with 1012 bytes of payload is decoded (MALFORMED: trailing bytes).
        try c.send(Wire.rawFrame(opcode: Opcode.ping.rawValue, id: 1, payload: [UInt8](repeating: 0, count: 1012)))
        #expect(try c.readResponse().status == .malformed)
        // 1025 bytes is too large.
        try c.send(Wire.rawFrame(opcode: Opcode.ping.rawValue, id: 2, payload: [UInt8](repeating: 0, count: 1013)))
        let drain = try c.readUntilClosed(timeout: 3)
        #expect(drain.closed)
        #expect(drain.responses.map(\.status) == [.frameTooLarge])
        #expect(drain.responses.first?.requestID == 2)
        #expect(drain.responses.first?.detail == .frameTooLarge(maxFrame: 1024))
    }

    @Test("UNKNOWN_OPCODE echoes the opcode byte and keeps the connection")
    func unknownOpcode() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        for op: UInt8 in [0x7E, 0x03, 0x41, 0x43, 0x80, 0x00, 0xFF] {  // 0x41 EVENT: server to client only
            let r = try c.rawRequest(opcode: op, payload: [])
            #expect(r.status == .unknownOpcode)
            #expect(r.opcode == op)
        }
        #expect(try c.ping().body == .pong)
    }

    @Test("UNSUPPORTED_VERSION carries the range spoken, then closes")
    func unsupportedVersion() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        let id = try c.sendRequest(.hello(Hello(version: 2, clientName: Array("future".utf8))))
        // A request pipelined behind it is not answered.
        try c.send(Wire.frame(.ping, id: 999))
        let drain = try c.readUntilClosed(timeout: 3)
        #expect(drain.closed)
        #expect(!drain.reset)
        #expect(drain.responses.count == 1, "\(drain.responses)")
        let r = try #require(drain.responses.first)
        #expect(r.requestID == id)
        #expect(r.status == .unsupportedVersion)
        #expect(r.detail == .unsupportedVersion(min: 1, max: 1))
    }

    @Test("HELLO_OUT_OF_ORDER for a second HELLO or a HELLO after a request; PING excepted")
    func helloOutOfOrder() throws {
        let server = try StockdProcess(catalog: "SKU-A,1\n")
        let hello = Request.hello(Hello(clientName: Array("t".utf8)))
        let twice = try server.connect()
        #expect(try twice.request(hello).status == .ok)
        #expect(try twice.request(hello).status == .helloOutOfOrder)
        #expect(try twice.ping().status == .ok)  // kept

        let late = try server.connect()
        #expect(try late.stockGet("SKU-A").status == .ok)
        #expect(try late.request(hello).status == .helloOutOfOrder)
        #expect(try late.stockGet("SKU-A").status == .ok)  // the session is as it was

        let afterPing = try server.connect()
        #expect(try afterPing.ping().status == .ok)
        #expect(try afterPing.request(hello).status == .ok)
    }

    @Test("AT_CAPACITY once the token table (--max-tokens 16) is full")
    func atCapacity() throws {
        let server = try StockdProcess(["--workers", "1", "--max-tokens", "16"], catalog: "CAP,1000\n")
        let c = try server.connect()
        var granted = 0
        var firstRefusal: Int?
        for attempt in 1...17 {
            let r = try c.reserve("CAP", 1)
            if r.status == .ok {
                granted += 1
                continue
            }
            #expect(r.status == .atCapacity, "attempt \(attempt): \(r)")
            firstRefusal = attempt
            break
        }
        let at = try #require(firstRefusal, "17 reservations granted with --max-tokens 16")
        #expect(at >= 16, "AT_CAPACITY at attempt \(at), before 16 tokens were live")
        // The refusal had no effect, and the connection is kept.
        #expect(try c.info("CAP") == StockInfo(onHand: 1000, available: UInt64(1000 - granted), reserved: UInt64(granted),
                                              confirmed: 0, reservations: UInt64(granted)))
        #expect(try c.ping().status == .ok)
    }

    @Test("BUSY beyond --max-connections: one unsolicited frame, then EOF")
    func busy() throws {
        let server = try StockdProcess(["--max-connections", "2"])
        let a = try server.connect()
        let b = try server.connect()
        #expect(try a.ping().status == .ok)
        #expect(try b.ping().status == .ok)
        let third = try server.connect()
        let drain = try third.readUntilClosed(timeout: 3)
        #expect(drain.closed)
        #expect(drain.responses.count == 1, "\(drain.responses)")
        let r = try #require(drain.responses.first)
        #expect(r.status == .busy)
        #expect(r.requestID == 0)
        #expect(r.opcode == 0)
        // The two admitted connections are unaffected.
        #expect(try a.ping().status == .ok)
        // Closing one frees a place (bounded retry: the server notices the close asynchronously).
        a.close()
        let deadline = monotonicSeconds() + 3
        var admitted = false
        while monotonicSeconds() < deadline && !admitted {
            let d = try server.connect()
            if (try? d.ping().status) == .ok { admitted = true } else { sleepSeconds(0.02) }
        }
        #expect(admitted, "no connection admitted after one of two closed")
    }
}

/// Polls STOCK_GET every 20 ms until `condition` holds or `timeout` passes.
@discardableResult
func waitForStock(_ c: RawClient, _ sku: String, timeout: Double,
                  _ condition: (StockInfo) -> Bool) throws -> StockInfo {
    let deadline = monotonicSeconds() + timeout
    var last = try c.info(sku)
    while !condition(last) {
        guard monotonicSeconds() < deadline else {
            throw HarnessError("\(sku) did not reach the expected state within \(timeout) s; last \(last)")
        }
        sleepSeconds(0.02)
        last = try c.info(sku)
    }
    return last
}
