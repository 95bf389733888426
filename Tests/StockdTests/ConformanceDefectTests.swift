import Foundation
import Glibc
import StockClient
import StockProtocol
import Testing
import TestSupport

// The defects an independent client found (issue 16), each over TCP against
// a real stockd: `lines` of a plain reservation's event, token fates across
// restarts (clean stop and kill -9), what a client sees while stockd stops,
// and a second stockd on a served port.

@Suite(.ownThread, .serialized) struct ConformanceDefectTests {
    // MARK: 1. lines in reserved events

    @Test("a RESERVE without customer or key gives a reserved event with lines = 1, like its released event")
    func reservedEventCountsItsLine() async throws {
        let server = try StockdProcess(catalog: "LINES-A,10\n")
        let client = StockClient(port: server.port, timeout: testCallTimeout)
        defer { client.close() }
        let plain = try await client.reserve(sku: "LINES-A", quantity: 2)
        try await client.release(plain.token)
        let keyed = try await client.reserve(sku: "LINES-A", quantity: 1, customer: "cust-1")
        try await client.release(keyed.token)
        let feed = try await client.events(from: .oldest)
        let events = try await collect(feed, through: feed.end)
        feed.close()
        let tokenEvents = events.filter { $0.kind == .reserved || $0.kind == .released }
        #expect(tokenEvents.count == 4, "\(events.map(\.kind.name))")
        for e in tokenEvents {
            #expect(e.line == 0 && e.lines == 1, "\(e.kind.name) of \(e.token): line \(e.line) of \(e.lines)")
        }
    }

    // MARK: 2. token fates across restarts

    /// Three holds on `sku`: one confirmed, one released, one left to expire (300 ms).
    static func decideThree(_ c: RawClient, _ sku: String) throws -> (confirmed: Token, released: Token, expiring: Token) {
        let a = try c.reserveOK(sku, 1, ttlMs: 60_000)
        let b = try c.reserveOK(sku, 1, ttlMs: 60_000, customer: "cust-b")
        let e = try c.reserveOK(sku, 1, ttlMs: 300, key: "key-e")
        #expect(try c.confirm(a.token, orderReference: "ORD-A").status == .ok)
        #expect(try c.release(b.token).status == .ok)
        return (a.token, b.token, e.token)
    }

    /// Every call on a decided token answers its fate.
    static func expectFates(_ c: RawClient, _ t: (confirmed: Token, released: Token, expiring: Token),
                            _ when: String) throws {
        for (token, fate) in [(t.confirmed, Status.tokenConfirmed), (t.released, .tokenReleased),
                              (t.expiring, .tokenExpired)] {
            #expect(try c.confirm(token).status == fate, "\(when): CONFIRM of a \(fate.name) token")
            #expect(try c.release(token).status == fate, "\(when): RELEASE of a \(fate.name) token")
            #expect(try c.extend(token, ttlMs: 1_000).status == fate, "\(when): EXTEND of a \(fate.name) token")
        }
    }

    @Test("fates of confirmed, released and expired tokens survive a clean stop, a kill -9, and a second restart",
          arguments: [SIGTERM, SIGKILL])
    func fatesSurviveRestarts(signal: Int32) throws {
        let data = try TempDirectory(prefix: "stockd-fates")
        defer { data.remove() }
        let args = ["--data-dir", data.path("d"), "--workers", "2"]
        var tokens: (confirmed: Token, released: Token, expiring: Token)
        // A hold that expires while stockd runs, and one that expires while it is down.
        var expiredWhileUp: Token
        do {
            let server = try StockdProcess(args, catalog: "FATE-A,100\n")
            let c = try server.connect()
            tokens = try Self.decideThree(c, "FATE-A")
            expiredWhileUp = try c.reserveOK("FATE-A", 2, ttlMs: 100).token
            sleepSeconds(0.4)
            #expect(try c.confirm(expiredWhileUp).status == .tokenExpired)
            c.close()
            if signal == SIGKILL {
                server.kill()
            } else {
                let exit = try #require(server.terminate(signal: signal, timeout: 10), "no exit after SIGTERM")
                #expect(exit.code == 0, "\(exit)")
            }
        }
        sleepSeconds(0.4)  // the 300 ms hold passes its deadline while stockd is down (if it had not yet)
        for round in 1...2 {
            let server = try StockdProcess(args, catalog: "FATE-A,100\n")
            let c = try server.connect()
            try Self.expectFates(c, tokens, "restart \(round) after signal \(signal)")
            #expect(try c.confirm(expiredWhileUp).status == .tokenExpired, "restart \(round): expired while up")
            let info = try c.info("FATE-A")
            #expect(info.confirmed == 1 && info.reserved == 0 && info.available == 99, "\(info)")
            c.close()
            _ = try #require(server.terminate(timeout: 10))
        }
    }

