import StockProtocol

/// One SKU as the journal knows it.
public struct SKUState: Sendable, Equatable {
    public var sku: SKU
    /// Units the shop has (sold units stay counted until on-hand is set again).
    public var onHand: Int64
    /// Units held by live tokens.
    public var reserved: Int64
    /// Units sold.
    public var confirmed: Int64
    public var lowStockThreshold: UInt32
    public var perCustomerLimit: UInt32
    /// Units held back from sale until released.
    public var backup: Int64

    /// Units on sale.
    public var available: Int64 { onHand - reserved - confirmed - backup }

    public init(sku: SKU, onHand: Int64, reserved: Int64 = 0, confirmed: Int64 = 0, lowStockThreshold: UInt32 = 0,
                perCustomerLimit: UInt32 = 0, backup: Int64 = 0) {
        self.sku = sku
        self.onHand = onHand
        self.reserved = reserved
        self.confirmed = confirmed
        self.lowStockThreshold = lowStockThreshold
        self.perCustomerLimit = perCustomerLimit
        self.backup = backup
    }
}

/// Units a customer bought of a SKU (they count against per-customer limits after a restart).
public struct CustomerSKU: Sendable, Hashable {
    public var customer: ShortBytes
    public var sku: SKU

    public init(customer: ShortBytes, sku: SKU) {
        self.customer = customer
        self.sku = sku
    }
}

/// One entry of a node's epoch history (docs/replication.md §1): the term
/// start record of `epoch`, at seq `firstSeq`, journaled by `node`.
public struct TermStart: Sendable, Equatable {
    public var epoch: UInt64
    public var firstSeq: UInt64
    public var node: ShortBytes

    public init(epoch: UInt64, firstSeq: UInt64, node: ShortBytes) {
        self.epoch = epoch
        self.firstSeq = firstSeq
        self.node = node
    }
}

/// The replay state machine: what the records up to `lastSeq` add up to.
/// Recovery builds it, snapshots serialize it, and the server restores the
/// core from it (`skus`, `tokens`, `customerSold`).
///
/// `apply` checks everything before changing anything, so a record that
/// does not fit leaves the state as it was and throws `.replay` naming its
/// seq: an unknown SKU or token, a line that does not match, a count that
/// would go negative, or available (on-hand − reserved − confirmed − backup) below
/// zero after the record. The ordering argument in JournalRecord.swift says
/// that last one cannot happen in seq order; checking it after every record
/// turns a flaw in that argument into an error at the record that shows it.
/// A term start record must name an epoch above the current one: epochs
/// only grow (they are etcd revisions), so a journal holding one that does
/// not is not one primary's history after another's.
public struct JournalState: Sendable, Equatable {
    /// SKUs in creation order (the catalog indices a restored core gets).
    public private(set) var skus: [SKUState] = []
    private var skuIndex: [SKU: Int] = [:]
    /// Live tokens.
    public private(set) var tokens: [Token: LiveToken] = [:]
    /// Units sold per customer and SKU (customers that reserved with an id only).
    public private(set) var customerSold: [CustomerSKU: UInt64] = [:]
    /// Seq of the last record applied (0: none).
    public internal(set) var lastSeq: UInt64 = 0
    /// The most recently decided tokens (FateMemory.swift): restored into
    /// the core so a retried CONFIRM still answers TOKEN_CONFIRMED after a restart.
    public private(set) var fates = FateMemory()
    /// The epoch history: the term start records applied, in seq order
    /// (so epochs and first seqs both strictly increase). Kept in snapshots,
    /// so compaction does not forget the terms whose records it deletes.
    public private(set) var epochs: [TermStart] = []

    /// Most decided tokens remembered: set it to the core's total fate
    /// memory before replaying (lowering it forgets the oldest).
    public var fateLimit: Int {
        get { fates.limit }
        set { fates.limit = newValue }
    }

    /// An empty state (before seq 1).
    public init() {}

    /// Number of SKUs.
    public var skuCount: Int { skus.count }
    /// Number of live tokens.
    public var tokenCount: Int { tokens.count }
    /// Units held by live tokens, all SKUs.
    public var reservedUnits: Int64 { skus.reduce(0) { $0 + $1.reserved } }

    /// The SKU's state, if it exists.
    public func sku(_ sku: SKU) -> SKUState? { skuIndex[sku].map { skus[$0] } }

    /// The epoch of the last term start record (0: none, a journal that
    /// never had a primary of a replicated cluster).
    public var currentEpoch: UInt64 { epochs.last?.epoch ?? 0 }

