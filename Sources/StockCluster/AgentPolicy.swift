import StockProtocol

// # What an agent decides (docs/replication.md §3–§5)
//
// Pure functions of what the agent read from etcd and from its stockd, so
// each rule is tested on its own with made-up inputs and no clock but the
// one passed in. The agent (stock-agent) only carries them out.

/// The self-fencing deadline after a lease renewal (§3): a primary may
/// commit until `sent + TTL − margin`, where `sent` is when the renewal was
/// *sent* (etcd starts the new TTL no earlier than it receives it) and the
/// margin covers clock-rate drift between this machine and etcd's.
public enum Fencing {
    public static let minimumMarginNs: UInt64 = 100_000_000

    public static func deadline(sentNs: UInt64, ttlSeconds: Int64) -> UInt64 {
        precondition(ttlSeconds >= 1, "etcd grants leases of at least a second")
        let ttl = UInt64(ttlSeconds) * 1_000_000_000
        let margin = max(minimumMarginNs, ttl / 10)
        precondition(margin < ttl, "the margin leaves part of the lease")
        return sentNs + ttl - margin
    }
}

/// Who may campaign for the leader key (§5 step 2).
public enum CampaignPolicy {
    /// A node campaigns only when no leader holds the key and it is in the
    /// ISR — or no ISR was ever written (a new cluster: any node may start it).
    public static func mayCampaign(node: String, leaderPresent: Bool, isr: ISRRecord?) -> Bool {
        guard !leaderPresent else { return false }
        guard let isr else { return true }
        return isr.members.contains(node)
    }

    /// The ISR a new primary starts its term with: the previous one without
    /// itself. Its stockd waits for all of them (ISR_SET) before the agent
    /// writes the record, so the ISR in etcd never holds a node the primary
    /// does not wait for (§4); a member that does not come back is removed
    /// after `--repl-timeout`, like any lagging one.
    public static func startingISR(node: String, previous: ISRRecord?) -> [String] {
        (previous?.members ?? []).filter { $0 != node }
    }
}

/// One change of the in-sync set, made by the primary's agent (§4).
public enum ISRChange: Sendable, Equatable {
    /// Out of the ISR in etcd first, then out of the wait set (ISR_SET).
    case remove(String)
    /// Into the ISR in etcd (stockd already waits for it: it joined the wait set when it caught up).
    case add(String)
    /// Out of the wait set only: it never made it into the ISR in etcd.
    case dropFromWaitSet(String)
}

public enum ISRPolicy {
    /// The next change, given the ISR in etcd and the standbys stockd lists
    /// (CLUSTER_STATUS: the connected ones and every wait-set member):
    /// removals first — a member behind by more than `replTimeoutMs`, or one
    /// stockd no longer lists, holds every commit back — then additions.
    /// One change per call: each is its own guarded etcd transaction.
    public static func next(isr: [String], standbys: [StandbyStatus], replTimeoutMs: UInt64) -> ISRChange? {
        func lagging(_ s: StandbyStatus) -> Bool { UInt64(s.lagMs) > replTimeoutMs }
        let listed = Dictionary(standbys.map { ($0.node.string, $0) }, uniquingKeysWith: { a, _ in a })
        for m in isr {
            guard let s = listed[m], s.inWaitSet, !lagging(s) else { return .remove(m) }
        }
        for s in standbys where s.inWaitSet && lagging(s) && !isr.contains(s.node.string) {
            return .dropFromWaitSet(s.node.string)
        }
        for s in standbys where s.inWaitSet && !lagging(s) && !isr.contains(s.node.string) {
            return .add(s.node.string)
        }
        return nil
    }

    /// The wait set after `change`, from the one stockd reported.
    public static func waitSet(after change: ISRChange, standbys: [StandbyStatus]) -> [String] {
        let current = standbys.filter(\.inWaitSet).map(\.node.string)
        switch change {
        case .remove(let m), .dropFromWaitSet(let m): return current.filter { $0 != m }
        case .add: return current
        }
    }
}