    @Test("the fate memory after a restart is the one before it: same bound, same answers; a reused slot forgets")
    func fateMemoryBoundKeptAcrossRestart() throws {
        let data = try TempDirectory(prefix: "stockd-fates-bound")
        defer { data.remove() }
        // 64 tokens and 2 workers: each worker remembers 64 / (4 × 2) = 8 fates.
        let args = ["--data-dir", data.path("d"), "--workers", "2", "--max-tokens", "64"]
        var confirmed: [Token] = []
        var before: [Status] = []
        do {
            let server = try StockdProcess(args, catalog: "BOUND-A,1000\n")
            let c = try server.connect()
            for _ in 0..<40 {
                let t = try c.reserveOK("BOUND-A", 1).token
                #expect(try c.confirm(t).status == .ok)
                confirmed.append(t)
            }
            for t in confirmed { before.append(try c.release(t).status) }
            c.close()
            _ = try #require(server.terminate(timeout: 10))
        }
        // One connection, one worker: its ring holds the newest 8; older slots were reused.
        #expect(before.suffix(8).allSatisfy { $0 == .tokenConfirmed }, "\(before.map(\.name))")
        #expect(before.prefix(24).allSatisfy { $0 == .tokenUnknown }, "\(before.map(\.name))")
        let server = try StockdProcess(args, catalog: "BOUND-A,1000\n")
        let c = try server.connect()
        var after: [Status] = []
        for t in confirmed { after.append(try c.release(t).status) }
        #expect(after == before, "before: \(before.map(\.name))\nafter:  \(after.map(\.name))")
        // Filling the table reuses remembered slots once no free one is left: those tokens become unknown.
        var live = 0
        while live <= 64 {
            let r = try c.reserve("BOUND-A", 1, ttlMs: 60_000)
            guard r.reservation != nil else {
                #expect(r.status == .atCapacity)
                break
            }
            live += 1
        }
        let remembered = after.filter { $0 == .tokenConfirmed }.count
        #expect(live >= 64 - remembered && live <= 64, "\(live) holds granted")
        var final: [Status] = []
        for t in confirmed { final.append(try c.release(t).status) }
        #expect(final.allSatisfy { $0 == .tokenConfirmed || $0 == .tokenUnknown })
        #expect(final.filter { $0 == .tokenConfirmed }.count < remembered, "\(final.map(\.name))")
    }

    @Test("a SKU sold out before a restart gives back_in_stock when restocked after it")
    func alertLevelSurvivesRestart() async throws {
        let data = try TempDirectory(prefix: "stockd-alert-level")
        defer { data.remove() }
        let args = ["--data-dir", data.path("d")]
        do {
            let server = try StockdProcess(args, catalog: "LEVEL-A,2\n")
            let c = try server.connect()
            let t = try c.reserveOK("LEVEL-A", 2).token
            #expect(try c.confirm(t).status == .ok)
            c.close()
            _ = try #require(server.terminate(timeout: 10))
        }
        let server = try StockdProcess(args, catalog: "LEVEL-A,2\n")
        let client = StockClient(port: server.port, timeout: testCallTimeout)
        defer { client.close() }
        let before = try await durableOffset(client)
        try await client.adjustStock("LEVEL-A", delta: 3, reason: .restock)
        let feed = try await client.events(from: .offset(before + 1))
        let events = try await collect(feed, through: try await durableOffset(client))
        feed.close()
        #expect(events.map(\.kind) == [.stockAdjusted, .backInStock], "\(events.map(\.kind.name))")
    }

