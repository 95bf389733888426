import Atomics
import CLibUV
import Glibc
import Logging
import StockCore
import StockJournal
import StockProtocol

/// The stockd server: one `StockCore` shared by `config.workers` libuv
/// loops, each on its own thread with its own SO_REUSEPORT listener.
///
/// Lifecycle: `init` builds the core; `stage` loads the starting catalog;
/// `start` binds and starts the threads; `stop` (any thread) begins a
/// graceful stop; `wait` joins the threads.
public final class StockServer: @unchecked Sendable {
    /// The server's version, announced in HELLO and logs.
    public static let version = "0.2.0"
    public let config: ServerConfig
    public let core: StockCore
    let logger: Logger
    private(set) var workers: [LoopWorker] = []
    private let openConnections = ManagedAtomic<Int>(0)
    private let totalConnections = ManagedAtomic<Int>(0)
    private let rejectedConnections = ManagedAtomic<Int>(0)
    /// Unix ms minus core ms: turns token deadlines into wall-clock times.
    let wallOffsetMs: UInt64
    private let startMs: UInt64
    /// The bound port (after `start`).
    public private(set) var port = 0
    /// Group commit (nil with `--sync none`, and on a cluster node until it is primary).
    /// Set once (at start, or at promotion while other threads run): an atomic reference.
    var journal: JournalPipeline? { journalRef.load() }
    private let journalRef = ManagedAtomicLazyReference<JournalPipeline>()
    /// The event feed's thread (nil without a journal).
    var feedHub: FeedHub? { feedHubRef.load() }
    private let feedHubRef = ManagedAtomicLazyReference<FeedHub>()
    /// Replication (nil: a standalone node).
    let cluster: ClusterNode?
    /// `--catalog` lines a cluster node stages when it becomes primary (SKUs its journal does not know).
    public var promotionCatalog: [StockSet] = []
    /// The Prometheus endpoint (nil without `--metrics-port`).
    private var metrics: MetricsServer?
    /// The metrics endpoint's bound port (after `start`; 0 without one).
    public private(set) var metricsPort = 0
    /// The credentials in force (nil: no authentication, every session is admin).
    let auth: AuthStore?
    /// HELLOs refused for a wrong credential (all workers).
    let authFailures = ManagedAtomic<Int>(0)
    /// What recovery found, applied to the core in `start` (tokens are spread over the workers' wheels).
    private var restoredTokens: [LiveToken] = []
    /// Decided tokens recovery remembered (oldest first), put back into the workers' fate rings in `start`.
    private var restoredFates: [RestoredFate] = []
    /// `restore` ran: alert levels are set from the restored counts in `start`.
    private var restored = false
    /// Worker loops running now, and loops that ended (each loop thread counts
    /// itself): readiness and liveness on the metrics port.
    private let loopsRunning = ManagedAtomic<Int>(0)
    private let loopsEnded = ManagedAtomic<Int>(0)
    /// How long `start` waits for the loop threads to be running (then /ready says how many are).
    static let loopStartWaitNs: UInt64 = 5_000_000_000
    /// `stop` was called: no longer ready, whatever else holds.
    private let stopRequested = ManagedAtomic<Bool>(false)

    /// A standalone node, or (with `config.cluster`) a cluster node that starts as a standby
    /// holding `replica`, the journal its passive recovery opened.
    public init(config: ServerConfig, logger: Logger, replica: ReplicaLog? = nil) throws(ConfigError) {
        try config.validate()
        if let c = config.cluster {
            guard let replica, let dir = config.journalDirectory else {
                throw ConfigError("--cluster: a cluster node starts from its recovered journal")
            }
            cluster = try ClusterNode(config: c, directory: dir, log: replica, segmentBytes: Int64(config.segmentBytes),
                                      fateLimit: config.core.fateMemoryTotal, retainBytes: config.feedRetentionBytes,
                                      logger: logger)
        } else {
            cluster = nil
        }
        self.config = config
        self.logger = logger
        // Loops read time with libuv's coarse monotonic clock, which may lag
        // uv_hrtime by a few ms: start the core's epoch a second early.
        // Both clocks are read back to back, before the core allocates its
        // tables (which takes ~100 ms at 10M tokens): reading the wall clock
        // after that put every expires_at_ms that much in the future.
        let monoMs = uv_hrtime() / 1_000_000
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let wallMs = UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
        wallOffsetMs = wallMs &- monoMs
        core = try StockCore(config: config.core, nowMs: monoMs - 1000)
        startMs = monoMs
        auth = try config.authFile.map { path throws(ConfigError) in AuthStore(try AuthTable.load(path: path)) }
    }

    /// Credentials loaded (0 without `--auth-file`).
    public var authEntries: [AuthEntry] { auth?.current.entries ?? [] }

