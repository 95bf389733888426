import Atomics
import Glibc
import Logging
import StockCore
import StockJournal
import StockProtocol

/// A node of a replicated cluster (docs/replication.md): its role, its
/// epoch, and what each role runs — a standby its `StandbyReceiver`, a
/// primary its `ReplicationHub` and `CommitGate`.
///
/// A clustered node starts as a standby that follows nobody (its journal
/// recovered without expiring anything: the primary decides expiries) and
/// waits for ROLE from its agent. Role changes are serialized by `lock` and
/// run on the thread of the worker that received ROLE (StockServer+Cluster).
final class ClusterNode: @unchecked Sendable {
    let config: ClusterConfig
    let directory: String
    let logger: Logger
    /// NodeRole raw value: standby until promoted; never back to standby in one process.
    let role = ManagedAtomic<UInt8>(NodeRole.standby.rawValue)
    /// The epoch this node acts in: its primary's (standby) or its own term's (primary).
    let epoch: ManagedAtomic<UInt64>
    /// The standbys' side of the commit point (used once primary).
    let gate = CommitGate()
    let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    // Under `lock`:
    private(set) var primaryAddress = ShortBytes.empty
    var receiver: StandbyReceiver?
    /// The journal while no receiver holds it (standby only; nil once primary).
    var idleLog: ReplicaLog?
    /// The primary's epoch history (its journal's term start records, its own last).
    var history: [TermStart] = []
    var hub: ReplicationHub?
    /// Set while ROLE primary runs (one promotion at a time, never two).
    let promoting = ManagedAtomic<Bool>(false)
    /// The journal a promotion created, for the workers to attach (under `lock`).
    var promotedJournal: JournalPipeline?
    /// When this node became primary (CLOCK_MONOTONIC ns; under `lock`).
    var promotedNs: UInt64 = 0
    /// Demoted by ROLE standby while primary: changes are refused until the process restarts.
    let demoted = ManagedAtomic<Bool>(false)

    /// The journal's segment size and the core's fate memory (a reopened ReplicaLog needs them), and the
    /// feed's retention (`--feed-retention`): a truncation keeps covered segments as startup does.
    let segmentBytes: Int64
    let fateLimit: Int
    let retainBytes: Int64

