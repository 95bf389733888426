/// Operation codes of the stockd wire protocol (`protocol/PROTOCOL.md` §4).
///
/// A response carries the opcode of the request it answers, with the
/// `FrameHeader.responseFlag` set. Ranges are reserved for later features so
/// that old clients can recognise and reject them cleanly:
/// `0x01–0x0F` session, `0x10–0x1F` reservations, `0x20–0x2F` stock,
/// `0x30–0x3F` observability, `0x40–0x4F` event feed (`SUBSCRIBE`),
/// `0x50–0x5F` replication and cluster control (§10), `0x60–0x7F` future
/// operations, `0x80–0xFF` never assigned.
public enum Opcode: UInt8, Sendable, CaseIterable {
    case hello = 0x01
    case ping = 0x02
    case reserve = 0x10
    case reserveBundle = 0x11
    case confirm = 0x12
    case release = 0x13
    case extend = 0x14
    case stockSet = 0x20
    case stockAdjust = 0x21
    case stockGet = 0x22
    case stockList = 0x23
    /// Backup units back on sale (PROTOCOL.md §4 BACKUP_RELEASE).
    case backupRelease = 0x24
    /// Available units held back as backup.
    case backupHold = 0x25
    /// A show's catalog, every line or none.
    case stage = 0x26
    case stats = 0x30
    case subscribe = 0x40
    /// Server to client only: one event of a feed (PROTOCOL.md §9).
    case event = 0x41
    /// Client to server on a feed connection: more credit; never answered.
    case credit = 0x42
    /// A standby opens a replication connection (PROTOCOL.md §10).
    case replHello = 0x50
    /// Primary to standby only: journal records of one round.
    case replRound = 0x51
    /// Standby to primary on a replication connection: its durable end; never answered.
    case replAck = 0x52
    /// Primary to standby only: a chunk of the snapshot file a catch-up starts from.
    case replSnapshot = 0x53
    /// Agent to node: become primary of an epoch, or standby of a primary.
    case role = 0x58
    /// Agent to primary: the monotonic time until which it may commit.
    case fence = 0x59
    /// Agent to primary: the standbys it waits for.
    case isrSet = 0x5A
    /// Role, epoch, commit point and each standby's lag.
    case clusterStatus = 0x5B

    /// The spec's upper-case name, as used in logs, STATS keys and vectors.
    public var name: String {
        switch self {
        case .hello: "HELLO"
        case .ping: "PING"
        case .reserve: "RESERVE"
        case .reserveBundle: "RESERVE_BUNDLE"
        case .confirm: "CONFIRM"
        case .release: "RELEASE"
        case .extend: "EXTEND"
        case .stockSet: "STOCK_SET"
        case .stockAdjust: "STOCK_ADJUST"
        case .stockGet: "STOCK_GET"
        case .stockList: "STOCK_LIST"
        case .backupRelease: "BACKUP_RELEASE"
        case .backupHold: "BACKUP_HOLD"
        case .stage: "STAGE"
        case .stats: "STATS"
        case .subscribe: "SUBSCRIBE"
        case .event: "EVENT"
        case .credit: "CREDIT"
        case .replHello: "REPL_HELLO"
        case .replRound: "REPL_ROUND"
        case .replAck: "REPL_ACK"
        case .replSnapshot: "REPL_SNAPSHOT"
        case .role: "ROLE"
        case .fence: "FENCE"
        case .isrSet: "ISR_SET"
        case .clusterStatus: "CLUSTER_STATUS"
        }
    }

