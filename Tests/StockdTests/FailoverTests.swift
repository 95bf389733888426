import Foundation
import Glibc
import StockClient
import StockCluster
import StockProtocol
import Testing
import TestSupport

/// Failover decided by a real etcd (docs/replication.md §5): three stockd
/// nodes, each with its stock-agent, one etcd, all on loopback; the primary's
/// machine "dies" (SIGKILL of its stockd and its agent) under load.
@Suite(.serialized) struct FailoverTests {
    /// A stock-agent process next to the test binary, killed with the test.
    final class AgentProcess {
        let process = Process()
        let log: String

        init(node: String, stockdPort: Int, etcd: String, dir: TempDirectory, leaseTTL: Int = 2) throws {
            let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            process.executableURL = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("stock-agent")
            process.arguments = ["--etcd", etcd, "--cluster", "show", "--node-id", node, "--stockd", "127.0.0.1:\(stockdPort)",
                                 "--lease-ttl", "\(leaseTTL)", "--poll", "50ms", "--repl-timeout", "1s"]
            log = dir.path("agent-\(node)-\(stockdPort).log")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: log)
            process.standardOutput = FileHandle.nullDevice
            try process.run()
        }

        func kill() {
            guard process.isRunning else { return }
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = StockdProcess.waitForExit(process, timeout: 5)
        }

