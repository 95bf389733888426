import Foundation
import StockClient
import Testing
import TestSupport

// MARK: - StockClient against a real stockd

/// Runs `body` and returns the `StockError` it threw (nil if it succeeded).
func stockError<R>(_ body: () async throws -> R) async -> StockError? {
    do {
        _ = try await body()
        return nil
    } catch let e as StockError {
        return e
    } catch {
        Issue.record("not a StockError: \(error)")
        return nil
    }
}

/// StockClient against real stockd processes, one test at a time: these were part of the serialized
/// "stockd over TCP" suite (StockdTests' StockServerTests) and stay serialized, with its time limit.
@Suite("StockClient against a real stockd", .ownThread, .serialized, .timeLimit(.minutes(2)))
struct ClientTests {
    @Test("a --catalog saved with CRLF line ends loads every line")
    func crlfCatalog() async throws {
        let server = try StockdProcess(catalog: "sku,on_hand,low,limit\r\nA,10,2,3\r\n# note\r\nB,5\r\n")
        let client = StockClient(port: server.port, connections: 1, timeout: testCallTimeout)
        defer { client.close() }
        #expect(try await client.stock("A") == StockInfo(onHand: 10, available: 10, reserved: 0, confirmed: 0,
                                                        lowStockThreshold: 2, perCustomerLimit: 3))
        #expect(try await client.stock("B").onHand == 5)
    }

    @Test("StockClient: every call, and every error it can get from a server")
    func clientEveryCall() async throws {
        let server = try StockdProcess(["--workers", "2", "--max-ttl", "10m", "--default-ttl", "90s"],
                                       catalog: "JACKET-RED-M,10,2,3\nBELT,5\n")
        let client = StockClient(port: server.port, connections: 2, credential: "ignored-without-auth", timeout: testCallTimeout)
        defer { client.close() }

        try await client.ping()
        let info = try await client.serverInfo()
        #expect(info.version == 1 && info.role == .admin && info.maxTTLMs == 600_000)

        // Reserve → confirm (partial), reserve → release, reserve → extend.
        let before = UInt64(Date().timeIntervalSince1970 * 1000)
        let a = try await client.reserve(sku: "JACKET-RED-M", quantity: 3, ttl: .seconds(30), customer: "c-1",
                                         idempotencyKey: "k-1")
        #expect(a.available == 7 && a.expiresAtMs >= before + 29_000 && a.expiresAtMs <= before + 32_000)
        let retry = try await client.reserve(sku: "JACKET-RED-M", quantity: 3, ttl: .seconds(30), customer: "c-1",
                                             idempotencyKey: "k-1")
        #expect(retry.token == a.token)
        let confirmed = try await client.confirm(a.token, quantity: 2, orderReference: "ORD-1")
        #expect(confirmed.confirmed == 2 && confirmed.returned == 1)
        let b = try await client.reserve(sku: "BELT", quantity: 2)
        #expect(try await client.release(b.token) == 2)
        let c = try await client.reserve(sku: "BELT", quantity: 1, ttl: .seconds(5))
        let extended = try await client.extend(c.token, ttl: .seconds(60))
        #expect(extended >= c.expiresAtMs + 50_000)
        let bundle = try await client.reserveBundle([("JACKET-RED-M", 1), ("BELT", 1)])
        #expect(try await client.release(bundle.token) == 2)

        // Stock management.
        #expect(try await client.stock("JACKET-RED-M") == StockInfo(onHand: 10, available: 8, reserved: 0,
                                                                   confirmed: 2, lowStockThreshold: 2,
                                                                   perCustomerLimit: 3, reservations: 2))
        let set = try await client.setStock("CAP", onHand: 4, lowStockThreshold: 1)
        #expect(set.onHand == 4 && set.available == 4)
        #expect(try await client.setStock("CAP", onHand: 6, expected: 4).onHand == 6)
        #expect(try await client.adjustStock("CAP", delta: -2, reason: .damage).onHand == 4)
        let page = try await client.listStock(cursor: 0, limit: 2)
        #expect(page.entries.map(\.sku.string) == ["JACKET-RED-M", "BELT"] && page.nextCursor == 2)
        #expect(try await client.listAllStock().count == 3)
        let stats = try await client.stats()
        #expect(stats.contains { $0.name == "requests.RESERVE" && $0.value >= 4 })

        // Server rejections, each a distinct typed error.
        #expect(await stockError { try await client.reserve(sku: "BELT", quantity: 9) }
            == .outOfStock(available: 4, line: 0))
        #expect(await stockError { try await client.reserve(sku: "NOPE", quantity: 1) } == .unknownSKU(line: 0))
        #expect(await stockError { try await client.confirm(a.token) } == .tokenAlreadyConfirmed)
        #expect(await stockError { try await client.release(b.token) } == .tokenAlreadyReleased)
        var forged = c.token
        forged.secret &+= 1
        #expect(await stockError { try await client.release(forged) } == .tokenUnknown)
        #expect(await stockError { try await client.setStock("CAP", onHand: 1, expected: 99) }
            == .stockChanged(current: 4))
        #expect(await stockError { try await client.reserve(sku: "JACKET-RED-M", quantity: 2, customer: "c-1") }
            == .customerLimit(remaining: 1, line: 0))
        #expect(await stockError { try await client.reserve(sku: "BELT", quantity: 0) } == .quantityInvalid)
        #expect(await stockError { try await client.reserve(sku: "BELT", quantity: 1, ttl: .seconds(3000)) }
            == .ttlTooLong(maxMs: 600_000))
        #expect(await stockError { try await client.adjustStock("CAP", delta: -100) }
            == .insufficientAvailable(available: 4))
        #expect(await stockError {
            _ = try await client.reserve(sku: "BELT", quantity: 2, idempotencyKey: "k-2")
            return try await client.reserve(sku: "BELT", quantity: 1, idempotencyKey: "k-2")
        } == .idempotencyConflict)
        #expect(await stockError { try await client.stock("") } == .invalidSKU)
        #expect(await stockError { try await client.stock("BAD\u{7}SKU") } == .invalidSKU)
        // A TTL the client can already tell is impossible never reaches the server.
        #expect(await stockError { try await client.extend(c.token, ttl: .seconds(7200)) }
            == .ttlTooLong(maxMs: 3_600_000))
    }

    @Test("StockClient: an expired hold is a typed error")
    func clientExpiry() async throws {
        let server = try StockdProcess(catalog: "SCARF,1\n")
        let client = StockClient(port: server.port, timeout: testCallTimeout)
        defer { client.close() }
        let r = try await client.reserve(sku: "SCARF", quantity: 1, ttl: .milliseconds(100))
        try await Task.sleep(for: .milliseconds(300))
        #expect(await stockError { try await client.confirm(r.token) } == .tokenExpired)
        #expect(try await client.stock("SCARF").available == 1)
    }

    @Test("StockClient: 10,000 concurrent calls from 100 tasks over 4 connections, all answered correctly")
    func clientConcurrency() async throws {
        let server = try StockdProcess(["--workers", "2"], catalog: "HOT,5000\n")
        let client = StockClient(port: server.port, connections: 4, timeout: testCallTimeout)
        defer { client.close() }
        let results = try await withThrowingTaskGroup(of: (granted: Int, refused: Int).self) { group in
            for _ in 0..<100 {
                group.addTask {
                    var granted = 0
                    var refused = 0
                    // 50 reserve+release pairs and 50 reserves kept = 150 calls... keep it at 100 per task:
                    // 50 reserves, half released again, and 25 stock reads.
                    for i in 0..<50 {
                        do {
                            let r = try await client.reserve(sku: "HOT", quantity: 1)
                            granted += 1
                            if i % 2 == 0 {
                                #expect(try await client.release(r.token) == 1)
                                granted -= 1
                            } else {
                                _ = try await client.stock("HOT")
                            }
                        } catch StockError.outOfStock {
                            refused += 1
                        }
                    }
                    return (granted, refused)
                }
            }
            var total = (granted: 0, refused: 0)
            for try await r in group {
                total.granted += r.granted
                total.refused += r.refused
            }
            return total
        }
        // 100 tasks × 50 reserves, 25 of them released: 2,500 units held, none refused.
        #expect(results.granted == 2_500 && results.refused == 0)
        let info = try await client.stock("HOT")
        #expect(info.reserved == 2_500 && info.available == 2_500 && info.onHand == 5_000)
        let stats = try await client.stats()
        let reserves = stats.first { $0.name == "requests.RESERVE" }?.value ?? 0
        #expect(reserves == 5_000)
    }

    @Test("StockClient: a server restart fails calls with a connection error, then they succeed again")
    func clientReconnect() async throws {
        // A port nobody uses right now, so the second server can take it.
        let probe = try StockdProcess(catalog: "SKU-A,100\n")
        let port = probe.port
        let client = StockClient(port: port, connections: 2, timeout: .seconds(2))
        defer { client.close() }
        _ = try await client.reserve(sku: "SKU-A", quantity: 1)
        _ = try await client.stock("SKU-A")

        let stopped = probe.terminate()
        #expect(stopped?.code == 0)
        // While it is down: a transport error, never a server rejection.
        for _ in 0..<4 {
            let e = await stockError { try await client.stock("SKU-A") }
            #expect(e != nil && e?.isServerRejection == false, "got \(String(describing: e))")
        }

        let again = try StockdProcess(["--port", "\(port)"], catalog: "SKU-A,7\n")
        #expect(again.port == port)
        // Within the backoff (at most 5 s) every slot reconnects.
        var answered = 0
        let deadline = Date().addingTimeInterval(10)
        while answered < 6 && Date() < deadline {
            if let info = try? await client.stock("SKU-A") {
                #expect(info.onHand == 7)  // the new server's state
                answered += 1
            } else {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(answered == 6)
    }

    @Test("StockClient: an unreachable server is `unreachable`, distinct from rejections")
    func clientUnreachable() async throws {
        let probe = try StockdProcess()
        let port = probe.port
        probe.terminate()
        let client = StockClient(port: port, timeout: .milliseconds(500))
        defer { client.close() }
        let e = await stockError { try await client.ping() }
        guard case .unreachable = e else {
            Issue.record("expected unreachable, got \(String(describing: e))")
            return
        }
        #expect(e?.isServerRejection == false)
    }
}
