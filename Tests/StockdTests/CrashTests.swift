import Foundation
import Glibc
import StockClient
import StockProtocol
import Testing
import TestSupport

// The crash test: a seeded mixed load through the client, `kill -9` at a
// random moment, restart on the same data directory, and check that nothing
// acknowledged was lost — 20 times over one directory.

/// What the clients were told, and what they sent without hearing back.
final class Ledger: @unchecked Sendable {
    struct Hold {
        var sku: String
        var quantity: Int
        var deadlineMs: UInt64
    }

    private let lock = NSLock()
    /// Acknowledged holds not yet acknowledged as decided.
    var live: [Token: Hold] = [:]
    /// Tokens with a confirm / release / extend in flight (outcome unknown after a crash).
    var pending: Set<Token> = []
    var confirmed: Set<Token> = []
    var released: Set<Token> = []
    /// Per SKU: units acknowledged as sold, and units whose confirm is in flight.
    var soldAcked: [String: Int] = [:]
    var soldMaybe: [String: Int] = [:]
    /// Per SKU: acknowledged on-hand changes, and changes in flight.
    var onHandAcked: [String: Int] = [:]
    var onHandMaybe: [String: Int] = [:]

    func with<R>(_ body: (Ledger) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(self)
    }
}

@Suite(.ownThread, .serialized) struct CrashTests {
    static let skus = ["CRASH-A", "CRASH-B", "CRASH-C", "CRASH-D"]
    static let initial = 5_000

    @Test("kill -9 at a random moment, 20 times: nothing acknowledged is lost, books balance, one fate per token")
    func killNineTwentyTimes() async throws {
        let data = try TempDirectory(prefix: "stockd-crash")
        defer { data.remove() }
        let ledger = Ledger()
        for sku in Self.skus { ledger.onHandAcked[sku] = Self.initial }
        var rng = SplitMix64(seed: 0xC0FFEE)
        let catalog = Self.skus.map { "\($0),\(Self.initial)" }.joined(separator: "\n") + "\n"
        for round in 0..<20 {
            let server = try StockdProcess(["--data-dir", data.path("d"), "--workers", "2"], catalog: catalog)
            try await verify(server, ledger, round: round)
            let client = StockClient(port: server.port, connections: 4, timeout: testCallTimeout)
            let killAfter = 0.1 + Double(rng.next(below: 400)) / 1000
            let seeds = (0..<6).map { _ in rng.next() }
            async let load: Void = withTaskGroup(of: Void.self) { group in
                for seed in seeds { group.addTask { await Self.drive(client, ledger, seed: seed) } }
            }
            try await Task.sleep(for: .seconds(killAfter))
            server.kill()  // SIGKILL: no flush, no snapshot, whatever was in flight is in flight
            await load
            client.close()
        }
        let last = try StockdProcess(["--data-dir", data.path("d"), "--workers", "2"], catalog: catalog)
        try await verify(last, ledger, round: 20)
    }

    /// One client task: reserve, confirm, release, extend, restock until the connection dies.
    static func drive(_ client: StockClient, _ ledger: Ledger, seed: UInt64) async {
        var rng = SplitMix64(seed: seed)
        for _ in 0..<100_000 {
            let roll = rng.next(below: 100)
            let sku = skus[Int(rng.next(below: UInt64(skus.count)))]
            do {
                if roll < 50 {
                    let q = 1 + Int(rng.next(below: 3))
                    let ttl = Duration.milliseconds(Int64(300 + rng.next(below: 4000)))
                    let r = try await client.reserve(sku: sku, quantity: q, ttl: ttl)
                    ledger.with { $0.live[r.token] = Ledger.Hold(sku: sku, quantity: q, deadlineMs: r.expiresAtMs) }
                } else if roll < 95 {
                    guard let (token, hold) = ledger.with({ l -> (Token, Ledger.Hold)? in
                        guard let e = l.live.first(where: { !l.pending.contains($0.key) }) else { return nil }
                        l.pending.insert(e.key)
                        return (e.key, e.value)
                    }) else { continue }
                    try await decide(client, ledger, token, hold, roll: roll)
                } else {
                    let n = 1 + Int(rng.next(below: 20))
                    ledger.with { $0.onHandMaybe[sku, default: 0] += n }
                    _ = try await client.adjustStock(sku, delta: Int64(n), reason: .restock)
                    ledger.with { l in
                        l.onHandMaybe[sku, default: 0] -= n
                        l.onHandAcked[sku, default: 0] += n
                    }
                }
            } catch let e where e.isServerRejection {
                continue  // a refusal changes nothing
            } catch {
                return  // the server is gone: what was in flight stays "maybe"
            }
        }
    }