    // MARK: 3. stopping

    @Test("SIGTERM: answers to everything read, then one SHUTTING_DOWN frame and EOF; nothing after it took effect")
    func stoppingAnswersThenShuttingDown() throws {
        let data = try TempDirectory(prefix: "stockd-stopping")
        defer { data.remove() }
        let args = ["--data-dir", data.path("d"), "--workers", "2"]
        let server = try StockdProcess(args, catalog: "STOP-A,1000000\n")
        let idle = try server.connect()
        #expect(try idle.ping().status == .ok)
        let busy = try server.connect()
        // Keep the busy connection pipelining RESERVEs while the signal arrives.
        var ids: [UInt32] = []
        var batch: [UInt8] = []
        for _ in 0..<64 {
            let id = busy.freshID()
            ids.append(id)
            batch += Wire.frame(.reserve(Reserve(sku: sku("STOP-A"), quantity: 1, ttlMs: 600_000)), id: id)
        }
        try busy.send(batch)
        _ = try busy.readResponses(64)
        let busyFD = busy.fd
        let sender = BackgroundJob {
            for _ in 0..<200 {
                var more: [UInt8] = []
                for i in 0..<64 { more += Wire.frame(.reserve(Reserve(sku: sku("STOP-A"), quantity: 1, ttlMs: 600_000)),
                                                     id: UInt32(100_000 + i)) }
                if (try? RawClient.sendAll(fd: busyFD, more)) == nil { return }
                usleep(2_000)
            }
        }
        sleepSeconds(0.05)
        Glibc.kill(server.pid, SIGTERM)

        // The idle connection: exactly one frame, SHUTTING_DOWN with opcode 0 and request id 0, then EOF.
        let idleDrain = try idle.readUntilClosed(timeout: 5)
        #expect(idleDrain.closed && !idleDrain.reset, "idle connection: EOF, not a reset")
        #expect(idleDrain.responses.count == 1, "\(idleDrain.responses)")
        if let notice = idleDrain.responses.first {
            #expect(notice.status == .shuttingDown && notice.requestID == 0 && notice.opcode == 0, "\(notice)")
        }

        // The busy connection: OK answers, then SHUTTING_DOWN as the last frame.
        let drain = try busy.readUntilClosed(timeout: 8)
        _ = sender.wait(timeout: 10)
        #expect(drain.closed, "busy connection closed")
        let last = try #require(drain.responses.last, "the busy connection got no frame after SIGTERM")
        #expect(last.status == .shuttingDown && last.requestID == 0, "last frame: \(last)")
        let answers = drain.responses.dropLast()
        #expect(answers.allSatisfy { $0.status == .ok && $0.requestID >= 100_000 }, "\(answers.prefix(3))")
        #expect(drain.responses.filter { $0.status == .shuttingDown }.count == 1)
        let exit = try #require(server.terminate(timeout: 10))
        #expect(exit.code == 0, "\(exit)")

        // Exactly the answered reservations hold units: no request after the notice took effect.
        let again = try StockdProcess(args, catalog: "STOP-A,1000000\n")
        let c = try again.connect()
        let info = try c.info("STOP-A")
        #expect(info.reserved == UInt64(64 + answers.count), "reserved \(info.reserved), answered \(64 + answers.count)")
    }

