/// A decoded response: its request id, the opcode it answers (raw, because
/// an `UNKNOWN_OPCODE` answer echoes an unassigned one), status and body.
public struct Response: Sendable, Equatable {
    public var requestID: UInt32
    public var opcode: UInt8
    public var body: ResponseBody

    public init(requestID: UInt32, opcode: UInt8, body: ResponseBody) {
        self.requestID = requestID
        self.opcode = opcode
        self.body = body
    }

    /// The status the frame carries.
    public var status: Status {
        if case .failure(let s, _) = body { return s }
        return .ok
    }
}

/// The payload of a response, by opcode when the status is OK and by status otherwise.
public enum ResponseBody: Sendable, Equatable {
    case hello(HelloReply)
    case pong
    case reserved(Reservation)
    case bundleReserved(BundleReservation)
    case confirmed(ConfirmReply)
    case released(units: UInt32)
    case extended(expiresAtMs: UInt64)
    /// Answer to STOCK_SET, STOCK_ADJUST and STOCK_GET.
    case stock(StockInfo)
    /// STAGE applied: its line count, and how many SKUs it created.
    case staged(StageReply)
    case stockPage(StockPage)
    case stats([StatEntry])
    /// SUBSCRIBE accepted: the feed starts at `start`; `end` was its last offset then.
    case subscribed(FeedStart)
    /// One event of a feed (an EVENT frame with status OK).
    case event(FeedEvent)
    /// REPL_HELLO accepted: the primary's epoch, first seq it sends, commit point (§10).
    case replStarted(ReplStart)
    /// One REPL_ROUND frame on a replication connection.
    case replRound(ReplRound)
    /// One REPL_SNAPSHOT frame on a replication connection.
    case replSnapshot(ReplSnapshotChunk)
    /// ROLE done: the node's role, epoch and last seq.
    case role(RoleReply)
    /// FENCE and ISR_SET: the commit point after the change.
    case committed(UInt64)
    case clusterStatus(ClusterStatus)
    /// Any status other than OK, with its detail.
    case failure(Status, ErrorDetail)
}

/// The role a session was granted.
public enum Role: UInt8, Sendable, CaseIterable, Comparable {
    /// Not authenticated: HELLO and PING only.
    case none = 0
    /// Read-only monitors (`stockctl watch`, dashboards): stock get/list, STATS, the event feed.
    /// Wire value 3: it was added after checkout and admin, whose values stay. Never compare
    /// roles by raw value: use `<` (by `rank`).
    case viewer = 3
    /// Checkout services: reserve, bundle, confirm, release, extend, and everything a viewer may.
    case checkout = 1
    /// Operators: everything.
    case admin = 2

    public var name: String {
        switch self {
        case .none: "none"
        case .viewer: "viewer"
        case .checkout: "checkout"
        case .admin: "admin"
        }
    }

    /// Position in the order none < viewer < checkout < admin: each role may do
    /// everything the roles below it may.
    @inlinable
    public var rank: Int {
        switch self {
        case .none: 0
        case .viewer: 1
        case .checkout: 2
        case .admin: 3
        }
    }

    @inlinable
    public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
}

/// HELLO's answer: the server's version, the role granted and its limits.
public struct HelloReply: Sendable, Equatable {
    public var version: UInt16
    public var role: Role
    public var maxFrame: UInt32
    public var maxTTLMs: UInt32
    public var defaultTTLMs: UInt32
    public var maxBundleLines: UInt16
    public var maxSKULength: UInt16
    /// Requests a connection may have in flight before the server stops reading it.
    public var maxInflight: UInt32
    /// E.g. `stockd 0.1.0`.
    public var serverName: [UInt8]

    public init(version: UInt16 = Limits.protocolVersion, role: Role, maxFrame: UInt32, maxTTLMs: UInt32,
                defaultTTLMs: UInt32, maxBundleLines: UInt16 = UInt16(Limits.maxBundleLines),
                maxSKULength: UInt16 = UInt16(Limits.maxSKULength), maxInflight: UInt32, serverName: [UInt8]) {
        self.version = version
        self.role = role
        self.maxFrame = maxFrame
        self.maxTTLMs = maxTTLMs
        self.defaultTTLMs = defaultTTLMs
        self.maxBundleLines = maxBundleLines
        self.maxSKULength = maxSKULength
        self.maxInflight = maxInflight
        self.serverName = serverName
    }
}

