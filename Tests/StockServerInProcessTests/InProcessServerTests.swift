import Foundation
import StockCore
import StockJournal
import StockProtocol
import StockServer
import Testing
import TestSupport

/// A `StockServer` in the test process (no stockd binary), driven over loopback TCP with RawClient:
/// what `Connection` answers and in what order, what `JournalPipeline` has on disk by the time an
/// answer arrives, the server's counters (STATS, `core.stats()`, `summary`), and a restart from
/// the journal. Serialized: each test runs two loop threads of its own.
@Suite("StockServer in process", .ownThread, .serialized, .timeLimit(.minutes(2)))
struct InProcessServerTests {
    static let scarf = sku("SCARF")

    @Test("in memory: HELLO, reserve, partial confirm, release and the refusals, with the counters that follow")
    func reserveConfirmReleaseInMemory() throws {
        let stockd = try InProcessStockd(catalog: [StockSet(sku: sku("JACKET"), onHand: 10, lowStockThreshold: 2),
                                                   StockSet(sku: Self.scarf, onHand: 5)])
        defer { stockd.stop() }
        let c = try stockd.connect()
        let hello = try #require(try c.request(.hello(Hello(clientName: Array("in-process".utf8)))).helloReply)
        #expect(hello.version == 1 && hello.role == .admin)
        #expect(String(decoding: hello.serverName, as: UTF8.self).hasPrefix("stockd"))

        let a = try c.reserveOK("JACKET", 3)
        #expect(a.available == 7)
        let confirmed = try #require(try c.confirm(a.token, quantity: 2).confirmReply)
        #expect(confirmed.confirmed == 2 && confirmed.returned == 1)
        let b = try c.reserveOK("SCARF", 2)
        #expect(b.available == 3)
        #expect(try c.release(b.token).releasedUnits == 2)
        // Refusals: each its own status, the connection goes on.
        #expect(try c.release(b.token).status == .tokenReleased)
        #expect(try c.confirm(a.token).status == .tokenConfirmed)
        #expect(try c.reserve("SCARF", 9).status == .outOfStock)
        #expect(try c.reserve("NOPE", 1).status == .unknownSKU)

        let jacket = try c.info("JACKET")
        #expect(jacket.onHand == 10 && jacket.available == 8 && jacket.reserved == 0 && jacket.confirmed == 2
                && jacket.lowStockThreshold == 2 && jacket.balances, "\(jacket)")
        #expect(try c.info("SCARF").available == 5)