    /// Confirm, release or extend one acknowledged hold.
    static func decide(_ client: StockClient, _ ledger: Ledger, _ token: Token, _ hold: Ledger.Hold,
                       roll: UInt64) async throws(StockError) {
        do {
            if roll < 75 {
                ledger.with { $0.soldMaybe[hold.sku, default: 0] += hold.quantity }
                _ = try await client.confirm(token)
                ledger.with { l in
                    l.soldMaybe[hold.sku, default: 0] -= hold.quantity
                    l.soldAcked[hold.sku, default: 0] += hold.quantity
                    l.live[token] = nil
                    l.pending.remove(token)
                    l.confirmed.insert(token)
                }
            } else if roll < 90 {
                _ = try await client.release(token)
                ledger.with { l in
                    l.live[token] = nil
                    l.pending.remove(token)
                    l.released.insert(token)
                }
            } else {
                let to = try await client.extend(token, ttl: .seconds(6))
                ledger.with { l in
                    if var h = l.live[token] {
                        h.deadlineMs = max(h.deadlineMs, to)
                        l.live[token] = h
                    }
                    l.pending.remove(token)
                }
            }
        } catch let e where e.isServerRejection {
            // Refused (it expired first): nothing was sold; the hold is gone.
            ledger.with { l in
                if roll < 75 { l.soldMaybe[hold.sku, default: 0] -= hold.quantity }
                l.live[token] = nil
                l.pending.remove(token)
            }
        }
    }

    /// After a restart: every acknowledged change is there, nothing else is, books balance.
    func verify(_ server: StockdProcess, _ ledger: Ledger, round: Int) async throws {
        let client = StockClient(port: server.port, connections: 1, timeout: .seconds(10))
        defer { client.close() }
        let context = "round \(round)"
        let entries = try await client.listAllStock()
        for sku in Self.skus {
            let info = try #require(entries.first { $0.sku == SKU(sku)! }?.info, "\(context): \(sku) missing")
            #expect(info.onHand == info.available + info.reserved + info.confirmed, "\(context): \(sku) \(info)")
            let (sold, soldMaybe, onHand, onHandMaybe) = ledger.with {
                ($0.soldAcked[sku] ?? 0, $0.soldMaybe[sku] ?? 0, $0.onHandAcked[sku] ?? 0, $0.onHandMaybe[sku] ?? 0)
            }
            #expect(Int(info.confirmed) >= sold && Int(info.confirmed) <= sold + soldMaybe,
                    "\(context): \(sku) confirmed \(info.confirmed), acknowledged \(sold) (+\(soldMaybe) in flight)")
            #expect(Int(info.onHand) >= onHand && Int(info.onHand) <= onHand + onHandMaybe,
                    "\(context): \(sku) on-hand \(info.onHand), acknowledged \(onHand) (+\(onHandMaybe) in flight)")
            // In-flight outcomes are known now.
            ledger.with { l in
                l.soldAcked[sku] = Int(info.confirmed)
                l.soldMaybe[sku] = 0
                l.onHandAcked[sku] = Int(info.onHand)
                l.onHandMaybe[sku] = 0
            }
        }
        // Holds: live until their deadline, gone after it; an in-flight decision may have gone either way.
        let (live, pending) = ledger.with { ($0.live, $0.pending) }
        for (token, hold) in live where !pending.contains(token) {
            // The clock is read per hold: checking hundreds of holds on a loaded machine takes a while.
            let now = UInt64(Date().timeIntervalSince1970 * 1000)
            if hold.deadlineMs > now + 500 {
                do {
                    let at = try await client.extend(token, ttl: .milliseconds(1))  // never shortens: reads the deadline
                    #expect(at + 2 >= hold.deadlineMs, "\(context): \(token) deadline \(at) before \(hold.deadlineMs)")
                } catch {
                    Issue.record("\(context): acknowledged hold \(token) on \(hold.sku) not live: \(error); deadline \(hold.deadlineMs), checked at \(now)")
                }
            } else if hold.deadlineMs + 500 < now {
                await #expect(throws: StockError.self, "\(context): \(token) outlived its deadline") {
                    _ = try await client.extend(token, ttl: .milliseconds(1))
                }
                ledger.with { $0.live[token] = nil }
            }
        }
        ledger.with { l in
            for token in l.pending { l.live[token] = nil }  // fate unknown: no longer tracked
            l.pending.removeAll()
        }
        // One fate per token: sold stays sold, released stays released.
        let (confirmed, released) = ledger.with { ($0.confirmed, $0.released) }
        for token in confirmed.prefix(50) {
            await #expect(throws: StockError.self, "\(context): confirmed \(token) released after restart") {
                _ = try await client.release(token)
            }
        }
        for token in released.prefix(50) {
            await #expect(throws: StockError.self, "\(context): released \(token) confirmed after restart") {
                _ = try await client.confirm(token)
            }
        }
    }
}