    /// Where term `epoch` ended in this journal (docs/replication.md §3,
    /// `end(e)`): the seq before the next term start record, or `lastSeq`
    /// when `epoch` is the current term. A node whose last record is
    /// (epoch, seq) holds a prefix of this journal iff `seq <= termEnd(epoch)`.
    ///
    /// nil when `epoch` has no term start record here — epoch 0 (records
    /// before any term start), an epoch below the first, above the current
    /// one, or between two known ones (a term this node never heard of).
    /// Such a history is unknown, not "ended at the next term's start": this
    /// node cannot tell what the other holds of that term, so the caller must
    /// treat it as diverged rather than guess a cut point. (Epoch 0 is the one
    /// exception a caller may make, for a journal begun before epochs existed:
    /// ReplicationHandshake.)
    public func termEnd(of epoch: UInt64) -> UInt64? {
        Self.term(epoch, in: epochs, lastSeq: lastSeq)?.end
    }

    /// Term `epoch` of the epoch history `epochs` of a journal ending at
    /// `lastSeq`: the seqs of its start record and of its last record
    /// (`termEnd(of:)`; the primary's handshake asks the same of its history).
    static func term(_ epoch: UInt64, in epochs: [TermStart], lastSeq: UInt64) -> (start: UInt64, end: UInt64)? {
        // Binary search: epochs strictly increase (apply checks it).
        var lo = 0, hi = epochs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if epochs[mid].epoch < epoch { lo = mid + 1 } else { hi = mid }
        }
        guard lo < epochs.count, epochs[lo].epoch == epoch else { return nil }
        let end = lo + 1 < epochs.count ? epochs[lo + 1].firstSeq - 1 : lastSeq
        assert(end >= epochs[lo].firstSeq, "a term holds at least its own start record")
        return (epochs[lo].firstSeq, end)
    }

    /// Applies `r`, whose seq must be above `lastSeq`.
    public mutating func apply(_ r: SequencedRecord) throws(JournalError) {
        guard r.seq > lastSeq else { throw .replay(seq: r.seq, reason: "not after seq \(lastSeq)") }
        do throws(Refusal) {
            try apply(r.record, seq: r.seq)
        } catch {
            throw .replay(seq: r.seq, reason: error.reason)
        }
        lastSeq = r.seq
    }

    /// Why a record does not apply (turned into `.replay` with its seq).
    struct Refusal: Error {
        let reason: String
        init(_ r: String) { reason = r }
    }

    private mutating func apply(_ record: JournalRecord, seq: UInt64) throws(Refusal) {
        switch record {
        case let .stockSet(sku, onHand, threshold, limit):
            try setStock(sku, onHand: onHand, threshold: threshold, limit: limit)
        case let .stockAdjusted(sku, delta, _):
            let i = try index(sku)
            try update(i) { $0.onHand += delta }
        case let .reserved(token, sku, quantity, deadline, customer, key, bundle, _, _):
            try reserve(token, TokenLine(sku: sku, quantity: quantity), deadlineWallMs: deadline, customer: customer,
                        key: key, bundle: bundle)
        case let .confirmed(token, sku, quantity, returned, _, _, _, _):
            let held = UInt64(quantity) + UInt64(returned)
            let (i, t) = try settle(token, sku: sku, held: held, fate: .confirmed, seq: seq) {
                $0.reserved -= Int64(held)
                $0.confirmed += Int64(quantity)
            }
            if !t.customer.isEmpty && quantity > 0 {
                customerSold[CustomerSKU(customer: t.customer, sku: skus[i].sku), default: 0] += UInt64(quantity)
            }
        case let .released(token, sku, quantity, _, _, _):
            _ = try settle(token, sku: sku, held: UInt64(quantity), fate: .released, seq: seq) {
                $0.reserved -= Int64(quantity)
            }
        case let .expired(token, sku, quantity, _, _, _):
            _ = try settle(token, sku: sku, held: UInt64(quantity), fate: .expired, seq: seq) {
                $0.reserved -= Int64(quantity)
            }
        case let .extended(token, deadline):
            guard tokens[token] != nil else { throw Refusal("unknown token \(token)") }
            tokens[token]!.deadlineWallMs = deadline
        case let .backupChanged(sku, delta, backup):
            let i = try index(sku)
            guard skus[i].backup + delta == Int64(bitPattern: backup) else {
                throw Refusal("\(sku): backup \(skus[i].backup) changed by \(delta) is not \(backup)")
            }
            try update(i) { $0.backup = Int64(bitPattern: backup) }
        case let .lowStock(sku, _), let .soldOut(sku), let .backInStock(sku, _):
            _ = try index(sku)  // an alert changes nothing, but names a SKU that exists
        case let .termStarted(epoch, node):
            // No counts change; the history grows. Checked first, so a refusal leaves it as it was.
            guard epoch > currentEpoch else {
                throw Refusal("term start of epoch \(epoch) not after epoch \(currentEpoch)")
            }
            guard !node.isEmpty else { throw Refusal("term start of epoch \(epoch) without a node id") }
            epochs.append(TermStart(epoch: epoch, firstSeq: seq, node: node))
        }
    }

    private mutating func setStock(_ sku: SKU, onHand: UInt64, threshold: UInt32, limit: UInt32) throws(Refusal) {
        guard onHand <= Limits.maxStock else { throw Refusal("on-hand \(onHand) above \(Limits.maxStock)") }
        let i: Int
        if let existing = skuIndex[sku] {
            i = existing
        } else {
            guard sku.count > 0 else { throw Refusal("empty SKU") }
            i = skus.count
            try check(SKUState(sku: sku, onHand: Int64(onHand)))
            skus.append(SKUState(sku: sku, onHand: 0))
            skuIndex[sku] = i
        }
        try update(i) {
            $0.onHand = Int64(onHand)
            $0.lowStockThreshold = threshold
            $0.perCustomerLimit = limit
        }
    }

    private mutating func reserve(_ token: Token, _ line: TokenLine, deadlineWallMs: UInt64, customer: ShortBytes,
                                  key: ShortBytes, bundle: Bool) throws(Refusal) {
        guard line.quantity > 0 else { throw Refusal("reserved 0 units") }
        let i = try index(line.sku)
        // The token is looked up once; a bundle's later line changes it in place through that
        // index (this runs per record in a standby's shadow state and in every snapshot).
        let existing = tokens.index(forKey: token)
        if let existing {
            // Another line of the same bundle: the same request wrote them all.
            let t = tokens.values[existing]
            guard t.bundle && bundle else { throw Refusal("token \(token) reserved twice") }
            guard t.customer == customer && t.idempotencyKey == key else {
                throw Refusal("bundle token \(token): lines disagree on customer or key")
            }
        }
        try update(i) { $0.reserved += Int64(line.quantity) }
        if let existing {
            tokens.values[existing].lines.append(line)
            tokens.values[existing].deadlineWallMs = max(tokens.values[existing].deadlineWallMs, deadlineWallMs)
        } else {
            tokens[token] = LiveToken(token: token, lines: [line], deadlineWallMs: deadlineWallMs, customer: customer,
                                      idempotencyKey: key, bundle: bundle)
            fates.slotReused(token.slot)  // the slot's earlier token is forgotten, as in the core
        }
    }

    /// Removes the token's line on `sku` holding `held` units and applies
    /// `change` to the SKU; the token goes with its last line, and its fate
    /// (decided by record `seq`) is remembered.
    private mutating func settle(_ token: Token, sku: SKU, held: UInt64, fate: DecidedFate, seq: UInt64,
                                 _ change: (inout SKUState) -> Void) throws(Refusal) -> (Int, LiveToken)
    {
        guard let at = tokens.index(forKey: token) else { throw Refusal("unknown token \(token)") }
        let t = tokens.values[at]
        guard let l = t.lines.firstIndex(where: { $0.sku == sku && UInt64($0.quantity) == held }) else {
            let has = t.lines.map { "\($0.quantity) of \($0.sku)" }.joined(separator: ", ")
            throw Refusal("token \(token) has no line of \(held) of \(sku) (has \(has))")
        }
        let i = try index(sku)
        try update(i, change)
        if t.lines.count == 1 {
            tokens.remove(at: at)  // the index found above: no second probe
            fates.remember(DecidedToken(token: token, fate: fate, seq: seq))
        } else {
            tokens.values[at].lines.remove(at: l)
        }
        return (i, t)
    }

    private func index(_ sku: SKU) throws(Refusal) -> Int {
        guard let i = skuIndex[sku] else { throw Refusal("unknown SKU \(sku)") }
        return i
    }

    /// Applies `change` to SKU `i` if the result passes `check`; otherwise nothing changes.
    private mutating func update(_ i: Int, _ change: (inout SKUState) -> Void) throws(Refusal) {
        var s = skus[i]
        change(&s)
        try check(s)
        skus[i] = s
    }

    private func check(_ s: SKUState) throws(Refusal) {
        guard s.onHand >= 0 else { throw Refusal("\(s.sku): on-hand \(s.onHand) below zero") }
        guard s.onHand <= Int64(Limits.maxStock) else { throw Refusal("\(s.sku): on-hand \(s.onHand) above maximum") }
        guard s.reserved >= 0 else { throw Refusal("\(s.sku): reserved \(s.reserved) below zero") }
        guard s.confirmed >= 0 else { throw Refusal("\(s.sku): confirmed \(s.confirmed) below zero") }
        guard s.backup >= 0 else { throw Refusal("\(s.sku): backup \(s.backup) below zero") }
        guard s.available >= 0 else {
            throw Refusal("\(s.sku): available \(s.available) below zero (on-hand \(s.onHand), "
                          + "reserved \(s.reserved), confirmed \(s.confirmed), backup \(s.backup))")
        }
    }

    /// Checks the whole state: every SKU's counts, reserved == the sum of
    /// the live tokens' lines, every line on a known SKU with units, every
    /// non-bundle token with exactly one line.
    public func checkInvariants() throws(JournalError) {
        var held = [Int64](repeating: 0, count: skus.count)
        for (token, t) in tokens {
            guard t.token == token else { throw .invariant("token \(token) filed under another token") }
            guard !t.lines.isEmpty, t.bundle || t.lines.count == 1 else {
                throw .invariant("token \(token): \(t.lines.count) lines (bundle: \(t.bundle))")
            }
            for line in t.lines {
                guard let i = skuIndex[line.sku] else { throw .invariant("token \(token): unknown SKU \(line.sku)") }
                guard line.quantity > 0 else { throw .invariant("token \(token): line of 0 units") }
                held[i] += Int64(line.quantity)
            }
        }
        guard skuIndex.count == skus.count else { throw .invariant("SKU index out of step") }
        for (i, s) in skus.enumerated() {
            guard skuIndex[s.sku] == i else { throw .invariant("SKU \(s.sku) indexed wrongly") }
            do throws(Refusal) { try check(s) } catch { throw .invariant(error.reason) }
            guard s.reserved == held[i] else {
                throw .invariant("\(s.sku): reserved \(s.reserved) but live tokens hold \(held[i])")
            }
        }
        for (k, _) in customerSold where skuIndex[k.sku] == nil {
            throw .invariant("customer units for unknown SKU \(k.sku)")
        }
        guard fates.count <= fates.limit else { throw .invariant("\(fates.count) fates above the limit \(fates.limit)") }
        var liveSlots = Set<UInt32>(minimumCapacity: tokens.count)
        for token in tokens.keys where !liveSlots.insert(token.slot).inserted {
            throw .invariant("two live tokens in slot \(token.slot)")
        }
        for (slot, d) in fates.bySlot {
            guard d.token.slot == slot else { throw .invariant("decided token \(d.token) filed under slot \(slot)") }
            guard !liveSlots.contains(slot) else { throw .invariant("slot \(slot) both live and decided") }
            guard d.seq <= lastSeq else { throw .invariant("token \(d.token) decided at seq \(d.seq) after \(lastSeq)") }
        }
        for (i, t) in epochs.enumerated() {
            // Epochs as the codec takes them (1...Int64.max, etcd revisions), each within the journal.
            guard t.epoch >= 1, t.epoch <= UInt64(Int64.max), !t.node.isEmpty, t.firstSeq >= 1, t.firstSeq <= lastSeq
            else {
                throw .invariant("term start \(i): epoch \(t.epoch) at seq \(t.firstSeq) (last seq \(lastSeq))")
            }
            guard i == 0 || (epochs[i - 1].epoch < t.epoch && epochs[i - 1].firstSeq < t.firstSeq) else {
                throw .invariant("term start of epoch \(t.epoch) at seq \(t.firstSeq) not after the previous one")
            }
        }
    }
}

extension JournalState {
    /// Rebuilds a state from its parts (snapshot loading); `checkInvariants` afterwards.
    init(skus: [SKUState], tokens: [Token: LiveToken], customerSold: [CustomerSKU: UInt64], lastSeq: UInt64,
         decided: [DecidedToken] = [], fateLimit: Int = FateMemory.defaultLimit, epochs: [TermStart] = [])
        throws(JournalError)
    {
        fates = try FateMemory(decided, limit: fateLimit)
        for (i, s) in skus.enumerated() {
            guard skuIndex.updateValue(i, forKey: s.sku) == nil else { throw .invariant("SKU \(s.sku) twice") }
        }
        self.skus = skus
        self.tokens = tokens
        self.customerSold = customerSold
        self.lastSeq = lastSeq
        self.epochs = epochs
    }

    /// Marks every seq up to `seq` as covered without a record (recovery
    /// skipping numbers that were never acknowledged, see Recovery.swift).
    mutating func advance(to seq: UInt64) {
        lastSeq = max(lastSeq, seq)
    }
}
