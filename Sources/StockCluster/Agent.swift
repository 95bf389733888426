import Foundation
import StockProtocol
#if canImport(Glibc)
import Glibc
#endif

/// What an agent is configured with (stock-agent's flags).
public struct AgentConfig: Sendable {
    public var cluster: String
    public var node: String
    /// Where this agent reaches its stockd (loopback admin connection).
    public var stockd: String
    /// Where other nodes and clients reach that stockd (the leader and member keys carry it).
    public var advertise: String
    public var etcd: [String]
    public var leaseTTLSeconds: Int64 = 3
    /// A standby behind this long is removed from the ISR (stockd's `--repl-timeout`).
    public var replTimeoutMs: UInt64 = 1000
    /// How often the agent looks at etcd and at its stockd.
    public var pollMs: Int = 100
    /// An admin credential of stockd's auth file (empty without one).
    public var credential: [UInt8] = []
    /// etcd and stockd calls give up after this long.
    public var callTimeoutMs: Int = 1000
    /// How long the other standbys leave the leader key to the node a deliberate handover names
    /// (after that any ISR member campaigns: the named node may have died meanwhile).
    public var handoverWindowMs: Int = 6000
    /// How long a handing-over primary waits for its last records to be committed and on the target.
    public var drainTimeoutMs: Int = 2000

    public init(cluster: String, node: String, stockd: String, advertise: String, etcd: [String]) {
        self.cluster = cluster
        self.node = node
        self.stockd = stockd
        self.advertise = advertise
        self.etcd = etcd
    }
}

/// One node's agent (docs/replication.md §5, §6): holds a lease in etcd,
/// campaigns for the leader key when the primary's lease is gone and this
/// node is in the ISR, drives its stockd with ROLE, renews the fencing
/// deadline with FENCE after every renewal, and — as the primary's agent —
/// keeps the ISR in etcd a subset of the wait set (ISRPolicy).
///
/// A plain loop (`step` every `pollMs`): each step reads what it needs and
/// makes at most one change, so a failure anywhere is retried by the next
/// step from fresh reads.
public final class Agent {
    public let config: AgentConfig
    let keys: ClusterKeys
    let etcd: EtcdClient
    let log: (String) -> Void
    private var admin: StockdAdmin?
    private var lease: Int64 = 0
    private var lastRenewalNs: UInt64 = 0
    /// The term this node's stockd was last told about (0: none yet), and its role in it.
    private(set) var epoch: Int64 = 0
    private(set) var isPrimary = false
    private var followed = ""
    private var stockdDownSinceNs: UInt64 = 0
    /// The handover record this agent last saw (by its mod revision) and since when.
    private var handoverSeen: (revision: Int64, sinceNs: UInt64) = (0, 0)

    public init(config: AgentConfig, log: @escaping (String) -> Void) throws(EtcdError) {
        self.config = config
        keys = ClusterKeys(cluster: config.cluster)
        etcd = try EtcdClient(endpoints: config.etcd, timeoutMs: config.callTimeoutMs)
        self.log = log
    }

    /// Runs until `stop` returns true (checked every step).
    public func run(until stop: () -> Bool) {
        while !stop() {
            let t0 = Self.nanos()
            step()
            let spent = Int((Self.nanos() - t0) / 1_000_000)
            if spent < config.pollMs { usleep(UInt32((config.pollMs - spent) * 1000)) }
        }
        if lease != 0 { try? etcd.revoke(lease) }  // hand over now rather than after the TTL
    }

    /// One look at etcd and stockd.
    public func step() {
        guard let admin = connectedStockd() else { return }
        do {
            try renewLease(admin)
            let view = ClusterView(try etcd.get(prefix: keys.prefix).kvs, keys: keys)  // one request per step
            if let kv = view.leader, let leader = ClusterJSON.decode(LeaderRecord.self, kv.value) {
                if leader.node == config.node && kv.lease == lease {
                    try serveAsPrimary(admin, epoch: kv.createRevision, view: view)
                } else {
                    try follow(admin, leader: leader, epoch: kv.createRevision)
                }
            } else {
                try campaign(admin, view: view)
            }
        } catch let e as EtcdError {
            log("etcd: \(e)")
        } catch let e as StockdAdmin.Failure {
            log("stockd: \(e)")
            self.admin = nil
        } catch {
            log("\(error)")
        }
    }

