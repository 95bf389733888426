import ArgumentParser
import StockClient

/// `stockctl cluster …`: a replicated cluster as one node sees it (docs/replication.md).
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "A replicated cluster: roles, epochs, standbys; a deliberate handover.",
        subcommands: [ClusterStatusCommand.self, ClusterFailoverCommand.self])
}

/// `stockctl cluster status`: the node's role, epoch, durable end and commit point, and on a
/// primary every standby it streams to or waits for.
struct ClusterStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "This node's role and epoch; on a primary, each standby's ack and lag (in the wait set or not).")

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let s = try await client.clusterStatus()
        emit(options, json: Self.json(s), human: Self.human(s))
    }

    static func json(_ s: ClusterStatus) -> JSON {
        .object([
            ("role", .string(s.role.name)), ("epoch", .uint(s.epoch)), ("node", .string(s.node.string)),
            ("primary", .string(s.primary.string)), ("durable", .uint(s.durable)), ("committed", .uint(s.committed)),
            ("standbys", .array(s.standbys.map { b in
                .object([("node", .string(b.node.string)), ("acked", .uint(b.acked)), ("lag_ms", .uint(UInt64(b.lagMs))),
                         ("in_sync", .bool(b.inWaitSet))])
            })),
        ])
    }

    static func human(_ s: ClusterStatus) -> String {
        var lines = ["role \(s.role.name)" + (s.node.isEmpty ? "" : " (node \(s.node.string))") + ", epoch \(s.epoch)"
                     + (s.primary.isEmpty ? "" : ", primary \(s.primary.string)"),
                     "durable \(s.durable), committed \(s.committed)"]
        if !s.standbys.isEmpty {
            lines += formatTable(["STANDBY", "ACKED", "LAG_MS", "IN_SYNC"],
                                 s.standbys.map { [$0.node.string, "\($0.acked)", "\($0.lagMs)", $0.inWaitSet ? "yes" : "no"] })
        }
        return lines.joined(separator: "\n")
    }
}
