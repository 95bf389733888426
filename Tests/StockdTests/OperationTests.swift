import Foundation
import StockProtocol
import Testing
import TestSupport

/// Integration tests: each starts a real `stockd` process (`StockdProcess`)
/// and talks raw TCP to it (`RawClient`). Serialized, so that timing-sensitive
/// tests (expiry, idle timeout, shutdown) do not compete for the CPU.
@Suite("stockd over TCP", .ownThread, .serialized, .timeLimit(.minutes(2)))
struct StockServerTests {}

// MARK: - 1. Every opcode answered OK over the wire

extension StockServerTests {
    @Test("HELLO echoes version 1, role admin and the configured limits")
    func helloEchoesFlags() throws {
        let server = try StockdProcess(["--max-frame", "131072", "--max-ttl", "30m", "--default-ttl", "45s"])
        let c = try server.connect()
        let r = try c.request(.hello(Hello(clientName: Array("integration-test".utf8))))
        #expect(r.status == .ok, "\(r)")
        #expect(r.opcode == Opcode.hello.rawValue)
        let h = try #require(r.helloReply, "\(r)")
        #expect(h.version == 1)
        #expect(h.role == .admin)
        #expect(h.maxFrame == 131_072)
        #expect(h.maxTTLMs == 1_800_000)
        #expect(h.defaultTTLMs == 45_000)
        #expect(h.maxBundleLines == 16)
        #expect(h.maxSKULength == 64)
        #expect(h.maxInflight > 0)
        #expect(String(decoding: h.serverName, as: UTF8.self).hasPrefix("stockd"))
        // The session goes on after HELLO.
        #expect(try c.ping().body == .pong)
    }

