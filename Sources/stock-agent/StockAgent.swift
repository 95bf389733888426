import ArgumentParser
import CommandSupport
import Foundation
import StockCluster

/// `stock-agent`: one per stockd node (docs/replication.md §6). etcd decides
/// who is primary; the agent tells its stockd (ROLE, FENCE, ISR_SET).
@main
struct StockAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stock-agent",
        abstract: "Drives one stockd node of a replicated cluster from etcd (leases, campaign, in-sync set).",
        discussion: """
            Run one next to every stockd started with --cluster. The agent holds a lease in etcd; when the \
            primary's lease is gone, an in-sync standby's agent takes the leader key and promotes its stockd. \
            SIGINT or SIGTERM revokes the lease at once (a deliberate stop hands over without waiting for the TTL).
            """,
        version: BuildInfo.versionLine(program: "stock-agent"))

    @Option(help: "etcd client URLs, comma-separated (http://127.0.0.1:2379).")
    var etcd: String

    @Option(help: "The cluster name (stockd's --cluster).")
    var cluster: String

    @Option(name: .customLong("node-id"), help: "This node's id (stockd's --node-id).")
    var nodeID: String

    @Option(help: "host:port of this node's stockd (the agent connects there, on loopback).")
    var stockd: String

    @Option(help: "host:port other nodes and clients reach that stockd at (default: --stockd).")
    var advertise: String?

    @Option(name: .customLong("lease-ttl"), help: "Leader lease TTL in seconds (etcd's minimum is about 2).")
    var leaseTTL: Int = 3

    @Option(name: .customLong("repl-timeout"), help: "A standby behind this long leaves the in-sync set (stockd's --repl-timeout).",
            transform: { try DurationParser.milliseconds($0) })
    var replTimeoutMs: UInt64 = 1000

    @Option(help: "How often the agent looks at etcd and stockd.", transform: { try DurationParser.milliseconds($0) })
    var poll: UInt64 = 100

    @Option(name: .customLong("handover-window"),
            help: "After a deliberate handover (stockctl cluster failover) the other standbys leave the leader key to the named node this long.",
            transform: { try DurationParser.milliseconds($0) })
    var handoverWindowMs: UInt64 = 6000

    @Option(name: .customLong("drain-timeout"),
            help: "A primary handing over waits at most this long for its last records to be committed and on the target.",
            transform: { try DurationParser.milliseconds($0) })
    var drainTimeoutMs: UInt64 = 2000

    @Option(name: .customLong("credential-file"),
            help: ArgumentHelp("An admin credential of stockd's auth file (default $STOCKD_CREDENTIAL).", valueName: "file"))
    var credentialFile: String?

    func run() throws {
        guard (2...60).contains(leaseTTL) else { throw ValidationError("--lease-ttl must be 2...60 (seconds)") }
        guard (10...10_000).contains(poll) else { throw ValidationError("--poll must be 10ms...10s") }
        guard (100...600_000).contains(handoverWindowMs) else { throw ValidationError("--handover-window must be 100ms...10m") }
        guard (10...60_000).contains(drainTimeoutMs) else { throw ValidationError("--drain-timeout must be 10ms...60s") }
        let endpoints = etcd.split(separator: ",").map { String($0) }
        guard !endpoints.isEmpty, endpoints.allSatisfy({ $0.hasPrefix("http://") }) else {
            throw ValidationError("--etcd takes http:// URLs, comma-separated")
        }
        var c = AgentConfig(cluster: cluster, node: nodeID, stockd: stockd, advertise: advertise ?? stockd, etcd: endpoints)
        c.leaseTTLSeconds = Int64(leaseTTL)
        c.replTimeoutMs = replTimeoutMs
        c.pollMs = Int(poll)
        c.handoverWindowMs = Int(handoverWindowMs)
        c.drainTimeoutMs = Int(drainTimeoutMs)
        c.callTimeoutMs = max(200, min(2000, leaseTTL * 1000 / 3))
        c.credential = try credential()
        signal(SIGPIPE, SIG_IGN)
        let stop = StopFlag()
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop.set() }
            source.resume()
            stop.keep(source)
        }
        let agent = try Agent(config: c) { line in
            FileHandle.standardError.write(Data("stock-agent \(nodeID): \(line)\n".utf8))
        }
        FileHandle.standardError.write(Data("stock-agent \(nodeID): cluster \(cluster), stockd \(stockd), etcd \(etcd), lease \(leaseTTL)s\n".utf8))
        agent.run(until: { stop.isSet })
    }

    private func credential() throws -> [UInt8] {
        if let credentialFile {
            guard let data = FileManager.default.contents(atPath: credentialFile) else {
                throw ValidationError("--credential-file \(credentialFile): cannot read it")
            }
            return Array(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        }
        return Array((ProcessInfo.processInfo.environment["STOCKD_CREDENTIAL"] ?? "").utf8)
    }
}

/// Set by a signal handler, read by the agent's loop.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    private var sources: [any DispatchSourceSignal] = []

    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func keep(_ s: any DispatchSourceSignal) { lock.lock(); sources.append(s); lock.unlock() }
}
