import Foundation
import Glibc
import StockProtocol
import Testing
import TestSupport

// MARK: - 9–12. Expiry, graceful stop, bad flags, idle timeout

extension StockServerTests {
    @Test("a 200 ms hold expires over the wire: units come back, CONFIRM answers TOKEN_EXPIRED")
    func ttlExpiresOverTheWire() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\n")
        let c = try server.connect()
        let t0 = monotonicSeconds()
        let res = try c.reserveOK("SKU-A", 5, ttlMs: 200)
        #expect(res.available == 5)
        let now = wallClockMs()
        #expect(res.expiresAtMs >= now + 200 - 1_000 && res.expiresAtMs <= now + 200 + 1_000)
        let early = try c.info("SKU-A")
        if monotonicSeconds() - t0 < 0.15 {
            #expect(early.reserved == 5, "units came back before the deadline")
        }
        let back = try waitForStock(c, "SKU-A", timeout: 2) { $0.available == 10 && $0.reserved == 0 }
        let elapsed = monotonicSeconds() - t0
        #expect(elapsed >= 0.15, "units back after \(elapsed) s, before the 200 ms deadline")
        #expect(back == StockInfo(onHand: 10, available: 10, reserved: 0, confirmed: 0, reservations: 1))
        let conf = try c.confirm(res.token)
        #expect(conf.status == .tokenExpired, "\(conf)")
        #expect(try c.release(res.token).status == .tokenExpired)
        #expect(try c.extend(res.token, ttlMs: 1_000).status == .tokenExpired)
        let stats = try c.stats()
        #expect(stats["tokens.expired"] == 1)
        #expect(stats["tokens.live"] == 0)
        // An extended hold outlives its first deadline.
        let kept = try c.reserveOK("SKU-A", 1, ttlMs: 200)
        #expect(try c.extend(kept.token, ttlMs: 5_000).status == .ok)
        sleepSeconds(0.4)
        #expect(try c.info("SKU-A").reserved == 1)
        #expect(try c.confirm(kept.token).confirmReply == ConfirmReply(confirmed: 1, returned: 0))
    }

    @Test("SIGTERM under pipelined load: exit 0 within 5 s; clients get their answers, then EOF")
    func sigtermDuringLoad() throws {
        let server = try StockdProcess(["--workers", "2"], catalog: "HOT,1000000000\n")
        let port = server.port
        struct Report: Sendable {
            var thread: Int
            var sent: Int = 0
            var answered: Int = 0
            var batches = 0
            var endedWithEOF = false
            var problems: [String] = []
        }
        let reports = Locked<[Report]>([])
        let progress = Locked<[Int]>(Array(repeating: 0, count: 4))

        // The clients run on their own threads while this one sends the signal.
        let clients = BackgroundJob {
            _ = runThreads(4, timeout: 20) { t in
                var report = Report(thread: t)
                defer { reports.update { $0.append(report) } }
                let c: RawClient
                do { c = try RawClient(port: port, timeout: 8) } catch {
                    report.problems.append("connect: \(error)")
                    return
                }
                var expected: [UInt32] = []  // ids sent and not yet answered, in order
                var held: [Token] = []
                let deadline = monotonicSeconds() + 15
                /// Takes one answer; false when the stream ended (EOF/reset) or broke.
                func take(timeout: Double) -> Bool {
                    do {
                        guard let r = try c.readResponseOrEnd(timeout: timeout) else {
                            report.endedWithEOF = c.sawEnd && !c.sawReset
                            if c.sawReset { report.problems.append("connection reset instead of EOF") }
                            return false
                        }
                        if r.requestID == 0 && r.status == .shuttingDown { return true }  // tolerated notice
                        guard let id = expected.first, r.requestID == id else {
                            report.problems.append("answer id \(r.requestID), expected \(expected.first.map(String.init) ?? "none")")
                            return false
                        }
                        expected.removeFirst()
                        report.answered += 1
                        if let res = r.reservation { held.append(res.token) } else if r.status != .ok {
                            report.problems.append("status \(r.status.name)")
                        }
                        return true
                    } catch {
                        report.problems.append("read: \(error)")
                        return false
                    }
                }
                var running = true
                while running && monotonicSeconds() < deadline {
                    // A batch of 32 RESERVEs, then RELEASEs of what was granted, each pipelined in one write.
                    var batch: [UInt8] = []
                    if held.isEmpty {
                        for _ in 0..<32 {
                            let id = c.freshID()
                            expected.append(id)
                            batch += Wire.frame(.reserve(Reserve(sku: sku("HOT"), quantity: 1)), id: id)
                        }
                    } else {
                        for token in held {
                            let id = c.freshID()
                            expected.append(id)
                            batch += Wire.frame(.release(token), id: id)
                        }
                        held.removeAll()
                    }
                    report.sent += expected.count
                    do { try c.send(batch) } catch {
                        running = false  // the server went away mid-send: collect what it answered
                    }
                    while !expected.isEmpty {
                        if !take(timeout: 8) {
                            running = false
                            break
                        }
                    }
                    report.batches += 1
                    progress.update { $0[t] += 1 }
                }
                // After the stop: nothing but EOF may follow.
                if !report.endedWithEOF && report.problems.isEmpty {
                    do {
                        let drain = try c.readUntilClosed(timeout: 8)
                        if !drain.responses.filter({ $0.requestID != 0 }).isEmpty {
                            report.problems.append("unexpected answers after all were taken: \(drain.responses)")
                        }
                        report.endedWithEOF = drain.closed && !drain.reset
                        if drain.reset { report.problems.append("connection reset instead of EOF") }
                        if !drain.closed { report.problems.append("no EOF within 8 s") }
                    } catch {
                        report.problems.append("drain: \(error)")
                    }
                }
                c.close()
            }
        }

        // Let the load run: every client through a few batches.
        let warm = monotonicSeconds() + 10
        while progress.get().contains(where: { $0 < 3 }) && monotonicSeconds() < warm { sleepSeconds(0.01) }
        #expect(!progress.get().contains(where: { $0 < 3 }), "clients made no progress: \(progress.get())")

        let exit = server.terminate(signal: SIGTERM, timeout: 5)
        let result = try #require(exit, "stockd still running 5 s after SIGTERM; stderr: \(server.diagnostics)")
        #expect(!result.signaled, "\(result)")
        #expect(result.code == 0, "\(result)")
        #expect(result.elapsedSeconds < 5)

        #expect(clients.wait(timeout: 25) == nil, "client threads did not finish")
        let rs = reports.get()
        #expect(rs.count == 4)
        for r in rs {
            #expect(r.problems.isEmpty, "client \(r.thread): \(r.problems.prefix(5))")
            #expect(r.endedWithEOF, "client \(r.thread) did not see EOF (sent \(r.sent), answered \(r.answered))")
            #expect(r.answered <= r.sent)
        }
        // Nobody listens any more.
        #expect(throws: HarnessError.self) { _ = try RawClient(port: port, timeout: 1) }
    }

    @Test("SIGINT stops an idle server with exit 0")
    func sigintIdle() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        #expect(try c.ping().status == .ok)
        let result = try #require(server.terminate(signal: SIGINT, timeout: 5), "still running: \(server.diagnostics)")
        #expect(result.code == 0 && !result.signaled, "\(result)")
        // The open, idle connection was closed in order.
        let drain = try c.readUntilClosed(timeout: 2)
        #expect(drain.closed)
        #expect(drain.responses.filter { $0.requestID != 0 }.isEmpty)
    }

    @Test("bad flags and catalog lines fail fast with one line on stderr naming the culprit",
          arguments: [
              (["--workers", "0"], "--workers"),
              (["--port", "70000"], "--port"),
              (["--default-ttl", "abc"], "--default-ttl"),
              (["--max-ttl", "2h"], "--max-ttl"),
              (["--idle-timeout", "5x"], "--idle-timeout"),
              (["--max-connections", "0"], "--max-connections"),
              (["--max-frame", "100"], "--max-frame"),
              (["--max-tokens", "0"], "--max-tokens"),
              (["--log-level", "loud"], "--log-level"),
              (["--sync", "sometimes"], "--sync"),
              (["--segment-size", "0"], "--segment-size"),
              (["--snapshot-every", "0"], "--snapshot-every"),
          ])
    func badFlags(extra: [String], needle: String) throws {
        let result = try #require(try StockdProcess.runToExit(["--host", "127.0.0.1", "--port", "0"] + extra),
                                  "stockd \(extra) still running after 5 s")
        #expect(result.code != 0 && !result.signaled, "\(extra): \(result)")
        #expect(result.elapsedSeconds < 5)
        #expect(result.stderrLines.count == 1, "\(extra): stderr is \(result.stderrLines.count) lines: \(result.stderr)")
        #expect(result.stderr.contains(needle), "\(extra): stderr does not name \(needle): \(result.stderr)")
    }

    @Test("a bad catalog line fails fast naming its line number",
          arguments: [
              ("sku,on_hand\nA,10\nB,notanumber\n", "line 3"),
              ("# staged\n\nA,1\nB,2\nC,1,2,3,4\n", "line 5"),
              ("A,1\nB,2\nA,3\n", "line 3"),
              ("A,1\n,2\n", "line 2"),
              ("sku,on_hand\r\nA,10\r\nB,notanumber\r\n", "line 3"),  // saved on Windows
          ])
    func badCatalog(csv: String, needle: String) throws {
        let dir = try TempDirectory(prefix: "stockd-catalog")
        defer { dir.remove() }
        let path = try dir.write("bad.csv", csv)
        let result = try #require(try StockdProcess.runToExit(["--host", "127.0.0.1", "--port", "0",
                                                               "--catalog", path]),
                                  "stockd with a bad catalog still running after 5 s")
        #expect(result.code != 0 && !result.signaled, "\(result)")
        #expect(result.stderrLines.count == 1, "stderr is \(result.stderrLines.count) lines: \(result.stderr)")
        #expect(result.stderr.contains(needle), "stderr does not name \(needle): \(result.stderr)")
    }

    @Test("--idle-timeout 300ms closes a silent connection, keeps an active one")
    func idleTimeout() throws {
        let server = try StockdProcess(["--idle-timeout", "300ms"])
        let t0 = monotonicSeconds()
        let silent = try server.connect()
        let active = try server.connect()
        let partial = try server.connect()
        // Half a frame, then silence: still silent.
        try partial.send(Array(Wire.frame(.ping, id: 1).prefix(6)))
        var silentClosedAt: Double?
        var partialClosedAt: Double?
        var pings = 0
        while monotonicSeconds() - t0 < 1.5 {
            #expect(try active.ping().body == .pong, "active connection lost after \(monotonicSeconds() - t0) s")
            pings += 1
            if silentClosedAt == nil, try silent.readUntilClosed(timeout: 0).closed {
                silentClosedAt = monotonicSeconds() - t0
            }
            if partialClosedAt == nil, try partial.readUntilClosed(timeout: 0).closed {
                partialClosedAt = monotonicSeconds() - t0
            }
            sleepSeconds(0.1)
        }
        if silentClosedAt == nil, try silent.readUntilClosed(timeout: 0.5).closed { silentClosedAt = monotonicSeconds() - t0 }
        let closedAt = try #require(silentClosedAt, "silent connection still open after 2 s")
        #expect(closedAt >= 0.25, "closed after \(closedAt) s, before the 300 ms timeout")
        #expect(closedAt <= 2.0)
        #expect(partialClosedAt != nil, "a connection silent after half a frame was kept")
        #expect(pings >= 10)
        #expect(try active.ping().body == .pong)
    }
}