    // MARK: steps

    private func connectedStockd() -> StockdAdmin? {
        if let admin { return admin }
        do {
            let a = try StockdAdmin(address: config.stockd, credential: config.credential, timeoutMs: config.callTimeoutMs)
            admin = a
            stockdDownSinceNs = 0
            return a
        } catch {
            let now = Self.nanos()
            if stockdDownSinceNs == 0 { stockdDownSinceNs = now }
            // stockd is gone: give the lease back at once, so a standby takes over without waiting for the TTL.
            if lease != 0 && now - stockdDownSinceNs > UInt64(config.leaseTTLSeconds) * 500_000_000 {
                log("stockd unreachable (\(error)): revoking our lease")
                try? etcd.revoke(lease)
                lease = 0
                isPrimary = false
            }
            return nil
        }
    }

    /// A lease of our own, renewed every third of its TTL; a primary's stockd gets the new deadline.
    private func renewLease(_ admin: StockdAdmin) throws {
        let now = Self.nanos()
        if lease == 0 {
            let granted = try etcd.grantLease(ttlSeconds: Int(config.leaseTTLSeconds))
            lease = granted.id
            lastRenewalNs = now
            // Where this node is reached, for a primary handing its term over to it (it names the new
            // primary's address to clients meanwhile); gone with the lease.
            let me = ClusterJSON.encode(MemberRecord(address: config.advertise, durable: 0))
            _ = try etcd.put(keys.member(config.node), me, lease: lease)
            return
        }
        guard now - lastRenewalNs >= UInt64(config.leaseTTLSeconds) * 1_000_000_000 / 3 else { return }
        let sent = Self.nanos()
        let ttl = try etcd.keepAlive(lease)
        guard ttl > 0 else {
            log("our lease expired")
            lease = 0
            if isPrimary { log("no longer primary: stockd stops acknowledging at its fencing deadline") }
            isPrimary = false
            return
        }
        lastRenewalNs = sent
        if isPrimary { _ = try admin.request(.fence(untilNs: Fencing.deadline(sentNs: sent, ttlSeconds: ttl))) }
    }

    private func campaign(_ admin: StockdAdmin, view: ClusterView) throws {
        guard lease != 0 else { return }
        let isrKV = view.isr
        let isr = view.isrRecord
        guard CampaignPolicy.mayCampaign(node: config.node, leaderPresent: false, isr: isr) else { return }
        if yieldsToHandover(isr: isr, view: view) { return }
        let me = ClusterJSON.encode(LeaderRecord(node: config.node, address: config.advertise))
        let guardISR: EtcdCompare = .modRevision(key: keys.isr, equals: isrKV?.modRevision ?? 0)
        let result = try etcd.txn(compare: [.createRevision(key: keys.leader, equals: 0), guardISR],
                                  success: [.put(key: keys.leader, value: me, lease: lease)])
        guard result.succeeded else { return }
        let e = result.revision
        log("won the leader key: epoch \(e)")
        try promote(admin, epoch: e, previous: isr)
    }