        var text: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        deinit { kill() }
    }

    /// A node: its stockd (on `dataDir`, which outlives it) and its agent.
    struct Node {
        let id: String
        let stockd: StockdProcess
        let agent: AgentProcess

        init(_ id: String, dir: TempDirectory, etcd: String, catalog: String) throws {
            self.id = id
            stockd = try StockdProcess(["--cluster", "show", "--node-id", id, "--data-dir", dir.path(id), "--workers", "2",
                                        "--repl-timeout", "1s"], catalog: catalog)
            agent = try AgentProcess(node: id, stockdPort: stockd.port, etcd: etcd, dir: dir)
        }

        func kill() {
            agent.kill()
            stockd.kill()
        }

        /// SIGSTOP (or SIGCONT) of the node's stockd and agent: the machine froze (or woke).
        func signal(_ sig: Int32) {
            Glibc.kill(agent.process.processIdentifier, sig)
            Glibc.kill(stockd.pid, sig)
        }

        func status() throws -> ClusterStatus { try ReplicationTests.status(stockd.connect()) }

        var diagnostics: String { "\(id): \(stockd.diagnostics)\nagent: \(agent.text.suffix(2000))" }
    }

    static let catalog = "JACKET,1000000\nHAT,1000\n"

    /// The primary once it waits for both other nodes (both in the ISR in etcd too).
    static func settledPrimary(_ nodes: [Node], etcd: EtcdClient, seconds: Double = 20) throws -> Node {
        var found: Node?
        try ReplicationTests.eventually(seconds, "a primary with both standbys in sync: \(nodes.map(\.diagnostics))") {
            for n in nodes {
                guard let s = try? n.status(), s.role == .primary else { continue }
                let others = Set(nodes.map(\.id)).subtracting([n.id])
                guard Set(s.standbys.filter(\.inWaitSet).map(\.node.string)) == others,
                      let kv = try etcd.get(ClusterKeys(cluster: "show").isr).kv,
                      let isr = ClusterJSON.decode(ISRRecord.self, kv.value), Set(isr.members) == others else { continue }
                found = n
                return true
            }
            return false
        }
        return found!
    }

    @Test func killNineOfThePrimaryFailsOverWithNothingAcknowledgedLost() throws {
        let dir = try TempDirectory(prefix: "failover")
        defer { dir.remove() }
        let etcdServer = try EtcdProcess()
        let etcd = try EtcdClient(endpoints: [etcdServer.endpoint], timeoutMs: 2000)
        let nodes = try ["a", "b", "c"].map { try Node($0, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog) }
        let primary = try Self.settledPrimary(nodes, etcd: etcd)
        let epochBefore = try primary.status().epoch

        let acknowledged = Locked<[Token]>([])
        let port = primary.stockd.port
        let group = DispatchGroup()
        for _ in 0..<4 {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let c = try? RawClient(port: port) else { return }
                var mine: [Token] = []
                while mine.count < 100_000 {
                    guard let r = try? c.reserve("JACKET", 1, ttlMs: 600_000), let res = r.reservation else { break }
                    mine.append(res.token)
                }
                acknowledged.update { $0 += mine }
            }.start()
        }
        sleepSeconds(1)
        let killedAt = monotonicSeconds()
        primary.kill()
        #expect(group.wait(timeout: .now() + 10) == .success)
        let tokens = acknowledged.get()
        #expect(tokens.count > 100, "load before the kill: \(tokens.count)")

        // A survivor takes over: the first reserve answered OK there ends the failover.
        let survivors = nodes.filter { $0.id != primary.id }
        var newPrimary: Node?
        try ReplicationTests.eventually(20, "a survivor serves changes: \(survivors.map(\.diagnostics))") {
            for n in survivors {
                guard let c = try? n.stockd.connect(), let r = try? c.reserve("HAT", 1), r.status == .ok else { continue }
                newPrimary = n
                return true
            }
            return false
        }
        let failover = monotonicSeconds() - killedAt
        print("failover: \(tokens.count) reservations acknowledged before the kill; first OK on \(newPrimary!.id) after \(String(format: "%.2f", failover)) s")
        let p = try newPrimary!.stockd.connect()
        let s = try ReplicationTests.status(p)
        #expect(s.epoch > epochBefore, "a new term")
        let info = try p.info("JACKET")
        #expect(info.reserved >= UInt64(tokens.count), "every acknowledged hold is on the new primary")
        #expect(info.onHand == info.available + info.reserved + info.confirmed)
        var confirmed = 0
        for t in tokens where try p.confirm(t).status == .ok { confirmed += 1 }
        #expect(confirmed == tokens.count, "each acknowledged token confirms on the new primary, exactly once")
        #expect(try p.confirm(tokens[0]).status == .tokenConfirmed)

        // The feed: offsets gap-free from the first record to the commit point, one term start per term.
        let feed = try newPrimary!.stockd.connect()
        let end = try ReplicationTests.status(p).committed
        _ = try feed.sendRequest(.subscribe(Subscribe(from: 1, credit: 1_000_000)))
        var next: UInt64 = 1
        var terms = 0
        while next <= end {
            let r = try feed.readResponse(timeout: 10)
            guard case .event(let e) = r.body, e.kind != .progress else { continue }
            #expect(e.offset == next, "gap-free offsets")
            if e.kind == .termStarted { terms += 1 }
            next = e.offset + 1
        }
        #expect(terms == 2, "the first primary's term and the new one's")
    }

    /// Split brain attempted: the primary's machine freezes past its lease, a standby takes over,
    /// the old primary wakes up. None of its answers after the handover is OK.
    @Test func aFrozenPrimaryThatWakesUpAcknowledgesNothing() throws {
        let dir = try TempDirectory(prefix: "failover-stop")
        defer { dir.remove() }
        let etcdServer = try EtcdProcess()
        let etcd = try EtcdClient(endpoints: [etcdServer.endpoint], timeoutMs: 2000)
        let nodes = try ["a", "b", "c"].map { try Node($0, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog) }
        let old = try Self.settledPrimary(nodes, etcd: etcd)
        let client = try old.stockd.connect(timeout: 10)
        let before = try client.reserveOK("JACKET", 1, ttlMs: 600_000)

        old.signal(SIGSTOP)
        let survivors = nodes.filter { $0.id != old.id }
        var takenBy: Node?
        try ReplicationTests.eventually(20, "a survivor serves changes: \(survivors.map(\.diagnostics))") {
            for n in survivors {
                guard let c = try? n.stockd.connect(), let r = try? c.reserve("HAT", 1), r.status == .ok else { continue }
                takenBy = n
                return true
            }
            return false
        }
        old.signal(SIGCONT)
        // The old primary's answers from now on: refusals, or nothing — never OK.
        var ids: [UInt32] = []
        for _ in 0..<20 { ids.append(try client.sendRequest(.reserve(Reserve(sku: SKU("JACKET")!, quantity: 1)))) }
        let deadline = monotonicSeconds() + 3
        var answered = 0
        while monotonicSeconds() < deadline, answered < ids.count {
            guard let r = try? client.readResponse(timeout: max(0.05, deadline - monotonicSeconds())) else { break }
            answered += 1
            #expect(r.status != .ok, "the old primary acknowledged a change after the handover: \(r.body)")
        }
        let p = try takenBy!.stockd.connect()
        #expect(try p.confirm(before.token).status == .ok, "the hold acknowledged before the freeze survived")
        let info = try p.info("JACKET")
        #expect(info.reserved == 0 && info.confirmed == 1, "nothing the old primary did after the handover is here")
        // Its agent saw the new leader: the old node no longer claims the primary's role.
        try ReplicationTests.eventually(10, "the old primary is demoted: \(old.diagnostics)") {
            (try? old.status())?.role != .primary || old.stockd.stderrText.contains("demoted")
        }
    }

    /// etcd loses its quorum (frozen): nobody can take the leader key, so there is no failover, and the
    /// primary, unable to renew its lease, stops acknowledging within it.
    @Test func etcdUnavailableMeansNoFailoverAndThePrimaryStopsWithinItsLease() throws {
        let dir = try TempDirectory(prefix: "failover-etcd")
        defer { dir.remove() }
        let etcdServer = try EtcdProcess()
        let etcd = try EtcdClient(endpoints: [etcdServer.endpoint], timeoutMs: 2000)
        let nodes = try ["a", "b", "c"].map { try Node($0, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog) }
        let primary = try Self.settledPrimary(nodes, etcd: etcd)
        let c = try primary.stockd.connect()
        _ = try c.reserveOK("JACKET", 1)
        etcdServer.pause()
        let paused = monotonicSeconds()
        // Within the lease TTL (2 s) after its last renewal the primary stops: a change is refused then.
        var refusedAfter: Double?
        while monotonicSeconds() - paused < 4 {
            let r = try c.reserve("JACKET", 1)
            if r.status == .notPrimary {
                refusedAfter = monotonicSeconds() - paused
                break
            }
            #expect(r.status == .ok, "\(r.body)")
            sleepSeconds(0.05)
        }
        let after = try #require(refusedAfter, "the primary kept acknowledging without etcd: \(primary.diagnostics)")
        #expect(after <= 2.0, "stopped \(after) s after etcd froze: beyond the lease")
        for n in nodes where n.id != primary.id {
            #expect(try n.status().role == .standby, "no failover without etcd")
        }
        etcdServer.resume()
        // etcd back: some node serves changes again (the same primary, or another if its lease ran out).
        try ReplicationTests.eventually(20, "service resumes: \(nodes.map(\.diagnostics))") {
            nodes.contains { n in (try? n.stockd.connect().reserve("HAT", 1))?.status == .ok }
        }
    }

    /// A StockClient given every node follows the primary through a failover: each RESERVE (with an
    /// idempotency key) is answered OK within its deadline, before, during and after the kill, and
    /// each of those holds is on the new primary exactly once.
    @Test func aClientGivenEveryNodeFollowsThePrimaryAcrossAFailover() async throws {
        let dir = try TempDirectory(prefix: "failover-client")
        defer { dir.remove() }
        let etcdServer = try EtcdProcess()
        let etcd = try EtcdClient(endpoints: [etcdServer.endpoint], timeoutMs: 2000)
        let nodes = try ["a", "b", "c"].map { try Node($0, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog) }
        let primary = try Self.settledPrimary(nodes, etcd: etcd)
        // The list starts with a standby: the first call is redirected.
        let ordered = nodes.filter { $0.id != primary.id } + [primary]
        var config = try StockClient.Configuration(host: "127.0.0.1", port: ordered[0].stockd.port, connections: 2,
                                                   callTimeout: .seconds(15))
        config.otherEndpoints = ordered.dropFirst().map { "127.0.0.1:\($0.stockd.port)" }
        let client = try StockClient(configuration: config)
        var tokens: [Token] = []
        var killedAt: Double?
        let start = monotonicSeconds()
        for i in 0..<400 {
            if i == 100 {
                killedAt = monotonicSeconds()
                primary.kill()
            }
            let hold = try await client.reserve(sku: "JACKET", quantity: 1, ttl: .seconds(600), idempotencyKey: "cart-\(i)")
            tokens.append(hold.token)
            if i == 100 { print("client: the first reserve after the kill took \(String(format: "%.2f", monotonicSeconds() - killedAt!)) s") }
        }
        print("client: 400 reserves in \(String(format: "%.2f", monotonicSeconds() - start)) s across the failover")
        #expect(Set(tokens).count == 400, "one hold per idempotency key")
        for t in tokens { try await client.confirm(t) }
        let info = try await client.stock("JACKET")
        #expect(info.confirmed == 400 && info.reserved == 0, "\(info)")
        await client.shutdown()
    }
}
