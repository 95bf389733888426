import StockProtocol

// Restoring the core from the journal after a restart: SKUs with their
// counts, then the tokens that were live, in the same slots with the same
// generations and secrets, so the tokens clients hold keep working. Runs
// before any worker serves (single-threaded), and checks everything it is
// given: a journal that does not add up stops the server instead of being
// half-applied.

/// A decided token to remember again, so that a retried CONFIRM, RELEASE or
/// EXTEND answers its fate rather than TOKEN_UNKNOWN after a restart.
public struct RestoredFate: Sendable, Equatable {
    public var token: Token
    public var fate: DecidedFate

    public init(token: Token, fate: DecidedFate) {
        self.token = token
        self.fate = fate
    }
}

/// Why a restore was refused.
public struct RestoreError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

extension StockCore {
    /// Creates (or resets) `sku` with `onHand` units of which `confirmed` are
    /// sold and `backup` held back; the rest is available until
    /// `restoreTokens` puts holds on it.
    public func restoreStock(_ sku: SKU, onHand: UInt64, confirmed: UInt64, backup: UInt64 = 0,
                             lowStockThreshold: UInt32, perCustomerLimit: UInt32) throws(RestoreError) {
        guard onHand <= Limits.maxStock, confirmed <= onHand, backup <= onHand - confirmed else {
            throw RestoreError("SKU \(sku): confirmed \(confirmed) + backup \(backup) above on-hand \(onHand)")
        }
        let i: UInt32
        do { i = try catalog.intern(sku).index } catch { throw RestoreError("SKU \(sku): catalog full") }
        guard counters.onHand[Int(i)].load(ordering: .relaxed) == 0, counters.sum(counters.confirmed, i) == 0 else {
            throw RestoreError("SKU \(sku) restored twice")
        }
        counters.onHand[Int(i)].store(Int64(onHand), ordering: .relaxed)
        if confirmed > 0 { counters.add(counters.confirmed, i, Int64(confirmed), shard: 0) }
        counters.backup[Int(i)].store(Int64(backup), ordering: .relaxed)
        if onHand > confirmed + backup { counters.spread(i, Int64(onHand - confirmed - backup)) }
        counters.setPolicy(i, threshold: lowStockThreshold, limit: perCustomerLimit)
    }

    /// Units a customer already bought of a SKU (they count against the
    /// per-customer limit as they did before the restart).
    public func restoreCustomerSold(customer: ShortBytes, sku: SKU, units: UInt64) throws(RestoreError) {
        guard let i = catalog.lookup(sku) else { throw RestoreError("customer units for unknown SKU \(sku)") }
        do {
            try customers.with(stripe: customers.stripe(Int(truncatingIfNeeded: customer.hash64))) {
                (bucket) throws(Failure) in
                let k = CustomerKey(customer: customer, sku: i)
                try bucket.set(k, (bucket[k] ?? 0) + Int64(units))
            }
        } catch {
            throw RestoreError("customer table full")
        }
    }

    /// Makes `tokens` live again, spread over `workers`' timing wheels, and
    /// puts `fates` (decided tokens, oldest decision first) back into the
    /// workers' fate rings — the newest ones the rings can hold.
    /// Deadlines are wall-clock ms; `wallOffsetMs` (wall − core clock) turns
    /// them into core ms, and one already past (`nowMs`, core clock) expires
    /// on the first tick. Call once, after `restoreStock`, before any worker serves.
    public func restoreTokens(_ tokens: [LiveToken], wallOffsetMs: UInt64 = 0, nowMs: UInt64,
                              fates: [RestoredFate] = [], workers: [Worker]) throws(RestoreError) {
        precondition(!workers.isEmpty)
        let kept = fates.suffix(fateMemoryPerWorker * workers.count)
        var used = [UInt32]()
        used.reserveCapacity(tokens.count + kept.count)
        for f in kept {
            guard Int(f.token.slot) < slab.capacity, f.token.generation != 0 else {
                throw RestoreError("decided token \(f.token) beyond --max-tokens \(slab.capacity) or malformed")
            }
            used.append(f.token.slot)
        }
        for t in tokens {
            guard Int(t.token.slot) < slab.capacity else {
                throw RestoreError("token \(t.token) beyond --max-tokens \(slab.capacity)")
            }
            guard t.token.generation != 0, !t.lines.isEmpty, t.bundle || t.lines.count == 1 else {
                throw RestoreError("token \(t.token): malformed")
            }
            used.append(t.token.slot)
        }
        guard slotPool.restore(used: used) else { throw RestoreError("two tokens in one slot") }
        for (n, t) in tokens.enumerated() {
            let deadlineCoreMs = max(t.deadlineWallMs &- wallOffsetMs, nowMs)
            try restoreToken(t, deadlineCoreMs: deadlineCoreMs, on: workers[n % workers.count])
        }
        for (n, f) in kept.enumerated() { restoreFate(f, on: workers[n % workers.count]) }
    }