    /// ROLE primary, then the term's first ISR: its stockd waits for the previous members first (§4).
    private func promote(_ admin: StockdAdmin, epoch e: Int64, previous: ISRRecord?) throws {
        // The fencing deadline first: from its first change on, stockd commits only inside the lease.
        _ = try admin.request(.fence(untilNs: Fencing.deadline(sentNs: lastRenewalNs, ttlSeconds: config.leaseTTLSeconds)))
        let answer = try admin.request(.role(RoleChange(role: .primary, epoch: UInt64(e))))
        guard answer.status == .ok else {
            log("stockd refused to become primary of epoch \(e): \(answer.status.name) \(answer.body); giving the key back")
            try? etcd.revoke(lease)
            lease = 0
            return
        }
        epoch = e
        isPrimary = true
        lastRenewalNs = 0  // renew (and FENCE) on the next step
        let members = CampaignPolicy.startingISR(node: config.node, previous: previous)
        let set = try admin.request(.isrSet(ISRSet(epoch: UInt64(e), nodes: members.compactMap { ShortBytes($0) })))
        guard set.status == .ok else { throw StockdAdmin.Failure("ISR_SET answered \(set.status.name)") }
        try writeISR(members, epoch: e)
    }

    private func follow(_ admin: StockdAdmin, leader: LeaderRecord, epoch e: Int64) throws {
        isPrimary = false
        guard e != epoch || leader.address != followed else { return }
        let answer = try admin.request(.role(RoleChange(role: .standby, epoch: UInt64(e), primary: ShortBytes(leader.address) ?? .empty)))
        guard answer.status == .ok else {
            log("stockd refused to follow \(leader.node) at \(leader.address) in epoch \(e): \(answer.status.name) \(answer.body)")
            return
        }
        epoch = e
        followed = leader.address
        log("following \(leader.node) at \(leader.address), epoch \(e)")
    }

    /// The primary's agent: one ISR change per step, each guarded by this term's epoch.
    private func serveAsPrimary(_ admin: StockdAdmin, epoch e: Int64, view: ClusterView) throws {
        if !isPrimary || epoch != e {
            // We hold the key (a restart of the agent alone): make sure stockd is primary of it.
            try promote(admin, epoch: e, previous: view.isrRecord)
            return
        }
        let status = try admin.clusterStatus()
        guard status.role == .primary, status.epoch == UInt64(e) else {
            // Our stockd restarted under us (it starts as a standby): it cannot resume this term.
            log("stockd is \(status.role.name) of epoch \(status.epoch), not primary of \(e): giving the key back")
            try? etcd.revoke(lease)
            lease = 0
            isPrimary = false
            return
        }
        let isrKV = view.isr
        let isr = view.isrRecord?.members ?? []
        if let (request, revision) = Self.handoverRequest(view), request.epoch == e {
            try handOver(admin, request, revision: revision, isr: isr, status: status, epoch: e, view: view)
            return
        }
        guard let change = ISRPolicy.next(isr: isr, standbys: status.standbys, replTimeoutMs: config.replTimeoutMs) else {
            return
        }
        switch change {
        case .remove(let m):
            guard try writeISR(isr.filter { $0 != m }, epoch: e, expectedModRevision: isrKV?.modRevision ?? 0) else { return }
            log("\(m) out of the ISR")
            try setWaitSet(admin, ISRPolicy.waitSet(after: change, standbys: status.standbys), epoch: e)
        case .dropFromWaitSet(let m):
            log("\(m) out of the wait set")
            try setWaitSet(admin, ISRPolicy.waitSet(after: change, standbys: status.standbys), epoch: e)
        case .add(let m):
            if try writeISR(isr + [m], epoch: e, expectedModRevision: isrKV?.modRevision ?? 0) { log("\(m) into the ISR") }
        }
    }

    // MARK: deliberate handover (stockctl cluster failover)

    private static func handoverRequest(_ view: ClusterView) -> (HandoverRecord, Int64)? {
        guard let kv = view.handover, let record = ClusterJSON.decode(HandoverRecord.self, kv.value) else { return nil }
        return (record, kv.modRevision)
    }

    /// Another node is named by a handover of the term that just ended: leave it the key for a while.
    private func yieldsToHandover(isr: ISRRecord?, view: ClusterView) -> Bool {
        guard let (request, revision) = Self.handoverRequest(view) else { return false }
        let now = Self.nanos()
        if handoverSeen.revision != revision { handoverSeen = (revision, now) }
        let yields = CampaignPolicy.yieldsToHandover(node: config.node, isr: isr, handover: request,
                                                     seenForNs: now - handoverSeen.sinceNs,
                                                     windowNs: UInt64(config.handoverWindowMs) * 1_000_000)
        return yields
    }

