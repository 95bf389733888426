import ArgumentParser
import CommandSupport
import Foundation
import Logging
import StockCore
import StockProtocol
import StockJournal
import StockServer

/// What `stockd_build_info` reports.
/// What this binary is: the release and the git commit (Plugins/BuildInfoPlugin), for --version,
/// HELLO's server name, the start-up log line and `stockd_build_info`.
let stockdBuildVersion = BuildInfo.version
let stockdBuildCommit = BuildInfo.commit

/// `stockd`: flags, logging, signals; everything else lives in StockServer.
/// `stockd verify` checks a data directory.
@main
struct Stockd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stockd",
        abstract: "Stock-reservation server for live shopping.",
        discussion: """
            Serves the stockd binary protocol (protocol/PROTOCOL.md) on TCP. Durations take a unit: \
            500ms, 1.5s, 1m30s, 2h (0 alone is zero). SIGINT or SIGTERM stops it gracefully. With --sync always (the default) \
            every acknowledged change is in the journal under --data-dir before its answer is sent, and a \
            restart recovers it; --sync none keeps everything in memory only.
            """,
        version: BuildInfo.versionLine(program: "stockd"),
        subcommands: [Verify.self])

    @Option(help: "IPv4 address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "TCP port; 0 picks a free port.")
    var port = 7878

    @Option(name: .customLong("port-file"), help: "Write the bound port to this file once listening.")
    var portFile: String?

    @Option(help: "Event-loop worker threads (default: number of cores).")
    var workers: Int?

    @Option(help: "How connections reach the workers: reuseport (a listener per worker) or handoff (one acceptor).")
    var accept = "reuseport"

    @Option(help: "CSV of starting stock: sku,on_hand[,low_stock_threshold][,per_customer_limit].")
    var catalog: String?

    @Option(name: .customLong("default-ttl"), help: "Hold time when a request says 0.", transform: DurationArgument.parse)
    var defaultTTL = DurationArgument(milliseconds: 90_000)

    @Option(name: .customLong("max-ttl"), help: "Longest hold a request may ask for (at most 1h).", transform: DurationArgument.parse)
    var maxTTL = DurationArgument(milliseconds: UInt64(Limits.maxTTLCeilingMs))

    @Option(name: .customLong("max-connections"), help: "Connections open at once; beyond it: BUSY, then close.")
    var maxConnections = 10_000

    @Option(name: .customLong("max-frame"), help: "Largest frame in bytes, header included (1024...16777216).")
    var maxFrame = Limits.defaultMaxFrame

    @Option(name: .customLong("max-tokens"), help: "Live reservation tokens at most; beyond it: AT_CAPACITY.")
    var maxTokens = 1_000_000

    @Option(name: .customLong("max-skus"), help: "SKUs in the catalog at most.")
    var maxSKUs = 1 << 20

    @Option(name: .customLong("max-inflight"), help: "Unanswered requests per connection before it stops being read.")
    var maxInflight = 16_384

    @Option(name: .customLong("max-output"), help: "Unwritten answer bytes per connection before it stops being read.")
    var maxOutput = 4 << 20

    @Option(name: .customLong("idle-timeout"), help: "Close connections silent this long (0: never).", transform: DurationArgument.parse)
    var idleTimeout = DurationArgument(milliseconds: 300_000)

    @Option(name: .customLong("frame-timeout"),
            help: "Close a connection whose frame is not whole this long after its first byte (slowloris; 0: never).",
            transform: DurationArgument.parse)
    var frameTimeout = DurationArgument(milliseconds: 10_000)

    @Option(name: .customLong("write-timeout"),
            help: "Close a connection that has taken none of its queued answers for this long (0: never).",
            transform: DurationArgument.parse)
    var writeTimeout = DurationArgument(milliseconds: 30_000)

    @Option(name: .customLong("reserve-rate"),
            help: "RESERVE / RESERVE_BUNDLE per second per connection, beyond it RATE_LIMITED (0: no limit).")
    var reserveRate = 0

    @Option(name: .customLong("reserve-burst"), help: "Reservations a connection may make at once (default: --reserve-rate).")
    var reserveBurst = 0

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    @Option(name: .customLong("log-format"),
            help: "text (for people) or json (one object per line: timestamp, level, label, message, metadata fields).")
    var logFormat = "text"

    @Option(name: .customLong("data-dir"), help: "Directory of the journal and snapshots.")
    var dataDir = "./stockd-data"

    @Option(help: ArgumentHelp("always: an answer to a change is sent once the change is on disk (fdatasync); none: in memory only, nothing survives a restart (benchmarks)."))
    var sync = "always"

    @Option(name: .customLong("segment-size"), help: "Journal segment file size in MiB before a new one starts.")
    var segmentMiB = 64

    @Option(name: .customLong("snapshot-every"),
            help: "Fold closed journal segments into a snapshot every N records (in the background, at a segment change).")
    var snapshotEvery = 1_000_000

    @Option(name: .customLong("feed-retention"),
            help: "MiB of journal segments kept for the event feed after a snapshot covers them (0: none).")
    var feedRetentionMiB = 256

    @Option(name: .customLong("max-subscribers"), help: "Event-feed subscribers at once; beyond it: BUSY.")
    var maxSubscribers = 64

    @Option(name: .customLong("metrics-port"),
            help: "Serve GET /metrics (Prometheus), /healthz (liveness) and /ready (readiness) at --host and this port (0: any free port).")
    var metricsPort: Int?

    @Option(name: .customLong("metrics-port-file"), help: "Write the metrics port to this file once listening.")
    var metricsPortFile: String?

    @Option(name: .customLong("metrics-max-skus"), help: "SKUs given per-SKU gauges at most (catalog order).")
    var metricsMaxSKUs = 1000

    @Option(name: .customLong("auth-file"),
            help: ArgumentHelp("Credentials, one `NAME ROLE SECRET` per line (role viewer, checkout or admin; default "
                               + "$STOCKD_AUTH_FILE). Re-read on SIGHUP.", valueName: "file"))
    var authFile: String?

    @Flag(help: "Serve a non-loopback --host without --auth-file: anyone who reaches the port may change stock.")
    var insecure = false

    @OptionGroup(title: "Replication (docs/replication.md)")
    var replication: ReplicationOptions

    func makeConfig() throws -> ServerConfig {
        var c = ServerConfig()
        c.host = host
        c.port = port
        c.workers = workers ?? ProcessInfo.processInfo.activeProcessorCount
        guard (1...CoreConfig.maxShards).contains(c.workers) else {
            throw ValidationError("--workers must be 1...\(CoreConfig.maxShards)")
        }
        guard let mode = ServerConfig.AcceptMode(rawValue: accept) else {
            throw ValidationError("--accept must be reuseport or handoff")
        }
        c.acceptMode = mode
        c.maxConnections = maxConnections
        c.maxFrame = maxFrame
        c.maxInflight = maxInflight
        c.maxOutputBytes = maxOutput
        c.idleTimeoutMs = idleTimeout.milliseconds
        c.frameTimeoutMs = frameTimeout.milliseconds
        c.writeTimeoutMs = writeTimeout.milliseconds
        c.reserveRate = reserveRate
        c.reserveBurst = reserveBurst
        guard maxTTL.milliseconds >= 1, maxTTL.milliseconds <= UInt64(Limits.maxTTLCeilingMs) else {
            throw ValidationError("--max-ttl must be 1ms...1h")
        }
        guard defaultTTL.milliseconds >= 1, defaultTTL.milliseconds <= maxTTL.milliseconds else {
            throw ValidationError("--default-ttl must be 1ms...--max-ttl")
        }
        c.core.maxTTLMs = UInt32(maxTTL.milliseconds)
        c.core.defaultTTLMs = UInt32(defaultTTL.milliseconds)
        guard maxTokens >= 16 && maxTokens <= 1 << 30 else { throw ValidationError("--max-tokens must be 16...1073741824") }
        guard maxSKUs >= 1 && maxSKUs <= 1 << 26 else { throw ValidationError("--max-skus must be 1...67108864") }
        c.core.tokenCapacity = maxTokens
        c.core.skuCapacity = maxSKUs
        c.core.shardCount = c.workers
        c.core.customerCapacity = maxTokens
        c.core.idempotencyCapacity = maxTokens
        guard sync == "always" || sync == "none" else { throw ValidationError("--sync must be always or none") }
        guard segmentMiB >= 1 && segmentMiB <= 4096 else { throw ValidationError("--segment-size must be 1...4096") }
        c.segmentBytes = segmentMiB << 20
        guard snapshotEvery >= 1 else { throw ValidationError("--snapshot-every must be at least 1") }
        c.snapshotEvery = snapshotEvery
        guard feedRetentionMiB >= 0 && feedRetentionMiB <= 1 << 30 else {
            throw ValidationError("--feed-retention must be 0...1073741824 (MiB)")
        }
        c.feedRetentionBytes = Int64(feedRetentionMiB) << 20
        c.maxSubscribers = maxSubscribers
        c.metricsPort = metricsPort
        c.metricsMaxSKUs = metricsMaxSKUs
        c.authFile = authFile ?? ProcessInfo.processInfo.environment["STOCKD_AUTH_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        c.insecure = insecure
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical")
        }
        guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("--log-format must be text or json") }
        c.buildVersion = stockdBuildVersion
        c.buildCommit = stockdBuildCommit
        c.cluster = try replication.makeConfig(host: host, port: port, core: c.core)
        if c.cluster != nil { c.journalDirectory = dataDir }  // validate checks a cluster node journals
        do { try c.validate() } catch { throw ValidationError(error.description) }
        if c.cluster != nil { c.journalDirectory = nil }  // set again once recovery ran
        return c
    }

    func run() throws {
        var config = try makeConfig()
        let stock = try catalog.map { try CatalogFile.load(path: $0) } ?? []
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let format = LogFormat(rawValue: logFormat) ?? .text
        LoggingSystem.bootstrap { label in StockdLogHandler(label: label, format: format, level: level) }
        let logger = Logger(label: "stockd")

        // Signals are taken synchronously by this thread (sigwait); the loop
        // threads inherit the mask and never see them. SIGPIPE is ignored:
        // a vanished client is an error return, not a process death.
        signal(SIGPIPE, SIG_IGN)
        // A file-size limit (ulimit -f) makes a journal write fail with EFBIG,
        // which the journal turns into the refusing state, instead of killing us.
        signal(SIGXFSZ, SIG_IGN)
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        sigaddset(&mask, SIGTERM)
        sigaddset(&mask, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &mask, nil)

        var recovered: RecoveredData?
        var replica: ReplicaLog?
        if config.cluster != nil {
            let recovered = try StartupRecovery.recoverReplica(dataDir, retainBytes: config.feedRetentionBytes,
                                                               fateLimit: config.core.fateMemoryTotal, logger: logger)
            config.journalDirectory = dataDir
            replica = try ReplicaLog(directory: dataDir, state: recovered.state, segmentBytes: Int64(config.segmentBytes),
                                     fateLimit: config.core.fateMemoryTotal, lastTimeMs: recovered.lastTimeMs)
        } else if sync == "always" {
            let r = try StartupRecovery.recover(dataDir, catalog: stock, retainBytes: config.feedRetentionBytes,
                                                fateLimit: config.core.fateMemoryTotal, logger: logger)
            config.journalDirectory = dataDir
            config.journalFirstSeq = r.nextSeq
            config.feedFloor = r.feedFloor
            recovered = r
        } else {
            logger.warning("""
                --sync none: IN-MEMORY ONLY. Nothing is journaled; every reservation, sale and stock \
                change is lost when stockd stops. For benchmarks, not for a live show.
                """)
        }
        let server = try StockServer(config: config, logger: logger, replica: replica)
        if replica != nil {
            server.promotionCatalog = stock  // staged by this node's first term as primary
        } else if let recovered {
            do {
                try server.restore(skus: recovered.skus, customerSold: recovered.customerSold, tokens: recovered.tokens,
                                   fates: recovered.fates)
            } catch {
                throw ValidationError("--data-dir \(dataDir): \(error)")
            }
        } else {
            do { try server.stage(stock) } catch {
                throw ValidationError("--catalog: \(error.status.name) while staging")
            }
        }
        try server.start()
        for (file, port) in [(metricsPortFile, server.metricsPort), (portFile, server.port)] {
            guard let file else { continue }
            let tmp = file + ".tmp"
            _ = FileManager.default.createFile(atPath: tmp, contents: Data("\(port)\n".utf8))
            _ = rename(tmp, file)  // atomic: readers never see a half-written port
        }
        logger.info("listening", metadata: listeningMetadata(config, server, catalogLines: stock.count))

        Self.logAuth(server, config, logger)
        if let c = config.cluster {
            let hex = String(c.fingerprint, radix: 16)
            logger.info("cluster: node \(c.nodeID) of \(c.name) at \(c.advertise) starts as a standby and waits for ROLE; min-insync \(c.minInsync), fingerprint=\(hex)")
        }
        // Recovered, journal open, every listener bound: a Type=notify unit is now started.
        if let problem = SystemdNotify.send("READY=1\nSTATUS=serving on \(config.host):\(server.port)") {
            logger.warning("systemd notification not sent", metadata: ["reason": "\(problem)"])
        }
        var signo: Int32 = 0
        while true {
            sigwait(&mask, &signo)
            guard signo == SIGHUP else { break }
            Self.reloadAuth(server, logger)
        }
        SystemdNotify.send("STOPPING=1")
        let signal = [SIGTERM: "SIGTERM", SIGINT: "SIGINT"][signo] ?? "\(signo)"
        logger.info("stopping", metadata: ["signal": "\(signal)"])
        server.stop()
        server.wait()
        if config.journalDirectory != nil && !server.journalFailed {
            // Clean stop: fold the journal into one snapshot, so the next start replays nothing.
            do {
                try StartupRecovery.compactAtShutdown(dataDir, retainBytes: config.feedRetentionBytes,
                                                      fateLimit: config.core.fateMemoryTotal,
                                                      expire: config.cluster == nil, logger: logger)
            } catch {
                logger.error("snapshot at shutdown failed (the journal is intact, the next start replays it): \(error)")
            }
        }
        let s = server.summary
        logger.info("stopped", metadata: ["connections_served": .stringConvertible(s.connections),
                                          "requests": .stringConvertible(s.requests),
                                          "reservations_live": .stringConvertible(s.liveTokens)])
        if server.journalFailed {
            // A supervisor must see that this run ended refusing changes.
            throw RecoveryFailed("stopped after a journal write failure: changes after it were refused; check the disk")
        }
    }

    /// The start line's fields: where stockd listens and the limits in force.
    func listeningMetadata(_ c: ServerConfig, _ server: StockServer, catalogLines: Int) -> Logger.Metadata {
        var m: Logger.Metadata = [
            "version": "\(c.buildVersion)", "commit": "\(c.buildCommit)", "host": "\(c.host)",
            "port": .stringConvertible(server.port), "workers": .stringConvertible(c.workers),
            "accept": "\(c.acceptMode.rawValue)", "catalog_skus": .stringConvertible(catalogLines),
            "max_connections": .stringConvertible(c.maxConnections), "max_frame": .stringConvertible(c.maxFrame),
            "max_tokens": .stringConvertible(c.core.tokenCapacity), "max_skus": .stringConvertible(c.core.skuCapacity),
            "max_inflight": .stringConvertible(c.maxInflight), "default_ttl": "\(defaultTTL)", "max_ttl": "\(maxTTL)",
            "idle_timeout": "\(idleTimeout)", "frame_timeout": "\(frameTimeout)", "write_timeout": "\(writeTimeout)",
            "reserve_rate": .stringConvertible(reserveRate), "sync": "\(sync)", "log_format": "\(logFormat)",
        ]
        if sync == "always" { m["data_dir"] = "\(dataDir)" }
        if c.metricsPort != nil { m["metrics"] = "http://\(c.host):\(server.metricsPort)/metrics" }
        return m
    }

    /// Says how clients are authenticated (loudly when they are not and the port is reachable).
    static func logAuth(_ server: StockServer, _ c: ServerConfig, _ logger: Logger) {
        if let path = c.authFile {
            let e = server.authEntries
            func n(_ role: Role) -> Int { e.filter { $0.role == role }.count }
            logger.info("auth: \(e.count) credentials from \(path) (\(n(.admin)) admin, \(n(.checkout)) checkout, \(n(.viewer)) viewer); SIGHUP re-reads it")
        } else if c.hostIsLoopback {
            logger.info("auth: none (no --auth-file): every client on this host may do everything")
        } else {
            logger.warning("--insecure: NO AUTHENTICATION on \(c.host). Anyone who can reach port \(server.port) may reserve everything, change stock and read every order. Give --auth-file for anything but a sealed network.")
        }
    }

    /// SIGHUP: the auth file again; a bad file keeps the credentials in force.
    static func reloadAuth(_ server: StockServer, _ logger: Logger) {
        do {
            let e = try server.reloadAuth()
            logger.notice("auth: reloaded, \(e.count) credentials (\(e.map(\.name).joined(separator: ", ")))")
        } catch {
            logger.error("auth: reload refused, the credentials in force are unchanged: \(error.description)")
        }
    }

    /// Errors are one line on stderr (`stockd: ...`) and exit code 2; help
    /// and version print as usual.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let e as VerifyFailed {
            FileHandle.standardError.write(Data("stockd: \(e.description)\n".utf8))
            Foundation.exit(1)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            let message = (error as? CatalogFile.LineError)?.description ?? Self.message(for: error)
            let line = message.split(separator: "\n").first.map(String.init) ?? "error"
            FileHandle.standardError.write(Data("stockd: \(line)\n".utf8))
            Foundation.exit(2)
        }
    }
}