    /// Reads `--auth-file` again (SIGHUP): new connections authenticate
    /// against the new table; sessions already open keep their role. A file
    /// with any bad line changes nothing. Returns the credentials now in force.
    @discardableResult
    public func reloadAuth() throws(ConfigError) -> [AuthEntry] {
        guard let auth, let path = config.authFile else { throw ConfigError("no --auth-file to reload") }
        let table = try AuthTable.load(path: path)
        auth.replace(table)
        return table.entries
    }

    /// Applies starting stock (the `--catalog` file) before the loops run.
    public func stage(_ lines: [StockSet]) throws(Failure) {
        let admin = core.makeWorker(shard: 0, nowMs: uv_hrtime() / 1_000_000)
        for line in lines { _ = try core.setStock(line, nowMs: uv_hrtime() / 1_000_000, on: admin) }
    }

    /// Restores recovered stock (before `start`): SKUs in their original
    /// order (their catalog indices), customers' sold units, and the live
    /// tokens (applied in `start`, when the workers exist).
    public func restore(skus: [SKUState], customerSold: [CustomerSKU: UInt64], tokens: [LiveToken],
                        fates: [RestoredFate] = []) throws(RestoreError) {
        try restoreCounts(skus: skus, customerSold: customerSold)
        restoredTokens = tokens
        restoredFates = fates
        restored = true
    }

    /// SKUs (in catalog order) and customers' sold units into the empty core.
    func restoreCounts(skus: [SKUState], customerSold: [CustomerSKU: UInt64]) throws(RestoreError) {
        for s in skus {
            // Replay checked these (JournalState.apply); a negative count here is a bug, not bad input.
            precondition(s.onHand >= 0 && s.confirmed >= 0 && s.backup >= 0 && s.reserved >= 0,
                         "recovered SKU \(s.sku) with a negative count")
            try core.restoreStock(s.sku, onHand: UInt64(s.onHand), confirmed: UInt64(s.confirmed),
                                  backup: UInt64(s.backup), lowStockThreshold: s.lowStockThreshold,
                                  perCustomerLimit: s.perCustomerLimit)
        }
        for (c, units) in customerSold {
            try core.restoreCustomerSold(customer: c.customer, sku: c.sku, units: units)
        }
    }

    /// Binds every worker's listener (worker 0 first, so port 0 resolves to
    /// one port all workers share) and starts the loop threads.
    public func start() throws(ConfigError) {
        try PortGuard.probe(host: config.host, port: config.port)
        var port = config.port
        for i in 0..<config.workers {
            let w = LoopWorker(index: i, server: self)
            let bound: Result<Int, ConfigError>
            switch (config.acceptMode, i) {
            case (.reusePort, _): bound = w.bind(host: config.host, port: port)
            case (.handOff, 0): bound = w.bindHandOff(host: config.host, port: port)
            case (.handOff, _):
                w.attachWithoutListener()
                bound = .success(port)
            }
            switch bound {
            case .success(let p): port = p
            case .failure(let e): throw e
            }
            w.prepare()
            workers.append(w)
        }
        self.port = port
        try PortGuard.checkSoleListener(port: port, fds: workers.compactMap(\.listeningFD))
        if !restoredTokens.isEmpty || !restoredFates.isEmpty {
            do {
                try core.restoreTokens(restoredTokens, wallOffsetMs: wallOffsetMs, nowMs: uv_hrtime() / 1_000_000,
                                       fates: restoredFates, workers: workers.map(\.coreWorker))
            } catch {
                throw ConfigError("--data-dir: \(error)")
            }
            for w in workers { w.armExpiryAfterRestore() }
            restoredTokens = []
            restoredFates = []
        }
        if restored { core.restoreAlertLevels() }
        if let dir = config.journalDirectory, cluster == nil {
            let log = logger
            let pipeline: JournalPipeline
            do {
                pipeline = try JournalPipeline(directory: dir, firstSeq: config.journalFirstSeq, workers: workers.count,
                                               segmentBytes: config.segmentBytes, snapshotEvery: config.snapshotEvery,
                                               retainBytes: config.feedRetentionBytes, feedFloor: config.feedFloor,
                                               fateLimit: core.fateMemoryTotal) {
                    message in log.critical("\(message)")
                }
            } catch {
                throw ConfigError("--data-dir \(dir): \(error)")
            }
            for w in workers { w.attachJournal(pipeline) }
            startJournal(pipeline)
        }
        if let wanted = config.metricsPort {
            let m = MetricsServer(server: self)
            try m.start(host: config.host, port: wanted)
            metrics = m
            metricsPort = m.port
        }
        for w in workers {
            let context = Unmanaged.passUnretained(w).toOpaque()
            let rc = pthread_create(&w.thread, nil, { arg in
                let worker = Unmanaged<LoopWorker>.fromOpaque(arg!).takeUnretainedValue()
                worker.server.loopsRunning.wrappingIncrement(ordering: .releasing)
                worker.run()
                worker.server.loopsRunning.wrappingDecrement(ordering: .releasing)
                worker.server.loopsEnded.wrappingIncrement(ordering: .releasing)
                return nil
            }, context)
            guard rc == 0 else { throw ConfigError("--workers: cannot start thread (errno \(rc))") }
        }
        // Return once every loop runs, so that what follows a start (the port file, systemd's
        // READY=1) agrees with GET /ready. A thread starts in microseconds; the bound is for a
        // machine so overloaded that the wait would be wrong anyway.
        let deadline = uv_hrtime() + StockServer.loopStartWaitNs
        while loopsRunning.load(ordering: .acquiring) < workers.count && uv_hrtime() < deadline { usleep(100) }
    }

