import StockCore
import StockProtocol

/// Everything the server needs to know at start. Each limit is an explicit
/// bound (README, "Limits"); `validate` names the offending flag.
public struct ServerConfig: Sendable {
    /// Address to listen on (IPv4 dotted quad).
    public var host = "127.0.0.1"
    /// TCP port; 0 picks a free one.
    public var port = 7878
    /// Event-loop worker threads.
    public var workers = 2
    /// How connections reach the workers.
    public var acceptMode = AcceptMode.reusePort
    /// Connections open at once across workers; beyond it: BUSY, then close.
    public var maxConnections = 10_000
    /// Largest frame accepted, header included.
    public var maxFrame = Limits.defaultMaxFrame
    /// Requests read from a connection whose answers are not yet handed to
    /// the kernel; beyond it the server stops reading that connection.
    public var maxInflight = 16_384
    /// Unwritten answer bytes per connection before the server stops reading it.
    public var maxOutputBytes = 4 << 20
    /// A connection silent this long is closed (0: never).
    public var idleTimeoutMs: UInt64 = 300_000
    /// A frame must arrive whole this long after its first byte, else the
    /// connection is closed (slowloris; 0: never).
    public var frameTimeoutMs: UInt64 = 10_000
    /// Answers queued for a client that has not taken any of them for this
    /// long close the connection (a client that never reads; 0: never).
    public var writeTimeoutMs: UInt64 = 30_000
    /// RESERVE and RESERVE_BUNDLE requests per second per connection (token
    /// bucket; 0: no limit); beyond it RATE_LIMITED.
    public var reserveRate = 0
    /// Requests the bucket holds when full (0: one second's worth).
    public var reserveBurst = 0
    /// Expiries fired per worker per loop iteration at most.
    public var expiryBudget = 10_000
    /// Time a stopping server waits for clients to take their answers.
    public var shutdownGraceMs: UInt64 = 3_000
    /// Sizes of the core (SKUs, tokens, TTLs, side tables).
    public var core = CoreConfig()
    /// The journal's directory; nil: in-memory only (`--sync none`).
    public var journalDirectory: String?
    /// The first record number the journal hands out (after recovery).
    public var journalFirstSeq: UInt64 = 1
    /// A journal segment file is closed past this size.
    public var segmentBytes = 64 << 20
    /// Fold closed segments into a snapshot every this many records.
    public var snapshotEvery = 1_000_000
    /// Bytes of snapshot-covered segment files kept for the event feed.
    public var feedRetentionBytes: Int64 = 256 << 20
    /// The oldest offset the feed can serve at start (from recovery).
    public var feedFloor: UInt64 = 1
    /// Event-feed subscribers at once; beyond it SUBSCRIBE is answered BUSY.
    public var maxSubscribers = 64
    /// Unsent event bytes per subscriber before its feed pauses.
    public var feedOutputBytes = 1 << 20
    /// Port of the Prometheus endpoint on `host` (nil: none; 0: any free port).
    public var metricsPort: Int?
    /// SKUs given per-SKU gauges at most (catalog order).
    public var metricsMaxSKUs = 1000
    /// The binary's version and git commit, for `stockd_build_info` (set by
    /// the executable, which knows how it was built; the library does not).
    public var buildVersion = StockServer.version
    public var buildCommit = "unknown"
    /// Credentials and roles (`--auth-file`); nil: no authentication, every
    /// connection may do everything — allowed only on a loopback address
    /// unless `insecure`.
    public var authFile: String?
    /// Serve without authentication on a non-loopback address (`--insecure`).
    public var insecure = false
    /// Replication (docs/replication.md); nil: a standalone node.
    public var cluster: ClusterConfig?

    /// Whether `host` is an IPv4 loopback address (127.0.0.0/8).
    public var hostIsLoopback: Bool { host.hasPrefix("127.") || host == "localhost" }

    public init() {}

    /// How connections are spread over the worker loops.
    public enum AcceptMode: String, Sendable, CaseIterable {
        /// Each worker has its own listening socket on the same port
        /// (SO_REUSEPORT); the kernel picks a worker per connection.
        case reusePort = "reuseport"
        /// Worker 0 accepts every connection and hands them round-robin to
        /// the workers through a queue and a `uv_async_t` wake-up.
        case handOff = "handoff"
    }

