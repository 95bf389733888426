/// A decoded request. Value types throughout; SKUs and keys are held inline
/// (`ShortBytes`), so decoding the common requests allocates nothing. Only
/// HELLO (client name, credential) and RESERVE_BUNDLE (its lines) hold arrays.
public enum Request: Sendable, Equatable {
    case hello(Hello)
    case ping
    case reserve(Reserve)
    case reserveBundle(ReserveBundle)
    case confirm(Confirm)
    case release(Token)
    case extend(Extend)
    case stockSet(StockSet)
    case stockAdjust(StockAdjust)
    case stockGet(SKU)
    case stockList(StockList)
    case backupRelease(BackupMove)
    case backupHold(BackupMove)
    case stage(Stage)
    case stats
    case subscribe(Subscribe)
    /// CREDIT: more events the server may send on this feed connection.
    case credit(UInt32)
    /// REPL_HELLO: a standby opens a replication connection (PROTOCOL.md §10).
    case replHello(ReplHello)
    /// REPL_ACK: a standby's durable end, on a replication connection.
    case replAck(ReplAck)
    /// ROLE: the agent changes its node's role.
    case role(RoleChange)
    /// FENCE: the primary may commit until this CLOCK_MONOTONIC time (ns).
    case fence(untilNs: UInt64)
    /// ISR_SET: the standbys the primary waits for.
    case isrSet(ISRSet)
    case clusterStatus

    /// The opcode this request is sent with.
    public var opcode: Opcode {
        switch self {
        case .hello: .hello
        case .ping: .ping
        case .reserve: .reserve
        case .reserveBundle: .reserveBundle
        case .confirm: .confirm
        case .release: .release
        case .extend: .extend
        case .stockSet: .stockSet
        case .stockAdjust: .stockAdjust
        case .stockGet: .stockGet
        case .stockList: .stockList
        case .backupRelease: .backupRelease
        case .backupHold: .backupHold
        case .stage: .stage
        case .stats: .stats
        case .subscribe: .subscribe
        case .credit: .credit
        case .replHello: .replHello
        case .replAck: .replAck
        case .role: .role
        case .fence: .fence
        case .isrSet: .isrSet
        case .clusterStatus: .clusterStatus
        }
    }
}

/// HELLO: opens a session. `version` is the protocol version the client speaks.
public struct Hello: Sendable, Equatable {
    public var version: UInt16
    /// Free-form client name for logs (UTF-8, at most 64 bytes).
    public var clientName: [UInt8]
    /// Credential; empty when none (at most 255 bytes, opaque).
    public var credential: [UInt8]
    public init(version: UInt16 = Limits.protocolVersion, clientName: [UInt8], credential: [UInt8] = []) {
        self.version = version
        self.clientName = clientName
        self.credential = credential
    }
}

/// RESERVE: hold `quantity` units of `sku` for `ttlMs` (0 = server default).
public struct Reserve: Sendable, Equatable {
    public var quantity: UInt32
    public var ttlMs: UInt32
    public var sku: SKU
    /// Customer id for per-customer limits; empty = none.
    public var customer: ShortBytes
    /// Idempotency key; empty = none.
    public var idempotencyKey: ShortBytes
    public init(sku: SKU, quantity: UInt32, ttlMs: UInt32 = 0, customer: ShortBytes = .empty,
                idempotencyKey: ShortBytes = .empty) {
        self.quantity = quantity
        self.ttlMs = ttlMs
        self.sku = sku
        self.customer = customer
        self.idempotencyKey = idempotencyKey
    }
}

/// One line of a bundle.
public struct BundleLine: Sendable, Equatable {
    public var sku: SKU
    public var quantity: UInt32
    public init(sku: SKU, quantity: UInt32) {
        self.sku = sku
        self.quantity = quantity
    }
}

/// RESERVE_BUNDLE: all lines or none, under one token.
public struct ReserveBundle: Sendable, Equatable {
    public var ttlMs: UInt32
    public var customer: ShortBytes
    public var idempotencyKey: ShortBytes
    /// 1...`Limits.maxBundleLines` lines, each SKU at most once.
    public var lines: [BundleLine]
    public init(lines: [BundleLine], ttlMs: UInt32 = 0, customer: ShortBytes = .empty,
                idempotencyKey: ShortBytes = .empty) {
        self.ttlMs = ttlMs
        self.customer = customer
        self.idempotencyKey = idempotencyKey
        self.lines = lines
    }
}

/// CONFIRM: the units are sold. `quantity` 0 confirms everything held; fewer
/// than held confirms that many and returns the rest to sale.
public struct Confirm: Sendable, Equatable {
    public var token: Token
    public var quantity: UInt32
    /// Order reference carried into events; empty = none.
    public var orderReference: ShortBytes
    public init(token: Token, quantity: UInt32 = 0, orderReference: ShortBytes = .empty) {
        self.token = token
        self.quantity = quantity
        self.orderReference = orderReference
    }
}

