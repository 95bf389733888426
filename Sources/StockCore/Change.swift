import StockProtocol

/// What kind of state change a `Change` reports (the tag of `Change.Detail`).
public enum ChangeKind: UInt8, Sendable, CaseIterable {
    case reserved = 1, confirmed, released, expired, extended
    case stockSet, stockAdjusted, lowStock, soldOut, backInStock, backupChanged
}

/// One state change, reported synchronously to the worker's `onChange` sink
/// on the thread that made it. A change that takes units out of sale is
/// reported after it took them; a change that puts units back on sale
/// (release, expiry, a partial confirm's rest, a stock increase) is reported
/// *before* those units become visible to other threads — so a journal that
/// numbers changes as they are reported orders every reservation after the
/// change that made its units available. A bundle reports one change per
/// line, all with the same token.
///
/// A change carries everything a journal record or feed event needs (the
/// SKU's name included), so a sink never calls back into the core.
public struct Change: Sendable, Equatable {
    /// The SKU changed; nil only for `.extended`, which concerns a whole
    /// token (all of a bundle's lines).
    public var sku: SKURef?
    /// Core clock (ms) when the change happened.
    public var timeMs: UInt64
    /// What changed, with the fields of that kind.
    public var detail: Detail

    public init(sku: SKURef?, timeMs: UInt64, detail: Detail) {
        precondition((sku == nil) == (detail.kind == .extended), "every change but an extension names its SKU")
        self.sku = sku
        self.timeMs = timeMs
        self.detail = detail
    }

    /// Per-kind fields. Deadlines are on the core's clock (`...CoreMs`);
    /// the journal turns them into wall-clock ms.
    public enum Detail: Sendable, Equatable {
        /// Units taken out of sale by a token.
        case reserved(TokenLineChange, deadlineCoreMs: UInt64, idempotencyKey: ShortBytes, bundle: Bool)
        /// Units sold; `returned` went back on sale (a partial confirm).
        case confirmed(TokenLineChange, returned: Int64, orderReference: ShortBytes)
        /// Units returned by RELEASE.
        case released(TokenLineChange)
        /// Units returned by expiry.
        case expired(TokenLineChange)
        /// A hold's deadline moved later.
        case extended(token: Token, deadlineCoreMs: UInt64)
        /// On-hand set; the policy is the SKU's after the change.
        case stockSet(onHand: Int64, previousOnHand: Int64, lowStockThreshold: UInt32, perCustomerLimit: UInt32)
        /// On-hand adjusted by a signed delta.
        case stockAdjusted(delta: Int64, reason: AdjustReason)
        /// Available fell to or below the low-stock threshold.
        case lowStock(available: Int64)
        /// Available reached zero.
        case soldOut
        /// Available rose above zero after a sell-out.
        case backInStock(available: Int64)
        /// Units moved between backup and sale (`delta` < 0: released to sale).
        case backupChanged(delta: Int64, backupAfter: Int64)
    }

    public var kind: ChangeKind { detail.kind }

    /// The token concerned, or nil for a stock change.
    public var token: Token? { detail.token }

    /// The token line concerned (reserved, confirmed, released, expired), or nil.
    public var line: TokenLineChange? { detail.line }
}

extension Change.Detail {
    public var kind: ChangeKind {
        switch self {
        case .reserved: .reserved
        case .confirmed: .confirmed
        case .released: .released
        case .expired: .expired
        case .extended: .extended
        case .stockSet: .stockSet
        case .stockAdjusted: .stockAdjusted
        case .lowStock: .lowStock
        case .soldOut: .soldOut
        case .backInStock: .backInStock
        case .backupChanged: .backupChanged
        }
    }

    /// The token concerned, or nil for a stock change.
    public var token: Token? {
        switch self {
        case .reserved(let l, _, _, _), .confirmed(let l, _, _), .released(let l), .expired(let l): l.token
        case .extended(let token, _): token
        case .stockSet, .stockAdjusted, .lowStock, .soldOut, .backInStock, .backupChanged: nil
        }
    }

    /// The token line concerned (reserved, confirmed, released, expired), or nil.
    public var line: TokenLineChange? {
        switch self {
        case .reserved(let l, _, _, _), .confirmed(let l, _, _), .released(let l), .expired(let l): l
        default: nil
        }
    }
}

/// A SKU as a change names it: its catalog index and its name.
public struct SKURef: Sendable, Equatable {
    /// Catalog index (`StockCore.sku(at:)` gives the name back).
    public var index: UInt32
    public var name: SKU

    public init(index: UInt32, name: SKU) {
        self.index = index
        self.name = name
    }
}

/// What every change to one line of a token says: the token, the line's
/// units, the token's customer, and the line's place in its token (the
/// event feed numbers a bundle's lines).
public struct TokenLineChange: Sendable, Equatable {
    public var token: Token
    /// Units of the line: reserved, confirmed (a confirm), or returned (release, expiry).
    public var quantity: Int64
    /// The customer the token was reserved for; empty if none.
    public var customer: ShortBytes
    /// Index of the line in its token (0 for a single-SKU token).
    public var index: UInt8
    /// Number of lines in the token (1 for a single-SKU token).
    public var count: UInt8

    public init(token: Token, quantity: Int64, customer: ShortBytes, index: Int, of count: Int) {
        precondition(index >= 0 && index < count && count <= Limits.maxBundleLines, "a token has 1...16 lines")
        self.token = token
        self.quantity = quantity
        self.customer = customer
        self.index = UInt8(index)
        self.count = UInt8(count)
    }
}
