// # Replication and cluster control messages (PROTOCOL.md §10)
//
// The values a primary, its standbys and a node's agent exchange. They are
// rare next to RESERVE (one REPL_ROUND per journal round, one REPL_ACK per
// standby sync, agent calls per lease renewal), so they may hold arrays; the
// record bytes of a round are the journal's own encoding, opaque here: the
// protocol layer carries them and the journal layer decodes them.

/// REPL_HELLO: a standby names itself and the last record it holds gap-free.
public struct ReplHello: Sendable, Equatable {
    /// Hash of the settings the journal depends on; equal on every node of a cluster.
    public var fingerprint: UInt64
    /// The highest epoch this node has seen (its `epoch` file).
    public var highestEpoch: UInt64
    /// The epoch of the term `lastSeq` belongs to (0: no term start record yet).
    public var lastEpoch: UInt64
    /// The last seq held with every record below it (0: an empty journal).
    public var lastSeq: UInt64
    public var node: ShortBytes
    public var cluster: ShortBytes

    public init(fingerprint: UInt64, highestEpoch: UInt64, lastEpoch: UInt64, lastSeq: UInt64, node: ShortBytes,
                cluster: ShortBytes) {
        self.fingerprint = fingerprint
        self.highestEpoch = highestEpoch
        self.lastEpoch = lastEpoch
        self.lastSeq = lastSeq
        self.node = node
        self.cluster = cluster
    }
}

/// REPL_HELLO's OK answer: the primary's epoch, the first seq it will send, its commit point.
public struct ReplStart: Sendable, Equatable {
    public var epoch: UInt64
    public var start: UInt64
    public var committed: UInt64

    public init(epoch: UInt64, start: UInt64, committed: UInt64) {
        self.epoch = epoch
        self.start = start
        self.committed = committed
    }
}

/// REPL_ROUND: journal records as the primary wrote them, with its round's gap-free end.
public struct ReplRound: Sendable, Equatable {
    public var epoch: UInt64
    /// Every record with seq <= `end` has been sent on this connection.
    public var end: UInt64
    /// Number of records in `records`.
    public var count: UInt16
    /// `count` records back to back, in the journal's encoding (RecordCodec).
    public var records: [UInt8]

    public init(epoch: UInt64, end: UInt64, count: UInt16, records: [UInt8]) {
        self.epoch = epoch
        self.end = end
        self.count = count
        self.records = records
    }

    /// Bytes before the records: epoch, end, count.
    public static let headerSize = 18
}

/// REPL_ACK: the standby holds every record with seq <= `durable`, fdatasynced.
public struct ReplAck: Sendable, Equatable {
    public var epoch: UInt64
    public var durable: UInt64

    public init(epoch: UInt64, durable: UInt64) {
        self.epoch = epoch
        self.durable = durable
    }

    public static let size = 16
}

/// REPL_SNAPSHOT: one chunk of the primary's snapshot file at `snapshotSeq`.
public struct ReplSnapshotChunk: Sendable, Equatable {
    public var epoch: UInt64
    public var snapshotSeq: UInt64
    /// Where `chunk` starts in the file.
    public var offset: UInt64
    /// The file's size.
    public var total: UInt64
    public var chunk: [UInt8]

    public init(epoch: UInt64, snapshotSeq: UInt64, offset: UInt64, total: UInt64, chunk: [UInt8]) {
        self.epoch = epoch
        self.snapshotSeq = snapshotSeq
        self.offset = offset
        self.total = total
        self.chunk = chunk
    }

    /// Bytes before the chunk.
    public static let headerSize = 32
}

/// A node's place in its cluster.
public enum NodeRole: UInt8, Sendable, CaseIterable {
    /// No cluster name: a single node (every node before replication).
    case standalone = 0
    case primary = 1
    case standby = 2

    public var name: String {
        switch self {
        case .standalone: "standalone"
        case .primary: "primary"
        case .standby: "standby"
        }
    }
}

/// ROLE: the agent makes its node primary of `epoch`, or standby of the primary at `primary`.
public struct RoleChange: Sendable, Equatable {
    /// `.primary` or `.standby` (a node never becomes standalone at run time).
    public var role: NodeRole
    public var epoch: UInt64
    /// The primary's `host:port` for a standby; empty for a primary.
    public var primary: ShortBytes

    public init(role: NodeRole, epoch: UInt64, primary: ShortBytes = .empty) {
        self.role = role
        self.epoch = epoch
        self.primary = primary
    }
}

/// ROLE's OK answer: the node's role, epoch and last seq after the change.
public struct RoleReply: Sendable, Equatable {
    public var role: NodeRole
    public var epoch: UInt64
    public var lastSeq: UInt64

    public init(role: NodeRole, epoch: UInt64, lastSeq: UInt64) {
        self.role = role
        self.epoch = epoch
        self.lastSeq = lastSeq
    }
}

/// ISR_SET: the standbys the primary of `epoch` waits for.
public struct ISRSet: Sendable, Equatable {
    public var epoch: UInt64
    /// Distinct node ids, at most `Limits.maxStandbys`.
    public var nodes: [ShortBytes]

    public init(epoch: UInt64, nodes: [ShortBytes]) {
        self.epoch = epoch
        self.nodes = nodes
    }
}

/// One standby as its primary sees it (CLUSTER_STATUS).
public struct StandbyStatus: Sendable, Equatable {
    public var node: ShortBytes
    /// The highest durable seq it acknowledged.
    public var acked: UInt64
    /// How long its ack has been behind the primary's durable end (0: caught up).
    public var lagMs: UInt32
    /// Whether commits wait for it.
    public var inWaitSet: Bool

    public init(node: ShortBytes, acked: UInt64, lagMs: UInt32, inWaitSet: Bool) {
        self.node = node
        self.acked = acked
        self.lagMs = lagMs
        self.inWaitSet = inWaitSet
    }
}

/// CLUSTER_STATUS's OK answer.
public struct ClusterStatus: Sendable, Equatable {
    public var role: NodeRole
    public var epoch: UInt64
    /// The last seq durable on this node.
    public var durable: UInt64
    /// The commit point (a standalone node: `durable`).
    public var committed: UInt64
    /// This node's id (empty: standalone).
    public var node: ShortBytes
    /// The primary's address as this node knows it (empty: unknown, or this node).
    public var primary: ShortBytes
    /// Standbys connected to a primary, at most `Limits.maxStandbys`.
    public var standbys: [StandbyStatus]

    public init(role: NodeRole, epoch: UInt64, durable: UInt64, committed: UInt64, node: ShortBytes = .empty,
                primary: ShortBytes = .empty, standbys: [StandbyStatus] = []) {
        self.role = role
        self.epoch = epoch
        self.durable = durable
        self.committed = committed
        self.node = node
        self.primary = primary
        self.standbys = standbys
    }
}
