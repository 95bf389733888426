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
@Suite(.ownThread, .serialized) struct FailoverTests {
    /// A stock-agent process next to the test binary, killed with the test.
    final class AgentProcess {
        let process = Process()
        let log: String

        init(node: String, stockdPort: Int, etcd: String, dir: TempDirectory, leaseTTL: Int = 2,
             advertise: String? = nil) throws {
            let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            let binary = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("stock-agent").path
            let args = ["--etcd", etcd, "--cluster", "show", "--node-id", node, "--stockd", "127.0.0.1:\(stockdPort)",
                        "--lease-ttl", "\(leaseTTL)", "--poll", "50ms", "--repl-timeout", "1s"]
                + (advertise.map { ["--advertise", $0] } ?? [])
            log = dir.path("agent-\(node)-\(stockdPort).log")
            try StockdProcess.launch(process, binary: binary, args: args, stderrPath: log, stdoutPath: log + ".out")
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

        /// `relay`: a relay in front of this node's port that others reach it through (its advertised address).
        init(_ id: String, dir: TempDirectory, etcd: String, catalog: String, relay: TCPRelay? = nil) throws {
            self.id = id
            stockd = try StockdProcess(["--cluster", "show", "--node-id", id, "--data-dir", dir.path(id), "--workers", "2",
                                        "--repl-timeout", "1s"], catalog: catalog)
            relay?.target = stockd.port
            agent = try AgentProcess(node: id, stockdPort: stockd.port, etcd: etcd, dir: dir,
                                     advertise: relay.map { "127.0.0.1:\($0.port)" })
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

    static func ps() -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "ps -eo pid,stat,etime,args | grep stock-agent | grep -v grep | cut -c1-160"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try? p.run()
        p.waitUntilExit()
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    /// The primary once it waits for both other nodes (both in the ISR in etcd too).
    static func settledPrimary(_ nodes: [Node], etcd: EtcdClient, seconds: Double = 20) throws -> Node {
        var found: Node?
        try ReplicationTests.eventually(seconds, "a primary with both standbys in sync: ETCD leader=\(String(decoding: (try? etcd.get(ClusterKeys(cluster: "show").leader).kv?.value) ?? [], as: UTF8.self)) lease=\((try? etcd.get(ClusterKeys(cluster: "show").leader).kv?.lease) ?? 0) isr=\(String(decoding: (try? etcd.get(ClusterKeys(cluster: "show").isr).kv?.value) ?? [], as: UTF8.self)) STATUS \(nodes.map { n in (try? n.status()).map { "\(n.id) \($0.role.name) e\($0.epoch) d\($0.durable) sb=\($0.standbys.map { "\($0.node.string):\($0.acked):\($0.lagMs):\($0.inWaitSet)" })" } ?? "\(n.id) ?" }) AGENTS \(nodes.map { "\($0.agent.process.processIdentifier) running=\($0.agent.process.isRunning) " + $0.agent.text.suffix(600) }) PS \(Self.ps()) LOGS \(nodes.map { "\($0.id): " + $0.stockd.stderrText.split(separator: "\n").filter { $0.contains("standby") || $0.contains("replication") || $0.contains("critical") }.suffix(6).joined(separator: " | ") })") {
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

        let (acknowledged, group) = ReplicationTests.reserveLoad(port: primary.stockd.port, threads: 4, upTo: 100_000)
        sleepSeconds(1)
        let killedAt = monotonicSeconds()
        primary.kill()
        #expect(group.wait(timeout: .now() + 10) == .success)
        let tokens = acknowledged.get()
        #expect(tokens.count > 100, "load before the kill: \(tokens.count)")

        // A survivor takes over: the first reserve answered OK there ends the failover.
        let survivors = nodes.filter { $0.id != primary.id }
        let newPrimary = try Self.survivorServing(survivors)
        let failover = monotonicSeconds() - killedAt
        print("failover: \(tokens.count) reservations acknowledged before the kill; first OK on \(newPrimary.id) after \(String(format: "%.2f", failover)) s")
        let p = try newPrimary.stockd.connect()
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
        let feed = try newPrimary.stockd.connect()
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

    /// The first of `survivors` to answer a RESERVE OK (the failover's end), within 20 s.
    static func survivorServing(_ survivors: [Node]) throws -> Node {
        var serving: Node?
        try ReplicationTests.eventually(20, "a survivor serves changes: \(survivors.map(\.diagnostics))") {
            for n in survivors {
                guard let c = try? n.stockd.connect(), let r = try? c.reserve("HAT", 1), r.status == .ok else { continue }
                serving = n
                return true
            }
            return false
        }
        return serving!
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
        let takenBy = try Self.survivorServing(survivors)
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
        let p = try takenBy.stockd.connect()
        #expect(try p.confirm(before.token).status == .ok, "the hold acknowledged before the freeze survived")
        let info = try p.info("JACKET")
        #expect(info.reserved == 0 && info.confirmed == 1, "nothing the old primary did after the handover is here")
        // Its agent saw the new leader: the old node no longer claims the primary's role.
        try ReplicationTests.eventually(10, "the old primary is demoted: \(old.diagnostics)") {
            (try? old.status())?.role != .primary || old.stockd.stderrText.contains("demoted")
        }
        // Restarted on its journal, it cuts what was never committed (if anything) and rejoins as a
        // standby of the new primary, which then waits for it again.
        old.kill()
        let rejoined = try Node(old.id, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog)
        try ReplicationTests.eventually(20, "the old primary rejoins: \(rejoined.diagnostics)") {
            (try? rejoined.status())?.role == .standby
                && (try? takenBy.status())?.standbys.contains { $0.node.string == old.id && $0.inWaitSet } == true
        }
        #expect(try p.reserve("HAT", 1).status == .ok, "committed with the rejoined node in the wait set")
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
        try etcdServer.pause()
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

    /// The primary cut off from etcd while it still reaches its standbys (a relay per node between
    /// its agent and etcd; the primary's drops everything): it stops acknowledging within its lease,
    /// a standby promotes although the old primary's replication links are up, the old primary
    /// acknowledges nothing after that, and every hold it acknowledged is on the new primary. With
    /// etcd back, its agent sees the new leader and the old primary is demoted.
    @Test func aPrimaryCutOffFromEtcdButNotFromItsStandbysIsReplaced() throws {
        let dir = try TempDirectory(prefix: "failover-cut")
        defer { dir.remove() }
        let etcdServer = try EtcdProcess()
        let etcd = try EtcdClient(endpoints: [etcdServer.endpoint], timeoutMs: 2000)
        var relays: [String: TCPRelay] = [:]
        let nodes = try ["a", "b", "c"].map { id in
            let relay = try TCPRelay(marker: "")
            relay.target = etcdServer.clientPort
            relays[id] = relay
            return try Node(id, dir: dir, etcd: "http://127.0.0.1:\(relay.port)", catalog: Self.catalog)
        }
        defer { relays.values.forEach { $0.stop() } }
        let old = try Self.settledPrimary(nodes, etcd: etcd)
        let oldEpoch = try old.status().epoch
        let c = try old.stockd.connect()
        var tokens: [Token] = []
        for _ in 0..<20 { tokens.append(try c.reserveOK("JACKET", 1, ttlMs: 600_000).token) }

        relays[old.id]!.blackhole = true
        let cut = monotonicSeconds()
        var refusedAfter: Double?
        var unanswered = 0  // a change journaled as the fence fell: never committed, so never answered
        while monotonicSeconds() - cut < 4 {
            let sent = monotonicSeconds() - cut
            guard let r = try? c.reserve("JACKET", 1, ttlMs: 600_000) else {
                unanswered = 1
                refusedAfter = sent
                break
            }
            if r.status == .notPrimary {
                refusedAfter = monotonicSeconds() - cut
                break
            }
            #expect(r.status == .ok, "\(r.body)")
            if r.status == .ok, let t = r.reservation?.token { tokens.append(t) }
            sleepSeconds(0.02)
        }
        let after = try #require(refusedAfter, "the primary kept acknowledging without etcd: \(old.diagnostics)")
        #expect(after <= 2.0, "stopped \(after) s after the cut: beyond the lease")
        let c2 = try old.stockd.connect()  // c may still owe that answer

        let survivors = nodes.filter { $0.id != old.id }
        let primary = try Self.survivorServing(survivors)
        #expect(try primary.status().epoch > oldEpoch)
        // The old primary, still connected to its standbys as far as it knows: refusals, or nothing — never OK.
        var ids: [UInt32] = []
        for _ in 0..<20 { ids.append(try c2.sendRequest(.reserve(Reserve(sku: SKU("JACKET")!, quantity: 1)))) }
        let deadline = monotonicSeconds() + 2
        var answered = 0
        while monotonicSeconds() < deadline, answered < ids.count {
            guard let r = try? c2.readResponse(timeout: max(0.05, deadline - monotonicSeconds())) else { break }
            answered += 1
            #expect(r.status != .ok, "the cut-off primary acknowledged a change after the handover: \(r.body)")
        }
        let p = try primary.stockd.connect()
        for t in tokens { #expect(try p.confirm(t).status == .ok, "a hold the old primary acknowledged is on the new one") }
        let info = try p.info("JACKET")
        #expect(info.reserved <= UInt64(unanswered) && info.confirmed == UInt64(tokens.count) && info.onHand == 1_000_000,
                "exactly the acknowledged holds, each confirmed once (and at most the unanswered one held): \(info)")
        // The third node follows the new primary: it is in its wait set, at the new epoch.
        let third = survivors.first { $0.id != primary.id }!
        try ReplicationTests.eventually(15, "the other standby follows the new primary: \(third.diagnostics)") {
            (try? primary.status())?.standbys.contains { $0.node.string == third.id && $0.inWaitSet } == true
        }
        relays[old.id]!.blackhole = false
        try ReplicationTests.eventually(15, "the old primary is demoted once etcd is back: \(old.diagnostics)") {
            (try? old.status())?.role != .primary || old.stockd.stderrText.contains("demoted")
        }
        #expect(try c2.reserve("JACKET", 1).status != .ok)
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

    /// `stockctl cluster failover --to` under a keyed reserve load from a StockClient given every
    /// node: the named standby becomes primary, every call is answered OK (those in flight at the
    /// handover too: the old primary commits what it took before it lets go), every hold is on the
    /// new primary once, and the old primary takes no more changes. Then the refusals: a node not in
    /// the in-sync set, and the primary itself, are one line on stderr and exit 1.
    @Test func aDeliberateHandoverUnderLoadLosesNothingAndAnswersEveryCall() async throws {
        let dir = try TempDirectory(prefix: "failover-handover")
        defer { dir.remove() }
        let etcdServer = try EtcdProcess()
        let etcd = try EtcdClient(endpoints: [etcdServer.endpoint], timeoutMs: 2000)
        let nodes = try ["a", "b", "c"].map { try Node($0, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog) }
        let old = try Self.settledPrimary(nodes, etcd: etcd)
        let oldEpoch = try old.status().epoch
        let target = nodes.first { $0.id != old.id }!
        var config = try StockClient.Configuration(host: "127.0.0.1", port: old.stockd.port, connections: 2,
                                                   callTimeout: .seconds(15))
        config.otherEndpoints = nodes.filter { $0.id != old.id }.map { "127.0.0.1:\($0.stockd.port)" }
        let client = try StockClient(configuration: config)
        let stop = Locked(false)
        // Off this test's thread: stockctl below blocks it while the load goes on.
        let load = Task.detached { () throws -> [Token] in
            try await withThrowingTaskGroup(of: [Token].self) { group in
                for w in 0..<4 {
                    group.addTask {
                        var held: [Token] = []
                        for i in 0..<20_000 where !stop.get() {
                            held.append(try await client.reserve(sku: "JACKET", quantity: 1, ttl: .seconds(600),
                                                                 idempotencyKey: "handover-\(w)-\(i)").token)
                        }
                        return held
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        let r = try stockctl(["cluster", "failover", "--etcd", etcdServer.endpoint, "--cluster", "show", "--to", target.id,
                              "--json"], timeout: 30)
        #expect(r.code == 0 && r.object?["to"] as? String == target.id, "\(r) \(nodes.map(\.diagnostics))")
        print("handover: \(r.stdout)")
        try await Task.sleep(for: .milliseconds(500))
        stop.set(true)
        let tokens = try await load.value  // a call that failed fails the test here
        #expect(tokens.count > 100 && Set(tokens).count == tokens.count, "\(tokens.count) holds, one per key")
        let status = try target.status()
        #expect(status.role == .primary && status.epoch > oldEpoch)
        for t in tokens { try await client.confirm(t) }
        let info = try await client.stock("JACKET")
        #expect(info.confirmed == UInt64(tokens.count) && info.reserved == 0, "exactly the acknowledged holds: \(info)")
        await client.shutdown()
        #expect(try old.stockd.connect().reserve("JACKET", 1).status == .notPrimary, "the old primary takes no more changes")

        let third = nodes.first { $0.id != old.id && $0.id != target.id }!
        try ReplicationTests.eventually(15, "the third node in the new ISR") {
            guard let kv = try etcd.get(ClusterKeys(cluster: "show").isr).kv,
                  let isr = ClusterJSON.decode(ISRRecord.self, kv.value) else { return false }
            return isr.members == [third.id]
        }
        let notInSync = try stockctl(["cluster", "failover", "--etcd", etcdServer.endpoint, "--cluster", "show", "--to", old.id])
        #expect(notInSync.code == 1 && notInSync.stderrLines.count == 1 && notInSync.stderr.contains("not in the in-sync set"),
                "\(notInSync)")
        let itself = try stockctl(["cluster", "failover", "--etcd", etcdServer.endpoint, "--cluster", "show", "--to", target.id])
        #expect(itself.code == 1 && itself.stderr.contains("already the primary"), "\(itself)")
    }

    /// A standby cut off by a stalled link (a TCP relay that stops forwarding its connections) leaves
    /// the ISR — in etcd first — while changes go on acknowledged with the other standby; when the
    /// primary then dies, the in-sync standby is promoted, never the lagging one.
    @Test func aLaggingStandbyLeavesTheISRAndIsNeverPromoted() throws {
        let dir = try TempDirectory(prefix: "failover-lag")
        defer { dir.remove() }
        let etcdServer = try EtcdProcess()
        let etcd = try EtcdClient(endpoints: [etcdServer.endpoint], timeoutMs: 2000)
        let relay = try TCPRelay(marker: "charlie")
        let alpha = try Node("alpha", dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog, relay: relay)
        try ReplicationTests.eventually(10, "alpha primary: \(alpha.diagnostics)") { (try? alpha.status())?.role == .primary }
        let others = try ["bravo", "charlie"].map { try Node($0, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog) }
        let nodes = [alpha] + others
        #expect(try Self.settledPrimary(nodes, etcd: etcd).id == "alpha")
        let c = try alpha.stockd.connect()
        var tokens: [Token] = []
        for _ in 0..<50 { tokens.append(try c.reserveOK("JACKET", 1, ttlMs: 600_000).token) }

        relay.stallMarked = true
        // Changes go on: the first waits for charlie until the primary's agent takes it out of the ISR
        // (it lags once there is something to lag behind), then they are acknowledged with bravo alone.
        let isrKey = ClusterKeys(cluster: "show").isr
        try ReplicationTests.eventually(15, "charlie out of the ISR (relay: \(relay.counts)): \(alpha.agent.text)") {
            tokens.append(try c.reserveOK("JACKET", 1, ttlMs: 600_000).token)
            guard let kv = try etcd.get(isrKey).kv, let isr = ClusterJSON.decode(ISRRecord.self, kv.value) else { return false }
            return isr.members == ["bravo"]
        }
        #expect(try alpha.status().standbys.first { $0.node.string == "charlie" }?.inWaitSet != true,
                "out of the wait set after etcd")
        for _ in 0..<50 { tokens.append(try c.reserveOK("JACKET", 1, ttlMs: 600_000).token) }  // on alpha + bravo

        alpha.kill()
        let charlie = others[1], bravo = others[0]
        try ReplicationTests.eventually(15, "bravo promoted: \(bravo.diagnostics)") {
            (try? bravo.status())?.role == .primary && (try? bravo.stockd.connect().reserve("HAT", 1))?.status == .ok
        }
        #expect(try charlie.status().role == .standby, "the lagging standby is never promoted")
        let p = try bravo.stockd.connect()
        for t in tokens { #expect(try p.confirm(t).status == .ok, "acknowledged with bravo in sync: on bravo") }
        relay.stop()
    }

    /// stock-hooks given every node delivers every confirmed order across a kill -9 of the primary:
    /// its feed resumes on the new primary from its stored offset (offsets are the same on every
    /// node), so nothing confirmed is dropped.
    @Test func stockHooksDeliversEveryConfirmedOrderAcrossAFailover() async throws {
        let dir = try TempDirectory(prefix: "failover-hooks")
        defer { dir.remove() }
        let etcdServer = try EtcdProcess()
        let etcd = try EtcdClient(endpoints: [etcdServer.endpoint], timeoutMs: 2000)
        let nodes = try ["a", "b", "c"].map { try Node($0, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog) }
        let primary = try Self.settledPrimary(nodes, etcd: etcd)
        let all = nodes.map { "127.0.0.1:\($0.stockd.port)" }
        var config = try StockClient.Configuration(host: "127.0.0.1", port: primary.stockd.port, callTimeout: .seconds(15))
        config.otherEndpoints = all.filter { $0 != "127.0.0.1:\(primary.stockd.port)" }
        let client = try StockClient(configuration: config)
        let receiver = try HooksReceiver(seed: 7)
        let hooks = Process()
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        hooks.executableURL = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("stock-hooks")
        hooks.arguments = ["--server", all.joined(separator: ","), "--url", receiver.url,
                           "--secret-file", try dir.write("secret", "whsec-failover-test-1\n"), "--state-dir", dir.path("hooks"),
                           "--from", "oldest", "--timeout", "1s", "--backoff-initial", "10ms", "--backoff-max", "100ms"]
        hooks.standardError = FileHandle(forWritingAtPath: try dir.write("hooks.log", ""))
        hooks.standardOutput = FileHandle.nullDevice
        try hooks.run()
        defer { if hooks.isRunning { Glibc.kill(hooks.processIdentifier, SIGKILL) } }

        var orders: [String] = []
        func sell(_ n: Int) async throws {
            for _ in 0..<n {
                let order = "ORD-\(orders.count)"
                let hold = try await client.reserve(sku: "JACKET", quantity: 1, idempotencyKey: "k-\(order)")
                try await client.confirm(hold.token, orderReference: order)
                orders.append(order)
            }
        }
        try await sell(30)
        primary.kill()
        try await sell(30)  // on the new primary, once the client found it
        let expected = Set(orders)
        let deadline = monotonicSeconds() + 20
        var delivered: Set<String> = []
        while monotonicSeconds() < deadline {
            delivered = Set(receiver.firstAccepted.compactMap { entry in
                (try? JSONSerialization.jsonObject(with: entry.body) as? [String: Any])?["order"] as? String
            })
            if delivered.isSuperset(of: expected) { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let log = (try? String(contentsOfFile: dir.path("hooks.log"), encoding: .utf8)) ?? ""
        #expect(expected.subtracting(delivered).isEmpty,
                "not delivered: \(expected.subtracting(delivered).sorted()); stock-hooks: \(log.suffix(2000))")
        await client.shutdown()
        receiver.stop()
    }

    /// What a load thread was told: the tokens it holds, and the fates it was answered OK for.
    struct Books: Sendable {
        var held: Set<Token> = []
        var confirmed: Set<Token> = []
        var released: Set<Token> = []
        /// A confirm or release whose answer was lost with the primary: its outcome is unknown.
        var uncertain: Set<Token> = []
        /// RESERVEs whose answer was lost: each may or may not hold a unit.
        var lostReserves = 0

        mutating func merge(_ o: Books) {
            held.formUnion(o.held)
            confirmed.formUnion(o.confirmed)
            released.formUnion(o.released)
            uncertain.formUnion(o.uncertain)
            lostReserves += o.lostReserves
        }
    }

    /// One seeded load thread on `port` until the server goes: reserves (half), then confirms or
    /// releases one of its holds (a quarter each); only answers that came back OK enter the books.
    static func mixedLoad(port: Int, seed: UInt64) -> Books {
        var rng = SplitMix64(seed: seed)
        var books = Books()
        guard let c = try? RawClient(port: port) else { return books }
        for _ in 0..<100_000 {
            let roll = rng.next() % 4
            if roll < 2 || books.held.isEmpty {
                guard let r = try? c.reserve("JACKET", 1, ttlMs: 600_000) else {
                    books.lostReserves += 1
                    return books
                }
                guard let res = r.reservation else { continue }
                books.held.insert(res.token)
            } else {
                let t = books.held.randomElement(using: &rng)!
                guard let r = try? (roll == 2 ? c.confirm(t) : c.release(t)) else {
                    books.held.remove(t)
                    books.uncertain.insert(t)
                    return books
                }
                guard r.status == .ok else { continue }
                books.held.remove(t)
                if roll == 2 { books.confirmed.insert(t) } else { books.released.insert(t) }
            }
        }
        return books
    }

    /// The issue's kill -9 drill: ten rounds of a seeded mixed load on the primary, each ending with a
    /// kill -9 of its machine (stockd and agent); the killed node comes back on its journal and rejoins.
    /// At the end, on the last primary: every hold acknowledged is live, every confirm and release
    /// acknowledged is that token's one fate, the books balance, and the feed's offsets are gap-free
    /// with one term start per term.
    @Test func tenKillNineRoundsLoseNothingAcknowledged() throws {
        let dir = try TempDirectory(prefix: "failover-ten")
        defer { dir.remove() }
        let etcdServer = try EtcdProcess()
        let etcd = try EtcdClient(endpoints: [etcdServer.endpoint], timeoutMs: 2000)
        var nodes = try ["a", "b", "c"].map { try Node($0, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog) }
        var books = Books()
        var terms = Set<UInt64>()
        for round in 0..<10 {
            let primary = try Self.settledPrimary(nodes, etcd: etcd, seconds: 30)
            terms.insert(try primary.status().epoch)
            let got = Locked(Books())
            let group = DispatchGroup()
            for t in 0..<3 {
                group.enter()
                let port = primary.stockd.port
                Thread {
                    defer { group.leave() }
                    let b = Self.mixedLoad(port: port, seed: 0xF00D_0000 + UInt64(round * 8 + t))
                    got.update { $0.merge(b) }
                }.start()
            }
            sleepSeconds(0.4)
            primary.kill()
            #expect(group.wait(timeout: .now() + 10) == .success)
            books.merge(got.get())  // each thread decides only its own round's holds
            let id = primary.id
            let index = nodes.firstIndex { $0.id == id }!
            nodes[index] = try Node(id, dir: dir, etcd: etcdServer.endpoint, catalog: Self.catalog)  // rejoins
        }
        let last = try Self.settledPrimary(nodes, etcd: etcd, seconds: 30)
        terms.insert(try last.status().epoch)
        let p = try last.stockd.connect()
        let info = try p.info("JACKET")
        #expect(info.onHand == info.available + info.reserved + info.confirmed, "conservation")
        // Exact but for the operations whose answers died with a primary (their outcome is unknown).
        let unknown = UInt64(books.uncertain.count + books.lostReserves)
        #expect(info.reserved >= UInt64(books.held.count) && info.reserved <= UInt64(books.held.count) + unknown,
                "every acknowledged hold is live: \(info.reserved) reserved, \(books.held.count) acknowledged, \(unknown) unknown")
        #expect(info.confirmed >= UInt64(books.confirmed.count)
                && info.confirmed <= UInt64(books.confirmed.count + books.uncertain.count), "every acknowledged confirm, once")
        for t in books.confirmed { #expect(try p.confirm(t).status == .tokenConfirmed) }
        for t in books.released { #expect(try p.confirm(t).status == .tokenReleased) }
        for t in books.held { #expect(try p.release(t).status == .ok, "an acknowledged hold is live") }
        print("ten rounds: \(books.held.count) holds, \(books.confirmed.count) confirms, \(books.released.count) releases acknowledged; \(terms.count) terms")

        let feed = try last.stockd.connect()
        let end = try ReplicationTests.status(p).committed
        _ = try feed.sendRequest(.subscribe(Subscribe(from: 1, credit: 1_000_000)))
        var next: UInt64 = 1
        var termStarts = 0
        while next <= end {
            let r: Response
            do { r = try feed.readResponse(timeout: 10) } catch {
                throw HarnessError("feed stopped at offset \(next) of \(end): \(error); \(last.diagnostics)")
            }
            if case .failure = r.body { throw HarnessError("SUBSCRIBE from 1: \(r.body)") }
            guard case .event(let e) = r.body, e.kind != .progress else { continue }
            #expect(e.offset == next, "gap-free offsets")
            if e.kind == .termStarted { termStarts += 1 }
            next = e.offset + 1
        }
        #expect(termStarts == terms.count, "one term start per term")
    }
}

/// A TCP relay on loopback in front of a stockd: forwards both ways; connections whose first
/// client bytes contain `marker` (a standby's node id, in its HELLO and REPL_HELLO) stop being
/// forwarded while `stallMarked` is set — a link that stalls without closing.
final class TCPRelay: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var targetPort = 0
    private var stall = false
    private var dropAll = false
    private var stopped = false
    private let marker: [UInt8]

    var target: Int {
        get { lock.lock(); defer { lock.unlock() }; return targetPort }
        set { lock.lock(); targetPort = newValue; lock.unlock() }
    }
    var stallMarked: Bool {
        get { lock.lock(); defer { lock.unlock() }; return stall }
        set { lock.lock(); stall = newValue; lock.unlock() }
    }
    /// Nothing forwarded on any connection, old or new, either way (a network cut): connects still
    /// succeed, every request then waits for its own timeout.
    var blackhole: Bool {
        get { lock.lock(); defer { lock.unlock() }; return dropAll }
        set { lock.lock(); dropAll = newValue; lock.unlock() }
    }
    var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }
    private var accepted = 0
    private var markedCount = 0
    /// Connections relayed, and how many of them carried the marker.
    var counts: String { lock.lock(); defer { lock.unlock() }; return "\(accepted) connections, \(markedCount) marked" }

    init(marker: String) throws {
        self.marker = Array(marker.utf8)
        let (fd, p) = try loopbackSocket(listening: 64)
        listener = fd
        port = p
        Thread { [self] in acceptLoop() }.start()
    }

    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
    }

    private func acceptLoop() {
        while !isStopped {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { if isStopped { return } else { continue } }
            guard let server = Self.connect(port: target) else {
                close(client)
                continue
            }
            lock.lock(); accepted += 1; lock.unlock()
            let marked = Locked(false)
            Thread { [self] in pump(client, server, inspect: marked) }.start()
            Thread { [self] in pump(server, client, inspect: nil, marked: marked) }.start()
        }
    }

    /// Copies `from` to `to` until either ends; the client side looks for the marker.
    private func pump(_ from: Int32, _ to: Int32, inspect: Locked<Bool>?, marked: Locked<Bool>? = nil) {
        var seen: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        let flag = inspect ?? marked!
        while !isStopped {
            if blackhole || (stallMarked && flag.get()) {
                usleep(10_000)
                continue
            }
            var p = pollfd(fd: from, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) >= 0 else { break }
            if p.revents == 0 { continue }
            let n = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            if let inspect, !inspect.get(), seen.count < 4096 {
                seen += buffer[0..<n]
                if Self.contains(seen, marker) {
                    inspect.set(true)
                    lock.lock(); markedCount += 1; lock.unlock()
                }
            }
            var sent = 0
            while sent < n {
                let m = buffer.withUnsafeBytes { send(to, $0.baseAddress! + sent, n - sent, Int32(MSG_NOSIGNAL)) }
                guard m > 0 else { break }
                sent += m
            }
        }
        shutdown(from, Int32(SHUT_RDWR))
        shutdown(to, Int32(SHUT_RDWR))
    }

    static func connect(port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
        return false
    }
}
