import Atomics
import Glibc

/// The standbys' side of a primary's commit point (docs/replication.md §2, §4):
/// `committed = min(local durable, acked(s) for every s in the wait set)`,
/// frozen once the fencing deadline (FENCE) has passed.
///
/// The wait set only grows here on its own — a standby that has caught up is
/// added (`caughtUp`); safe, since waiting for more copies never acknowledges
/// anything earlier. It shrinks only by `replace` (ISR_SET), which the agent
/// sends after it removed the standby from the ISR in etcd, so the ISR in etcd
/// is always a subset of the wait set. A standby in the wait set that
/// disconnects keeps its last ack: commits wait for it until the agent acts.
///
/// Touched per journal round and per ack, never per request: one mutex.
final class CommitGate: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Node ids the primary waits for (at most `Limits.maxStandbys`).
    private var waitSet: [String] = []
    /// The last durable seq each standby acknowledged (connected or not), and when it last moved.
    private var acked: [String: UInt64] = [:]
    private var movedNs: [String: UInt64] = [:]
    /// CLOCK_MONOTONIC ns after which nothing more may be committed (FENCE); .max: never fenced.
    let fenceUntilNs = ManagedAtomic<UInt64>(.max)
    /// The wait set's size, for the `--min-insync` check on every state change (one relaxed load).
    let waitCount = ManagedAtomic<Int>(0)

    init() { pthread_mutex_init(lock, nil) }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    /// The highest seq the standbys allow (.max with an empty wait set), or nil once fenced.
    func commitLimit() -> UInt64? {
        if fenced { return nil }
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        var limit = UInt64.max
        for node in waitSet { limit = min(limit, acked[node] ?? 0) }
        return limit
    }

    /// The fencing deadline has passed: this primary may acknowledge nothing more.
    var fenced: Bool {
        let until = fenceUntilNs.load(ordering: .acquiring)
        return until != .max && JournalPipeline.nanos() >= until
    }

    /// A standby's ack (only forward: an ack below its last one is a protocol error the link refused).
    func ack(_ node: String, durable: UInt64) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        precondition(durable >= acked[node] ?? 0, "ack of \(node) went back to \(durable)")
        if durable > acked[node] ?? 0 || movedNs[node] == nil { movedNs[node] = JournalPipeline.nanos() }
        acked[node] = durable
    }

    /// A connected standby caught up with the commit point (StandbyLink judges): it joins the
    /// wait set. Returns whether it was added now.
    @discardableResult
    func admit(_ node: String) -> Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        guard !waitSet.contains(node) else { return false }
        precondition(waitSet.count < 16, "wait set beyond the standby limit")
        waitSet.append(node)
        waitCount.store(waitSet.count, ordering: .releasing)
        return true
    }

    /// ISR_SET: the wait set becomes `nodes` (the agent changed the ISR in etcd first).
    func replace(_ nodes: [String]) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        waitSet = nodes
        waitCount.store(nodes.count, ordering: .releasing)
    }

    func isWaitingFor(_ node: String) -> Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return waitSet.contains(node)
    }

    /// What the gate knows of `node`: its last ack, when that last moved (0: never acked), whether commits wait for it.
    func view(_ node: String) -> (acked: UInt64, movedNs: UInt64, waiting: Bool) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return (acked[node] ?? 0, movedNs[node] ?? 0, waitSet.contains(node))
    }

    /// The wait set now.
    func members() -> [String] {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return waitSet
    }
}
