/// The event feed's vocabulary (`protocol/PROTOCOL.md` §9): what a
/// SUBSCRIBE asks for, and what each EVENT frame carries.
///
/// An event is one journal record, handed on in journal order; its offset
/// is the record's sequence number, so offsets only grow and a consumer
/// that resumes after its last offset misses nothing.

/// What an event reports. The raw values are the journal's record kinds;
/// 0 is a progress marker, not an event.
public enum EventKind: UInt8, Sendable, CaseIterable {
    /// No event: the feed has examined every offset up to this one (the
    /// others did not match the filter, or there were none).
    case progress = 0
    case stockSet = 1
    case stockAdjusted = 2
    case reserved = 3
    case confirmed = 4
    case released = 5
    case expired = 6
    case extended = 7
    case lowStock = 8
    case soldOut = 9
    case backInStock = 10
    /// Units moved between backup and sale: `quantity` the change of backup
    /// (negative: released to sale), `aux` the backup after.
    case backupChanged = 11
    /// A new primary's term began (docs/replication.md §1): `quantity` the
    /// epoch, `order` the node id; no SKU, no token. It changes no stock:
    /// it is an event so that every offset is one (the feed stays gap-free).
    case termStarted = 12

    /// Bits of a SUBSCRIBE `kinds` mask that name a kind (1 << kind, kinds 1...12).
    public static let allKindsMask: UInt16 = 0b1_1111_1111_1110

    /// The name used in JSON and on the command line.
    public var name: String {
        switch self {
        case .progress: "progress"
        case .stockSet: "stock_set"
        case .stockAdjusted: "stock_adjusted"
        case .reserved: "reserved"
        case .confirmed: "confirmed"
        case .released: "released"
        case .expired: "expired"
        case .extended: "extended"
        case .lowStock: "low_stock"
        case .soldOut: "sold_out"
        case .backInStock: "back_in_stock"
        case .backupChanged: "backup_changed"
        case .termStarted: "term_started"
        }
    }

    public init?(name: String) {
        guard let k = EventKind.allCases.first(where: { $0.name == name }) else { return nil }
        self = k
    }

    /// This kind's bit in a `kinds` mask.
    public var bit: UInt16 { 1 << UInt16(rawValue) }
}

/// SUBSCRIBE: where the feed starts, how much it may send, and what matches.
public struct Subscribe: Sendable, Equatable {
    /// The first offset wanted; `Limits.feedFromOldest` (0) or `Limits.feedFromNow`.
    public var from: UInt64
    /// Events the server may send before the client grants more with CREDIT.
    public var credit: UInt32
    /// Kinds wanted, as a mask of `EventKind.bit`; 0 = every kind.
    public var kinds: UInt16
    /// Only events whose SKU starts with these bytes; empty = every SKU
    /// (a non-empty prefix excludes events without a SKU: `extended`, `term_started`).
    public var skuPrefix: ShortBytes

    public init(from: UInt64, credit: UInt32, kinds: UInt16 = 0, skuPrefix: ShortBytes = .empty) {
        self.from = from
        self.credit = credit
        self.kinds = kinds
        self.skuPrefix = skuPrefix
    }

    /// Whether an event of `kind` on `sku` passes this filter.
    @inlinable
    public func matches(kind: EventKind, sku: ShortBytes) -> Bool {
        if kinds != 0 && kinds & kind.bit == 0 { return false }
        return skuPrefix.isEmpty || sku.hasPrefix(skuPrefix)
    }
}

/// SUBSCRIBE's OK answer.
public struct FeedStart: Sendable, Equatable {
    /// The first offset the feed may carry.
    public var start: UInt64
    /// The feed's last offset when the subscription began (0: empty). A
    /// reader that wants "everything so far" reads until it has seen an
    /// event or progress marker at or past it.
    public var end: UInt64

    public init(start: UInt64, end: UInt64) {
        self.start = start
        self.end = end
    }
}

