import ArgumentParser
import Foundation
import StockCore
import StockJournal
import StockServer

/// The flags of a cluster node (docs/replication.md §8). Without `--cluster`
/// the node is standalone and every other flag here must be left out.
struct ReplicationOptions: ParsableArguments {
    @Option(help: "Cluster name: makes this node a cluster node that starts as a standby and waits for ROLE from its agent.")
    var cluster: String?

    @Option(name: .customLong("node-id"), help: "This node's id in the cluster (1...64 bytes).")
    var nodeID: String?

    @Option(help: "host:port other nodes and clients reach this node at (default: --host:--port).")
    var advertise: String?

    @Option(name: .customLong("min-insync"), help: "Standbys that must be in sync for a change to be executed (0...16).")
    var minInsync = 1

    @Option(name: .customLong("max-standbys"), help: "Standbys a primary streams to at once (1...16).")
    var maxStandbys = 4

    @Option(name: .customLong("repl-queue"), help: "MiB of unsent journal per standby before its stream pauses.")
    var replQueueMiB = 64

    @Option(name: .customLong("repl-timeout"),
            help: "A standby silent this long is disconnected; a primary silent this long is reconnected to.",
            transform: DurationArgument.parse)
    var replTimeout = DurationArgument(milliseconds: 1000)

    @Option(name: .customLong("repl-backoff"), help: "A standby's first reconnect wait (doubling to 2s, or to it if longer).",
            transform: DurationArgument.parse)
    var replBackoff = DurationArgument(milliseconds: 50)

    @Option(name: .customLong("repl-credential-file"),
            help: ArgumentHelp("A file holding the secret this node sends to its primary (an admin credential of the primary's auth file; default $STOCKD_REPL_CREDENTIAL).", valueName: "file"))
    var credentialFile: String?

    /// The backoff's ceiling (doubling stops there).
    static let backoffCeilingMs: UInt64 = 2000

    /// nil without `--cluster`; the journal's fingerprint from the core's settings.
    func makeConfig(host: String, port: Int, core: CoreConfig) throws -> ClusterConfig? {
        guard let cluster else {
            guard nodeID == nil, advertise == nil, credentialFile == nil else {
                throw ValidationError("--node-id, --advertise and --repl-credential-file need --cluster")
            }
            return nil
        }
        guard let nodeID else { throw ValidationError("--cluster needs --node-id") }
        var c = ClusterConfig(name: cluster, nodeID: nodeID, advertise: advertise ?? "\(host):\(port)")
        c.minInsync = minInsync
        c.maxStandbys = maxStandbys
        guard replQueueMiB >= 1 && replQueueMiB <= 1024 else { throw ValidationError("--repl-queue must be 1...1024 (MiB)") }
        c.replQueueBytes = replQueueMiB << 20
        c.replTimeoutMs = replTimeout.milliseconds
        c.backoffMinMs = replBackoff.milliseconds
        c.backoffMaxMs = max(Self.backoffCeilingMs, replBackoff.milliseconds)
        c.credential = try credential()
        c.fingerprint = ConfigFingerprint.compute(tokenCapacity: core.tokenCapacity, maxTTLMs: core.maxTTLMs,
                                                  fateLimit: core.fateMemoryTotal)
        return c
    }

    private func credential() throws -> [UInt8] {
        if let credentialFile {
            guard let data = FileManager.default.contents(atPath: credentialFile) else {
                throw ValidationError("--repl-credential-file \(credentialFile): cannot read it")
            }
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return Array(text.utf8)
        }
        return Array((ProcessInfo.processInfo.environment["STOCKD_REPL_CREDENTIAL"] ?? "").utf8)
    }
}
