import Foundation
import Glibc
import StockProtocol
import Testing
import TestSupport

/// Replication with static roles (docs/replication.md §10 step 2): real stockd
/// nodes on loopback, their roles given by ROLE the way their agent will, the
/// primary killed with SIGKILL, a standby promoted by hand.
@Suite(.ownThread, .serialized) struct ReplicationTests {
    /// A cluster node; `dataDir` outlives the process, so a node can be restarted on it.
    static func node(_ id: String, dataDir: String, catalog: String? = nil, extra: [String] = []) throws -> StockdProcess {
        try StockdProcess(["--cluster", "show", "--node-id", id, "--data-dir", dataDir, "--workers", "2",
                           "--repl-timeout", "1s"] + extra, catalog: catalog)
    }

    static func status(_ c: RawClient) throws -> ClusterStatus {
        let r = try c.request(.clusterStatus)
        guard case .clusterStatus(let s) = r.body else { throw HarnessError("CLUSTER_STATUS answered \(r.status.name) \(r.body)") }
        return s
    }

    static func role(_ c: RawClient, _ change: RoleChange) throws -> RoleReply {
        let r = try c.request(.role(change), timeout: 10)
        guard case .role(let reply) = r.body else { throw HarnessError("ROLE answered \(r.status.name) \(r.body)") }
        return reply
    }

