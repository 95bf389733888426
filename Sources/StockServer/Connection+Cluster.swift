import StockCore
import StockJournal
import StockProtocol

/// The cluster opcodes on a worker's connection (PROTOCOL.md §10): the
/// checks a cluster node makes before any request, REPL_HELLO's handshake,
/// FENCE, ISR_SET and CLUSTER_STATUS. ROLE is StockServer+Cluster.
extension Connection {
    /// Why a cluster node refuses this request now, or nil.
    func clusterRefusal(_ opcode: UInt8, _ facts: OpcodeAccess) -> Failure? {
        guard let node = worker.server.cluster else { return nil }
        let needsPrimary = facts.changesState || opcode == Opcode.stockGet.rawValue
            || opcode == Opcode.stockList.rawValue || opcode == Opcode.subscribe.rawValue
        guard needsPrimary else { return nil }
        if !worker.isPrimary || node.demoted.load(ordering: .relaxed) { return node.notPrimary() }
        guard facts.changesState, let gate = worker.gate else { return nil }
        if gate.fenced { return node.notPrimary() }  // its lease may have passed to another node
        let inSync = gate.waitCount.load(ordering: .relaxed)
        let required = node.config.minInsync
        if inSync < required {
            return Failure(.notEnoughReplicas, .notEnoughReplicas(inSync: UInt8(inSync), required: UInt8(required)))
        }
        return nil
    }

    /// REPL_HELLO on a primary: the handshake of docs/replication.md §3; on OK the socket moves to
    /// the replication thread once the answer is out (`replRequest`).
    func acceptStandby(_ h: ReplHello, requestID: UInt32) throws(Failure) -> ReplStart {
        guard let node = worker.server.cluster else { throw Failure(.configMismatch, .configMismatch(field: Self.clusterField)) }
        let refusal = Self.handshakeRefusal(h, node: node, isPrimary: worker.isPrimary)
        if let refusal {
            worker.server.logger.warning("replication: refused standby \(h.node.string): \(refusal.status.name) \(refusal.detail)")
            throw refusal
        }
        guard let journal = worker.journal, let hub = node.hub else { throw node.notPrimary() }
        let e = node.epoch.load(ordering: .acquiring)
        let written = journal.written.load(ordering: .acquiring)
        let decision = ReplicationHandshake.decide(primaryEpoch: e, history: node.history, primaryLastSeq: written,
                                                   highestEpoch: h.highestEpoch, lastEpoch: h.lastEpoch, lastSeq: h.lastSeq)
        let start: UInt64
        switch decision {
        case .stream(let from): start = from
        case .truncate(let seq): throw handshakeFailure(h, Failure(.truncateTo, .truncateTo(seq: seq)))
        case .diverged: throw handshakeFailure(h, Failure(.diverged))
        case .staleEpoch: throw handshakeFailure(h, Failure(.staleEpoch, .staleEpoch(epoch: e)))
        }
        let floor = journal.feedFloor.load(ordering: .acquiring)
        guard start >= floor else {
            // Its next record was compacted away: it needs a snapshot first (REPL_SNAPSHOT, not built yet).
            throw handshakeFailure(h, Failure(.diverged), why: "its next seq \(start) is below the journal's floor \(floor)")
        }
        guard hub.reserve(h.node.string) else {
            throw handshakeFailure(h, Failure(.configMismatch, .configMismatch(field: Self.nodeField)),
                                   why: "already connected, or --max-standbys reached")
        }
        replRequest = ReplRequest(requestID: requestID, node: h.node.string, start: start)
        return ReplStart(epoch: e, start: start, committed: journal.durable.load(ordering: .acquiring))
    }

    /// The checks before the journal is looked at: role, cluster, fingerprint, node id.
    static func handshakeRefusal(_ h: ReplHello, node: ClusterNode, isPrimary: Bool) -> Failure? {
        if !isPrimary || node.demoted.load(ordering: .relaxed) { return node.notPrimary() }
        if h.cluster.string != node.config.name { return Failure(.configMismatch, .configMismatch(field: clusterField)) }
        if h.fingerprint != node.config.fingerprint {
            return Failure(.configMismatch, .configMismatch(field: ShortBytes("fingerprint")!))
        }
        if h.node.string == node.config.nodeID { return Failure(.configMismatch, .configMismatch(field: nodeField)) }
        return nil
    }

    static let nodeField = ShortBytes("node")!

    private func handshakeFailure(_ h: ReplHello, _ f: Failure, why: String? = nil) -> Failure {
        worker.server.logger.warning("replication: standby \(h.node.string) (last epoch \(h.lastEpoch), seq \(h.lastSeq)): \(f.status.name) \(f.detail)\(why.map { ": " + $0 } ?? "")")
        return f
    }

    /// FENCE: the agent renewed the lease; commits may move until `untilNs` (later values win).
    func fence(untilNs: UInt64) throws(Failure) -> UInt64 {
        guard let node = worker.server.cluster else { throw Failure(.configMismatch, .configMismatch(field: Self.clusterField)) }
        let gate = node.gate
        var current = gate.fenceUntilNs.load(ordering: .acquiring)
        while current == .max || untilNs > current {
            let (done, seen) = gate.fenceUntilNs.compareExchange(expected: current, desired: untilNs,
                                                                 ordering: .acquiringAndReleasing)
            if done { break }
            current = seen
        }
        worker.journal?.advanceCommitted()
        return worker.journal?.durable.load(ordering: .acquiring) ?? 0
    }

    /// ISR_SET: the agent changed the ISR in etcd; the wait set follows.
    func replaceWaitSet(_ set: ISRSet) throws(Failure) -> UInt64 {
        guard let node = worker.server.cluster else { throw Failure(.configMismatch, .configMismatch(field: Self.clusterField)) }
        guard worker.isPrimary, let journal = worker.journal else { throw node.notPrimary() }
        let e = node.epoch.load(ordering: .acquiring)
        guard set.epoch == e else { throw Failure(.staleEpoch, .staleEpoch(epoch: e)) }
        node.gate.replace(set.nodes.map(\.string))
        worker.server.logger.notice("cluster: wait set is now [\(set.nodes.map(\.string).joined(separator: ", "))]")
        journal.advanceCommitted()
        return journal.durable.load(ordering: .acquiring)
    }

    func clusterStatus() -> ClusterStatus {
        guard let node = worker.server.cluster else {
            let durable = worker.journal?.durable.load(ordering: .acquiring) ?? 0
            return ClusterStatus(role: .standalone, epoch: 0, durable: durable, committed: durable)
        }
        let id = ShortBytes(node.config.nodeID) ?? .empty
        let e = node.epoch.load(ordering: .acquiring)
        if node.currentRole == .primary, let journal = worker.server.journal {
            let durable = journal.localDurable.load(ordering: .acquiring)
            return ClusterStatus(role: .primary, epoch: e, durable: durable,
                                 committed: journal.durable.load(ordering: .acquiring), node: id,
                                 standbys: node.standbys(durable: durable))
        }
        let durable = node.standbyDurable()
        return ClusterStatus(role: .standby, epoch: e, durable: durable, committed: durable, node: id,
                             primary: node.notPrimary().primaryAddress)
    }
}

extension Failure {
    /// NOT_PRIMARY's address ("" for any other failure).
    var primaryAddress: ShortBytes {
        if case .notPrimary(_, let p) = detail { return p }
        return .empty
    }
}
