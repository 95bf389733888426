import Foundation
import Glibc
import StockProtocol
import Testing
import TestSupport

/// The per-connection abuse limits against a real stockd: a frame dribbled
/// in too slowly (slowloris), a client that never reads its answers, and
/// the reservation rate limit — each handled without touching other clients.
@Suite(.ownThread) struct AbuseLimitTests {
    @Test func aFrameThatNeverCompletesIsClosedButSlowWholeFramesAreNot() throws {
        let server = try StockdProcess(["--frame-timeout", "300ms", "--sync", "none"], catalog: "JACKET,10\n")
        let loris = try server.connect()
        let ping = Wire.frame(.ping, id: 1)
        try loris.send(Array(ping.prefix(5)))  // half a header, then nothing
        let patient = try server.connect()
        let t0 = monotonicSeconds()
        // Whole frames, slowly: one PING every 100 ms for 1 s, each answered.
        for _ in 0..<10 {
            #expect(try patient.ping().status == .ok)
            sleepSeconds(0.1)
        }
        let drain = try loris.readUntilClosed(timeout: 3)
        #expect(drain.closed && drain.responses.isEmpty, "\(drain)")
        #expect(monotonicSeconds() - t0 < 3)
        // Dribbling byte by byte does not reset the frame's clock either.
        let dribble = try server.connect()
        var sent = 0
        for b in ping.prefix(11) {
            guard (try? dribble.send([b])) != nil else { break }  // closed under it: what this tests
            sent += 1
            sleepSeconds(0.05)
        }
        let closedAfter = try dribble.readUntilClosed(timeout: 3).closed
        #expect(sent < 11 || closedAfter, "\(sent) bytes sent")
        #expect(try patient.stats()["connections.closed_slow"] == 2)
    }

    @Test func aClientThatNeverReadsIsClosedAndOthersAreServed() throws {
        let skus = (0..<200).map { "SKU-WITH-A-LONG-NAME-TO-FILL-PAGES-\($0),1" }.joined(separator: "\n")
        let server = try StockdProcess(["--write-timeout", "500ms", "--max-output", "262144", "--sync", "none"],
                                       catalog: skus + "\n")
        let deaf = try RawClient(port: server.port)
        // Shrink its receive buffer so the answers back up quickly.
        var small: Int32 = 4096
        setsockopt(deaf.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var burst: [UInt8] = []
        for i in 0..<400 { burst += Wire.frame(.stockList(StockList(cursor: 0, limit: 200)), id: UInt32(i + 1)) }
        try deaf.send(burst)
        let other = try server.connect()
        let t0 = monotonicSeconds()
        var closed = false
        while monotonicSeconds() - t0 < 5 && !closed {
            #expect(try other.ping().status == .ok)
            closed = try other.stats()["connections.closed_slow"] == 1
            sleepSeconds(0.05)
        }
        #expect(closed, "the deaf client was not closed within 5 s")
        #expect(try other.info("SKU-WITH-A-LONG-NAME-TO-FILL-PAGES-0").onHand == 1)
    }

    @Test func reservationsAreRateLimitedPerConnection() throws {
        let server = try StockdProcess(["--reserve-rate", "20", "--reserve-burst", "5", "--sync", "none"],
                                       catalog: "JACKET,1000\n")
        let bot = try server.connect()
        var burst: [UInt8] = []
        for i in 0..<30 { burst += Wire.frame(.reserve(Reserve(sku: SKU("JACKET")!, quantity: 1)), id: UInt32(i + 1)) }
        try bot.send(burst)
        let answers = try bot.readResponses(30)
        let granted = answers.filter { $0.status == .ok }.count
        let limited = answers.filter { $0.status == .rateLimited }.count
        // The burst of 5, plus what 20/s refilled while the 30 were read (well under 20 of them).
        #expect(granted >= 5 && granted < 15 && granted + limited == 30, "\(granted) granted, \(limited) limited")
        // Another connection has its own bucket; after a second the bot's is full again.
        let shop = try server.connect()
        #expect(try shop.reserve("JACKET", 1).status == .ok)
        sleepSeconds(1.0)
        let again = (0..<5).map { _ in (try? bot.reserve("JACKET", 1).status) ?? .internal }
        #expect(again.allSatisfy { $0 == .ok }, "\(again)")
        #expect(try shop.info("JACKET").reserved == UInt64(granted + 6))
        #expect(try shop.stats()["status.RATE_LIMITED"] == UInt64(limited))
    }

    /// Found by `make fuzz` (fuzz/regressions/dispatch-stats-over-max-frame): STATS must fit `max_frame` too.
    @Test func statsFitsTheSmallestMaxFrame() throws {
        let server = try StockdProcess(["--max-frame", "1024", "--workers", "2", "--sync", "none"])
        let c = try server.connect()
        let stats = try c.stats()
        #expect(c.lastFrameSize <= 1024 && c.lastFrameSize > 900, "STATS answer of \(c.lastFrameSize) bytes")
        #expect(stats["requests.total"] != nil && stats["connections.open"] == 1, "\(stats)")
    }
}