/// RESERVE's answer.
public struct Reservation: Sendable, Equatable {
    public var token: Token
    /// Deadline, Unix epoch milliseconds (server clock).
    public var expiresAtMs: UInt64
    /// Units of the SKU still available right after this reservation.
    public var available: UInt64
    public init(token: Token, expiresAtMs: UInt64, available: UInt64) {
        self.token = token
        self.expiresAtMs = expiresAtMs
        self.available = available
    }
}

/// RESERVE_BUNDLE's answer.
public struct BundleReservation: Sendable, Equatable {
    public var token: Token
    public var expiresAtMs: UInt64
    public init(token: Token, expiresAtMs: UInt64) {
        self.token = token
        self.expiresAtMs = expiresAtMs
    }
}

/// CONFIRM's answer.
public struct ConfirmReply: Sendable, Equatable {
    /// Units now sold.
    public var confirmed: UInt32
    /// Units returned to sale by a partial confirm.
    public var returned: UInt32
    public init(confirmed: UInt32, returned: UInt32) {
        self.confirmed = confirmed
        self.returned = returned
    }
}

/// The counters of one SKU. Invariant: `onHand = available + reserved + confirmed + backup`.
public struct StockInfo: Sendable, Equatable {
    /// Bytes of the encoded form.
    public static let size = 56
    public var onHand: UInt64
    public var available: UInt64
    public var reserved: UInt64
    public var confirmed: UInt64
    public var lowStockThreshold: UInt32
    public var perCustomerLimit: UInt32
    /// Reservations (single or bundle line) granted on this SKU since the
    /// server started: a monotonic count, so a monitor derives reservations/s
    /// from two reads. Idempotent replays are not counted.
    public var reservations: UInt64
    /// Units on hand held back from sale until an operator releases them (BACKUP_RELEASE).
    public var backup: UInt64
    public init(onHand: UInt64, available: UInt64, reserved: UInt64, confirmed: UInt64,
                lowStockThreshold: UInt32 = 0, perCustomerLimit: UInt32 = 0, reservations: UInt64 = 0,
                backup: UInt64 = 0) {
        self.onHand = onHand
        self.available = available
        self.reserved = reserved
        self.confirmed = confirmed
        self.lowStockThreshold = lowStockThreshold
        self.perCustomerLimit = perCustomerLimit
        self.reservations = reservations
        self.backup = backup
    }
}

/// STAGE's answer.
public struct StageReply: Sendable, Equatable {
    /// Lines applied (all of them).
    public var lines: UInt16
    /// SKUs the stage added to the catalog.
    public var created: UInt16
    public init(lines: UInt16, created: UInt16) {
        self.lines = lines
        self.created = created
    }
}

/// One refused line of a STAGE (`STAGE_REFUSED`).
public struct StageRefusal: Sendable, Equatable {
    /// Index of the line in the request (0-based).
    public var line: UInt16
    /// Why: `INSUFFICIENT_AVAILABLE` (value: units available, fewer than the
    /// line takes off sale) or `AT_CAPACITY` (value: SKUs the catalog can
    /// still take).
    public var status: Status
    public var value: UInt64
    public init(line: UInt16, status: Status, value: UInt64) {
        self.line = line
        self.status = status
        self.value = value
    }
}

/// One STOCK_LIST entry.
public struct StockEntry: Sendable, Equatable {
    public var sku: SKU
    public var info: StockInfo
    public init(sku: SKU, info: StockInfo) {
        self.sku = sku
        self.info = info
    }
}

/// STOCK_LIST's answer.
public struct StockPage: Sendable, Equatable {
    /// Cursor for the next page, or `Limits.listEnd`.
    public var nextCursor: UInt32
    public var entries: [StockEntry]
    public init(nextCursor: UInt32, entries: [StockEntry]) {
        self.nextCursor = nextCursor
        self.entries = entries
    }
}

