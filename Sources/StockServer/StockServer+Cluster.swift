import CLibUV
import Glibc
import Logging
import StockCore
import StockJournal
import StockProtocol

// # Promotion (docs/replication.md §5, step 3)
//
// ROLE primary on a standby, on the thread of the worker that received it:
//   1. persist the epoch; stop the receiver (the journal is this thread's now);
//   2. journal, as a segment of their own, the term start record, the expiries
//      of holds whose deadline passed, and the `--catalog` SKUs the journal
//      does not know — the records a restart's recovery would add (Recovery,
//      step c), numbered right after the last record received;
//   3. restore the core from the shadow state — the restart path: the same
//      slots and generations, so a token the old primary issued confirms here.
//      The other workers run meanwhile but touch neither the core nor their
//      wheels while they are not primary (Dispatch refuses with NOT_PRIMARY);
//   4. open the journal pipeline after those records, the event feed and the
//      replication sender; then every worker attaches the journal on its own
//      thread (libuv handles belong to their loop) and only then serves changes.
// The answer goes out after step 4 on this worker; the records of step 2 are
// durable (JournalWriter.close syncs) before any worker serves a change.

extension StockServer {
    /// ROLE, on `worker`'s thread.
    func changeRole(_ r: RoleChange, on worker: LoopWorker) throws(Failure) -> RoleReply {
        guard let node = cluster else { throw Failure(.configMismatch, .configMismatch(field: Connection.clusterField)) }
        switch r.role {
        case .standby: return try node.follow(r.primary, epoch: r.epoch, written: journal?.written.load(ordering: .acquiring) ?? 0)
        case .primary: return try promote(node, epoch: r.epoch, on: worker)
        case .standalone: throw Failure(.invalidArgument)  // the decoder refuses it; never at run time
        }
    }

    private func promote(_ node: ClusterNode, epoch e: UInt64, on worker: LoopWorker) throws(Failure) -> RoleReply {
        pthread_mutex_lock(node.lock)
        defer { pthread_mutex_unlock(node.lock) }
        if node.currentRole == .primary {
            // The agent repeating itself: the same term is done; another one is not this process's.
            guard e == node.epoch.load(ordering: .acquiring), !node.demoted.load(ordering: .acquiring) else {
                throw Failure(.staleEpoch, .staleEpoch(epoch: node.epoch.load(ordering: .acquiring)))
            }
            return RoleReply(role: .primary, epoch: e, lastSeq: journal?.written.load(ordering: .acquiring) ?? 0)
        }
        guard node.promoting.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { throw Failure(.busy) }
        try node.raiseEpoch(to: e)
        let log = node.receiver?.stop() ?? node.idleLog
        guard let log else { preconditionFailure("a standby without its journal") }
        node.receiver = nil
        node.idleLog = nil
        // A term start must name an epoch above every one the journal holds (JournalState.apply).
        guard e > log.lastEpoch else {
            node.idleLog = log
            node.promoting.store(false, ordering: .releasing)
            throw Failure(.staleEpoch, .staleEpoch(epoch: log.lastEpoch))
        }
        do {
            let journalTimeMs = log.lastTimeMs
            try log.close()
            var state = log.state
            let termSeq = state.lastSeq + 1
            try journalTermStart(&state, epoch: e, node: node, journalTimeMs: journalTimeMs)
            try restoreCore(from: state)
            try openJournal(after: state, node: node, epoch: e)
            node.history = state.epochs
            node.promotedNs = JournalPipeline.nanos()
            node.epoch.store(e, ordering: .releasing)
            node.role.store(NodeRole.primary.rawValue, ordering: .releasing)
            for w in workers where w !== worker { w.signalRole() }
            worker.becomePrimary(journal: node.promotedJournal!, gate: node.gate)
            node.promoting.store(false, ordering: .releasing)
            logger.notice("cluster: primary of epoch \(e) from seq \(termSeq) (\(state.tokenCount) holds, \(state.skuCount) SKUs)")
            return RoleReply(role: .primary, epoch: e, lastSeq: termSeq)
        } catch {
            // Half a promotion cannot be undone in this process: the node refuses everything until
            // restarted (promoting stays set), and a restart recovers what is on disk.
            logger.critical("cluster: promotion to epoch \(e) failed; restart this node: \(error)")
            throw Failure(.storageFailed)
        }
    }

