import StockProtocol

// # The journal's records
//
// Every acknowledged state change of stockd is one or more records in an
// append-only journal (JournalWriter: segment files; Recovery: replay;
// StockServer's JournalPipeline: group commit). Records are facts, not requests: "these units were held under
// this token until this deadline", "this SKU's on-hand is now N".
//
// Every record carries a global sequence number. The server takes it from
// one atomic counter at the moment the change takes effect in memory — and,
// for a change that puts units back on sale (release, expiry, the returned
// part of a partial confirm, a stock increase), *before* those units become
// visible to other workers. So a record that took a unit always has a higher
// sequence number than the record that made the unit available. Recovery
// replays records in sequence order and stops at the first gap; responses
// are sent only once every record up to theirs is durable. Hence the durable
// prefix never holds a reservation without the stock it came from.
//
// Deadlines and times are Unix epoch milliseconds (wall clock): the core's
// monotonic clock does not survive a restart.

/// One state change as journaled.
public enum JournalRecord: Sendable, Equatable {
    /// On-hand set to `onHand` (creating the SKU if new), with the SKU's
    /// policy after the change (0: none).
    case stockSet(sku: SKU, onHand: UInt64, lowStockThreshold: UInt32, perCustomerLimit: UInt32)
    /// On-hand changed by `delta` (positive: restock; negative: shrink).
    case stockAdjusted(sku: SKU, delta: Int64, reason: UInt8)
    /// `quantity` units of `sku` held by `token` until `deadlineWallMs`. A
    /// bundle is one record per line, all with the same token, `bundle` set.
    /// `line` of `lines`: this line's place in its token (for the event feed).
    case reserved(token: Token, sku: SKU, quantity: UInt32, deadlineWallMs: UInt64, customer: ShortBytes,
                  idempotencyKey: ShortBytes, bundle: Bool, line: UInt8 = 0, lines: UInt8 = 1)
    /// The token's line on `sku` was confirmed: `quantity` units sold,
    /// `returned` units back on sale (a partial confirm). One per line.
    /// `customer` (the token's), `line` and `lines` are carried for the
    /// event feed, which may start after the `reserved` record.
    case confirmed(token: Token, sku: SKU, quantity: UInt32, returned: UInt32, orderReference: ShortBytes,
                   customer: ShortBytes = .empty, line: UInt8 = 0, lines: UInt8 = 1)
    /// The token's line on `sku` was released: `quantity` units back on sale.
    case released(token: Token, sku: SKU, quantity: UInt32, customer: ShortBytes = .empty, line: UInt8 = 0,
                  lines: UInt8 = 1)
    /// The token's line on `sku` expired: `quantity` units back on sale.
    case expired(token: Token, sku: SKU, quantity: UInt32, customer: ShortBytes = .empty, line: UInt8 = 0,
                 lines: UInt8 = 1)
    /// The token's deadline moved to `deadlineWallMs`.
    case extended(token: Token, deadlineWallMs: UInt64)
    /// Alerts: no state of their own (a replay derives nothing from them),
    /// journaled so that the event feed can hand them on in order with an
    /// offset. `available` is the count that crossed the threshold.
    case lowStock(sku: SKU, available: UInt64)
    /// Available reached zero.
    case soldOut(sku: SKU)
    /// Available rose above zero after a sell-out.
    case backInStock(sku: SKU, available: UInt64)
    /// Backup units of `sku` changed by `delta` (negative: released to
    /// sale) to `backup`; on-hand is unchanged, available moves the other way.
    case backupChanged(sku: SKU, delta: Int64, backup: UInt64)
    /// The term start record (docs/replication.md §1, §5): the first record
    /// a new primary journals, naming its `epoch` (the etcd revision of its
    /// leader key, 1...Int64.max: etcd revisions are int64) and its `node`
    /// id (1...64 bytes). No stock state of its own; it builds the epoch
    /// history (`JournalState.epochs`) that divergence checks look up (§3),
    /// and is journaled like any change so the feed's offsets stay gap-free.
    case termStarted(epoch: UInt64, node: ShortBytes)
}

/// A record with its place in the global order and its wall-clock time.
public struct SequencedRecord: Sendable, Equatable {
    public var seq: UInt64
    public var timeMs: UInt64
    public var record: JournalRecord

    public init(seq: UInt64, timeMs: UInt64, record: JournalRecord) {
        self.seq = seq
        self.timeMs = timeMs
        self.record = record
    }
}