    /// Checks the values; the message starts with the flag's name.
    public func validate() throws(ConfigError) {
        guard authFile != nil || insecure || hostIsLoopback else {
            throw ConfigError("--host \(host) is not a loopback address and there is no --auth-file: anyone who can "
                              + "reach it could change stock; give --auth-file (or --insecure to serve without "
                              + "authentication anyway)")
        }
        guard port >= 0, port <= 65_535 else { throw ConfigError("--port must be 0...65535") }
        guard (1...CoreConfig.maxShards).contains(workers) else {
            throw ConfigError("--workers must be 1...\(CoreConfig.maxShards)")  // a worker per counter shard
        }
        guard maxConnections >= 1, maxConnections <= 1_000_000 else {
            throw ConfigError("--max-connections must be 1...1000000")
        }
        guard maxFrame >= Limits.maxFrameFloor, maxFrame <= Limits.maxFrameCeiling else {
            throw ConfigError("--max-frame must be \(Limits.maxFrameFloor)...\(Limits.maxFrameCeiling)")
        }
        guard maxInflight >= 1, maxInflight <= 1 << 20 else { throw ConfigError("--max-inflight must be 1...1048576") }
        guard maxOutputBytes >= maxFrame else { throw ConfigError("--max-output must be at least --max-frame") }
        guard expiryBudget >= 1 else { throw ConfigError("expiry budget must be positive") }
        guard reserveRate >= 0, reserveRate <= 10_000_000 else { throw ConfigError("--reserve-rate must be 0...10000000") }
        guard reserveBurst >= 0, reserveBurst <= 10_000_000 else {
            throw ConfigError("--reserve-burst must be 0...10000000")
        }
        guard feedRetentionBytes >= 0 else { throw ConfigError("--feed-retention must be at least 0") }
        guard maxSubscribers >= 1, maxSubscribers <= 10_000 else {
            throw ConfigError("--max-subscribers must be 1...10000")
        }
        if let p = metricsPort, p < 0 || p > 65_535 { throw ConfigError("--metrics-port must be 0...65535") }
        guard metricsMaxSKUs >= 0, metricsMaxSKUs <= 1_000_000 else {
            throw ConfigError("--metrics-max-skus must be 0...1000000")
        }
        guard feedOutputBytes >= 64 << 10 else { throw ConfigError("feed output buffer must be at least 64 KiB") }
        if let cluster {
            guard journalDirectory != nil else { throw ConfigError("--cluster needs --sync always (a journal to replicate)") }
            try cluster.validate()
        }
        try core.validate()
    }
}

/// A node of a replicated cluster (docs/replication.md §8 "Limits").
public struct ClusterConfig: Sendable {
    /// The cluster's name (`--cluster`): standbys of another cluster are refused.
    public var name: String
    /// This node's id (`--node-id`), unique in the cluster.
    public var nodeID: String
    /// The `host:port` others reach this node at (`--advertise`; default host:port).
    public var advertise: String
    /// Standbys that must be in the wait set for a change to be executed (`--min-insync`).
    public var minInsync = 1
    /// Standbys a primary serves at once (`--max-standbys`).
    public var maxStandbys = 4
    /// Unsent replication bytes per standby before the sender stops reading the journal for it (`--repl-queue`).
    public var replQueueBytes = 64 << 20
    /// A standby that has sent nothing for this long is disconnected; a standby hearing nothing from its
    /// primary for this long reconnects (`--repl-timeout`).
    public var replTimeoutMs: UInt64 = 1000
    /// Reconnect backoff of a standby: first wait, doubling up to the last (`--repl-backoff`).
    public var backoffMinMs: UInt64 = 50
    public var backoffMaxMs: UInt64 = 2000
    /// The credential a standby sends in its HELLO to the primary (an admin one of the primary's auth file).
    public var credential: [UInt8] = []
    /// Hash of the settings every node's journal depends on (REPL_HELLO).
    public var fingerprint: UInt64 = 0

    public init(name: String, nodeID: String, advertise: String) {
        self.name = name
        self.nodeID = nodeID
        self.advertise = advertise
    }

    /// 1...64 bytes of text (PROTOCOL.md §10: node ids, cluster names, addresses).
    static func isName(_ s: String) -> Bool {
        Array(s.utf8).withUnsafeBytes { b in b.count >= 1 && b.count <= Limits.maxNodeName && ShortBytes.isValidText(b) }
    }

    func validate() throws(ConfigError) {
        guard Self.isName(name) else { throw ConfigError("--cluster must be 1...64 bytes of text") }
        guard Self.isName(nodeID) else { throw ConfigError("--node-id must be 1...64 bytes of text") }
        guard Self.isName(advertise), advertise.contains(":") else {
            throw ConfigError("--advertise must be host:port (at most 64 bytes)")
        }
        guard (0...Limits.maxStandbys).contains(minInsync) else {
            throw ConfigError("--min-insync must be 0...\(Limits.maxStandbys)")
        }
        guard (1...Limits.maxStandbys).contains(maxStandbys), minInsync <= maxStandbys else {
            throw ConfigError("--max-standbys must be --min-insync...\(Limits.maxStandbys) and at least 1")
        }
        guard replQueueBytes >= 1 << 20, replQueueBytes <= 1 << 30 else {
            throw ConfigError("--repl-queue must be 1...1024 MiB")
        }
        guard replTimeoutMs >= 10, replTimeoutMs <= 60_000 else { throw ConfigError("--repl-timeout must be 10ms...60s") }
        guard backoffMinMs >= 1, backoffMinMs <= backoffMaxMs, backoffMaxMs <= 60_000 else {
            throw ConfigError("--repl-backoff must be 1ms...60s")
        }
        guard credential.count <= 255 else { throw ConfigError("the replication credential is longer than 255 bytes") }
    }
}
