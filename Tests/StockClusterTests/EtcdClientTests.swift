import Foundation
import Glibc
import StockCluster
import Testing
import TestSupport

/// The error a call threw, nil when it returned. (The closure throws untyped: Swift 6 does not
/// infer a closure's thrown type from its body, and the API's typed errors convert.)
func etcdError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> EtcdError? {
    do {
        _ = try body()
        return nil
    } catch let error as EtcdError {
        return error
    } catch {
        Issue.record("not a EtcdError: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

extension EtcdError {
    var isUnavailable: Bool { if case .unavailable = self { true } else { false } }
}

/// EtcdClient against a real single-member etcd, one per test (the suite is serialized so that
/// the timing checks do not compete with a dozen etcds starting at once).
@Suite(.ownThread, .serialized) struct EtcdClientTests {
    let etcd: EtcdProcess
    let client: EtcdClient

    init() throws {
        etcd = try EtcdProcess()
        client = try EtcdClient(endpoints: [etcd.endpoint], timeoutMs: 3000)
    }

    @Test func grantKeepAliveRevoke() throws {
        let lease = try client.grantLease(ttlSeconds: 5)
        #expect(lease.id != 0)
        #expect(lease.ttl == 5)
        #expect(try client.keepAlive(lease.id) == 5)
        try client.revoke(lease.id)
        #expect(try client.keepAlive(lease.id) == 0, "a revoked lease keeps alive to TTL 0")
        // Gone either way: revoking it again (or a lease that never was) is not an error.
        try client.revoke(lease.id)
        try client.revoke(0x7777_0000_1234)
    }

    /// The campaign's shape: put-if-absent once; the loser reads the winner in the failure branch.
    @Test func putIfAbsentSucceedsOnce() throws {
        let key = "/stockd/c1/leader"
        func campaign(_ me: String) throws -> EtcdTxnResult {
            try client.txn(compare: [.createRevision(key: key, equals: 0)],
                           success: [.put(key: key, value: Array(me.utf8))],
                           failure: [.get(key: key)])
        }
        let first = try campaign("node-a")
        #expect(first.succeeded)
        #expect(first.gets.isEmpty)
        let stored = try #require(try client.get(key).kv)
        #expect(stored.createRevision == first.revision, "the winner's epoch is the txn's revision")
        #expect(stored.modRevision == first.revision && stored.version == 1 && stored.lease == 0)

        let second = try campaign("node-b")
        #expect(!second.succeeded)
        #expect(second.revision == first.revision, "a failed txn without writes leaves the revision")
        let winner = try #require(second.gets.count == 1 ? second.gets[0] : nil)
        #expect(winner.value == Array("node-a".utf8))
        #expect(winner.createRevision == first.revision)
    }

    /// One read of a cluster's keys: exactly those under the prefix (not a cluster whose name
    /// extends this one's), in key order, and the agent's view of them.
    @Test func aPrefixReadReturnsTheClusterKeysOnly() throws {
        let keys = ClusterKeys(cluster: "pfx")
        try client.put(keys.leader, Array("L".utf8))
        try client.put(keys.isr, ClusterJSON.encode(ISRRecord(epoch: 3, members: ["b"])))
        try client.put(keys.member("b"), Array("M".utf8))
        try client.put(ClusterKeys(cluster: "pfx2").leader, Array("other".utf8))
        try client.put("/stockd/pfx", Array("no slash".utf8))
        let (kvs, revision) = try client.get(prefix: "/stockd/pfx/")
        #expect(kvs.map(\.key) == ["/stockd/pfx/isr", "/stockd/pfx/leader", "/stockd/pfx/members/b"] && revision > 0)
        let view = ClusterView(kvs, keys: keys)
        #expect(view.leader?.value == Array("L".utf8) && view.isrRecord == ISRRecord(epoch: 3, members: ["b"]))
        #expect(view.handover == nil && Set(view.members.keys) == ["b"])
        #expect(try client.get(prefix: "/stockd/none/").kvs.isEmpty)
    }

    @Test func revokeDeletesAttachedKey() throws {
        let lease = try client.grantLease(ttlSeconds: 30)
        let revision = try client.put("/k/leased", [1, 2, 3], lease: lease.id)
        let kv = try #require(try client.get("/k/leased").kv)
        #expect(kv.lease == lease.id && kv.value == [1, 2, 3] && kv.modRevision == revision)
        try client.revoke(lease.id)
        #expect(try client.get("/k/leased").kv == nil)
    }

    @Test func expiryDeletesAttachedKey() throws {
        let lease = try client.grantLease(ttlSeconds: 2)
        #expect(lease.ttl == 2)
        try client.put("/k/expiring", Array("x".utf8), lease: lease.id)
        let t0 = monotonicSeconds()
        while try client.get("/k/expiring").kv != nil {
            try #require(monotonicSeconds() - t0 < 6, "the key outlived its 2 s lease by far")
            sleepSeconds(0.1)
        }
        #expect(monotonicSeconds() - t0 >= 1, "expired before its TTL")
        #expect(try client.keepAlive(lease.id) == 0)
    }

    /// The ISR change's shape: a write guarded by the mod revision it was read at.
    @Test func modRevisionGuardedTxn() throws {
        let key = "/stockd/c1/isr"
        let r1 = try client.put(key, Array("a,b".utf8))
        let change = try client.txn(compare: [.modRevision(key: key, equals: r1)], success: [.put(key: key, value: Array("a".utf8))])
        #expect(change.succeeded && change.revision > r1)
        let stale = try client.txn(compare: [.modRevision(key: key, equals: r1)], success: [.put(key: key, value: Array("b".utf8))],
                                   failure: [.get(key: key)])
        #expect(!stale.succeeded)
        #expect(stale.gets.first??.value == Array("a".utf8))
        #expect(stale.gets.first??.modRevision == change.revision)
        #expect(try client.get(key).kv?.value == Array("a".utf8))
    }

    @Test func versionAndValueCompares() throws {
        let key = "/k/v"
        #expect(try client.txn(compare: [.version(key: key, equals: 0)], success: [.put(key: key, value: [])]).succeeded)
        #expect(try client.txn(compare: [.version(key: key, equals: 0)], success: []).succeeded == false)
        #expect(try client.txn(compare: [.version(key: key, equals: 1), .value(key: key, equals: [])], success: []).succeeded)
        try client.put(key, [0, 255, 10])
        #expect(try client.txn(compare: [.value(key: key, equals: [0, 255, 10])], success: []).succeeded)
        #expect(try client.txn(compare: [.value(key: key, equals: [0, 255])], success: []).succeeded == false)
        #expect(try client.txn(compare: [.version(key: key, equals: 2)], success: []).succeeded)
    }

    @Test func txnOpsRunInOrder() throws {
        try client.put("/k/a", [1])
        let r = try client.txn(compare: [], success: [
            .get(key: "/k/a"), .delete(key: "/k/a"), .get(key: "/k/a"), .put(key: "/k/b", value: [2]), .get(key: "/k/b"),
        ])
        #expect(r.succeeded)
        #expect(r.gets.count == 3)
        #expect(r.gets[0]?.value == [1])
        #expect(r.gets[1] == nil)
        #expect(r.gets[2]?.value == [2] && r.gets[2]?.createRevision == r.revision)
    }

    @Test func getOfAbsentKeyAndValueBytes() throws {
        let absent = try client.get("/nothing/here")
        #expect(absent.kv == nil && absent.revision >= 1)
        let bytes: [UInt8] = Array(0...255)
        let revision = try client.put("/k/bytes", bytes)
        let read = try client.get("/k/bytes")
        #expect(read.kv?.value == bytes && read.revision == revision)
        try client.put("/k/empty", [])
        #expect(try client.get("/k/empty").kv.map { $0.value.isEmpty && $0.version == 1 } == true)
    }

    @Test func serverErrorsAreTyped() throws {
        let unknownLease = etcdError { try client.put("/k/x", [1], lease: 0x7777_0000_1234) }
        guard case .server(5, let message)? = unknownLease else {
            Issue.record("put with an unknown lease: \(String(describing: unknownLease))")
            return
        }
        #expect(message.contains("lease not found"))
        let duplicate = etcdError {
            try client.txn(compare: [], success: [.put(key: "/k/d", value: [1]), .put(key: "/k/d", value: [2])])
        }
        guard case .server(3, _)? = duplicate else {
            Issue.record("txn putting one key twice: \(String(describing: duplicate))")
            return
        }
    }

    @Test func firstEndpointDeadStillWorks() throws {
        let dead = "http://127.0.0.1:\(try unusedPort())"
        let failover = try EtcdClient(endpoints: [dead, etcd.endpoint], timeoutMs: 2000)
        try failover.put("/k/f", [7])
        #expect(try failover.get("/k/f").kv?.value == [7])
        let lease = try failover.grantLease(ttlSeconds: 5)
        #expect(try failover.keepAlive(lease.id) == 5)
    }

    /// An HTTP server that is not etcd (a plain 404) is skipped like a dead one.
    @Test func endpointThatIsNotEtcdIsSkipped() throws {
        let notFound = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n"
        // Each scripted server answers one connection.
        let (first, second) = (try ScriptedHTTPServer(answer: notFound), try ScriptedHTTPServer(answer: notFound))
        let client = try EtcdClient(endpoints: ["http://127.0.0.1:\(first.port)", etcd.endpoint], timeoutMs: 2000)
        #expect(try client.get("/k").kv == nil)
        let alone = try EtcdClient(endpoints: ["http://127.0.0.1:\(second.port)"], timeoutMs: 2000)
        let error = etcdError { try alone.get("/k") }
        #expect(error?.isUnavailable == true && error?.description.contains("Not Found") == true, "\(String(describing: error))")
    }

    /// The client sticks to the endpoint that answered: with a first endpoint that accepts and never
    /// answers, only the first call pays its timeout.
    @Test func clientSticksToTheEndpointThatAnswered() throws {
        let (blackhole, port) = try loopbackSocket(listening: 16)
        defer { close(blackhole) }
        let sticky = try EtcdClient(endpoints: ["http://127.0.0.1:\(port)", etcd.endpoint], timeoutMs: 500)
        var t0 = monotonicSeconds()
        try sticky.put("/k/s", [1])
        #expect(monotonicSeconds() - t0 >= 0.45, "the first call tried the silent endpoint first")
        t0 = monotonicSeconds()
        for _ in 0..<3 { _ = try sticky.get("/k/s") }
        #expect(monotonicSeconds() - t0 < 1.2, "later calls went straight to etcd")
    }

    @Test func allEndpointsDeadIsUnavailable() throws {
        let dead = try EtcdClient(endpoints: ["http://127.0.0.1:\(try unusedPort())", "http://localhost:\(try unusedPort())"],
                                  timeoutMs: 1000)
        let t0 = monotonicSeconds()
        let error = etcdError { try dead.get("/k") }
        #expect(error?.isUnavailable == true, "\(String(describing: error))")
        #expect(monotonicSeconds() - t0 < 2)
        // Both endpoints are named in the reasons.
        #expect(error?.description.contains("127.0.0.1") == true)
    }

    @Test func killedEtcdIsUnavailable() throws {
        etcd.kill()
        let error = etcdError { try client.get("/k") }
        #expect(error?.isUnavailable == true, "\(String(describing: error))")
    }

    /// A frozen etcd accepts connections and answers nothing: every call fails at its timeout, and
    /// the same client works again once etcd runs.
    @Test func pausedEtcdTimesOutThenRecovers() throws {
        let quick = try EtcdClient(endpoints: [etcd.endpoint], timeoutMs: 500)
        let lease = try quick.grantLease(ttlSeconds: 10)
        try etcd.pause()
        defer { etcd.resume() }
        for (name, call) in [("get", { () throws in _ = try quick.get("/k") }),
                             ("keepAlive", { () throws in _ = try quick.keepAlive(lease.id) }),
                             ("txn", { () throws in _ = try quick.txn(compare: [], success: [.put(key: "/k", value: [1])]) })] {
            let t0 = monotonicSeconds()
            let error = etcdError(call)
            let elapsed = monotonicSeconds() - t0
            #expect(error?.isUnavailable == true, "\(name): \(String(describing: error))")
            #expect(elapsed >= 0.45 && elapsed < 2, "\(name) took \(elapsed) s")
        }
        etcd.resume()
        let t0 = monotonicSeconds()
        while etcdError({ try quick.get("/k") }) != nil {
            try #require(monotonicSeconds() - t0 < 5, "etcd did not answer within 5 s of SIGCONT")
            sleepSeconds(0.05)
        }
        #expect(try quick.keepAlive(lease.id) == 10)
    }

    @Test func badEndpointsAreRefused() {
        for bad in [[], ["https://127.0.0.1:2379"], ["http://etcd:2379"], [etcd.endpoint, "http://[::1]:2379"],
                    ["http://127.0.0.1:2379/v3"]] {
            let error: EtcdError?
            do {
                _ = try EtcdClient(endpoints: bad, timeoutMs: 100)
                error = nil
            } catch let e {
                error = e
            }
            guard case .badEndpoint? = error else {
                Issue.record("\(bad): \(String(describing: error))")
                continue
            }
        }
    }
}