    @Test("PING answers an empty OK with the same id and opcode")
    func ping() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        // The spec's own example: PING id 7 → `08000000 02 01 00 00 07000000`.
        try c.send([0x08, 0, 0, 0, 0x02, 0, 0, 0, 0x07, 0, 0, 0])
        let r = try c.readResponse()
        #expect(r == Response(requestID: 7, opcode: Opcode.ping.rawValue, body: .pong))
        #expect(c.lastFrameSize == 12)
        // HELLO is optional: PING and everything else work without it.
        #expect(try c.ping().body == .pong)
    }

    @Test("STOCK_SET creates, STOCK_GET reads, STOCK_ADJUST adds and removes, compare-and-set succeeds")
    func stockSetGetAdjust() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        let created = try c.stockSet("JACKET-RED-M", onHand: 100, threshold: 5, limit: 3)
        #expect(created.status == .ok, "\(created)")
        #expect(created.opcode == Opcode.stockSet.rawValue)
        #expect(created.stockInfo == StockInfo(onHand: 100, available: 100, reserved: 0, confirmed: 0,
                                               lowStockThreshold: 5, perCustomerLimit: 3))
        #expect(try c.info("JACKET-RED-M") == StockInfo(onHand: 100, available: 100, reserved: 0, confirmed: 0,
                                                        lowStockThreshold: 5, perCustomerLimit: 3))
        // SKUs are case-sensitive byte strings.
        #expect(try c.stockGet("jacket-red-m").status == .unknownSKU)

        let up = try c.request(.stockAdjust(StockAdjust(sku: sku("JACKET-RED-M"), delta: 20, reason: .restock)))
        #expect(up.opcode == Opcode.stockAdjust.rawValue)
        #expect(up.stockInfo?.onHand == 120)
        #expect(up.stockInfo?.available == 120)
        let down = try c.request(.stockAdjust(StockAdjust(sku: sku("JACKET-RED-M"), delta: -5, reason: .shrinkage)))
        #expect(down.stockInfo?.onHand == 115)
        #expect(down.stockInfo?.available == 115)

        // Compare-and-set with the value just read.
        let cas = try c.stockSet("JACKET-RED-M", onHand: 200, expected: 115)
        #expect(cas.status == .ok, "\(cas)")
        #expect(cas.stockInfo?.onHand == 200)
        #expect(cas.stockInfo?.available == 200)
        // Fields whose flag bit is clear keep their values.
        #expect(cas.stockInfo?.lowStockThreshold == 5)
        #expect(cas.stockInfo?.perCustomerLimit == 3)

        // A CAS creating a new SKU expects on-hand 0.
        let fresh = try c.stockSet("NEW-SKU", onHand: 7, expected: 0)
        #expect(fresh.stockInfo == StockInfo(onHand: 7, available: 7, reserved: 0, confirmed: 0))
        // A non-ASCII SKU is fine (well-formed UTF-8).
        let utf = try c.stockSet("VESTE-ÉTÉ-M", onHand: 1)
        #expect(utf.status == .ok, "\(utf)")
        #expect(try c.info("VESTE-ÉTÉ-M").onHand == 1)
    }

    @Test("RESERVE then CONFIRM (full and partial) sells the units")
    func reserveConfirm() throws {
        let server = try StockdProcess(["--default-ttl", "45s"], catalog: "SKU-A,100\n")
        let c = try server.connect()
        let before = wallClockMs()
        let r = try c.reserve("SKU-A", 3)
        #expect(r.status == .ok, "\(r)")
        #expect(r.opcode == Opcode.reserve.rawValue)
        let res = try #require(r.reservation)
        #expect(res.available == 97)
        // ttl 0 means the server default (45 s here), in Unix epoch ms.
        // The server's clock is never ahead of ours (beyond ms rounding): a
        // start-up bug once put every deadline ~130 ms in the future.
        #expect(res.expiresAtMs >= before + 45_000 - 2_000 && res.expiresAtMs <= wallClockMs() + 45_000 + 5,
                "expires_at_ms \(res.expiresAtMs), now \(wallClockMs())")
        #expect(try c.info("SKU-A") == StockInfo(onHand: 100, available: 97, reserved: 3, confirmed: 0, reservations: 1))

        let conf = try c.confirm(res.token, orderReference: "order-1")
        #expect(conf.opcode == Opcode.confirm.rawValue)
        #expect(conf.confirmReply == ConfirmReply(confirmed: 3, returned: 0), "\(conf)")
        #expect(try c.info("SKU-A") == StockInfo(onHand: 100, available: 97, reserved: 0, confirmed: 3, reservations: 1))

        // Partial confirm: 2 of 5 sold, 3 back on sale.
        let partial = try c.reserveOK("SKU-A", 5)
        #expect(partial.available == 92)
        let pc = try c.confirm(partial.token, quantity: 2)
        #expect(pc.confirmReply == ConfirmReply(confirmed: 2, returned: 3), "\(pc)")
        #expect(try c.info("SKU-A") == StockInfo(onHand: 100, available: 95, reserved: 0, confirmed: 5, reservations: 2))
    }

    @Test("RESERVE then RELEASE returns the units")
    func reserveRelease() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\n")
        let c = try server.connect()
        let res = try c.reserveOK("SKU-A", 4)
        #expect(res.available == 6)
        let rel = try c.release(res.token)
        #expect(rel.opcode == Opcode.release.rawValue)
        #expect(rel.releasedUnits == 4, "\(rel)")
        #expect(try c.info("SKU-A") == StockInfo(onHand: 10, available: 10, reserved: 0, confirmed: 0, reservations: 1))
    }

    @Test("RESERVE then EXTEND moves the deadline later, never earlier")
    func reserveExtend() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\n")
        let c = try server.connect()
        let res = try c.reserveOK("SKU-A", 2, ttlMs: 10_000)
        let now = wallClockMs()
        #expect(res.expiresAtMs >= now + 10_000 - 2_000 && res.expiresAtMs <= now + 10_000 + 2_000)
        let ext = try c.extend(res.token, ttlMs: 60_000)
        #expect(ext.opcode == Opcode.extend.rawValue)
        let later = try #require(ext.extendedTo, "\(ext)")
        #expect(later > res.expiresAtMs)
        #expect(later >= wallClockMs() + 60_000 - 2_000 && later <= wallClockMs() + 60_000 + 2_000)
        // A shorter ttl leaves the deadline as it is.
        let shorter = try c.extend(res.token, ttlMs: 1_000)
        #expect(shorter.extendedTo == later, "\(shorter)")
        // Still held, and still releasable.
        #expect(try c.info("SKU-A").reserved == 2)
        #expect(try c.release(res.token).releasedUnits == 2)
    }

    @Test("RESERVE_BUNDLE holds every line under one token; CONFIRM sells them all")
    func reserveBundle() throws {
        let server = try StockdProcess(catalog: "JACKET,10\nBEANIE,20\nSCARF,5\n")
        let c = try server.connect()
        let lines = [BundleLine(sku: sku("JACKET"), quantity: 1), BundleLine(sku: sku("BEANIE"), quantity: 2),
                     BundleLine(sku: sku("SCARF"), quantity: 5)]
        let r = try c.request(.reserveBundle(ReserveBundle(lines: lines, customer: ShortBytes("cust-1")!)))
        #expect(r.opcode == Opcode.reserveBundle.rawValue)
        let b = try #require(r.bundle, "\(r)")
        #expect(b.expiresAtMs > wallClockMs())
        #expect(try c.info("JACKET") == StockInfo(onHand: 10, available: 9, reserved: 1, confirmed: 0, reservations: 1))
        #expect(try c.info("BEANIE") == StockInfo(onHand: 20, available: 18, reserved: 2, confirmed: 0, reservations: 1))
        #expect(try c.info("SCARF") == StockInfo(onHand: 5, available: 0, reserved: 5, confirmed: 0, reservations: 1))
        let conf = try c.confirm(b.token)
        #expect(conf.confirmReply == ConfirmReply(confirmed: 8, returned: 0), "\(conf)")
        #expect(try c.info("BEANIE") == StockInfo(onHand: 20, available: 18, reserved: 0, confirmed: 2, reservations: 1))

        // A released bundle returns every line.
        let b2 = try #require(try c.request(.reserveBundle(ReserveBundle(lines: Array(lines.prefix(2))))).bundle)
        #expect(try c.release(b2.token).releasedUnits == 3)
        #expect(try c.info("JACKET") == StockInfo(onHand: 10, available: 9, reserved: 0, confirmed: 1, reservations: 2))
    }

    @Test("STOCK_LIST pages over 250 SKUs in creation order, each once")
    func stockListPaging() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        let names = (0..<250).map { "LIST-\(String(format: "%03d", $0))" }
        // Create them pipelined, in order, on one connection.
        var batch: [UInt8] = []
        for (i, n) in names.enumerated() {
            batch += Wire.frame(.stockSet(StockSet(sku: sku(n), onHand: UInt64(i + 1))), id: UInt32(10_000 + i))
        }
        try c.send(batch)
        let created = try c.readResponses(names.count)
        #expect(created.allSatisfy { $0.status == .ok })
        #expect(created.map(\.requestID) == (0..<250).map { UInt32(10_000 + $0) })

        var seen: [String] = []
        var pageSizes: [Int] = []
        var cursor: UInt32 = 0
        for _ in 0..<10 {
            let r = try c.request(.stockList(StockList(cursor: cursor, limit: 100)))
            #expect(r.opcode == Opcode.stockList.rawValue)
            let page = try #require(r.page, "\(r)")
            pageSizes.append(page.entries.count)
            for e in page.entries {
                seen.append(e.sku.string)
                let i = UInt64(names.firstIndex(of: e.sku.string) ?? -1) + 1
                #expect(e.info == StockInfo(onHand: i, available: i, reserved: 0, confirmed: 0), "\(e.sku)")
            }
            if page.nextCursor == Limits.listEnd { break }
            cursor = page.nextCursor
        }
        #expect(seen == names, "pages \(pageSizes)")
        #expect(pageSizes.prefix(2) == [100, 100])
        #expect(pageSizes.allSatisfy { $0 <= 100 })

        // limit 0 is the default page of 100.
        let first = try #require(try c.request(.stockList(StockList(cursor: 0, limit: 0))).page)
        #expect(first.entries.count == 100)
        #expect(first.entries.first?.sku == sku("LIST-000"))
    }

    @Test("STOCK_LIST cuts pages to fit a small --max-frame")
    func stockListFitsMaxFrame() throws {
        let server = try StockdProcess(["--max-frame", "4096"])
        let c = try server.connect()
        // Long SKUs (64 bytes) make entries as large as they get.
        let names = (0..<250).map { i in "L" + String(repeating: "x", count: 59) + String(format: "%04d", i) }
        var batch: [UInt8] = []
        for n in names { batch += Wire.frame(.stockSet(StockSet(sku: sku(n), onHand: 1)), id: 1) }
        try c.send(batch)
        #expect(try c.readResponses(names.count).allSatisfy { $0.status == .ok })
        var seen: [String] = []
        var cursor: UInt32 = 0
        for _ in 0..<300 {
            let r = try c.request(.stockList(StockList(cursor: cursor, limit: 1000)))
            let page = try #require(r.page, "\(r)")
            #expect(c.lastFrameSize <= 4096)
            #expect(!page.entries.isEmpty || page.nextCursor == Limits.listEnd, "an empty page must be the last")
            seen += page.entries.map(\.sku.string)
            if page.nextCursor == Limits.listEnd { break }
            cursor = page.nextCursor
        }
        #expect(seen == names)
    }

    @Test("STATS answers the named counters")
    func stats() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\n")
        let c = try server.connect()
        let other = try server.connect()
        #expect(try other.ping().status == .ok)
        let held = try c.reserveOK("SKU-A", 1)
        let gone = try c.reserveOK("SKU-A", 1)
        #expect(try c.release(gone.token).status == .ok)
        _ = held
        let r = try c.request(.stats)
        #expect(r.opcode == Opcode.stats.rawValue)
        guard case .stats(let entries) = r.body else {
            Issue.record("STATS: \(r)")
            return
        }
        var s: [String: UInt64] = [:]
        for e in entries {
            #expect(e.name.bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "stat names are ASCII")
            #expect(s[e.name.string] == nil, "duplicate stat \(e.name)")
            s[e.name.string] = e.value
        }
        for name in ["connections.open", "connections.total", "requests.total", "tokens.live", "tokens.expired"] {
            #expect(s[name] != nil, "STATS lacks \(name): \(s.keys.sorted())")
        }
        #expect(s["connections.open"] == 2)
        #expect((s["connections.total"] ?? 0) >= 2)
        // PING + 3 on `c` (+ STATS itself, perhaps).
        #expect((s["requests.total"] ?? 0) >= 4)
        #expect(s["tokens.live"] == 1)
        #expect(s["tokens.expired"] == 0)
    }

    @Test("--catalog loads header, comments, blank lines, thresholds and limits in file order")
    func catalogFile() throws {
        let csv = """
            # staged for the show
            sku,on_hand,low_stock_threshold,per_customer_limit

            AURORA-RED-S,40,5,2
            AURORA-RED-M,60
            # a comment between lines
            BEANIE,0,3
            """
        let server = try StockdProcess(catalog: csv + "\n")
        let c = try server.connect()
        let page = try #require(try c.request(.stockList(StockList())).page)
        #expect(page.entries.map(\.sku.string) == ["AURORA-RED-S", "AURORA-RED-M", "BEANIE"])
        #expect(page.nextCursor == Limits.listEnd)
        #expect(try c.info("AURORA-RED-S") == StockInfo(onHand: 40, available: 40, reserved: 0, confirmed: 0,
                                                        lowStockThreshold: 5, perCustomerLimit: 2))
        #expect(try c.info("AURORA-RED-M") == StockInfo(onHand: 60, available: 60, reserved: 0, confirmed: 0))
        #expect(try c.info("BEANIE") == StockInfo(onHand: 0, available: 0, reserved: 0, confirmed: 0,
                                                  lowStockThreshold: 3))
        // The per-customer limit from the file is enforced.
        #expect(try c.reserve("AURORA-RED-S", 3, customer: "viewer-1").status == .customerLimit)
    }
}