/// One STATS counter.
public struct StatEntry: Sendable, Equatable {
    /// ASCII name, e.g. `requests.RESERVE.OK` (at most 64 bytes).
    public var name: ShortBytes
    public var value: UInt64
    public init(name: ShortBytes, value: UInt64) {
        self.name = name
        self.value = value
    }
}

/// The detail a failure status carries (see the status table in PROTOCOL.md).
public enum ErrorDetail: Sendable, Equatable {
    case none
    /// OUT_OF_STOCK: failing line (0 for RESERVE), units available.
    case outOfStock(line: UInt8, available: UInt64)
    /// UNKNOWN_SKU: failing line.
    case unknownSKU(line: UInt8)
    /// CUSTOMER_LIMIT: failing line, units the customer may still take.
    case customerLimit(line: UInt8, remaining: UInt64)
    /// STOCK_CHANGED: the current on-hand.
    case stockChanged(current: UInt64)
    /// INSUFFICIENT_AVAILABLE: units available.
    case insufficientAvailable(available: UInt64)
    /// TTL_TOO_LONG: the server maximum.
    case ttlTooLong(maxTTLMs: UInt32)
    /// FRAME_TOO_LARGE: the server maximum.
    case frameTooLarge(maxFrame: UInt32)
    /// UNSUPPORTED_VERSION: versions the server speaks.
    case unsupportedVersion(min: UInt16, max: UInt16)
    /// OFFSET_COMPACTED: the oldest offset the feed still serves.
    case offsetCompacted(oldest: UInt64)
    /// INSUFFICIENT_BACKUP: units the SKU holds back.
    case insufficientBackup(backup: UInt64)
    /// STAGE_REFUSED: every line refused (at most `Limits.maxStageLines`).
    case stageRefused([StageRefusal])
    /// NOT_PRIMARY: the newest epoch the node knows, the primary's address (empty: unknown).
    case notPrimary(epoch: UInt64, primary: ShortBytes)
    /// NOT_ENOUGH_REPLICAS: members of the in-sync set now, and the minimum.
    case notEnoughReplicas(inSync: UInt8, required: UInt8)
    /// STALE_EPOCH: the answering node's epoch.
    case staleEpoch(epoch: UInt64)
    /// TRUNCATE_TO: the seq to cut the journal back to.
    case truncateTo(seq: UInt64)
    /// CONFIG_MISMATCH: the first setting that differs (`cluster`, `fingerprint`, `node`).
    case configMismatch(field: ShortBytes)
}

extension ErrorDetail {
    /// Whether this detail is the payload `status` carries (PROTOCOL.md §5):
    /// encoding any other pairing would produce a frame no decoder accepts.
    public func fits(_ status: Status) -> Bool {
        switch (self, status) {
        case (.outOfStock, .outOfStock), (.unknownSKU, .unknownSKU), (.customerLimit, .customerLimit),
             (.stockChanged, .stockChanged), (.insufficientAvailable, .insufficientAvailable),
             (.ttlTooLong, .ttlTooLong), (.frameTooLarge, .frameTooLarge),
             (.unsupportedVersion, .unsupportedVersion), (.offsetCompacted, .offsetCompacted),
             (.insufficientBackup, .insufficientBackup), (.stageRefused, .stageRefused),
             (.notPrimary, .notPrimary), (.notEnoughReplicas, .notEnoughReplicas), (.staleEpoch, .staleEpoch),
             (.truncateTo, .truncateTo), (.configMismatch, .configMismatch):
            return true
        case (.none, _):
            switch status {
            case .outOfStock, .unknownSKU, .customerLimit, .stockChanged, .insufficientAvailable, .ttlTooLong,
                 .frameTooLarge, .unsupportedVersion, .offsetCompacted, .insufficientBackup, .stageRefused, .ok,
                 .notPrimary, .notEnoughReplicas, .staleEpoch, .truncateTo, .configMismatch:
                return false
            default:
                return true
            }
        default:
            return false
        }
    }
}
