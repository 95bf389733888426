/// Operation codes of the stockd wire protocol (`protocol/PROTOCOL.md` §4).
///
/// A response carries the opcode of the request it answers, with the
/// `FrameHeader.responseFlag` set. Ranges are reserved for later features so
/// that old clients can recognise and reject them cleanly:
/// `0x01–0x0F` session, `0x10–0x1F` reservations, `0x20–0x2F` stock,
/// `0x30–0x3F` observability, `0x40–0x4F` event feed (`SUBSCRIBE`),
/// `0x50–0x7F` future operations, `0x80–0xFF` never assigned.
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
        }
    }

    /// What the server must know of this operation before it runs it (PROTOCOL.md §4, the "role"
    /// column and §3.2's check order). One exhaustive switch: a new opcode does not compile until
    /// its facts are stated here, and the server reads them nowhere else.
    @inlinable
    public var facts: OpcodeFacts {
        switch self {
        // Session: anyone, before and after HELLO.
        case .hello, .ping: OpcodeFacts(role: .none, changesState: false)
        // Reads and the feed: read-only monitors (viewer) and up.
        case .stockGet, .stockList, .stats, .subscribe, .credit: OpcodeFacts(role: .viewer, changesState: false)
        // Holds: checkout services and up; journaled before they are answered.
        case .reserve, .reserveBundle, .confirm, .release, .extend: OpcodeFacts(role: .checkout, changesState: true)
        // Stock changes: operators only; journaled.
        case .stockSet, .stockAdjust, .backupRelease, .backupHold, .stage: OpcodeFacts(role: .admin, changesState: true)
        // Server to client only: a client sending it gets UNKNOWN_OPCODE, like any opcode it may not send.
        case .event: OpcodeFacts(role: .none, changesState: false)
        }
    }

    /// The facts of a raw opcode byte; an unassigned byte needs no role and changes nothing (it is
    /// answered UNKNOWN_OPCODE whoever sends it).
    @inlinable
    public static func facts(_ raw: UInt8) -> OpcodeFacts {
        Opcode(rawValue: raw)?.facts ?? OpcodeFacts(role: .none, changesState: false)
    }
}

/// The per-opcode facts the server checks before running a request.
public struct OpcodeFacts: Sendable, Equatable {
    /// The least role a session needs (roles ordered none < viewer < checkout < admin: compare by
    /// rank, `needed > role`, never by wire value — viewer's wire value 3 is above admin's 2).
    public let role: Role
    /// Whether the request changes state: it needs a healthy journal and is answered only once
    /// its record is durable.
    public let changesState: Bool

    @inlinable
    public init(role: Role, changesState: Bool) {
        self.role = role
        self.changesState = changesState
    }
}
