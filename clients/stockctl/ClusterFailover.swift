import ArgumentParser
import Foundation
import StockCluster
#if canImport(Glibc)
import Glibc
#endif

/// `stockctl cluster failover`: a deliberate handover (docs/replication.md §5). It writes the
/// handover key in etcd for the current term; the primary's agent stops its stockd taking changes,
/// waits until every record is committed and on the target, and gives the leader key back; the
/// target's agent takes it at once (the other standbys leave it to it for `--handover-window`).
/// Nothing acknowledged is lost: the target is in the in-sync set, so it holds every committed
/// record, and the answers in flight are all sent before the key goes.
struct ClusterFailoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Hand the primary's term over to an in-sync standby, with nothing acknowledged lost.",
        discussion: """
            Talks to etcd (the cluster's stock-agents carry it out), not to stockd. Exits 0 once another \
            node holds the leader key in a later epoch; 1 if the primary's agent refused (the target is \
            not caught up) or nothing happened within --wait. The old primary's stockd refuses changes \
            from then on: restart it to have it rejoin as a standby.
            """)

    @OptionGroup var options: GlobalOptions

    @Option(help: ArgumentHelp("etcd client URLs, comma-separated (default: $STOCKD_ETCD, else http://127.0.0.1:2379).",
                               valueName: "urls"))
    var etcd: String?

    @Option(help: "The cluster name (stockd's and stock-agent's --cluster).")
    var cluster: String

    @Option(help: ArgumentHelp("The standby to hand over to (default: the in-sync one furthest ahead).", valueName: "node-id"))
    var to: String?

    @Option(help: ArgumentHelp("How long to wait for the new primary: 500ms, 10s (default: 15s).", valueName: "duration"),
            transform: DurationValue.parse)
    var wait = DurationValue(milliseconds: 15_000)

    func run() async throws {
        let urls = etcd ?? ProcessInfo.processInfo.environment["STOCKD_ETCD"] ?? "http://127.0.0.1:2379"
        guard !cluster.isEmpty, !cluster.contains("/") else { throw CLIError("--cluster: one name, no '/'", code: ExitStatus.usage) }
        let client: EtcdClient
        do { client = try EtcdClient(endpoints: urls.split(separator: ",").map(String.init), timeoutMs: 2000) } catch {
            throw CLIError("--etcd \(urls): \(error)", code: ExitStatus.usage)
        }
        do {
            let result = try Self.handOver(client, keys: ClusterKeys(cluster: cluster), to: to ?? "", waitMs: wait.milliseconds)
            emit(options, json: .object([
                ("from", .string(result.from)), ("to", .string(result.to)), ("old_epoch", .int(result.oldEpoch)),
                ("epoch", .int(result.epoch)), ("seconds", .double(result.seconds)),
            ]), human: "handed over from \(result.from) (epoch \(result.oldEpoch)) to \(result.to) (epoch \(result.epoch)) "
                + "in \(String(format: "%.2f", result.seconds)) s; restart \(result.from)'s stockd to rejoin it as a standby")
        } catch let e as EtcdError {
            throw CLIError("etcd: \(e)", code: ExitStatus.unreachable)
        }
    }

    struct Done {
        let from: String, to: String, oldEpoch: Int64, epoch: Int64, seconds: Double
    }

    static func handOver(_ etcd: EtcdClient, keys: ClusterKeys, to: String, waitMs: UInt64) throws -> Done {
        guard let kv = try etcd.get(keys.leader).kv, let leader = ClusterJSON.decode(LeaderRecord.self, kv.value) else {
            throw CLIError("no primary in cluster \(keys.cluster): the leader key is absent", code: ExitStatus.failure)
        }
        let epoch = kv.createRevision
        let isr = try etcd.get(keys.isr).kv.flatMap { ClusterJSON.decode(ISRRecord.self, $0.value) }?.members ?? []
        if !to.isEmpty {
            guard to != leader.node else { throw CLIError("\(to) is already the primary (epoch \(epoch))", code: ExitStatus.failure) }
            guard isr.contains(to) else {
                throw CLIError("\(to) is not in the in-sync set [\(isr.joined(separator: ", "))]", code: ExitStatus.failure)
            }
        }
        guard !isr.isEmpty else { throw CLIError("no standby is in the in-sync set: nothing to hand over to", code: ExitStatus.failure) }
        let request = ClusterJSON.encode(HandoverRecord(epoch: epoch, to: to))
        let put = try etcd.txn(compare: [.createRevision(key: keys.leader, equals: epoch)],
                               success: [.put(key: keys.handover, value: request)])
        guard put.succeeded else { throw CLIError("the primary changed while asking; try again", code: ExitStatus.failure) }
        let start = nowSeconds()
        while nowSeconds() - start < Double(waitMs) / 1000 {
            if let now = try etcd.get(keys.leader).kv, now.createRevision > epoch,
               let next = ClusterJSON.decode(LeaderRecord.self, now.value) {
                return Done(from: leader.node, to: next.node, oldEpoch: epoch, epoch: now.createRevision,
                            seconds: nowSeconds() - start)
            }
            if try etcd.get(keys.handover).kv == nil {
                throw CLIError("the primary's agent refused the handover (its log says why: the target not caught up?)",
                               code: ExitStatus.failure)
            }
            usleep(50_000)
        }
        throw CLIError("no new primary within \(waitMs) ms (the handover of epoch \(epoch) is still asked for)",
                       code: ExitStatus.failure)
    }

    static func nowSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