    /// Step 2: the term start record, expiries and new catalog SKUs, durable as a segment of their own.
    /// Their time is this node's wall clock or the journal's latest record time if that is later: a
    /// promoted node whose clock is behind the old primary's must not make the journal's time run
    /// backwards — it would then keep holds past deadlines the old primary already reached.
    private func journalTermStart(_ state: inout JournalState, epoch e: UInt64, node: ClusterNode,
                                  journalTimeMs: UInt64) throws {
        let nowMs = Self.promotionTime(wallMs: JournalPipeline.wallNanos() / 1_000_000, journalTimeMs: journalTimeMs)
        let start = SequencedRecord(seq: state.lastSeq + 1, timeMs: nowMs,
                                    record: .termStarted(epoch: e, node: ShortBytes(node.config.nodeID)!))
        try state.apply(start)
        var records = [start]
        records += try Recovery.expire(&state, nowWallMs: nowMs).flatMap(\.records)
        for line in promotionCatalog where state.sku(line.sku) == nil {
            let r = SequencedRecord(seq: state.lastSeq + 1, timeMs: nowMs, record: .stockSet(
                sku: line.sku, onHand: line.onHand, lowStockThreshold: line.lowStockThreshold ?? 0,
                perCustomerLimit: line.perCustomerLimit ?? 0))
            try state.apply(r)
            records.append(r)
        }
        let writer = try JournalWriter(directory: node.directory, preallocate: false)
        let buffer = RecordBuffer(capacity: records.count * 128)
        for r in records { RecordCodec.encode(r, into: buffer) }
        try writer.append(buffer)
        try writer.close()
    }

    /// The time a promotion expires holds at and stamps its records with (journalTermStart).
    static func promotionTime(wallMs: UInt64, journalTimeMs: UInt64) -> UInt64 { max(wallMs, journalTimeMs) }

    /// Step 3: the core from the shadow state (it is empty: a standby's core is never written).
    private func restoreCore(from state: JournalState) throws {
        try restoreCounts(skus: state.skus, customerSold: state.customerSold)
        try core.restoreTokens(Array(state.tokens.values), wallOffsetMs: wallOffsetMs, nowMs: uv_hrtime() / 1_000_000,
                               fates: state.fates.oldestFirst.map { RestoredFate(token: $0.token, fate: $0.fate) },
                               workers: workers.map(\.coreWorker))
        core.restoreAlertLevels()
    }

    /// Step 4: the journal pipeline after the last record, the event feed and the replication sender.
    private func openJournal(after state: JournalState, node: ClusterNode, epoch e: UInt64) throws {
        guard let dir = config.journalDirectory else { preconditionFailure("a cluster node without a journal") }
        let floor = try FeedFloor.read(directory: dir) ?? (try SegmentFiles.list(in: dir).first?.firstSeq ?? state.lastSeq + 1)
        let log = logger
        let pipeline = try JournalPipeline(directory: dir, firstSeq: state.lastSeq + 1, workers: workers.count,
                                           segmentBytes: config.segmentBytes, snapshotEvery: config.snapshotEvery,
                                           retainBytes: config.feedRetentionBytes, feedFloor: min(floor, state.lastSeq + 1),
                                           fateLimit: core.fateMemoryTotal) { message in log.critical("\(message)") }
        let hub = ReplicationHub(journal: pipeline, gate: node.gate, config: node.config, epoch: e,
                                 maxFrame: config.maxFrame, logger: logger)
        pipeline.commitGate = node.gate
        pipeline.onWritten = { hub.wake() }
        node.hub = hub
        node.promotedJournal = pipeline
        hub.start()
        startJournal(pipeline)
    }
}

extension LoopWorker {
    /// Another worker promoted the node: become primary on this thread (any thread may call).
    func signalRole() {
        pthread_mutex_lock(durableLock)
        if roleAsyncOpen { uv_async_send(roleAsync) }
        pthread_mutex_unlock(durableLock)
    }

    /// The role async fired: the promotion (another worker's thread) is done once it releases the lock.
    func roleChanged() {
        assertInLoop()
        guard !isPrimary, let node = server.cluster else { return }
        pthread_mutex_lock(node.lock)
        let journal = node.promotedJournal
        pthread_mutex_unlock(node.lock)
        guard let journal else { return }  // not promoted (a failed promotion): stay a standby
        becomePrimary(journal: journal, gate: node.gate)
    }

    /// On this worker's thread, after the promotion restored the core and opened the journal.
    func becomePrimary(journal: JournalPipeline, gate: CommitGate) {
        assertInLoop()
        guard !isPrimary else { return }
        attachJournal(journal)
        self.gate = gate
        armExpiryAfterRestore()
        isPrimary = true
    }
}
