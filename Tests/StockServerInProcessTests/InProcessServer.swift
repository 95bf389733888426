import Foundation
import Glibc
import Logging
import StockCore
import StockJournal
import StockProtocol
import StockServer
import TestSupport

// A `StockServer` in the test process, started the way Sources/stockd/Stockd.swift starts one:
// a ServerConfig (127.0.0.1, port 0), then either the catalog staged (in memory, `--sync none`) or,
// with a data directory (`--sync always`), recovery (Recovery.run + Recovery.finish, as stockd's
// StartupRecovery does) restored into the server and the journal continuing after it.

/// One log event the server emitted.
struct LogLine: Sendable, CustomStringConvertible {
    let level: Logger.Level
    let message: String
    var description: String { "\(level): \(message)" }
}

/// Keeps every log event of one server, for the test to look at (nothing reaches stdout).
struct CapturingLogHandler: LogHandler {
    let lines: Locked<[LogLine]>
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lines.update { $0.append(LogLine(level: event.level, message: "\(event.message)")) }
    }
}

/// A running in-process server; `stop()` (also in `deinit`) stops it gracefully and joins its threads.
final class InProcessStockd {
    let server: StockServer
    /// What the server logged so far.
    let log = Locked<[LogLine]>([])
    /// The seq of the first record this server journals (recovery's next seq; 1 on an empty directory).
    let firstSeq: UInt64
    private var stopped = false

    /// `dataDirectory` nil: in memory, `catalog` staged. Otherwise the directory is recovered (the
    /// catalog is not used: SKUs are created over the wire, so they are journaled).
    init(dataDirectory: String? = nil, catalog: [StockSet] = [], workers: Int = 2) throws {
        signal(SIGPIPE, SIG_IGN)  // as stockd: a vanished peer is an error return, not a death
        var config = ServerConfig()
        config.host = "127.0.0.1"
        config.port = 0
        config.workers = workers
        config.core.shardCount = workers
        config.core.skuCapacity = 1024
        config.core.tokenCapacity = 1 << 14
        config.core.customerCapacity = 1 << 14
        config.core.idempotencyCapacity = 1 << 14
        config.segmentBytes = 1 << 20
        let lines = log
        let logger = Logger(label: "stockd-in-process") { _ in CapturingLogHandler(lines: lines) }
        var recovered: RecoveryResult?
        if let dir = dataDirectory {
            let now = wallClockMs()
            let result = try Recovery.run(dataDirectory: dir, nowWallMs: now, fateLimit: config.core.fateMemoryTotal)
            let finished = try Recovery.finish(result, dataDirectory: dir, nowWallMs: now,
                                               retainBytes: config.feedRetentionBytes)
            config.journalDirectory = dir
            config.journalFirstSeq = result.nextSeq
            config.feedFloor = finished.feedFloor
            recovered = result
        }
        firstSeq = config.journalFirstSeq
        server = try StockServer(config: config, logger: logger)
        if let r = recovered {
            try server.restore(skus: r.state.skus, customerSold: r.state.customerSold,
                               tokens: Array(r.state.tokens.values),
                               fates: r.state.fates.oldestFirst.map { RestoredFate(token: $0.token, fate: $0.fate) })
        } else {
            try server.stage(catalog)
        }
        try server.start()
    }

    deinit { stop() }

    var port: Int { server.port }

    /// A new raw-frame connection (every wait bounded by `timeout`).
    func connect(timeout: Double = 5) throws -> RawClient { try RawClient(port: server.port, timeout: timeout) }

    /// Graceful stop (bounded by `shutdownGraceMs`), then waits for the loops and the journal. Idempotent.
    func stop() {
        guard !stopped else { return }
        stopped = true
        server.stop()
        server.wait()
    }

    /// Log events at `.error` or above.
    var problems: [LogLine] { log.get().filter { $0.level >= .error } }
}

/// Every record in the journal segments of `directory`, read from the files as they are now
/// (the server may be running: nothing is repaired).
func journalRecords(_ directory: String) throws -> [SequencedRecord] {
    var out: [SequencedRecord] = []
    _ = try JournalReader.readAll(directory: directory, repairTornTail: false) { r, _, _ in out.append(r) }
    return out
}

/// Polls `condition` every 10 ms for at most `timeout` seconds.
func eventually(_ timeout: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonicSeconds() + timeout
    while true {
        if try condition() { return true }
        if monotonicSeconds() > deadline { return false }
        sleepSeconds(0.01)
    }
}