    /// `threads` clients reserving one JACKET at a time on `port` until `upTo` each, or until the
    /// server is gone: the tokens whose RESERVE was answered OK, and the group to wait for.
    static func reserveLoad(port: Int, threads: Int, upTo: Int) -> (Locked<[Token]>, DispatchGroup) {
        let acknowledged = Locked<[Token]>([])
        let group = DispatchGroup()
        for _ in 0..<threads {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let c = try? RawClient(port: port) else { return }
                var mine: [Token] = []
                while mine.count < upTo {
                    guard let r = try? c.reserve("JACKET", 1, ttlMs: 600_000), let res = r.reservation else { break }
                    mine.append(res.token)
                }
                acknowledged.update { $0 += mine }
            }.start()
        }
        return (acknowledged, group)
    }

    /// What the journal carries of a SKU (not `reservations`, a count since the process started).
    static func counts(_ i: StockInfo) -> [UInt64] {
        [i.onHand, i.available, i.reserved, i.confirmed, UInt64(i.lowStockThreshold), UInt64(i.perCustomerLimit), i.backup]
    }

    static func address(_ p: StockdProcess) -> ShortBytes { ShortBytes("127.0.0.1:\(p.port)")! }

    /// Polls `condition` every 20 ms for at most `seconds`.
    /// `what` is evaluated when the wait ran out, so it can describe the state then.
    static func eventually(_ seconds: Double, _ what: @autoclosure () -> String, _ condition: () throws -> Bool) throws {
        let deadline = monotonicSeconds() + seconds
        while monotonicSeconds() < deadline {
            if try condition() { return }
            sleepSeconds(0.02)
        }
        throw HarnessError("not within \(seconds) s: \(what())")
    }

    /// `standby` follows `primary` in `epoch` until the primary waits for it.
    static func follow(_ standby: StockdProcess, _ primary: StockdProcess, epoch: UInt64, id: String) throws {
        let s = try standby.connect()
        let reply = try role(s, RoleChange(role: .standby, epoch: epoch, primary: address(primary)))
        #expect(reply.role == .standby && reply.epoch == epoch)
        let p = try primary.connect()
        try eventually(10, "\(id) in the primary's wait set; primary: \(primary.diagnostics) standby: \(standby.diagnostics)") {
            try status(p).standbys.contains { $0.node.string == id && $0.inWaitSet }
        }
    }

    @Test func aClusterNodeStartsAsAStandbyThatServesNoData() throws {
        let dir = try TempDirectory(prefix: "repl-idle")
        defer { dir.remove() }
        let a = try Self.node("a", dataDir: dir.path("a"), catalog: "JACKET,10\n")
        let c = try a.connect()
        let s = try Self.status(c)
        #expect(s.role == .standby && s.epoch == 0 && s.node.string == "a" && s.primary.isEmpty, "\(s)")
        for r: Request in [.reserve(Reserve(sku: SKU("JACKET")!, quantity: 1)), .stockGet(SKU("JACKET")!),
                           .subscribe(Subscribe(from: 1, credit: 10))] {
            #expect(try c.request(r).body == .failure(.notPrimary, .notPrimary(epoch: 0, primary: .empty)), "\(r.opcode.name)")
        }
        #expect(try c.ping().body == .pong)
        // ROLE standby with an epoch, then a lower one: refused, the stored epoch stays.
        #expect(try Self.role(c, RoleChange(role: .standby, epoch: 4, primary: ShortBytes("127.0.0.1:1")!)).epoch == 4)
        #expect(try c.request(.role(RoleChange(role: .standby, epoch: 3, primary: ShortBytes("127.0.0.1:1")!))).body
                == .failure(.staleEpoch, .staleEpoch(epoch: 4)))
        #expect(try c.request(.role(RoleChange(role: .primary, epoch: 2))).body == .failure(.staleEpoch, .staleEpoch(epoch: 4)))
        #expect(try Self.status(c).primary.string == "127.0.0.1:1")
    }

    @Test func theStandbyHoldsEveryAcknowledgedChangeAndTakesOverAfterKillNine() throws {
        let dir = try TempDirectory(prefix: "repl-kill")
        defer { dir.remove() }
        let a = try Self.node("a", dataDir: dir.path("a"), catalog: "JACKET,100\nHAT,50\n")
        let b = try Self.node("b", dataDir: dir.path("b"), extra: ["--min-insync", "0"])
        let ca = try a.connect()
        let promoted = try Self.role(ca, RoleChange(role: .primary, epoch: 5))
        #expect(promoted.role == .primary && promoted.epoch == 5 && promoted.lastSeq == 1, "the term start is seq 1")
        // --min-insync 1 (the default) and no standby yet: refused before anything is executed.
        #expect(try ca.reserve("JACKET", 1).body == .failure(.notEnoughReplicas, .notEnoughReplicas(inSync: 0, required: 1)))
        #expect(try ca.info("JACKET").reserved == 0)

        try Self.follow(b, a, epoch: 5, id: "b")
        var held: [Token] = []
        for i in 0..<40 { held.append(try ca.reserveOK(i % 2 == 0 ? "JACKET" : "HAT", 1, ttlMs: 600_000).token) }
        for t in held.prefix(10) { #expect(try ca.confirm(t).status == .ok) }
        for t in held[10..<15] { #expect(try ca.release(t).status == .ok) }
        let jacket = try ca.info("JACKET"), hat = try ca.info("HAT")
        let before = try Self.status(ca)
        #expect(before.committed == before.durable, "idle: every durable record is committed")
        let sb = try b.connect()
        #expect(try Self.status(sb).durable == before.committed, "an acknowledged change is on the standby")

        a.kill()
        let took = try Self.role(sb, RoleChange(role: .primary, epoch: 7))
        #expect(took.role == .primary && took.lastSeq == before.committed + 1, "its term starts right after")
        // Same counts, and the old primary's tokens are live here: confirm and release them.
        #expect(Self.counts(try sb.info("JACKET")) == Self.counts(jacket))
        #expect(Self.counts(try sb.info("HAT")) == Self.counts(hat))
        for t in held[15..<25] { #expect(try sb.confirm(t).status == .ok, "token \(t) from the old primary") }
        for t in held[25..<40] { #expect(try sb.release(t).status == .ok) }
        #expect(try sb.confirm(held[0]).status == .tokenConfirmed, "a fate decided on the old primary is remembered")
        let j = try sb.info("JACKET"), h = try sb.info("HAT")
        #expect(j.reserved == 0 && h.reserved == 0 && j.confirmed + h.confirmed == 20)
        #expect(j.onHand == j.available + j.reserved + j.confirmed && h.onHand == h.available + h.reserved + h.confirmed)

        // The old primary comes back on its journal and follows the new one.
        let a2 = try StockdProcess(["--cluster", "show", "--node-id", "a", "--data-dir", dir.path("a"), "--workers", "2"])
        let bStatus = try Self.status(sb)
        try Self.follow(a2, b, epoch: 7, id: "a")
        try Self.eventually(10, "a2 holds b's journal") { try Self.status(a2.connect()).durable >= bStatus.committed }
        _ = try sb.reserveOK("JACKET", 3)
        let after = try Self.status(sb)
        #expect(try Self.status(a2.connect()).durable >= after.committed)
    }

    @Test func acknowledgedReservationsSurviveAKillNineUnderLoad() throws {
        let dir = try TempDirectory(prefix: "repl-load")
        defer { dir.remove() }
        let a = try Self.node("a", dataDir: dir.path("a"), catalog: "JACKET,1000000\n")
        let b = try Self.node("b", dataDir: dir.path("b"), extra: ["--min-insync", "0"])
        _ = try Self.role(a.connect(), RoleChange(role: .primary, epoch: 3))
        try Self.follow(b, a, epoch: 3, id: "b")
        let (acknowledged, group) = Self.reserveLoad(port: a.port, threads: 4, upTo: 50_000)
        let t0 = monotonicSeconds()
        sleepSeconds(0.5)
        a.kill()
        #expect(group.wait(timeout: .now() + 10) == .success, "the load threads end once the primary died")
        let tokens = acknowledged.get()
        print("load: \(tokens.count) acknowledged before the kill, t=\(monotonicSeconds() - t0)")
        #expect(tokens.count > 100, "some load before the kill: \(tokens.count)")
        let sb = try b.connect()
        _ = try Self.role(sb, RoleChange(role: .primary, epoch: 4))
        let info = try sb.info("JACKET")
        #expect(info.reserved >= UInt64(tokens.count), "every acknowledged hold is on the new primary")
        #expect(info.onHand == info.available + info.reserved + info.confirmed)
        var confirmed = 0
        for t in tokens where try sb.confirm(t).status == .ok { confirmed += 1 }
        #expect(confirmed == tokens.count, "each acknowledged token confirms on the new primary")
    }

    @Test func theHandshakeRefusesWhatCannotFollow() throws {
        let dir = try TempDirectory(prefix: "repl-hello")
        defer { dir.remove() }
        let a = try Self.node("a", dataDir: dir.path("a"), catalog: "JACKET,10\n", extra: ["--min-insync", "0"])
        let c = try a.connect()
        func hello(_ fingerprint: UInt64? = nil, highest: UInt64 = 0, lastEpoch: UInt64 = 0, lastSeq: UInt64 = 0,
                   node: String = "x", cluster: String = "show") throws -> Response {
            let fp = try fingerprint ?? Self.fingerprintOf(a)
            let conn = try a.connect()
            return try conn.request(.replHello(ReplHello(fingerprint: fp, highestEpoch: highest, lastEpoch: lastEpoch,
                                                          lastSeq: lastSeq, node: ShortBytes(node)!,
                                                          cluster: ShortBytes(cluster)!)))
        }
        #expect(try hello(1).body == .failure(.notPrimary, .notPrimary(epoch: 0, primary: .empty)), "a standby streams nothing")
        _ = try Self.role(c, RoleChange(role: .primary, epoch: 9))
        _ = try c.reserveOK("JACKET", 1)
        #expect(try hello(cluster: "other").body == .failure(.configMismatch, .configMismatch(field: ShortBytes("cluster")!)))
        #expect(try hello(12345).body == .failure(.configMismatch, .configMismatch(field: ShortBytes("fingerprint")!)))
        #expect(try hello(node: "a").body == .failure(.configMismatch, .configMismatch(field: ShortBytes("node")!)))
        #expect(try hello(highest: 10).body == .failure(.staleEpoch, .staleEpoch(epoch: 9)), "the standby saw a newer term")
        #expect(try hello(highest: 8, lastEpoch: 8, lastSeq: 3).status == .diverged, "a term this primary never had")
        #expect(try hello(highest: 9, lastEpoch: 9, lastSeq: 99).body == .failure(.truncateTo, .truncateTo(seq: 3)),
                "records of this term beyond the primary's: never committed, cut them")
        let ok = try hello(highest: 9, lastEpoch: 9, lastSeq: 2)
        guard case .replStarted(let start) = ok.body else { throw HarnessError("REPL_HELLO answered \(ok.body)") }
        #expect(start.epoch == 9 && start.start == 3)
        #expect(try c.info("JACKET").reserved == 1, "nothing changed")
    }

    /// A standby played by the test: it sees every round, and the primary's answers wait for its acks.
    @Test func answersWaitForTheStandbysAckAndNoLonger() throws {
        let dir = try TempDirectory(prefix: "repl-fake")
        defer { dir.remove() }
        let a = try Self.node("a", dataDir: dir.path("a"), catalog: "JACKET,10\n")
        let admin = try a.connect()
        _ = try Self.role(admin, RoleChange(role: .primary, epoch: 2))
        let f = try a.connect()
        let opened = try f.request(.replHello(ReplHello(fingerprint: try Self.fingerprintOf(a), highestEpoch: 0, lastEpoch: 0,
                                                        lastSeq: 0, node: ShortBytes("f")!, cluster: ShortBytes("show")!)))
        guard case .replStarted(let start) = opened.body else { throw HarnessError("REPL_HELLO answered \(opened.body)") }
        #expect(start.epoch == 2 && start.start == 1)
        var seen: UInt64 = 0
        /// Reads rounds until `end` reaches `through`; checks each record's seq comes next.
        func rounds(through: UInt64) throws {
            while seen < through {
                let r = try f.readResponse()
                guard case .replRound(let round) = r.body else { throw HarnessError("on the stream: \(r.body)") }
                #expect(round.epoch == 2)
                var offset = 0
                for _ in 0..<round.count {
                    let length = Int(UInt32(round.records[offset]) | UInt32(round.records[offset + 1]) << 8)
                    let seq = (0..<8).reduce(UInt64(0)) { $0 | UInt64(round.records[offset + 9 + $1]) << (8 * UInt64($1)) }
                    #expect(seq == seen + 1, "records come in seq order, gap-free")
                    seen = seq
                    offset += 4 + length
                }
                #expect(offset == round.records.count && round.end == seen, "end is the round's last seq")
            }
        }
        func ack(_ durable: UInt64) throws {
            var w = ByteWriter()
            RequestCodec.encode(.replAck(ReplAck(epoch: 2, durable: durable)), requestID: opened.requestID, into: &w)
            try f.send(w.bytes)
        }
        // Seq 1 is the term start, 2 the catalog's JACKET: acked, f joins the wait set.
        try rounds(through: 2)
        try ack(2)
        try Self.eventually(5, "f in the wait set") { try Self.status(admin).standbys.first?.inWaitSet == true }

        // Idle for 2 s, f heard all along (acks of the same end). Its lag counts from the oldest round
        // it has not acked, not from its ack's last move: the next record finds it ~0 ms behind, not 2 s
        // (the bench saw caught-up standbys leave the ISR at every traffic onset that way).
        for _ in 0..<20 {
            sleepSeconds(0.1)
            try ack(2)
        }
        let shop = try a.connect()
        let id = try shop.sendRequest(.reserve(Reserve(sku: SKU("JACKET")!, quantity: 1)))
        try rounds(through: 3)
        let fresh = try #require(try Self.status(admin).standbys.first)
        #expect(fresh.acked == 2 && fresh.lagMs < 1500, "a round just sent: \(fresh)")
        #expect(shop.staysSilent(for: 0.3), "no answer before the standby has the record")
        let sitting = try #require(try Self.status(admin).standbys.first)
        #expect(sitting.lagMs >= 250, "sitting on that round for 0.3 s: \(sitting)")
        #expect(try Self.status(admin).committed == 2)
        try ack(3)
        let answer = try shop.readResponse()
        #expect(answer.requestID == id && answer.status == .ok)

        // The standby goes away: commits wait for it (its ack stays 3) until ISR_SET drops it.
        f.close()
        let held = try shop.sendRequest(.reserve(Reserve(sku: SKU("JACKET")!, quantity: 1)))
        #expect(shop.staysSilent(for: 0.5), "the wait set still holds f")
        let dropped = try admin.request(.isrSet(ISRSet(epoch: 2, nodes: [])))
        #expect(dropped.body == .committed(4) || dropped.body == .committed(3), "\(dropped.body)")
        let late = try shop.readResponse()
        #expect(late.requestID == held && late.status == .ok, "released once the wait set is empty")
        #expect(try shop.reserve("JACKET", 1).body == .failure(.notEnoughReplicas, .notEnoughReplicas(inSync: 0, required: 1)))
        #expect(try admin.request(.isrSet(ISRSet(epoch: 3, nodes: []))).body == .failure(.staleEpoch, .staleEpoch(epoch: 2)))
    }

    /// The standby's disk fails (its file-size limit lowered under it: EFBIG, as in DiskFaultTests)
    /// while the primary streams to it: its receiver stops with one critical line and it acks
    /// nothing more, so the primary answers nothing more; every change it did acknowledge is in
    /// the standby's journal (restarted without the limit and promoted, every held token confirms).
    @Test func aStandbyWhoseJournalFailsStopsAcking() throws {
        let dir = try TempDirectory(prefix: "repl-efbig")
        defer { dir.remove() }
        let a = try Self.node("a", dataDir: dir.path("a"), catalog: "JACKET,1000000\n", extra: ["--segment-size", "64"])
        let b = try Self.node("b", dataDir: dir.path("b"), extra: ["--segment-size", "64"])
        let ca = try a.connect()
        _ = try Self.role(ca, RoleChange(role: .primary, epoch: 2))
        try Self.follow(b, a, epoch: 2, id: "b")
        var held = [try ca.reserveOK("JACKET", 1, ttlMs: 600_000).token]
        // b's journal holds the same records as a's, from seq 1: past a's end plus 4 KiB, b's writes fail.
        let bytes = try #require(try ca.stats()["journal.bytes"])
        try FileSizeLimit.set(pid: b.pid, bytes: bytes + 4096 + 37)
        let shop = try RawClient(port: a.port, timeout: 3)
        let deadline = monotonicSeconds() + 30
        while monotonicSeconds() < deadline, let r = try? shop.reserve("JACKET", 1, ttlMs: 600_000) {
            guard let reservation = r.reservation else {
                Issue.record("a reserve answered \(r.status.name)")
                break
            }
            held.append(reservation.token)
        }
        let stopped = "standby: cannot keep the primary's journal, replication stopped"
        try Self.eventually(10, "b's journal failure logged: \(b.diagnostics)") { b.stderrText.contains(stopped) }
        #expect(held.count > 20, "records were streamed before the failure: \(held.count)")
        #expect(b.stderrText.components(separatedBy: stopped).count == 2, "one critical line: \(b.diagnostics)")
        #expect((try? shop.reserve("JACKET", 1))?.reservation == nil, "no answer on the word of a standby that cannot write")

        a.kill()
        b.kill()
        let b2 = try Self.node("b", dataDir: dir.path("b"), extra: ["--min-insync", "0"])
        let sb = try b2.connect()
        _ = try Self.role(sb, RoleChange(role: .primary, epoch: 3))
        let info = try sb.info("JACKET")
        #expect(info.reserved >= UInt64(held.count) && info.onHand == info.available + info.reserved + info.confirmed, "\(info)")
        var confirmed = 0
        for t in held where try sb.confirm(t).status == .ok { confirmed += 1 }
        #expect(confirmed == held.count, "every acknowledged hold is in the standby's journal")
    }

    @Test func aBadAckEndsTheStream() throws {
        let dir = try TempDirectory(prefix: "repl-badack")
        defer { dir.remove() }
        let a = try Self.node("a", dataDir: dir.path("a"), extra: ["--min-insync", "0"])
        _ = try Self.role(a.connect(), RoleChange(role: .primary, epoch: 2))
        for bad in [ReplAck(epoch: 3, durable: 1), ReplAck(epoch: 2, durable: 99)] {
            let f = try a.connect()
            let opened = try f.request(.replHello(ReplHello(fingerprint: try Self.fingerprintOf(a), highestEpoch: 0,
                                                            lastEpoch: 0, lastSeq: 0, node: ShortBytes("f")!,
                                                            cluster: ShortBytes("show")!)))
            #expect(opened.status == .ok)
            var w = ByteWriter()
            RequestCodec.encode(.replAck(bad), requestID: opened.requestID, into: &w)
            try f.send(w.bytes)
            let drain = try f.readUntilClosed(timeout: 5)
            #expect(drain.responses.contains { $0.status == .malformed }, "\(bad): \(drain.responses.map(\.status))")
            try Self.eventually(5, "the link is gone") { try Self.status(a.connect()).standbys.isEmpty }
        }
    }

    /// The fingerprint a node of these settings sends in its REPL_HELLO, from the node's start log
    /// line (this test target does not link the journal module that computes it).
    static func fingerprintOf(_ p: StockdProcess) throws -> UInt64 {
        guard let line = p.stderrText.split(separator: "\n").first(where: { $0.contains("fingerprint=") }),
              let value = line.split(whereSeparator: { $0 == " " || $0 == "," }).first(where: { $0.hasPrefix("fingerprint=") }),
              let n = UInt64(value.dropFirst("fingerprint=".count), radix: 16) else {
            throw HarnessError("no fingerprint in the start log: \(p.diagnostics)")
        }
        return n
    }
}