extension CrashTests {
    @Test("low-stock and sold-out alerts are journaled; a directory with them recovers and verifies")
    func alertsAreJournaled() async throws {
        let data = try TempDirectory(prefix: "stockd-alerts")
        defer { data.remove() }
        let dir = data.path("d")
        let first = try StockdProcess(["--data-dir", dir], catalog: "ALERT,3,2\n")
        let client = StockClient(port: first.port, connections: 1, timeout: testCallTimeout)
        for _ in 0..<3 { _ = try await client.reserve(sku: "ALERT", quantity: 1, ttl: .seconds(600)) }
        let stats = try await client.stats()
        client.close()
        // 3 reserves + low stock + sold out (the catalog went into the start-up snapshot).
        let records = stats.first { $0.name == "journal.records" }?.value ?? 0
        #expect(records == 5, "journal.records \(records)")
        first.kill()

        let second = try StockdProcess(["--data-dir", dir], catalog: "ALERT,3,2\n")
        let again = StockClient(port: second.port, connections: 1, timeout: testCallTimeout)
        let info = try await again.stock("ALERT")
        again.close()
        #expect(info.onHand == 3 && info.reserved == 3 && info.available == 0, "\(info)")
        let stopped = try #require(second.terminate())
        #expect(stopped.code == 0, "\(stopped)")
        let verify = try runTool("stockd", ["verify", "--data-dir", dir])
        #expect(verify.code == 0 && verify.stdout.contains("OK"), "\(verify)")
    }
}

// MARK: - a bad data directory: a clear error, never a half-recovered server

extension CrashTests {
    /// A data directory with a few journaled reserves (stockd killed, so they are in a segment).
    func journalWithRecords(_ dir: String) async throws {
        let server = try StockdProcess(["--data-dir", dir], catalog: "BAD-DIR,100\n")
        let client = StockClient(port: server.port, connections: 1, timeout: testCallTimeout)
        for _ in 0..<5 { _ = try await client.reserve(sku: "BAD-DIR", quantity: 1, ttl: .seconds(600)) }
        client.close()
        server.kill()
    }

    @Test("a corrupt journal record stops stockd with one line naming file and offset; verify exits 1")
    func corruptJournalStopsStart() async throws {
        let data = try TempDirectory(prefix: "stockd-corrupt")
        defer { data.remove() }
        let dir = data.path("d")
        try await journalWithRecords(dir)
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: dir)
            .first { $0.hasPrefix("journal-") && $0.hasSuffix(".log") })
        // Flip one byte inside the first record's payload: later records follow, so it is not a torn tail.
        let handle = try #require(FileHandle(forUpdatingAtPath: dir + "/" + segment))
        try handle.seek(toOffset: 30)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: 30)
        try handle.write(contentsOf: Data([byte ^ 0x5A]))
        try handle.close()

        let result = try #require(try StockdProcess.runToExit(["--host", "127.0.0.1", "--port", "0", "--data-dir", dir]),
                                  "stockd on a corrupt data directory still running after 5 s")
        #expect(result.code != 0 && !result.signaled, "\(result)")
        #expect(result.stderrLines.count == 1, "\(result)")
        #expect(result.stderr.contains(segment) && result.stderr.contains("at byte 0"), "\(result)")
        let verify = try runTool("stockd", ["verify", "--data-dir", dir])
        #expect(verify.code == 1 && verify.stdout.contains(segment), "\(verify)")
        #expect(verify.stderrLines.count == 1, "\(verify)")
    }

    @Test("a data directory in use by another stockd is refused; verify of a missing directory is a usage error")
    func lockedAndMissingDataDirectory() async throws {
        let data = try TempDirectory(prefix: "stockd-locked")
        defer { data.remove() }
        let dir = data.path("d")
        let first = try StockdProcess(["--data-dir", dir])
        let second = try #require(try StockdProcess.runToExit(["--host", "127.0.0.1", "--port", "0", "--data-dir", dir]),
                                  "a second stockd on the same data directory still running after 5 s")
        #expect(second.code != 0 && second.stderrLines.count == 1 && second.stderr.contains("in use"), "\(second)")
        #expect(first.isRunning)
        let missing = try runTool("stockd", ["verify", "--data-dir", data.path("nowhere")])
        #expect(missing.code == 2 && missing.stderrLines.count == 1 && missing.stderr.contains("no such directory"),
                "\(missing)")
    }
}
