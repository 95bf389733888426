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

    /// Whether a node that may campaign waits because the term that just ended was handed over to
    /// another node (§5, deliberate handover): the handover names that term (no later ISR exists,
    /// whose epoch would be above it) and someone else, and this agent has seen it for less than
    /// `windowNs`. After the window anyone in the ISR may campaign (the named node may be dead).
    public static func yieldsToHandover(node: String, isr: ISRRecord?, handover: HandoverRecord?,
                                        seenForNs: UInt64, windowNs: UInt64) -> Bool {
        guard let handover, !handover.to.isEmpty, handover.to != node else { return false }
        guard let isr, isr.epoch == handover.epoch else { return false }  // a later term began: stale
        return seenForNs < windowNs
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

/// The primary's side of a deliberate handover (§5).
public enum HandoverPolicy {
    /// The node to hand the term to, or why there is none: a requested node must be in the ISR, in
    /// stockd's wait set and not lagging; with none requested, the ISR member furthest ahead.
    public static func target(requested: String, isr: [String], standbys: [StandbyStatus],
                              replTimeoutMs: UInt64) -> Result<String, HandoverRefusal> {
        let eligible = standbys.filter { isr.contains($0.node.string) && $0.inWaitSet && UInt64($0.lagMs) <= replTimeoutMs }
        if !requested.isEmpty {
            guard isr.contains(requested) else { return .failure(HandoverRefusal("\(requested) is not in the in-sync set \(isr)")) }
            guard eligible.contains(where: { $0.node.string == requested }) else {
                return .failure(HandoverRefusal("\(requested) is not caught up (not in the wait set, or lagging)"))
            }
            return .success(requested)
        }
        guard let best = eligible.max(by: { ($0.acked, $1.node.string) < ($1.acked, $0.node.string) }) else {
            return .failure(HandoverRefusal("no standby is in sync"))
        }
        return .success(best.node.string)
    }

    /// Whether the drained primary may give up its key: it takes no more changes (demoted), every
    /// record it wrote is committed, and the target has acknowledged all of them — so the target
    /// holds every acknowledged change and the answers in flight at the handover were all sent.
    public static func drained(written: UInt64, committed: UInt64, target: String, standbys: [StandbyStatus]) -> Bool {
        guard committed >= written else { return false }
        return standbys.contains { $0.node.string == target && $0.acked >= written }
    }
}

/// Why a handover was not made.
public struct HandoverRefusal: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