        // The core's counters and STATS agree with what was sent. The core counts one failed reserve (out
        // of stock); the unknown SKU is refused before a reservation is tried, and counts in STATS only.
        let core = stockd.server.core.stats()
        #expect(core.reserves == 2 && core.confirms == 1 && core.releases == 1 && core.liveTokens == 0
                && core.reserveFailures == 1 && core.skus == 2, "\(core)")
        let stats = try c.stats()
        #expect(stats["requests.HELLO"] == 1 && stats["requests.RESERVE"] == 4 && stats["requests.CONFIRM"] == 2
                && stats["requests.RELEASE"] == 2 && stats["requests.STOCK_GET"] == 2, "\(stats)")
        #expect(stats["status.TOKEN_RELEASED"] == 1 && stats["status.TOKEN_CONFIRMED"] == 1
                && stats["status.OUT_OF_STOCK"] == 1 && stats["status.UNKNOWN_SKU"] == 1, "\(stats)")
        #expect(stats["connections.open"] == 1 && stats["workers"] == 2, "\(stats)")
        // In memory there is no journal: no journal counters, nothing failed.
        #expect(stats["journal.records"] == nil && !stockd.server.journalFailed, "\(stats)")

        // 12 requests answered on one connection (the STATS answer included once it is written).
        c.close()
        #expect(eventually { stockd.server.summary.requests == 12 && stockd.server.summary.connections == 1 },
                "\(stockd.server.summary)")
        stockd.stop()
        #expect(stockd.server.summary.liveTokens == 0 && stockd.problems.isEmpty, "\(stockd.log.get())")
    }

    @Test("in memory: 300 pipelined RESERVEs in one write are answered in order, exactly on_hand granted")
    func pipelinedReservesAnsweredInOrder() throws {
        let stockd = try InProcessStockd(catalog: [StockSet(sku: sku("HOT"), onHand: 200)])
        defer { stockd.stop() }
        let c = try stockd.connect(timeout: 10)
        var bytes: [UInt8] = []
        var ids: [UInt32] = []
        for _ in 0..<300 {
            let id = c.freshID()
            ids.append(id)
            bytes += Wire.frame(.reserve(Reserve(sku: sku("HOT"), quantity: 1)), id: id)
        }
        let sending = c.sendInBackground(bytes)
        let answers = try c.readResponses(300, timeout: 20)
        #expect(sending.wait(timeout: 10) == nil)
        #expect(answers.map(\.requestID) == ids, "answers out of order")
        let granted = answers.compactMap(\.reservation)
        #expect(granted.count == 200 && answers.filter { $0.status == .outOfStock }.count == 100)
        // `available` counts down one per answer, in answer order.
        #expect(granted.map(\.available) == (0..<200).map { UInt64(199 - $0) })
        #expect(Set(granted.map(\.token)).count == 200, "a token handed out twice")
        let info = try c.info("HOT")
        #expect(info.reserved == 200 && info.available == 0 && info.balances, "\(info)")
        let core = stockd.server.core.stats()
        #expect(core.reserves == 200 && core.reserveFailures == 100 && core.liveTokens == 200, "\(core)")
    }

    @Test("durable: each change is in the journal on disk, and durable, when its answer arrives; recovery replays them")
    func answersFollowTheJournal() throws {
        let dir = try TempDirectory(prefix: "in-process-durable")
        defer { dir.remove() }
        let data = dir.path("data")
        let stockd = try InProcessStockd(dataDirectory: data)
        defer { stockd.stop() }
        #expect(stockd.firstSeq == 1)
        let c = try stockd.connect()
        let baseline = try c.stats()
        #expect(baseline["journal.records"] == 0 && baseline["journal.failed"] == 0, "\(baseline)")

        /// The journal as it is on disk right now, and the durable watermark STATS reports.
        func onDisk() throws -> (records: [SequencedRecord], durable: UInt64) {
            (try journalRecords(data), try c.stats()["journal.durable_seq"] ?? 0)
        }

        #expect(try c.stockSet("SCARF", onHand: 10).status == .ok)
        var (records, durable) = try onDisk()
        let setSeq = try #require(records.first {
            if case .stockSet(Self.scarf, 10, _, _) = $0.record { return true }
            return false
        }?.seq, "the STOCK_SET was answered before its record was written: \(records)")
        #expect(durable >= setSeq)

        let hold = try c.reserveOK("SCARF", 3, customer: "c-1")
        (records, durable) = try onDisk()
        let reserveSeq = try #require(records.first {
            if case .reserved(hold.token, Self.scarf, 3, _, _, _, _, _, _) = $0.record { return true }
            return false
        }?.seq, "the RESERVE was answered before its record was written: \(records)")
        #expect(durable >= reserveSeq && reserveSeq > setSeq)

        let confirmed = try #require(try c.confirm(hold.token, quantity: 2, orderReference: "ORD-1").confirmReply)
        #expect(confirmed.confirmed == 2 && confirmed.returned == 1)
        (records, durable) = try onDisk()
        let confirmSeq = try #require(records.first {
            if case .confirmed(hold.token, Self.scarf, 2, 1, _, _, _, _) = $0.record { return true }
            return false
        }?.seq, "the CONFIRM was answered before its record was written: \(records)")
        #expect(durable >= confirmSeq && confirmSeq > reserveSeq)

        let other = try c.reserveOK("SCARF", 1)
        #expect(try c.release(other.token).releasedUnits == 1)
        (records, durable) = try onDisk()
        #expect(records.contains {
            if case .released(other.token, Self.scarf, 1, _, _, _) = $0.record { return true }
            return false
        }, "the RELEASE was answered before its record was written: \(records)")

        // A refusal changes nothing, so it journals nothing.
        #expect(try c.reserve("SCARF", 50).status == .outOfStock)
        let final = try c.stats()
        records = try journalRecords(data)
        #expect(records.map(\.seq) == Array(stockd.firstSeq..<(stockd.firstSeq + UInt64(records.count))),
                "seqs not contiguous from the first: \(records.map(\.seq))")
        #expect(final["journal.records"] == UInt64(records.count) && final["journal.durable_seq"] == records.last?.seq,
                "\(final); on disk: \(records.count) records")
        #expect(final["journal.fsyncs"].map { $0 >= 1 } == true && final["journal.failed"] == 0, "\(final)")
        let core = stockd.server.core.stats()
        #expect(core.reserves == 2 && core.confirms == 1 && core.releases == 1 && core.reserveFailures == 1, "\(core)")

        c.close()
        stockd.stop()
        #expect(!stockd.server.journalFailed && stockd.problems.isEmpty, "\(stockd.problems)")
        // What was answered is what recovery finds.
        let recovered = try Recovery.run(dataDirectory: data, nowWallMs: wallClockMs())
        let state = try #require(recovered.state.sku(Self.scarf))
        #expect(state.onHand == 10 && state.confirmed == 2 && state.reserved == 0 && state.available == 8, "\(state)")
        #expect(recovered.state.tokenCount == 0 && recovered.tornTail == nil)
        #expect(recovered.state.fates.bySlot[hold.token.slot]?.fate == .confirmed)
        #expect(recovered.state.fates.bySlot[other.token.slot].map { $0.token == other.token ? $0.fate : nil }
                == .released)
        #expect(recovered.state.lastSeq == records.last?.seq)
    }

    @Test("durable: a restart in process recovers stock and a live hold, and the journal goes on after it")
    func restartRecoversFromTheJournal() throws {
        let dir = try TempDirectory(prefix: "in-process-restart")
        defer { dir.remove() }
        let data = dir.path("data")
        let hold: Reservation
        let lastSeq: UInt64
        do {
            let first = try InProcessStockd(dataDirectory: data)
            let c = try first.connect()
            #expect(try c.stockSet("JACKET", onHand: 10, threshold: 1, limit: 5).status == .ok)
            hold = try c.reserveOK("JACKET", 4, ttlMs: 120_000, customer: "c-1")
            let sold = try c.reserveOK("JACKET", 1, customer: "c-1")
            #expect(try c.confirm(sold.token).status == .ok)
            lastSeq = try #require(try c.stats()["journal.durable_seq"])
            c.close()
            first.stop()
            #expect(first.problems.isEmpty, "\(first.problems)")
        }

        let second = try InProcessStockd(dataDirectory: data)
        defer { second.stop() }
        #expect(second.firstSeq == lastSeq + 1)
        let c = try second.connect()
        let info = try c.info("JACKET")
        #expect(info.onHand == 10 && info.reserved == 4 && info.confirmed == 1 && info.available == 5
                && info.lowStockThreshold == 1 && info.perCustomerLimit == 5, "\(info)")
        #expect(second.server.core.stats().liveTokens == 1)
        // The customer's limit counts the recovered units (4 held + 1 sold of 5).
        #expect(try c.reserve("JACKET", 1, customer: "c-1").status == .customerLimit)
        // The recovered hold is the same token, and it confirms on the new server; journaled after lastSeq.
        let confirmed = try #require(try c.confirm(hold.token).confirmReply)
        #expect(confirmed.confirmed == 4 && confirmed.returned == 0)
        let records = try journalRecords(data)
        let confirmRecord = try #require(records.first {
            if case .confirmed(hold.token, _, 4, 0, _, _, _, _) = $0.record { return true }
            return false
        })
        #expect(confirmRecord.seq > lastSeq)
        #expect(try c.info("JACKET").confirmed == 5)
        let stats = try c.stats()
        #expect(stats["journal.durable_seq"].map { $0 >= confirmRecord.seq } == true, "\(stats)")
        c.close()
        second.stop()
        #expect(second.problems.isEmpty, "\(second.problems)")
    }
}