    /// What the server must know of this operation before it runs it (PROTOCOL.md §4, the "role"
    /// column and §3.2's check order), and the sizes its request and OK answer payloads can have
    /// (§4's layouts). One exhaustive switch: a new opcode does not compile until its facts are
    /// stated here, and the server reads them nowhere else. Tests hold the codec to the sizes.
    @inlinable
    public var facts: OpcodeFacts {
        typealias S = PayloadSize
        let sku = S.short(1, Limits.maxSKULength)  // u8 length + 1...64 bytes
        let text = S.short(0, Limits.maxShortBytes)  // u8 length + 0...64 bytes
        let info = S.fixed(StockInfo.size)
        switch self {
        // Session: anyone, before and after HELLO.
        case .hello:
            return OpcodeFacts(role: .none, changesState: false,
                               request: .fixed(2) + text + .short(0, Limits.maxCredentialLength),
                               answer: .fixed(23) + .short(0, 255))
        case .ping: return OpcodeFacts(role: .none, changesState: false, request: .fixed(0), answer: .fixed(0))
        // Reads and the feed: read-only monitors (viewer) and up.
        case .stockGet: return OpcodeFacts(role: .viewer, changesState: false, request: sku, answer: info)
        case .stockList:
            return OpcodeFacts(role: .viewer, changesState: false, request: .fixed(6),
                               answer: .fixed(6) + (sku + info).times(0, Int(Limits.maxListPage)))
        case .stats:
            // Bounded by the frame: the server cuts STATS to fit (no count of its own).
            return OpcodeFacts(role: .viewer, changesState: false, request: .fixed(0),
                               answer: PayloadSize(min: 2, max: nil))
        case .subscribe:
            return OpcodeFacts(role: .viewer, changesState: false, request: .fixed(14) + text, answer: .fixed(16))
        case .credit:  // never answered
            return OpcodeFacts(role: .viewer, changesState: false, request: .fixed(4), answer: nil)
        // Holds: checkout services and up; journaled before they are answered.
        case .reserve:
            return OpcodeFacts(role: .checkout, changesState: true, request: .fixed(8) + sku + text + text,
                               answer: .fixed(Token.size + 16))
        case .reserveBundle:
            return OpcodeFacts(role: .checkout, changesState: true,
                               request: .fixed(4) + text + text + .fixed(1)
                                   + (.fixed(4) + sku).times(1, Limits.maxBundleLines),
                               answer: .fixed(Token.size + 8))
        case .confirm:
            return OpcodeFacts(role: .checkout, changesState: true, request: .fixed(Token.size + 4) + text,
                               answer: .fixed(8))
        case .release:
            return OpcodeFacts(role: .checkout, changesState: true, request: .fixed(Token.size), answer: .fixed(4))
        case .extend:
            return OpcodeFacts(role: .checkout, changesState: true, request: .fixed(Token.size + 4), answer: .fixed(8))
        // Stock changes: operators only; journaled.
        case .stockSet:
            return OpcodeFacts(role: .admin, changesState: true, request: .fixed(25) + sku, answer: info)
        case .stockAdjust:
            return OpcodeFacts(role: .admin, changesState: true, request: .fixed(9) + sku, answer: info)
        case .backupRelease, .backupHold:
            return OpcodeFacts(role: .admin, changesState: true, request: .fixed(8) + sku, answer: info)
        case .stage:
            return OpcodeFacts(role: .admin, changesState: true,
                               request: .fixed(2) + (.fixed(24) + sku).times(1, Limits.maxStageLines),
                               answer: .fixed(4))
        // Server to client only: a client sending it gets UNKNOWN_OPCODE, like any opcode it may not send.
        case .event: return OpcodeFacts(role: .none, changesState: false, request: nil, answer: nil)
        // Replication and cluster control (§10): standbys and agents hold an admin credential. None
        // of them is a client's state change: ROLE's term start record is the node's own, and the
        // rest move the commit point or read it.
        case .replHello:
            let name = S.short(1, Limits.maxNodeName)
            return OpcodeFacts(role: .admin, changesState: false, request: .fixed(32) + name + name,
                               answer: .fixed(24))
        case .replRound, .replSnapshot:  // primary to standby only, bounded by the frame
            let header = self == .replRound ? ReplRound.headerSize : ReplSnapshotChunk.headerSize
            return OpcodeFacts(role: .none, changesState: false, request: nil,
                               answer: PayloadSize(min: header, max: nil))
        case .replAck:  // never answered
            return OpcodeFacts(role: .admin, changesState: false, request: .fixed(ReplAck.size), answer: nil)
        case .role:
            return OpcodeFacts(role: .admin, changesState: false,
                               request: .fixed(9) + S.short(0, Limits.maxNodeName), answer: .fixed(17))
        case .fence:
            return OpcodeFacts(role: .admin, changesState: false, request: .fixed(8), answer: .fixed(8))
        case .isrSet:
            return OpcodeFacts(role: .admin, changesState: false,
                               request: .fixed(9) + S.short(1, Limits.maxNodeName).times(0, Limits.maxStandbys),
                               answer: .fixed(8))
        case .clusterStatus:
            let name = S.short(0, Limits.maxNodeName)
            let standby = S.short(1, Limits.maxNodeName) + .fixed(13)
            return OpcodeFacts(role: .viewer, changesState: false, request: .fixed(0),
                               answer: .fixed(25) + name + name + .fixed(1) + standby.times(0, Limits.maxStandbys))
        }
    }

