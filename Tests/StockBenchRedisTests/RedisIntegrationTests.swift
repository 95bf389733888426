import BenchSupport
import Foundation
import Glibc
import StockBenchRedis
import Testing
import TestSupport

// The scripts, RedisWire and RedisAdmin against a real redis-server started
// by RedisServer. Requests go through RedisWire.encode and replies through
// RedisWire.consume over a plain socket, read in small pieces so replies
// split across reads; conservation (avail + held + sold = on hand) is
// checked through RedisAdmin.counts after every step.

struct FixtureError: Error, CustomStringConvertible {
    let description: String
}

/// A blocking TCP socket speaking RedisWire.
final class WireConnection {
    private var fd: Int32
    var wire: RedisWire
    /// Bytes per recv, small so replies split across reads.
    let readSize: Int

    init(port: Int, wire: RedisWire, readSize: Int = 7) throws {
        self.wire = wire
        self.readSize = readSize
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FixtureError(description: "socket: errno \(errno)") }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            Glibc.close(fd)
            throw FixtureError(description: "connect 127.0.0.1:\(port): errno \(errno)")
        }
    }

    deinit { Glibc.close(fd) }

    /// Encodes and sends every op in one write (a pipeline).
    func send(_ ops: [BenchOp]) throws {
        var out = OutBuffer(capacity: max(1, ops.count) * wire.maxRequestBytes)
        defer { out.deallocate() }
        for op in ops { wire.encode(op, into: &out) }
        var sent = 0
        while sent < out.count {
            let n = Glibc.send(fd, out.base + sent, out.count - sent, Int32(MSG_NOSIGNAL))
            guard n > 0 else { throw FixtureError(description: "send: errno \(errno)") }
            sent += n
        }
    }

    /// Reads until `count` replies have been parsed.
    func receive(_ count: Int) throws -> [BenchReply] {
        var replies: [BenchReply] = []
        var buf = [UInt8](repeating: 0, count: readSize)
        while replies.count < count {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw FixtureError(description: "recv: \(n == 0 ? "EOF" : "errno \(errno)")") }
            let ok = buf.withUnsafeBytes { wire.consume(UnsafeRawBufferPointer(rebasing: $0[0..<n])) { replies.append($0) } }
            guard ok else { throw FixtureError(description: "protocol error after \(replies.count) replies") }
        }
        #expect(replies.count == count, "more replies than requests")
        return replies
    }

    func roundTrip(_ ops: [BenchOp]) throws -> [BenchReply] {
        try send(ops)
        return try receive(ops.count)
    }

    func roundTrip(_ op: BenchOp) throws -> BenchReply { try roundTrip([op])[0] }
}

/// A redis-server with the scripts loaded, an admin client and a wire connection.
final class RedisFixture {
    static let skus = ["SKU-0001", "SKU-0002", "SKU-9999"]  // the last is never staged
    let server: RedisServer
    let admin: RedisAdmin
    let shas: (reserve: String, confirm: String, release: String, sweep: String)
    let conn: WireConnection
    let onHand: Int64
    let dir: String

    init(stock: Int64 = 5, persistence: RedisServer.Persistence = .off) throws {
        dir = NSTemporaryDirectory() + "stockbench-redis-test-\(UUID().uuidString)"
        server = try RedisServer(persistence: persistence, dataDir: dir)
        admin = try RedisAdmin(port: server.port, timeoutMs: 5000)
        shas = try admin.loadScripts()
        onHand = stock
        try admin.stage(skus: Array(Self.skus.prefix(2)), stock: stock)
        conn = try WireConnection(port: server.port, wire: Self.wire(shas))
    }

    static func wire(_ shas: (reserve: String, confirm: String, release: String, sweep: String)) -> RedisWire {
        RedisWire(skus: Self.skus, reserveSHA: shas.reserve, confirmSHA: shas.confirm, releaseSHA: shas.release)
    }

