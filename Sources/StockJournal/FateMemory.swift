import StockProtocol

/// A token whose fate is decided, as the journal remembers it.
public struct DecidedToken: Sendable, Equatable {
    public var token: Token
    public var fate: DecidedFate
    /// The record that decided it (a bundle's last line).
    public var seq: UInt64

    public init(token: Token, fate: DecidedFate, seq: UInt64) {
        self.token = token
        self.fate = fate
        self.seq = seq
    }
}

/// The most recently decided tokens, at most `limit`, one per token slot.
///
/// The core answers a CONFIRM, RELEASE or EXTEND on a decided token with
/// its fate for as long as the token's slot is not reused (Worker's fate
/// ring). That memory must survive a restart, so the journal's replay keeps
/// the same thing: a token decided in slot s is remembered until a later
/// reservation takes slot s, or until `limit` tokens were decided after it.
/// A restored core puts these back into its rings, oldest first.
///
/// Eviction is oldest first by seq: `order` lists (slot, seq) in decision
/// order, and an entry whose slot was since reused or decided again is
/// skipped when it reaches the head (lazy deletion: O(1) amortised per record).
public struct FateMemory: Sendable {
    /// Decided tokens by slot.
    public private(set) var bySlot: [UInt32: DecidedToken] = [:]
    /// (slot, seq) in decision order from `head`; stale entries are skipped.
    private var order: [(slot: UInt32, seq: UInt64)] = []
    private var head = 0
    /// Most decided tokens kept (the core's total fate memory).
    public var limit: Int {
        didSet {
            precondition(limit >= 0, "fate memory limit below zero")
            trim()
        }
    }

    /// The default matches the core's default: 2 workers × 65,536.
    public static let defaultLimit = 2 * 65_536

    public init(limit: Int = FateMemory.defaultLimit) {
        precondition(limit >= 0, "fate memory limit below zero")
        self.limit = limit
    }

    /// Rebuilds from `tokens` (any order; one per slot), keeping the newest `limit`.
    init(_ tokens: [DecidedToken], limit: Int) throws(JournalError) {
        self.init(limit: limit)
        for t in tokens.sorted(by: { $0.seq < $1.seq }) {
            guard bySlot[t.token.slot] == nil else { throw .invariant("two decided tokens in slot \(t.token.slot)") }
            remember(t)
        }
    }

    public var count: Int { bySlot.count }

    /// Remembered tokens, oldest decision first.
    public var oldestFirst: [DecidedToken] { bySlot.values.sorted { $0.seq < $1.seq } }

    /// `t` was decided by record `t.seq` (above every seq remembered so far).
    mutating func remember(_ t: DecidedToken) {
        assert(order.last.map { $0.seq < t.seq } ?? true, "fates remembered out of seq order")
        guard limit > 0 else { return }
        bySlot[t.token.slot] = t
        order.append((t.token.slot, t.seq))
        trim()
    }

    /// A new reservation took `slot`: the token decided there is forgotten.
    mutating func slotReused(_ slot: UInt32) {
        bySlot[slot] = nil
    }

    private mutating func trim() {
        while bySlot.count > limit {
            precondition(head < order.count, "fate memory order lost an entry")
            let e = order[head]
            head += 1
            if bySlot[e.slot]?.seq == e.seq { bySlot[e.slot] = nil }
        }
        // Consumed and stale entries (evicted, reused slots) are dropped once
        // they outnumber the live ones by 1,024, keeping the live ones in
        // place (`order` is already oldest first: no sort): O(n) after at
        // least n + 1,024 appends, and `order` never holds more than
        // 2 × count + 1,024 entries.
        if order.count > 2 * bySlot.count + 1024 {
            var kept = 0
            for i in head..<order.count where bySlot[order[i].slot]?.seq == order[i].seq {
                order[kept] = order[i]
                kept += 1
            }
            order.removeLast(order.count - kept)
            head = 0
        }
        assert(order.count - head >= bySlot.count, "fate memory order shorter than its tokens")
    }
}

extension FateMemory: Equatable {
    /// Equal when they remember the same tokens (the order array is bookkeeping).
    public static func == (a: FateMemory, b: FateMemory) -> Bool { a.bySlot == b.bySlot }
}
