import Foundation

/// Where a cluster keeps its state in etcd (docs/replication.md §5): every
/// key under `/stockd/<cluster>/`.
public struct ClusterKeys: Sendable, Equatable {
    public let cluster: String

    public init(cluster: String) {
        precondition(!cluster.isEmpty && !cluster.contains("/"), "a cluster name is one path segment")
        self.cluster = cluster
    }

    var prefix: String { "/stockd/\(cluster)/" }
    /// The primary's key, attached to its lease; its create_revision is the epoch.
    public var leader: String { prefix + "leader" }
    /// The in-sync set, written only by the primary, guarded by its epoch.
    public var isr: String { prefix + "isr" }
    /// A deliberate handover asked for (`stockctl cluster failover`), read by the primary's agent and
    /// by every agent about to campaign; stale once a later term has begun.
    public var handover: String { prefix + "handover" }
    /// A node's advertised address and durable end, attached to its lease.
    public func member(_ node: String) -> String { prefix + "members/" + node }
}

/// One read of every key of a cluster (`EtcdClient.get(prefix:)`): what an agent's step decides on.
public struct ClusterView: Sendable {
    public var leader: EtcdKeyValue?
    public var isr: EtcdKeyValue?
    public var handover: EtcdKeyValue?
    /// Member keys by node id.
    public var members: [String: EtcdKeyValue] = [:]

    public init(_ kvs: [EtcdKeyValue], keys: ClusterKeys) {
        let memberPrefix = keys.member("")
        for kv in kvs {
            switch kv.key {
            case keys.leader: leader = kv
            case keys.isr: isr = kv
            case keys.handover: handover = kv
            default:
                if kv.key.hasPrefix(memberPrefix) { members[String(kv.key.dropFirst(memberPrefix.count))] = kv }
            }
        }
    }

    public var isrRecord: ISRRecord? { isr.flatMap { ClusterJSON.decode(ISRRecord.self, $0.value) } }
}

/// The leader key's value.
public struct LeaderRecord: Codable, Sendable, Equatable {
    public var node: String
    /// The `host:port` clients and standbys reach the primary at.
    public var address: String

    public init(node: String, address: String) {
        self.node = node
        self.address = address
    }
}

/// The ISR key's value: the standbys any of which may be promoted, and the
/// epoch of the primary that wrote it.
public struct ISRRecord: Codable, Sendable, Equatable {
    public var epoch: Int64
    public var members: [String]

    public init(epoch: Int64, members: [String]) {
        self.epoch = epoch
        self.members = members
    }
}

/// The handover key's value: the term to hand over (the leader key's create_revision, so a request
/// meant for one term never ends a later one) and the node to hand it to ("" for the primary's agent
/// to pick the in-sync standby furthest ahead).
public struct HandoverRecord: Codable, Sendable, Equatable {
    public var epoch: Int64
    public var to: String

    public init(epoch: Int64, to: String) {
        self.epoch = epoch
        self.to = to
    }
}

/// A member key's value.
public struct MemberRecord: Codable, Sendable, Equatable {
    public var address: String
    /// The last seq durable on that node when it wrote this.
    public var durable: UInt64

    public init(address: String, durable: UInt64) {
        self.address = address
        self.durable = durable
    }
}

/// JSON in and out of etcd values (sorted keys: equal records, equal bytes).
public enum ClusterJSON {
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return Array((try? e.encode(value)) ?? Data())
    }

    public static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) -> T? {
        try? JSONDecoder().decode(type, from: Data(bytes))
    }
}
