// The one model of a token that holds units, shared by the journal (which
// rebuilds it from records and snapshots) and the core (which makes it live
// again after a restart). It lives here because StockProtocol is the one
// module both depend on; the journal never depends on the core.

/// One line of a live token.
public struct TokenLine: Sendable, Equatable {
    public var sku: SKU
    public var quantity: UInt32

    public init(sku: SKU, quantity: UInt32) {
        self.sku = sku
        self.quantity = quantity
    }
}

/// A token holding units, as the journal remembers it and the core restores it.
public struct LiveToken: Sendable, Equatable {
    public var token: Token
    /// Unsettled lines, in reservation order (one unless `bundle`).
    public var lines: [TokenLine]
    /// The hold's deadline in Unix epoch ms (wall clock: journals and
    /// snapshots outlive the process whose monotonic core clock issued it).
    public var deadlineWallMs: UInt64
    public var customer: ShortBytes
    public var idempotencyKey: ShortBytes
    public var bundle: Bool

    public init(token: Token, lines: [TokenLine], deadlineWallMs: UInt64, customer: ShortBytes,
                idempotencyKey: ShortBytes, bundle: Bool) {
        self.token = token
        self.lines = lines
        self.deadlineWallMs = deadlineWallMs
        self.customer = customer
        self.idempotencyKey = idempotencyKey
        self.bundle = bundle
    }
}
