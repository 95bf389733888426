import StockProtocol

/// What kind of state change a `Change` reports.
public enum ChangeKind: UInt8, Sendable, CaseIterable {
    /// Units taken out of sale by a token. `quantity`: units; `aux`: deadline
    /// (core ms); `reference`: customer; `key`: idempotency key; `extra`:
    /// bit 0 set for a bundle line, plus `Change.lineBits`.
    case reserved = 1
    /// Units sold. `quantity`: confirmed; `aux`: units returned by a partial confirm; `reference`: order;
    /// `key`: the token's customer; `extra`: `Change.lineBits`.
    case confirmed = 2
    /// Units returned by RELEASE. `quantity`: units; `key`: customer; `extra`: `Change.lineBits`.
    case released = 3
    /// Units returned by expiry. `quantity`: units; `key`: customer; `extra`: `Change.lineBits`.
    case expired = 4
    /// Deadline moved. `aux`: new deadline (core ms).
    case extended = 5
    /// On-hand set. `quantity`: new on-hand; `aux`: previous on-hand;
    /// `extra`: low-stock threshold << 32 | per-customer limit after the change.
    case stockSet = 6
    /// On-hand adjusted. `quantity`: signed delta; `aux`: `AdjustReason` raw value.
    case stockAdjusted = 7
    /// Available fell to or below the low-stock threshold. `quantity`: available.
    case lowStock = 8
    /// Available reached zero.
    case soldOut = 9
    /// Available rose above zero after a sell-out. `quantity`: available.
    case backInStock = 10
    /// Units moved between backup and sale. `quantity`: change of backup
    /// (negative: released to sale); `aux`: backup after.
    case backupChanged = 11
}

/// One state change, reported synchronously to the worker's `onChange` sink
/// on the thread that made it. A change that takes units out of sale is
/// reported after it took them; a change that puts units back on sale
/// (release, expiry, a partial confirm's rest, a stock increase) is reported
/// *before* those units become visible to other threads — so a journal that
/// numbers changes as they are reported orders every reservation after the
/// change that made its units available. A bundle reports one change per
/// line, all with the same token.
public struct Change: Sendable, Equatable {
    public var kind: ChangeKind
    /// Catalog index of the SKU (`StockCore.sku(at:)` gives its name).
    public var sku: UInt32
    public var quantity: Int64
    public var aux: Int64
    /// The token concerned; all zero for stock changes.
    public var token: Token
    /// Core clock (ms) when the change happened.
    public var timeMs: UInt64
    /// Customer (reserved) or order reference (confirmed); empty otherwise.
    public var reference: ShortBytes
    /// Idempotency key (reserved); empty otherwise.
    public var key: ShortBytes
    /// Kind-specific (see `ChangeKind`).
    public var extra: UInt64

    /// A token line's place, packed into `extra`: line index in bits 8-15,
    /// line count in bits 16-23 (the event feed numbers a bundle's lines).
    @inline(__always)
    public static func lineBits(_ index: Int, of count: Int) -> UInt64 {
        UInt64(truncatingIfNeeded: index & 0xFF) << 8 | UInt64(truncatingIfNeeded: count & 0xFF) << 16
    }

    /// The line index and count packed by `lineBits`.
    public var line: (index: UInt8, count: UInt8) {
        (UInt8(truncatingIfNeeded: extra >> 8), UInt8(truncatingIfNeeded: extra >> 16))
    }

    public init(kind: ChangeKind, sku: UInt32, quantity: Int64, aux: Int64 = 0,
                token: Token = Token(slot: 0, generation: 0, secret: 0), timeMs: UInt64,
                reference: ShortBytes = .empty, key: ShortBytes = .empty, extra: UInt64 = 0) {
        self.kind = kind
        self.sku = sku
        self.quantity = quantity
        self.aux = aux
        self.token = token
        self.timeMs = timeMs
        self.reference = reference
        self.key = key
        self.extra = extra
    }
}