/// EXTEND: push the deadline to now + `ttlMs` (0 = server default). Never shortens.
public struct Extend: Sendable, Equatable {
    public var token: Token
    public var ttlMs: UInt32
    public init(token: Token, ttlMs: UInt32) {
        self.token = token
        self.ttlMs = ttlMs
    }
}

/// STOCK_SET: set on-hand (creating the SKU if new), optionally as a
/// compare-and-set, optionally changing the threshold and limit.
public struct StockSet: Sendable, Equatable {
    /// `flags` bit: `expectedOnHand` is meaningful.
    public static let flagExpected: UInt8 = 0x01
    /// `flags` bit: `lowStockThreshold` is meaningful.
    public static let flagThreshold: UInt8 = 0x02
    /// `flags` bit: `perCustomerLimit` is meaningful.
    public static let flagLimit: UInt8 = 0x04
    /// All defined flag bits.
    public static let knownFlags: UInt8 = 0x07

    public var sku: SKU
    public var onHand: UInt64
    public var expectedOnHand: UInt64?
    public var lowStockThreshold: UInt32?
    /// Units one customer may hold + buy of this SKU; 0 = unlimited.
    public var perCustomerLimit: UInt32?
    public init(sku: SKU, onHand: UInt64, expectedOnHand: UInt64? = nil,
                lowStockThreshold: UInt32? = nil, perCustomerLimit: UInt32? = nil) {
        self.sku = sku
        self.onHand = onHand
        self.expectedOnHand = expectedOnHand
        self.lowStockThreshold = lowStockThreshold
        self.perCustomerLimit = perCustomerLimit
    }
}

/// Why stock was adjusted, kept for the audit trail.
public enum AdjustReason: UInt8, Sendable, CaseIterable {
    case unspecified = 0
    case restock = 1
    case shrinkage = 2
    case damage = 3
    case customerReturn = 4
    case correction = 5
    case transfer = 6

    /// The spec's name.
    public var name: String {
        switch self {
        case .unspecified: "unspecified"
        case .restock: "restock"
        case .shrinkage: "shrinkage"
        case .damage: "damage"
        case .customerReturn: "return"
        case .correction: "correction"
        case .transfer: "transfer"
        }
    }
}

/// STOCK_ADJUST: add (restock) or remove (shrinkage) units.
public struct StockAdjust: Sendable, Equatable {
    public var sku: SKU
    public var delta: Int64
    public var reason: AdjustReason
    public init(sku: SKU, delta: Int64, reason: AdjustReason = .unspecified) {
        self.sku = sku
        self.delta = delta
        self.reason = reason
    }
}

/// STOCK_LIST: one page of the catalog in catalog order.
public struct StockList: Sendable, Equatable {
    /// Opaque cursor: 0 for the first page, then the previous answer's `nextCursor`.
    public var cursor: UInt32
    /// Entries wanted; 0 = `Limits.defaultListPage`; at most `Limits.maxListPage`.
    public var limit: UInt16
    public init(cursor: UInt32 = 0, limit: UInt16 = 0) {
        self.cursor = cursor
        self.limit = limit
    }
}

/// BACKUP_RELEASE / BACKUP_HOLD: move `quantity` units between a SKU's
/// backup and its available units. For a release, 0 means every backup unit.
public struct BackupMove: Sendable, Equatable {
    public var sku: SKU
    public var quantity: UInt64
    public init(sku: SKU, quantity: UInt64) {
        self.sku = sku
        self.quantity = quantity
    }
}

/// One line of a STAGE: the SKU's whole stock policy, absolute values.
public struct StageLine: Sendable, Equatable {
    public var sku: SKU
    public var onHand: UInt64
    /// Units held back from sale (at most `onHand`).
    public var backup: UInt64
    public var lowStockThreshold: UInt32
    /// 0 = unlimited.
    public var perCustomerLimit: UInt32
    public init(sku: SKU, onHand: UInt64, backup: UInt64 = 0, lowStockThreshold: UInt32 = 0,
                perCustomerLimit: UInt32 = 0) {
        self.sku = sku
        self.onHand = onHand
        self.backup = backup
        self.lowStockThreshold = lowStockThreshold
        self.perCustomerLimit = perCustomerLimit
    }

    /// Encoded bytes of this line.
    public var encodedSize: Int { 8 + 8 + 4 + 4 + 1 + sku.count }
}

/// STAGE: a show's catalog, applied all lines or none (PROTOCOL.md §4).
public struct Stage: Sendable, Equatable {
    public var lines: [StageLine]
    public init(lines: [StageLine]) { self.lines = lines }
}