    /// After a restore (stock and tokens): each SKU's alert level as its
    /// counts say, set without an event — the journal already holds the
    /// alerts that led there — so that the next change announces what it
    /// would have announced before the restart (a sold-out SKU restocked:
    /// `back_in_stock`). Call once, before any worker serves.
    public func restoreAlertLevels() {
        for i in 0..<catalog.count {
            let sku = UInt32(i)
            let available = counters.sum(counters.available, sku)
            let level = AlertLevel(available: available, threshold: counters.threshold(sku))
            counters.alert[i].store(level.rawValue, ordering: .relaxed)
        }
    }

    /// A decided slot as `settle` leaves it: the token's generation and
    /// secret with its fate, then into the worker's ring of recent fates.
    private func restoreFate(_ f: RestoredFate, on w: Worker) {
        let slot = f.token.slot
        slab.secret(slot).store(f.token.secret, ordering: .relaxed)
        slab.item(slot).store(0, ordering: .relaxed)
        slab.meta(slot).store(0, ordering: .relaxed)
        slab.state(slot).store(TokenState.pack(Fate(f.fate), generation: f.token.generation, deadline: 0),
                               ordering: .releasing)
        w.retire(slot)
    }

    private func restoreToken(_ t: LiveToken, deadlineCoreMs: UInt64, on w: Worker) throws(RestoreError) {
        var lines: [LineRef] = []
        for line in t.lines {
            guard let i = catalog.lookup(line.sku) else { throw RestoreError("token \(t.token): unknown SKU \(line.sku)") }
            guard line.quantity > 0, counters.take(i, Int64(line.quantity), shard: w.shard) else {
                throw RestoreError("token \(t.token): \(line.quantity) of \(line.sku) not available")
            }
            counters.add(counters.reserved, i, Int64(line.quantity), shard: w.shard)
            lines.append(LineRef(sku: i, quantity: Int64(line.quantity)))
        }
        var flags: UInt64 = 0
        if !t.customer.isEmpty { flags |= TokenFlags.customer }
        if !t.idempotencyKey.isEmpty { flags |= TokenFlags.idempotencyKey }
        if t.bundle { flags |= TokenFlags.bundle }
        let total = lines.reduce(Int64(0)) { $0 + $1.quantity }
        let item = t.bundle ? TokenItem.packBundle(total: total)
                            : TokenItem.pack(sku: lines[0].sku, quantity: lines[0].quantity)
        let slot = t.token.slot
        slab.secret(slot).store(t.token.secret, ordering: .relaxed)
        slab.item(slot).store(item, ordering: .relaxed)
        slab.meta(slot).store(flags, ordering: .relaxed)
        do {
            if flags != 0 {
                try extras.with(stripe: extras.stripe(Int(slot))) { (bucket) throws(Failure) in
                    try bucket.set(slot, TokenExtra(customer: t.customer, key: t.idempotencyKey,
                                                    lines: t.bundle ? lines : []))
                }
            }
            if !t.customer.isEmpty {
                try customers.with(stripe: customers.stripe(Int(truncatingIfNeeded: t.customer.hash64))) {
                    (bucket) throws(Failure) in
                    for line in lines {
                        let k = CustomerKey(customer: t.customer, sku: line.sku)
                        try bucket.set(k, (bucket[k] ?? 0) + line.quantity)
                    }
                }
            }
            if !t.idempotencyKey.isEmpty {
                let fingerprint = Self.fingerprint(lines, bundle: t.bundle, customer: t.customer)
                try idempotency.with(stripe: idempotency.stripe(Int(truncatingIfNeeded: t.idempotencyKey.hash64))) {
                    (bucket) throws(Failure) in
                    try bucket.set(t.idempotencyKey, IdempotencyEntry(token: t.token, fingerprint: fingerprint))
                }
            }
        } catch {
            throw RestoreError("token \(t.token): side table full")
        }
        let state = TokenState.pack(.live, generation: t.token.generation, deadline: relative(deadlineCoreMs))
        slab.state(slot).store(state, ordering: .releasing)
        w.wheel.schedule(WheelEntry.pack(slot: slot, generation: t.token.generation), deadlineMs: deadlineCoreMs)
        w.count(.issued)
    }
}