    @Test("a connection made while stockd stops gets one SHUTTING_DOWN frame, then EOF; a request sent after the signal is not answered")
    func connectionDuringStop() throws {
        let server = try StockdProcess(["--workers", "1"], catalog: "STOP-B,10\n")
        // This connection never closes its side: stockd keeps draining it (up to 2 s) and so is still stopping.
        let lingering = try server.connect()
        #expect(try lingering.ping().status == .ok)
        Glibc.kill(server.pid, SIGTERM)
        let notice = try #require(try lingering.readResponseOrEnd(timeout: 5), "no SHUTTING_DOWN on the open connection")
        #expect(notice.status == .shuttingDown && notice.requestID == 0)
        // A PING after the notice is read by nobody: EOF follows, no answer.
        _ = try? lingering.sendRequest(.ping)
        let rest = try lingering.readUntilClosed(timeout: 5)
        #expect(rest.responses.isEmpty && rest.closed, "\(rest.responses)")

        let late = try RawClient(port: server.port, timeout: 2)
        let lateDrain = try late.readUntilClosed(timeout: 5)
        #expect(lateDrain.closed, "the late connection is closed")
        #expect(lateDrain.responses.count == 1 && lateDrain.responses.first?.status == .shuttingDown
                && lateDrain.responses.first?.requestID == 0, "\(lateDrain.responses)")
        lingering.close()
        let exit = try #require(server.terminate(timeout: 10))
        #expect(exit.code == 0, "\(exit)")
    }

    // MARK: 5. progress needs no credit

    @Test("a feed at credit 0 still gets heartbeat progress markers, then the events once credit comes")
    func creditZeroFeedHearsHeartbeats() throws {
        let server = try StockdProcess(catalog: "CREDIT-A,5\nCREDIT-B,6\n")
        let c = try server.connect()
        #expect(try c.stockSet("CREDIT-A", onHand: 7).status == .ok)
        let answer = try c.request(.subscribe(Subscribe(from: Limits.feedFromOldest, credit: 0)))
        guard case .subscribed(let range) = answer.body else {
            Issue.record("SUBSCRIBE: \(answer)")
            return
        }
        #expect(range.end >= 3)
        // No credit: no event, but within the 5 s heartbeat a progress marker (offset: what was examined).
        let beat = try c.readResponse(timeout: 8)
        guard case .event(let e) = beat.body else {
            Issue.record("expected a progress marker, got \(beat)")
            return
        }
        #expect(e.kind == .progress && e.offset < range.start, "nothing examined yet at credit 0: \(e)")
        try c.send(Wire.frame(.credit(2), id: 0))
        var kinds: [EventKind] = []
        while kinds.filter({ $0 != .progress }).count < 2 {
            let r = try c.readResponse(timeout: 5)
            guard case .event(let ev) = r.body else {
                Issue.record("expected events, got \(r)")
                return
            }
            kinds.append(ev.kind)
        }
        #expect(kinds.filter { $0 != .progress } == [.stockSet, .stockSet])
    }

    // MARK: 4. one stockd per port

    @Test("a second stockd on a served port exits 2 with one line naming the port; the first keeps serving")
    func secondStockdOnOnePortRefused() throws {
        let first = try StockdProcess(["--workers", "2"], catalog: "PORT-A,5\n")
        let other = try TempDirectory(prefix: "stockd-port")
        defer { other.remove() }
        for accept in ["reuseport", "handoff"] {
            let result = try #require(try StockdProcess.runToExit(
                ["--host", "127.0.0.1", "--port", "\(first.port)", "--data-dir", other.path("d-\(accept)"),
                 "--accept", accept], timeout: 10), "the second stockd (\(accept)) kept running")
            #expect(result.code == 2 && !result.signaled, "\(result)")
            let errors = result.stderrLines.filter { $0.contains("in use") }
            #expect(errors.count == 1 && errors[0].contains("\(first.port)"), "\(result.stderr)")
        }
        let c = try first.connect()
        #expect(try c.info("PORT-A").onHand == 5)
    }

    @Test("stockd restarts on the port it just left, with connections of the last run in TIME_WAIT")
    func restartOnSamePort() throws {
        let data = try TempDirectory(prefix: "stockd-port-again")
        defer { data.remove() }
        let first = try StockdProcess(["--data-dir", data.path("d")], catalog: "PORT-B,5\n")
        let port = first.port
        for _ in 0..<5 {
            let c = try first.connect()
            #expect(try c.ping().status == .ok)
            c.close()
        }
        let held = try first.connect()
        #expect(try held.ping().status == .ok)
        _ = try #require(first.terminate(timeout: 10))
        held.close()
        let second = try StockdProcess(["--data-dir", data.path("d"), "--port", "\(port)"], catalog: "PORT-B,5\n")
        #expect(second.port == port)
        #expect(try second.connect().info("PORT-B").onHand == 5)
    }
}