    deinit {
        server.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// avail + held + sold == on hand, none negative; returns the counters of `sku`.
    @discardableResult
    func conserved(_ sku: Int = 0, sourceLocation: SourceLocation = #_sourceLocation) throws
        -> (available: Int64, held: Int64, sold: Int64) {
        var result = (available: Int64(0), held: Int64(0), sold: Int64(0))
        for (i, name) in Self.skus.prefix(2).enumerated() {
            let c = try admin.counts(sku: name)
            #expect(c.available + c.held + c.sold == onHand, "\(name): \(c)", sourceLocation: sourceLocation)
            #expect(c.available >= 0 && c.held >= 0 && c.sold >= 0, "\(name): \(c)", sourceLocation: sourceLocation)
            if i == sku { result = c }
        }
        return result
    }

    /// The raw status a confirm/release script gives for `token` (without the wire).
    func rawStatus(_ sha: String, sku: String, token: BenchToken) throws -> [Int64] {
        let hex = RedisKeys.hex(token)
        let reply = try admin.command(["EVALSHA", sha, "5", RedisKeys.token(hex), RedisKeys.avail(sku),
                                       RedisKeys.held(sku), RedisKeys.sold(sku), RedisKeys.deadlines, hex])
        return reply.array?.compactMap(\.integer) ?? []
    }

    func zcard() throws -> Int64 { try admin.command(["ZCARD", RedisKeys.deadlines]).integer ?? -1 }
}

func tok(_ n: UInt64) -> BenchToken { BenchToken(hi: 0x5EED_0000_0000_0000 | n, lo: ~n) }

@Suite("Redis baseline against redis-server", .ownThread, .serialized)
struct RedisIntegrationTests {
    @Test("redis-server is located")
    func locate() {
        #expect(RedisServer.locate() != nil, "apt-get install redis-server")
    }

    @Test("flash sale: exactly the stock is granted, then confirm, release, repeats")
    func flashSale() throws {
        let f = try RedisFixture(stock: 5)
        let c = f.conn
        try f.conserved()

        // 8 buyers race for 5 units in one pipeline.
        let reserves = (1...8).map { BenchOp.reserve(sku: 0, quantity: 1, ttlMs: 60_000, token: tok(UInt64($0))) }
        let replies = try c.roundTrip(reserves)
        #expect(replies == [
            .reserved(token: .zero, available: 4), .reserved(token: .zero, available: 3),
            .reserved(token: .zero, available: 2), .reserved(token: .zero, available: 1),
            .reserved(token: .zero, available: 0),
            .outOfStock(available: 0), .outOfStock(available: 0), .outOfStock(available: 0),
        ])
        #expect(try f.conserved() == (0, 5, 0))
        #expect(try f.conserved(1) == (5, 0, 0))
        #expect(try f.zcard() == 5)

        // The token hash as the design describes it.
        let h = try f.admin.command(["HGETALL", RedisKeys.token(RedisKeys.hex(tok(1)))]).array?.compactMap(\.string) ?? []
        var fields: [String: String] = [:]
        for i in stride(from: 0, to: h.count - 1, by: 2) { fields[h[i]] = h[i + 1] }
        let fieldDeadline = Int64(fields.removeValue(forKey: "deadline") ?? "") ?? 0
        #expect(fields == ["sku": "SKU-0001", "qty": "1", "state": "reserved"])
        let zscore = try f.admin.command(["ZSCORE", RedisKeys.deadlines, RedisKeys.hex(tok(1))]).integer
        #expect(fieldDeadline > 0 && zscore == fieldDeadline)

        #expect(try c.roundTrip(.confirm(sku: 0, token: tok(1))) == .confirmed)
        #expect(try f.conserved() == (0, 4, 1))
        #expect(try c.roundTrip(.release(sku: 0, token: tok(2))) == .released)
        #expect(try f.conserved() == (1, 3, 1))
        #expect(try f.zcard() == 3)

        // Decided tokens: exactly one fate, nothing moves again.
        #expect(try c.roundTrip([
            .confirm(sku: 0, token: tok(1)), .release(sku: 0, token: tok(1)),
            .confirm(sku: 0, token: tok(2)), .release(sku: 0, token: tok(2)),
            .confirm(sku: 0, token: tok(999)),
        ]) == [.tokenGone, .tokenGone, .tokenGone, .tokenGone, .tokenGone])
        #expect(try f.conserved() == (1, 3, 1))
        #expect(try f.rawStatus(f.shas.confirm, sku: "SKU-0001", token: tok(1)) == [RedisStatus.alreadyConfirmed])
        #expect(try f.rawStatus(f.shas.release, sku: "SKU-0001", token: tok(2)) == [RedisStatus.alreadyReleased])
        #expect(try f.rawStatus(f.shas.confirm, sku: "SKU-0001", token: tok(999)) == [RedisStatus.tokenUnknown])
        // A decided token is remembered for 10 minutes, then forgotten.
        let pttl = try f.admin.command(["PTTL", RedisKeys.token(RedisKeys.hex(tok(1)))]).integer ?? 0
        #expect(pttl > 590_000 && pttl <= 600_000)
        #expect(try f.admin.command(["PTTL", RedisKeys.token(RedisKeys.hex(tok(3)))]).integer == -1)

        // Refusals that change nothing.
        #expect(try c.roundTrip(.reserve(sku: 0, quantity: 1, ttlMs: 0, token: tok(3))) == .failed(code: 3))
        #expect(try c.roundTrip(.reserve(sku: 0, quantity: 2, ttlMs: 0, token: tok(50))) == .outOfStock(available: 1))
        #expect(try c.roundTrip(.reserve(sku: 2, quantity: 1, ttlMs: 0, token: tok(51))) == .failed(code: 2))
        #expect(try c.roundTrip(.confirm(sku: 1, token: tok(3))) == .failed(code: 8))
        #expect(try f.conserved() == (1, 3, 1))
        #expect(try f.conserved(1) == (5, 0, 0))

        // ttl 0 is the 90 s default.
        #expect(try c.roundTrip(.reserve(sku: 0, quantity: 1, ttlMs: 0, token: tok(60))) == .reserved(token: .zero, available: 0))
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let deadline = try f.admin.command(["ZSCORE", RedisKeys.deadlines, RedisKeys.hex(tok(60))]).integer ?? 0
        #expect(abs(deadline - (now + 90_000)) < 2_000)
        #expect(try f.conserved() == (0, 4, 1))

        // An unknown script is an error reply, mapped to failed(-1).
        let sha0 = String(repeating: "0", count: 40)
        let bogus = try WireConnection(port: f.server.port, wire: RedisWire(skus: RedisFixture.skus,
                                                                             reserveSHA: sha0, confirmSHA: sha0, releaseSHA: sha0))
        #expect(try bogus.roundTrip([.reserve(sku: 0, quantity: 1, ttlMs: 0, token: tok(70)), .confirm(sku: 0, token: tok(3))])
            == [.failed(code: -1), .failed(code: -1)])
        #expect(try f.conserved() == (0, 4, 1))
    }

    @Test("a hold confirmed or released after its deadline expires on access")
    func expiryOnAccess() throws {
        let f = try RedisFixture(stock: 5)
        let c = f.conn
        #expect(try c.roundTrip([
            .reserve(sku: 0, quantity: 2, ttlMs: 50, token: tok(1)),
            .reserve(sku: 0, quantity: 1, ttlMs: 50, token: tok(2)),
            .reserve(sku: 0, quantity: 1, ttlMs: 60_000, token: tok(3)),
        ]) == [.reserved(token: .zero, available: 3), .reserved(token: .zero, available: 2),
               .reserved(token: .zero, available: 1)])
        #expect(try f.conserved() == (1, 4, 0))
        usleep(100_000)

        #expect(try c.roundTrip(.confirm(sku: 0, token: tok(1))) == .tokenGone)
        #expect(try f.conserved() == (3, 2, 0))  // its 2 units back on sale, none sold
        #expect(try c.roundTrip(.release(sku: 0, token: tok(2))) == .tokenGone)
        #expect(try f.conserved() == (4, 1, 0))
        // Now decided as expired, for good.
        #expect(try f.rawStatus(f.shas.confirm, sku: "SKU-0001", token: tok(1)) == [RedisStatus.expired])
        #expect(try f.rawStatus(f.shas.release, sku: "SKU-0001", token: tok(2)) == [RedisStatus.expired])
        #expect(try c.roundTrip(.confirm(sku: 0, token: tok(2))) == .tokenGone)
        #expect(try f.conserved() == (4, 1, 0))
        // The live one is unaffected.
        #expect(try c.roundTrip(.confirm(sku: 0, token: tok(3))) == .confirmed)
        #expect(try f.conserved() == (4, 0, 1))
        #expect(try f.zcard() == 0)
        #expect(try f.admin.sweep(sha: f.shas.sweep, limit: 100) == (0, 0))
    }

    @Test("the sweeper returns the units of expired holds exactly once")
    func sweepOnce() throws {
        let f = try RedisFixture(stock: 5)
        let c = f.conn
        _ = try c.roundTrip([
            .reserve(sku: 0, quantity: 1, ttlMs: 50, token: tok(1)),
            .reserve(sku: 0, quantity: 2, ttlMs: 50, token: tok(2)),
            .reserve(sku: 0, quantity: 1, ttlMs: 50, token: tok(3)),
            .reserve(sku: 0, quantity: 1, ttlMs: 60_000, token: tok(4)),
            .reserve(sku: 1, quantity: 3, ttlMs: 50, token: tok(5)),
        ])
        #expect(try f.conserved() == (0, 5, 0))
        #expect(try f.conserved(1) == (2, 3, 0))
        // Nothing is due yet.
        #expect(try f.admin.sweep(sha: f.shas.sweep, limit: 100) == (0, 0))
        usleep(100_000)

        // Released before the sweep: the sweeper must not give its units back twice.
        #expect(try c.roundTrip(.release(sku: 0, token: tok(3))) == .tokenGone)  // expired on access
        #expect(try f.conserved() == (1, 4, 0))

        // Limit 2 with 3 due: the production loop calls again while examined == limit.
        var rounds: [(Int, Int)] = []
        while true {
            let r = try f.admin.sweep(sha: f.shas.sweep, limit: 2)
            rounds.append(r)
            try f.conserved()
            if r.examined < 2 { break }
        }
        #expect(rounds.map(\.0) == [2, 1] && rounds.map(\.1) == [2, 1])
        #expect(try f.conserved() == (4, 1, 0))
        #expect(try f.conserved(1) == (5, 0, 0))
        // Again: nothing left to expire, nothing moves.
        #expect(try f.admin.sweep(sha: f.shas.sweep, limit: 100) == (0, 0))
        #expect(try f.conserved() == (4, 1, 0))
        #expect(try f.zcard() == 1)

        // Swept tokens are decided: expired.
        #expect(try c.roundTrip([.confirm(sku: 0, token: tok(1)), .release(sku: 0, token: tok(2)),
                                 .confirm(sku: 1, token: tok(5))]) == [.tokenGone, .tokenGone, .tokenGone])
        #expect(try f.rawStatus(f.shas.confirm, sku: "SKU-0001", token: tok(2)) == [RedisStatus.expired])
        #expect(try f.conserved() == (4, 1, 0))
        #expect(try f.conserved(1) == (5, 0, 0))
        #expect(try c.roundTrip(.confirm(sku: 0, token: tok(4))) == .confirmed)
        #expect(try f.conserved() == (4, 0, 1))
    }

    @Test("connections racing for one hot SKU: exactly the stock is granted")
    func racingConnections() throws {
        let f = try RedisFixture(stock: 100)
        let conns = try (0..<4).map { _ in
            try WireConnection(port: f.server.port, wire: RedisFixture.wire(f.shas), readSize: 4096)
        }
        // Every connection's pipeline is sent before any is read, so Redis interleaves them.
        for (i, conn) in conns.enumerated() {
            try conn.send((0..<60).map { .reserve(sku: 0, quantity: 1, ttlMs: 60_000, token: tok(UInt64(i * 1000 + $0))) })
        }
        var granted = 0
        var refused = 0
        var lastAvailable: [Int64] = []
        for conn in conns {
            for reply in try conn.receive(60) {
                switch reply {
                case .reserved(_, let available):
                    granted += 1
                    lastAvailable.append(available)
                case .outOfStock(let available):
                    refused += 1
                    #expect(available == 0)
                default:
                    Issue.record("unexpected \(reply)")
                }
            }
        }
        #expect(granted == 100 && refused == 140)
        #expect(Set(lastAvailable) == Set(0..<100))  // every count from 99 down to 0, once
        #expect(try f.conserved() == (0, 100, 0))
    }

    @Test("admin: errors, INFO, pipelines, restaging")
    func admin() throws {
        let f = try RedisFixture(stock: 5)
        #expect(try f.admin.ping())
        #expect(try f.admin.info(section: "server").contains("redis_version:"))
        #expect(throws: RedisAdminError.self) { try f.admin.command(["NOSUCHCOMMAND"]) }
        do {
            try f.admin.command(["EVALSHA", String(repeating: "0", count: 40), "0"])
            Issue.record("expected an error reply")
        } catch let e as RedisAdminError {
            #expect("\(e)".contains("NOSCRIPT"))
        }
        #expect(throws: RedisAdminError.unknownSKU("SKU-9999")) { try f.admin.counts(sku: "SKU-9999") }
        let replies = try f.admin.pipeline([["SET", "k", "v"], ["GET", "k"], ["GET", "missing"], ["INCR", "k"]])
        #expect(replies[0] == .simple("OK") && replies[1] == .bulk(Array("v".utf8)) && replies[2] == .null)
        if case .error = replies[3] {} else { Issue.record("expected an error reply, got \(replies[3])") }

        // Restaging clears holds and tokens of the earlier run.
        _ = try f.conn.roundTrip([.reserve(sku: 0, quantity: 2, ttlMs: 60_000, token: tok(1)),
                                  .reserve(sku: 1, quantity: 1, ttlMs: 60_000, token: tok(2))])
        try f.admin.stage(skus: ["SKU-0001", "SKU-0002"], stock: 5)
        #expect(try f.conserved() == (5, 0, 0))
        #expect(try f.zcard() == 0)
        #expect(try f.admin.command(["EXISTS", RedisKeys.token(RedisKeys.hex(tok(1)))]).integer == 0)
        #expect(try f.conn.roundTrip(.reserve(sku: 0, quantity: 1, ttlMs: 60_000, token: tok(1)))
            == .reserved(token: .zero, available: 4))

        // A read that outlasts the timeout is a timeout error; the
        // connection (now out of step with the server) is dropped and the
        // next call reconnects, so the late BLPOP reply is never taken for
        // the PING's. After close(), calls fail for good.
        let slow = try RedisAdmin(port: f.server.port, timeoutMs: 200)
        #expect(throws: RedisAdminError.timeout(endpoint: "127.0.0.1:\(f.server.port)", operation: "read", timeoutMs: 200)) {
            try slow.command(["BLPOP", "nothing-here", "1"])
        }
        #expect(try slow.ping())
        #expect(try slow.command(["ECHO", "in step"]) == .bulk(Array("in step".utf8)))
        slow.close()
        #expect(throws: RedisAdminError.closed) { try slow.ping() }

        // Connecting to a closed port fails with a readable error.
        let port = f.server.port
        f.server.stop()
        do {
            _ = try RedisAdmin(port: port, timeoutMs: 500)
            Issue.record("expected a connect error")
        } catch let e as RedisAdminError {
            #expect("\(e)".contains("cannot connect to 127.0.0.1:\(port)"))
        }
    }

    @Test("a server with AOF (appendfsync everysec) starts and stops")
    func persistence() throws {
        let dir = NSTemporaryDirectory() + "stockbench-redis-test-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try RedisServer(persistence: .appendfsyncEverysec, dataDir: dir)
        let admin = try RedisAdmin(port: server.port)
        let info = try admin.info(section: "persistence")
        #expect(info.contains("aof_enabled:1"))
        #expect(try admin.command(["CONFIG", "GET", "appendfsync"]).array?.last?.string == "everysec")
        #expect(try admin.command(["CONFIG", "GET", "save"]).array?.last?.string == "")
        admin.close()
        let pid = server.pid
        server.stop()
        #expect(kill(pid, 0) != 0)  // gone
        server.stop()  // idempotent
    }
}
