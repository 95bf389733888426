import StockJournal
import StockProtocol
import TestSupport

/// Generates a valid random history — every record applies to the state
/// the previous ones built — by keeping its own `JournalState` and only
/// choosing changes that state allows: stock set and adjusted within what is
/// available, reservations (single and bundle, with and without customer and
/// key) of available units, partial and full confirms, releases, expiries,
/// extends. Seqs run from `firstSeq` without gaps; times and deadlines are
/// wall ms around `startMs`.
struct HistoryGenerator {
    var rng: SplitMix64
    private(set) var state = JournalState()
    private(set) var records: [SequencedRecord] = []
    var nowMs: UInt64
    private var nextSlot: UInt32 = 0
    private var tokenList: [Token] = []
    let skuNames: [SKU]
    let customers: [ShortBytes]
    /// Percent of confirm/release/expire picks carried out (lower: more live tokens at the end).
    var settlePercent: UInt64 = 100
    /// Per mille of steps that are a term start record (a failover), each
    /// at a higher epoch. 0 (the default) draws nothing from the generator,
    /// so the histories of seeds chosen before term starts existed stay the same.
    var termPerMille: UInt64 = 0
    private var lastEpoch: UInt64 = 0

    init(seed: UInt64, skus: Int = 12, startMs: UInt64 = 1_700_000_000_000) {
        rng = SplitMix64(seed: seed)
        nowMs = startMs
        skuNames = (0..<skus).map { SKU("SKU-\($0)-\(String(repeating: "x", count: $0 % 7))")! }
        customers = [.empty] + (0..<6).map { ShortBytes("customer-\($0)")! }
    }

    /// Generates until `count` records exist (`state` may include a few
    /// more: a bundle's lines past `count` are cut from `records` only).
    mutating func generate(_ count: Int) -> [SequencedRecord] {
        while records.count < count { step() }
        if records.count > count { records.removeLast(records.count - count) }
        return records
    }

    private mutating func emit(_ r: JournalRecord) {
        let sr = SequencedRecord(seq: state.lastSeq + 1, timeMs: nowMs, record: r)
        do { try state.apply(sr) } catch { fatalError("generator made an invalid record \(sr): \(error)") }
        records.append(sr)
    }

    private mutating func pick<T>(_ a: [T]) -> T { a[Int(rng.next(below: UInt64(a.count)))] }

    mutating func step() {
        nowMs += rng.next(below: 50)
        if termPerMille > 0 && rng.next(below: 1000) < termPerMille { return startTerm() }
        if state.skuCount < 3 || rng.next(below: 100) < 4 { return setStock() }
        let op = rng.next(below: 100)
        if op >= 45 && op < 90 && rng.next(below: 100) >= settlePercent { return reserve() }
        switch op {
        case 0..<3: adjust()
        case 3..<5: moveBackup()
        case 5..<45: reserve()
        case 45..<65: confirm()
        case 65..<78: settle(expire: false)
        case 78..<90: settle(expire: true)
        default: extend()
        }
    }

    /// A new primary's first record: a higher epoch (etcd revisions jump), one of three nodes.
    private mutating func startTerm() {
        lastEpoch += 1 + rng.next(below: 1000)
        emit(.termStarted(epoch: lastEpoch, node: ShortBytes("node-\(rng.next(below: 3))")!))
    }

    private mutating func setStock() {
        let sku = pick(skuNames)
        let floor = state.sku(sku).map { $0.reserved + $0.confirmed + $0.backup } ?? 0
        let onHand = UInt64(floor) + rng.next(below: 200)
        emit(.stockSet(sku: sku, onHand: onHand, lowStockThreshold: UInt32(rng.next(below: 10)),
                       perCustomerLimit: UInt32(rng.next(below: 4))))
    }

    private mutating func adjust() {
        let s = pick(state.skus)
        let delta = rng.next(below: 2) == 0 ? Int64(rng.next(below: 100)) + 1 : -Int64(rng.next(below: UInt64(s.available) + 1))
        guard delta != 0 else { return }
        emit(.stockAdjusted(sku: s.sku, delta: delta, reason: UInt8(rng.next(below: 4))))
    }

    /// Holds back some available units, or releases some backup units.
    private mutating func moveBackup() {
        let s = pick(state.skus)
        let delta = rng.next(below: 2) == 0 ? Int64(rng.next(below: UInt64(s.available) + 1))
                                            : -Int64(rng.next(below: UInt64(s.backup) + 1))
        guard delta != 0 else { return }
        emit(.backupChanged(sku: s.sku, delta: delta, backup: UInt64(s.backup + delta)))
    }

    private mutating func newToken() -> Token {
        nextSlot += 1
        return Token(slot: nextSlot, generation: UInt32(rng.next(below: 1000)) + 1, secret: rng.next())
    }