    /// Starts the journal thread and the event feed on `pipeline` (workers attach it themselves).
    func startJournal(_ pipeline: JournalPipeline) {
        let log = logger
        pipeline.logInfo = { message in log.info("\(message)") }
        let loops = workers
        let hub = FeedHub(config: config, journal: pipeline, logger: logger)
        pipeline.onDurable = {
            for w in loops { w.signalDurable() }
            hub.wake()
        }
        hub.start()
        precondition(feedHubRef.storeIfNilThenLoad(hub) === hub, "the event feed started twice")
        pipeline.start()
        precondition(journalRef.storeIfNilThenLoad(pipeline) === pipeline, "the journal started twice")
    }

    /// Begins a graceful stop (any thread): stop accepting, answer what was
    /// read, flush, close; bounded by `config.shutdownGraceMs`.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        for w in workers { w.requestStop() }
    }

    /// Why the server should not be sent traffic now (`GET /ready` answers
    /// 503 with it), or nil when it should: recovery finished (the server
    /// exists only after it), the journal has not failed, every worker loop
    /// runs its listener and connections, and no stop was asked for.
    public var notReadyReason: String? {
        if stopRequested.load(ordering: .acquiring) { return "stopping" }
        if journalFailed { return "journal failed: changes are refused (check the disk)" }
        let running = loopsRunning.load(ordering: .acquiring)
        if running < workers.count { return "\(running) of \(workers.count) worker loops running" }
        return nil
    }

    /// Why the process is not alive (`GET /healthz` answers 503 with it), or
    /// nil: the metrics thread answering is the process serving; a worker
    /// loop that ended without a stop being asked for is a dead server.
    public var notLiveReason: String? {
        guard !stopRequested.load(ordering: .acquiring) else { return nil }
        let ended = loopsEnded.load(ordering: .acquiring)
        return ended == 0 ? nil : "\(ended) worker loops ended without a stop"
    }

    /// The journal could not write (the server refuses changes).
    public var journalFailed: Bool { journal?.failed.load(ordering: .relaxed) ?? false }

    /// Waits for every loop thread to end, then for the journal to write
    /// what they handed over.
    public func wait() {
        for w in workers { pthread_join(w.thread, nil) }
        feedHub?.stop()
        metrics?.stop()
        cluster?.stop()
        journal?.stop()
    }

    // MARK: connections

    func admitConnection() -> Bool {
        totalConnections.wrappingIncrement(ordering: .relaxed)
        let n = openConnections.loadThenWrappingIncrement(ordering: .relaxed)
        if n < config.maxConnections { return true }
        openConnections.wrappingDecrement(ordering: .relaxed)
        rejectedConnections.wrappingIncrement(ordering: .relaxed)
        return false
    }

    func releaseConnection() { openConnections.wrappingDecrement(ordering: .relaxed) }

    // MARK: statistics

    /// A summary for the stop log line.
    public var summary: (connections: Int, requests: Int64, liveTokens: UInt64) {
        (totalConnections.load(ordering: .relaxed), workers.reduce(0) { $0 + requests($1) },
         core.stats().liveTokens)
    }

    private func requests(_ w: LoopWorker) -> Int64 {
        w.counters.answersTotal
    }

    /// STATS: named counters (names are stable; clients ignore unknown ones).
    func statsEntries() -> [StatEntry] {
        var entries: [StatEntry] = []
        func add(_ name: String, _ v: Int64) { entries.append(StatEntry(name: ShortBytes(name)!, value: UInt64(max(0, v)))) }
        add("uptime_ms", Int64(uv_hrtime() / 1_000_000 - startMs))
        add("workers", Int64(workers.count))
        add("connections.open", Int64(openConnections.load(ordering: .relaxed)))
        add("connections.total", Int64(totalConnections.load(ordering: .relaxed)))
        add("connections.rejected", Int64(rejectedConnections.load(ordering: .relaxed)))
        add("auth.failures", Int64(authFailures.load(ordering: .relaxed)))
        add("connections.closed_slow", workers.reduce(Int64(0)) { $0 + $1.counters.value(.slowClientsClosed) })
        var total: Int64 = 0
        for op in Opcode.allCases {
            let n = workers.reduce(Int64(0)) { $0 + $1.counters.requests(opcode: op.rawValue) }
            total += n
            add("requests.\(op.name)", n)
        }
        add("requests.total", total)
        for status in Status.allCases {
            let n = workers.reduce(Int64(0)) { $0 + $1.counters.responses(status: status) }
            if n > 0 || status == .ok { add("status.\(status.name)", n) }
        }
        let s = core.stats()
        add("tokens.live", Int64(s.liveTokens))
        add("tokens.capacity", Int64(s.tokenCapacity))
        add("tokens.reserved", Int64(s.reserves + s.bundles))
        add("tokens.confirmed", Int64(s.confirms))
        add("tokens.released", Int64(s.releases))
        add("tokens.expired", Int64(s.expiries))
        add("tokens.extended", Int64(s.extends))
        add("reserve.failed", Int64(s.reserveFailures))
        add("reserve.idempotent_replays", Int64(s.idempotentReplays))
        add("skus", Int64(s.skus))
        add("skus.capacity", Int64(s.skuCapacity))
        if let j = journal {
            let syncs = j.syncs.load(ordering: .relaxed)
            let records = j.recordsWritten.load(ordering: .relaxed)
            add("journal.failed", j.failed.load(ordering: .relaxed) ? 1 : 0)
            add("journal.durable_seq", Int64(j.localDurable.load(ordering: .relaxed)))
            add("journal.records", Int64(records))
            add("journal.bytes", Int64(j.bytesWritten.load(ordering: .relaxed)))
            add("journal.fsyncs", Int64(syncs))
            add("journal.fsync_us_avg", syncs == 0 ? 0 : Int64(j.syncNanosTotal.load(ordering: .relaxed) / syncs / 1000))
            add("journal.fsync_us_max", Int64(j.syncNanosMax.load(ordering: .relaxed) / 1000))
            add("journal.batch_records_avg", syncs == 0 ? 0 : Int64(records / syncs))
            add("journal.batch_records_max", Int64(j.batchRecordsMax.load(ordering: .relaxed)))
            add("journal.snapshots", Int64(j.snapshots.load(ordering: .relaxed)))
            if let hub = feedHub {
                add("feed.subscribers", Int64(hub.active.load(ordering: .relaxed)))
                add("feed.subscriptions", Int64(hub.subscriptionsTotal.load(ordering: .relaxed)))
                add("feed.events_sent", Int64(hub.eventsSent.load(ordering: .relaxed)))
                add("feed.refused_busy", Int64(hub.refusedBusy.load(ordering: .relaxed)))
                add("feed.floor", Int64(j.feedFloor.load(ordering: .relaxed)))
            }
            if let node = cluster {
                add("cluster.epoch", Int64(node.epoch.load(ordering: .relaxed)))
                add("cluster.committed_seq", Int64(j.durable.load(ordering: .relaxed)))
                if let hub = node.replicationHub {
                    let acks = hub.acks.load(ordering: .relaxed)
                    add("replication.rounds_sent", Int64(hub.roundsSent.load(ordering: .relaxed)))
                    add("replication.records_sent", Int64(hub.recordsSent.load(ordering: .relaxed)))
                    add("replication.acks", Int64(acks))
                    add("replication.ack_us_avg", acks == 0 ? 0 : Int64(hub.ackNanosTotal.load(ordering: .relaxed) / acks / 1000))
                    add("replication.ack_us_max", Int64(hub.ackNanosMax.load(ordering: .relaxed) / 1000))
                }
            }
            for (i, b) in j.syncLatencyBuckets.enumerated() {
                let n = b.load(ordering: .relaxed)
                if n > 0 { add("journal.fsync_us_le_\(1 << i)", Int64(n)) }
            }
        }
        for w in workers {
            add("worker.\(w.index).connections", w.counters.value(.connectionsAccepted) - w.counters.value(.connectionsClosed))
            add("worker.\(w.index).requests", Opcode.allCases.reduce(Int64(0)) { $0 + w.counters.requests(opcode: $1.rawValue) })
            add("worker.\(w.index).read_bursts", w.counters.value(.readBursts))
            add("worker.\(w.index).bytes_in", w.counters.value(.bytesIn))
            add("worker.\(w.index).bytes_out", w.counters.value(.bytesOut))
        }
        return entries
    }
}