    /// The facts of a raw opcode byte; an unassigned byte needs no role and changes nothing (it is
    /// answered UNKNOWN_OPCODE whoever sends it).
    @inlinable
    public static func facts(_ raw: UInt8) -> OpcodeFacts {
        Opcode(rawValue: raw)?.facts ?? .unassigned
    }

    /// What the server checks on every request — the role and whether it changes state — for all
    /// 256 opcode bytes, built once from `facts`. The server reads this per request, not `facts`:
    /// `facts` composes the payload size ranges (with their preconditions) every time it is called,
    /// which cost reserve+release about a fifth of its pipelined throughput (issue 18's A/B).
    public static let accessTable: [OpcodeAccess] = (0...255).map { raw in
        let f = facts(UInt8(raw))
        return OpcodeAccess(role: f.role, changesState: f.changesState)
    }

    /// The per-request part of `facts(raw)`: one load from `accessTable`.
    @inlinable
    public static func access(_ raw: UInt8) -> OpcodeAccess {
        accessTable.withUnsafeBufferPointer { $0[Int(raw)] }
    }
}

/// The part of `OpcodeFacts` the server checks before running each request.
public struct OpcodeAccess: Sendable, Equatable {
    public let role: Role
    public let changesState: Bool

    @inlinable
    public init(role: Role, changesState: Bool) {
        self.role = role
        self.changesState = changesState
    }
}

/// The per-opcode facts: what the server checks before running a request, and its layouts' sizes.
public struct OpcodeFacts: Sendable, Equatable {
    /// The least role a session needs (roles ordered none < viewer < checkout < admin: compare by
    /// rank, `needed > role`, never by wire value — viewer's wire value 3 is above admin's 2).
    public let role: Role
    /// Whether the request changes state: it needs a healthy journal and is answered only once
    /// its record is durable.
    public let changesState: Bool
    /// The payload sizes a valid request can have; nil: a client never sends it.
    public let request: PayloadSize?
    /// The payload sizes an OK answer can have; nil: never answered OK.
    public let answer: PayloadSize?

    @inlinable
    public init(role: Role, changesState: Bool, request: PayloadSize?, answer: PayloadSize?) {
        self.role = role
        self.changesState = changesState
        self.request = request
        self.answer = answer
    }

    /// An unassigned opcode byte's facts.
    public static let unassigned = OpcodeFacts(role: .none, changesState: false, request: nil, answer: nil)
}

/// The range of sizes (bytes) a payload layout allows: fixed fields add, a u8-length-prefixed
/// field adds 1 + its bounds, a counted list multiplies. `max` nil: bounded only by the frame.
public struct PayloadSize: Sendable, Equatable {
    public let min: Int
    public let max: Int?

    @inlinable
    public init(min: Int, max: Int?) {
        precondition(min >= 0 && (max ?? min) >= min, "a payload size range is 0 <= min <= max")
        self.min = min
        self.max = max
    }

    /// Exactly `bytes`.
    @inlinable public static func fixed(_ bytes: Int) -> PayloadSize { PayloadSize(min: bytes, max: bytes) }

    /// A field of one length byte and `min...max` bytes after it.
    @inlinable public static func short(_ min: Int, _ max: Int) -> PayloadSize {
        PayloadSize(min: 1 + min, max: 1 + max)
    }

    /// `min...max` repetitions of this layout.
    @inlinable public func times(_ min: Int, _ max: Int) -> PayloadSize {
        PayloadSize(min: self.min * min, max: self.max.map { $0 * max })
    }

    /// One layout after the other.
    @inlinable public static func + (a: PayloadSize, b: PayloadSize) -> PayloadSize {
        PayloadSize(min: a.min + b.min, max: a.max.flatMap { x in b.max.map { x + $0 } })
    }

    /// Whether a payload of `count` bytes fits.
    @inlinable public func admits(_ count: Int) -> Bool { count >= min && count <= (max ?? .max) }
}