/// One EVENT frame's payload. Fields a kind does not use are zero or empty:
///
/// | kind | quantity | aux | token, customer | order |
/// |---|---|---|---|---|
/// | stock_set | on-hand after | low-stock threshold << 32 \\| per-customer limit | — | — |
/// | stock_adjusted | signed delta | reason code | — | — |
/// | reserved | units held | expires_at_ms | yes | — |
/// | confirmed | units sold | units returned to sale | yes | order reference |
/// | released, expired | units returned | — | yes | — |
/// | extended | 0 | new expires_at_ms | token | — (no SKU) |
/// | low_stock, back_in_stock | available | — | — | — |
/// | sold_out | 0 | — | — | — |
/// | backup_changed | change of backup (− released to sale, + held back) | backup after | — | — |
/// | term_started | epoch | — | — | node id (no SKU) |
///
/// `term_started` carries the node id in `order`: the layout has no field
/// for it, and `order` (a free-form reference) is the one string no
/// consumer keys stock or per-customer counts on, unlike `sku` and `customer`.
///
/// `line` / `lines`: a token's lines each give their own event (a bundle of
/// three lines confirms as three `confirmed` events, lines 0, 1, 2 of 3,
/// with the same token and order); 0 / 0 for events not about a token line.
public struct FeedEvent: Sendable, Equatable {
    public var offset: UInt64
    /// Unix epoch ms when the change happened (the server's clock).
    public var timeMs: UInt64
    public var kind: EventKind
    public var line: UInt8
    public var lines: UInt8
    public var quantity: Int64
    public var aux: UInt64
    public var token: Token
    public var sku: ShortBytes
    public var order: ShortBytes
    public var customer: ShortBytes

    public init(offset: UInt64, timeMs: UInt64, kind: EventKind, line: UInt8 = 0, lines: UInt8 = 0,
                quantity: Int64 = 0, aux: UInt64 = 0, token: Token = Token(slot: 0, generation: 0, secret: 0),
                sku: ShortBytes = .empty, order: ShortBytes = .empty, customer: ShortBytes = .empty) {
        self.offset = offset
        self.timeMs = timeMs
        self.kind = kind
        self.line = line
        self.lines = lines
        self.quantity = quantity
        self.aux = aux
        self.token = token
        self.sku = sku
        self.order = order
        self.customer = customer
    }

    /// A progress marker at `offset`.
    public static func progress(_ offset: UInt64, timeMs: UInt64) -> FeedEvent {
        FeedEvent(offset: offset, timeMs: timeMs, kind: .progress)
    }

    /// Bytes of the fixed part of the payload (before the three strings).
    public static let fixedBytes = 8 + 8 + 1 + 1 + 1 + 8 + 8 + 16

    /// Appends the payload (after a `beginFrame`).
    public func encodePayload(into w: inout ByteWriter) {
        w.writeU64(offset)
        w.writeU64(timeMs)
        w.writeU8(kind.rawValue)
        w.writeU8(line)
        w.writeU8(lines)
        w.writeI64(quantity)
        w.writeU64(aux)
        w.writeToken(token)
        w.writeShort(sku)
        w.writeShort(order)
        w.writeShort(customer)
    }

    /// Appends a whole EVENT frame answering SUBSCRIBE `requestID`.
    public func encodeFrame(requestID: UInt32, into w: inout ByteWriter) {
        let start = w.beginFrame(opcode: Opcode.event.rawValue, requestID: requestID, response: true)
        encodePayload(into: &w)
        w.endFrame(start)
    }

    static func decode(_ r: inout ByteReader) throws(Status) -> FeedEvent {
        let offset = try r.readU64()
        let time = try r.readU64()
        guard let kind = EventKind(rawValue: try r.readU8()) else { throw .malformed }
        return FeedEvent(offset: offset, timeMs: time, kind: kind, line: try r.readU8(), lines: try r.readU8(),
                         quantity: try r.readI64(), aux: try r.readU64(), token: try r.readToken(),
                         sku: try r.readShort(tooLong: .malformed), order: try r.readShort(tooLong: .malformed),
                         customer: try r.readShort(tooLong: .malformed))
    }
}