    init(config: ClusterConfig, directory: String, log: ReplicaLog, segmentBytes: Int64, fateLimit: Int,
         retainBytes: Int64, logger: Logger) throws(ConfigError) {
        self.config = config
        self.directory = directory
        self.segmentBytes = segmentBytes
        self.fateLimit = fateLimit
        self.retainBytes = retainBytes
        self.logger = logger
        idleLog = log
        do { epoch = ManagedAtomic(try NodeEpoch.read(directory: directory)) } catch {
            throw ConfigError("--data-dir \(directory): \(error)")
        }
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    var currentRole: NodeRole { NodeRole(rawValue: role.load(ordering: .acquiring)) ?? .standby }

    /// NOT_PRIMARY's detail: the epoch and the primary this node knows.
    func notPrimary() -> Failure {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        let known = currentRole == .primary ? ShortBytes.empty : primaryAddress
        return Failure(.notPrimary, .notPrimary(epoch: epoch.load(ordering: .acquiring), primary: known))
    }

    /// Persists `e` as the highest epoch seen; STALE_EPOCH when the node has seen a higher one.
    func raiseEpoch(to e: UInt64) throws(Failure) {
        let stored: UInt64
        do { stored = try NodeEpoch.raise(directory: directory, to: e) } catch {
            logger.critical("cluster: cannot store epoch \(e): \(error)")
            throw Failure(.storageFailed)
        }
        guard stored == e else { throw Failure(.staleEpoch, .staleEpoch(epoch: stored)) }
    }

    /// ROLE standby on a standby: (re)connects to `primary` in epoch `e`.
    /// `written`: a primary's last written seq (the answer if this demotes it).
    func follow(_ primary: ShortBytes, epoch e: UInt64, written: UInt64) throws(Failure) -> RoleReply {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        guard currentRole == .standby, !promoting.load(ordering: .acquiring) else {
            return try demote(primary, epoch: e, written: written)
        }
        try raiseEpoch(to: e)
        epoch.store(e, ordering: .releasing)
        let log = receiver?.stop() ?? idleLog
        guard let log else { preconditionFailure("a standby without its journal") }
        idleLog = nil
        primaryAddress = primary
        let r = StandbyReceiver(config: config, directory: directory, primary: primary.string, log: log, logger: logger,
                                truncateAndReopen: { [directory, segmentBytes, fateLimit, retainBytes] old, seq in
                                    try ClusterNode.truncate(old, through: seq, directory: directory,
                                                             segmentBytes: segmentBytes, fateLimit: fateLimit,
                                                             retainBytes: retainBytes)
                                })
        receiver = r
        r.start()
        logger.notice("cluster: standby of \(primary.string) in epoch \(e)")
        return RoleReply(role: .standby, epoch: e, lastSeq: log.durable)
    }

    /// ROLE standby on a primary: stop acknowledging; the node must be restarted to rejoin (§6).
    private func demote(_ primary: ShortBytes, epoch e: UInt64, written: UInt64) throws(Failure) -> RoleReply {
        guard currentRole == .primary else { throw Failure(.busy) }  // a promotion is running
        try raiseEpoch(to: e)
        demoted.store(true, ordering: .releasing)
        primaryAddress = primary
        logger.warning("cluster: demoted in epoch \(e) (primary now \(primary.string)): changes are refused; restart this node to rejoin as a standby")
        return RoleReply(role: .standby, epoch: e, lastSeq: written)
    }

    /// Offline truncation for TRUNCATE_TO: close, cut, recover (nothing expired), reopen.
    /// `retainBytes` as at startup: the snapshot written here must not take the covered segments with it,
    /// or a later truncation below a snapshot written after this one would find nothing to rebuild from
    /// (FailoverTests' ten-round drill found it: finish with no retention deleted them all).
    static func truncate(_ log: ReplicaLog, through seq: UInt64, directory: String, segmentBytes: Int64,
                         fateLimit: Int, retainBytes: Int64) throws -> ReplicaLog {
        try log.close()
        _ = try Truncation.run(dataDirectory: directory, keepingThrough: seq)
        let result = try Recovery.run(dataDirectory: directory, nowWallMs: 0, fateLimit: fateLimit)
        try Recovery.finish(result, dataDirectory: directory, nowWallMs: JournalPipeline.wallNanos() / 1_000_000,
                            retainBytes: retainBytes)
        return try ReplicaLog(directory: directory, state: result.state, segmentBytes: segmentBytes, fateLimit: fateLimit,
                              lastTimeMs: result.lastTimeMs)
    }

    /// Server stop: the receiver or the sender ends; a standby's journal is synced and closed.
    func stop() {
        pthread_mutex_lock(lock)
        let r = receiver
        let h = hub
        receiver = nil
        pthread_mutex_unlock(lock)
        h?.stop()
        guard let log = r?.stop() ?? takeIdleLog() else { return }
        do { try log.close() } catch { logger.error("cluster: closing the standby's journal failed: \(error)") }
    }

    private func takeIdleLog() -> ReplicaLog? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        let log = idleLog
        idleLog = nil
        return log
    }

    /// The replication sender (nil until primary), read under the lock (STATS runs on any worker).
    var replicationHub: ReplicationHub? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return hub
    }

    /// A standby's durable end (its receiver's, or its idle journal's).
    func standbyDurable() -> UInt64 {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return receiver?.durable.load(ordering: .acquiring) ?? idleLog?.durable ?? 0
    }

    /// The standbys of this primary for CLUSTER_STATUS: every connected one and every wait-set
    /// member (a disconnected member still holds commits back: its agent must see it). `lag_ms`
    /// is 0 for a standby whose ack reached `durable`; else, for a connected one, how long ago the
    /// oldest round it has not acked was sent — not since its ack last moved, which after an idle
    /// spell is long ago although it answers the first new round within a millisecond (the bench
    /// saw caught-up standbys leave the ISR at every traffic onset that way); for a disconnected
    /// member, since its ack last moved (or since this primary began).
    func standbys(durable: UInt64) -> [StandbyStatus] {
        pthread_mutex_lock(lock)
        let hub = self.hub
        let since = promotedNs
        pthread_mutex_unlock(lock)
        guard let hub else { return [] }
        let now = JournalPipeline.nanos()
        let links = Dictionary(hub.linkStatus().map { ($0.node, $0.status) }, uniquingKeysWith: { a, _ in a })
        let nodes = Set(links.keys).union(gate.members()).sorted()
        return nodes.prefix(Limits.maxStandbys).map { node in
            let v = gate.view(node)
            let lagNs: UInt64
            if v.acked >= durable {
                lagNs = 0
            } else if let link = links[node] {
                lagNs = link.oldestUnackedNs == 0 ? 0 : now &- max(link.oldestUnackedNs, since)
            } else {
                lagNs = now &- max(v.movedNs, since)
            }
            return StandbyStatus(node: ShortBytes(node) ?? .empty, acked: v.acked,
                                 lagMs: UInt32(min(UInt64(UInt32.max), lagNs / 1_000_000)), inWaitSet: v.waiting)
        }
    }
}