    /// The primary hands its term over: stop taking changes (ROLE standby demotes stockd; what is in
    /// flight still commits), wait until every record is committed and on the target, then give the
    /// leader key back. The target campaigns at once; the others wait out `handoverWindowMs`.
    private func handOver(_ admin: StockdAdmin, _ request: HandoverRecord, revision: Int64, isr: [String],
                          status: ClusterStatus, epoch e: Int64, view: ClusterView) throws {
        let target: String
        switch HandoverPolicy.target(requested: request.to, isr: isr, standbys: status.standbys,
                                     replTimeoutMs: config.replTimeoutMs) {
        case .failure(let why):
            log("handover of epoch \(e) refused: \(why)")
            // Withdrawn, so stockctl sees the refusal (the key gone, the leader unchanged) and no later step retries it.
            _ = try etcd.txn(compare: [.modRevision(key: keys.handover, equals: revision)], success: [.delete(key: keys.handover)])
            return
        case .success(let t): target = t
        }
        if request.to.isEmpty {  // name the target, so the other standbys leave it the key
            let named = ClusterJSON.encode(HandoverRecord(epoch: e, to: target))
            guard try etcd.txn(compare: [.modRevision(key: keys.handover, equals: revision)],
                               success: [.put(key: keys.handover, value: named)]).succeeded else { return }
        }
        let member = view.members[target].flatMap { ClusterJSON.decode(MemberRecord.self, $0.value) }
        let address = member.flatMap { ShortBytes($0.address) } ?? .empty
        let demoted = try admin.request(.role(RoleChange(role: .standby, epoch: UInt64(e), primary: address)))
        guard demoted.status == .ok else { throw StockdAdmin.Failure("ROLE standby for the handover answered \(demoted.status.name)") }
        log("handing epoch \(e) over to \(target): taking no more changes")
        let deadline = Self.nanos() + UInt64(config.drainTimeoutMs) * 1_000_000
        var stable = 0, last: UInt64 = 0
        while Self.nanos() < deadline, stable < 2 {
            let s = try admin.clusterStatus()
            let drained = HandoverPolicy.drained(written: s.durable, committed: s.committed, target: target, standbys: s.standbys)
            stable = drained && s.durable == last ? stable + 1 : (drained ? 1 : 0)
            last = s.durable
            if stable < 2 { usleep(10_000) }
        }
        if stable < 2 { log("handover: \(target) not caught up within \(config.drainTimeoutMs) ms; giving the key back anyway") }
        try? etcd.revoke(lease)
        lease = 0
        isPrimary = false
        log("handed epoch \(e) over to \(target) (durable \(last)); restart this node's stockd to rejoin as a standby")
    }

    private func setWaitSet(_ admin: StockdAdmin, _ nodes: [String], epoch e: Int64) throws {
        let r = try admin.request(.isrSet(ISRSet(epoch: UInt64(e), nodes: nodes.compactMap { ShortBytes($0) })))
        guard r.status == .ok else { throw StockdAdmin.Failure("ISR_SET answered \(r.status.name) \(r.body)") }
    }

    /// Writes the ISR if the leader key is still ours at `epoch` (and the ISR unchanged since read).
    @discardableResult
    private func writeISR(_ members: [String], epoch e: Int64, expectedModRevision: Int64? = nil) throws -> Bool {
        var compare: [EtcdCompare] = [.createRevision(key: keys.leader, equals: e)]
        if let r = expectedModRevision { compare.append(.modRevision(key: keys.isr, equals: r)) }
        let value = ClusterJSON.encode(ISRRecord(epoch: e, members: members))
        return try etcd.txn(compare: compare, success: [.put(key: keys.isr, value: value)]).succeeded
    }

    static func nanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