    private mutating func reserve() {
        let bundle = rng.next(below: 5) == 0
        let lines = bundle ? 2 + Int(rng.next(below: 3)) : 1
        let token = newToken()
        let customer = pick(customers)
        let key = rng.next(below: 3) == 0 ? ShortBytes("key-\(token.slot)")! : .empty
        let deadline = nowMs + rng.next(below: 120_000)
        var picked: [(SKU, UInt32)] = []
        var taken: [SKU: Int64] = [:]
        for _ in 0..<lines {
            let s = pick(state.skus)
            let left = s.available - taken[s.sku, default: 0]
            guard left > 0 else { continue }
            let q = UInt32(min(left, Int64(rng.next(below: 5)) + 1))
            taken[s.sku, default: 0] += Int64(q)
            picked.append((s.sku, q))
        }
        guard !picked.isEmpty else { return }
        for (sku, q) in picked {
            emit(.reserved(token: token, sku: sku, quantity: q, deadlineWallMs: deadline, customer: customer,
                           idempotencyKey: key, bundle: bundle))
        }
        tokenList.append(token)
    }

    /// A live token, forgetting settled ones on the way.
    private mutating func liveToken() -> LiveToken? {
        while !tokenList.isEmpty {
            let i = Int(rng.next(below: UInt64(tokenList.count)))
            if let t = state.tokens[tokenList[i]] { return t }
            tokenList.swapAt(i, tokenList.count - 1)
            tokenList.removeLast()
        }
        return nil
    }

    private mutating func confirm() {
        guard let t = liveToken() else { return }
        let order = ShortBytes("order-\(state.lastSeq)")!
        for line in t.lines {
            let q = t.bundle ? line.quantity : 1 + UInt32(rng.next(below: UInt64(line.quantity)))
            emit(.confirmed(token: t.token, sku: line.sku, quantity: q, returned: line.quantity - q,
                            orderReference: order))
        }
    }

    private mutating func settle(expire: Bool) {
        guard let t = liveToken() else { return }
        for line in t.lines {
            emit(expire ? .expired(token: t.token, sku: line.sku, quantity: line.quantity)
                        : .released(token: t.token, sku: line.sku, quantity: line.quantity))
        }
    }

    private mutating func extend() {
        guard let t = liveToken() else { return }
        emit(.extended(token: t.token, deadlineWallMs: t.deadlineWallMs + rng.next(below: 60_000)))
    }
}

/// Replays `records` onto an empty state (test oracle).
func replay(_ records: some Sequence<SequencedRecord>, onto start: JournalState = JournalState()) throws -> JournalState {
    var s = start
    for r in records { try s.apply(r) }
    return s
}

/// Field-by-field comparison with a readable failure (the states are large).
func differences(_ a: JournalState, _ b: JournalState) -> [String] {
    var out: [String] = []
    if a.lastSeq != b.lastSeq { out.append("lastSeq \(a.lastSeq) vs \(b.lastSeq)") }
    if a.skus.count != b.skus.count { out.append("SKU count \(a.skus.count) vs \(b.skus.count)") }
    for (x, y) in zip(a.skus, b.skus) where x != y { out.append("SKU \(x) vs \(y)") }
    if a.tokens.count != b.tokens.count { out.append("token count \(a.tokens.count) vs \(b.tokens.count)") }
    for (k, v) in a.tokens where b.tokens[k] != v { out.append("token \(k): \(v) vs \(String(describing: b.tokens[k]))") }
    for (k, v) in b.tokens where a.tokens[k] == nil { out.append("token \(k) only in second: \(v)") }
    if a.customerSold != b.customerSold { out.append("customerSold \(a.customerSold) vs \(b.customerSold)") }
    if a.epochs != b.epochs { out.append("epochs \(a.epochs) vs \(b.epochs)") }
    if a.fates != b.fates {
        out.append("fates: \(a.fates.count) vs \(b.fates.count); first differing: "
                   + "\(String(describing: zip(a.fates.oldestFirst, b.fates.oldestFirst).first { $0 != $1 }))")
    }
    return Array(out.prefix(10))
}

/// Writes `records` through a `JournalWriter` in batches of 1...`maxBatch`
/// records (each batch one buffer, then sync), rotating at `segmentBytes`.
func writeJournal(_ records: [SequencedRecord], to dir: String, segmentBytes: Int64 = 4096, maxBatch: Int = 8,
                  seed: UInt64 = 1, preallocate: Bool = true) throws {
    var rng = SplitMix64(seed: seed)
    let writer = try JournalWriter(directory: dir, segmentBytes: segmentBytes, preallocate: preallocate)
    let buffer = RecordBuffer(capacity: 1024)
    var i = 0
    while i < records.count {
        let n = min(records.count - i, 1 + Int(rng.next(below: UInt64(maxBatch))))
        buffer.reset()
        for r in records[i..<(i + n)] { RecordCodec.encode(r, into: buffer) }
        try writer.append(buffer)
        try writer.sync()
        i += n
    }
    try writer.close()
}

/// `records` shuffled within consecutive windows of 1...`window` records:
/// the order in which workers' buffers reach the journal.
func shuffledInWindows(_ records: [SequencedRecord], window: Int, seed: UInt64) -> [SequencedRecord] {
    var rng = SplitMix64(seed: seed)
    var out = records
    var i = 0
    while i < out.count {
        let n = min(out.count - i, 1 + Int(rng.next(below: UInt64(window))))
        out[i..<(i + n)].shuffle(using: &rng)
        i += n
    }
    return out
}
