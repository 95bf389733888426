import Atomics
import StockProtocol

/// The reservation engine: catalog, sharded counters, token slab and the
/// side tables for customers, idempotency keys and bundles.
///
/// Shared by all worker threads; every operation takes the calling thread's
/// `Worker` and the current time `nowMs` from a monotonic clock the caller
/// owns (the server passes its loop time, tests a hand-driven value), so the
/// core does no I/O and expiry is deterministic under test. Operations
/// report refusals as typed `Failure`s carrying the wire status.
public final class StockCore: @unchecked Sendable {
    public let config: CoreConfig
    let catalog: Catalog
    let counters: ShardedCounters
    let slab: TokenSlab
    let slotPool: SlotPool
    let extras: StripedMap<UInt32, TokenExtra>
    let customers: StripedMap<CustomerKey, Int64>
    let idempotency: StripedMap<ShortBytes, IdempotencyEntry>
    /// Core clock value that deadline 0 stands for in token state words.
    let epochMs: UInt64
    private var statBlocks: [AtomicCounters] = []
    private let registry: SpinLock
    private let registryWord: UnsafeMutablePointer<Int.AtomicRepresentation>
    /// One STAGE at a time: a stage is the only path that holds more than
    /// one SKU stripe lock, so serialising stages rules out lock-order
    /// deadlocks between them.
    let stageGate: SpinLock
    private let stageWord: UnsafeMutablePointer<Int.AtomicRepresentation>

    /// A core sized by `config`; `nowMs` is the caller's clock now.
    public init(config: CoreConfig, nowMs: UInt64) throws(ConfigError) {
        try config.validate()
        self.config = config
        catalog = Catalog(capacity: config.skuCapacity)
        counters = ShardedCounters(shards: config.shardCount, capacity: config.skuCapacity)
        slab = TokenSlab(capacity: config.tokenCapacity)
        slotPool = SlotPool(capacity: config.tokenCapacity)
        extras = StripedMap(capacity: config.tokenCapacity)
        customers = StripedMap(capacity: config.customerCapacity)
        idempotency = StripedMap(capacity: config.idempotencyCapacity)
        epochMs = nowMs
        registryWord = .allocate(capacity: 1)
        registryWord.initialize(to: .init(0))
        registry = SpinLock(word: UnsafeAtomic(at: registryWord))
        stageWord = .allocate(capacity: 1)
        stageWord.initialize(to: .init(0))
        stageGate = SpinLock(word: UnsafeAtomic(at: stageWord))
    }

    deinit {
        for block in statBlocks { block.deallocate() }
        registryWord.deallocate()
        stageWord.deallocate()
    }

    /// A worker for one thread, drawing on counter shard `shard`.
    public func makeWorker(shard: Int, nowMs: UInt64) -> Worker {
        precondition(shard >= 0 && shard < config.shardCount, "shard out of range")
        let block = AtomicCounters(count: WorkerStat.count)
        registry.lock()
        statBlocks.append(block)
        registry.unlock()
        return Worker(core: self, shard: shard, nowMs: nowMs, fateMemory: fateMemoryPerWorker, counters: block)
    }

    /// Decided tokens each worker remembers (`CoreConfig.fateRingSize`).
    public var fateMemoryPerWorker: Int { config.fateRingSize }

    /// Decided tokens remembered in all (`CoreConfig.fateMemoryTotal`).
    public var fateMemoryTotal: Int { config.fateMemoryTotal }

    /// The name of the SKU at catalog index `index`.
    public func sku(at index: UInt32) -> SKU { catalog.name(index) }

    /// The catalog index of `sku`, or nil.
    public func index(of sku: SKU) -> UInt32? { catalog.lookup(sku) }

    /// SKUs in the catalog.
    public var skuCount: Int { catalog.count }

    // MARK: - time

    @inline(__always) func relative(_ ms: UInt64) -> UInt64 {
        precondition(ms >= epochMs, "clock went backwards past the core's epoch")
        let r = ms - epochMs
        precondition(r <= TokenState.maxDeadline, "core clock beyond 2^36 ms of uptime")
        return r
    }

    @inline(__always) func ttl(_ requested: UInt32) throws(Failure) -> UInt64 {
        if requested == 0 { return UInt64(config.defaultTTLMs) }
        guard requested <= config.maxTTLMs else { throw Failure(.ttlTooLong, .ttlTooLong(maxTTLMs: config.maxTTLMs)) }
        return UInt64(requested)
    }

    // MARK: - reserve

    /// RESERVE. The common case (no customer, no idempotency key) takes no
    /// lock and allocates nothing.
    public func reserve(_ r: Reserve, nowMs: UInt64, on w: Worker) throws(Failure) -> ReserveOutcome {
        let ttlMs = try ttl(r.ttlMs)
        guard r.quantity > 0, r.quantity <= Limits.maxQuantity else { throw Failure(.quantityInvalid) }
        guard let sku = catalog.lookup(r.sku) else { throw Failure(.unknownSKU, .unknownSKU(line: 0)) }
        let deadline = nowMs + ttlMs
        if r.customer.isEmpty && r.idempotencyKey.isEmpty {
            return try reserveOne(sku, Int64(r.quantity), deadline: deadline, nowMs: nowMs, on: w)
        }
        let lines = [LineRef(sku: sku, quantity: Int64(r.quantity))]
        return try reserveKeyed(lines, bundle: false, customer: r.customer, key: r.idempotencyKey,
                                deadline: deadline, nowMs: nowMs, on: w)
    }

    /// RESERVE_BUNDLE: every line or none.
    public func reserveBundle(_ b: ReserveBundle, nowMs: UInt64, on w: Worker) throws(Failure) -> ReserveOutcome {
        let ttlMs = try ttl(b.ttlMs)
        guard b.lines.count >= 1, b.lines.count <= Limits.maxBundleLines else { throw Failure(.invalidArgument) }
        var lines = [LineRef]()
        lines.reserveCapacity(b.lines.count)
        for (i, line) in b.lines.enumerated() {
            guard line.quantity > 0, line.quantity <= Limits.maxQuantity else { throw Failure(.quantityInvalid) }
            guard let sku = catalog.lookup(line.sku) else { throw Failure(.unknownSKU, .unknownSKU(line: UInt8(i))) }
            guard !lines.contains(where: { $0.sku == sku }) else { throw Failure(.invalidArgument) }
            lines.append(LineRef(sku: sku, quantity: Int64(line.quantity)))
        }
        return try reserveKeyed(lines, bundle: true, customer: b.customer, key: b.idempotencyKey,
                                deadline: nowMs + ttlMs, nowMs: nowMs, on: w)
    }

    @inline(__always)
    private func reserveOne(_ sku: UInt32, _ q: Int64, deadline: UInt64, nowMs: UInt64,
                            on w: Worker) throws(Failure) -> ReserveOutcome {
        guard let slot = w.allocateSlot() else {
            w.count(.reserveFailures)
            throw Failure(.atCapacity)
        }
        guard counters.take(sku, q, shard: w.shard) else {
            w.unallocate(slot)
            w.count(.reserveFailures)
            let available = max(0, counters.sum(counters.available, sku))
            throw Failure(.outOfStock, .outOfStock(line: 0, available: UInt64(available)))
        }
        counters.add(counters.reserved, sku, q, shard: w.shard)
        counters.add(counters.reservations, sku, 1, shard: w.shard)
        let token = prepare(slot, item: TokenItem.pack(sku: sku, quantity: q), flags: 0, on: w)
        publish(token, deadline: deadline, on: w)
        w.count(.reserves)
        w.emit(change(sku, at: nowMs, .reserved(TokenLineChange(token: token, quantity: q, customer: .empty, index: 0, of: 1),
                                                deadlineCoreMs: deadline, idempotencyKey: .empty, bundle: false)))
        let available = counters.sum(counters.available, sku)
        evaluateAlert(sku, available: available, nowMs: nowMs, on: w)
        return ReserveOutcome(token: token, deadlineCoreMs: deadline, available: UInt64(max(0, available)), replayed: false)
    }

    /// Reserve with a customer, an idempotency key, or several lines. Locks,
    /// in this order: the key's stripe, the customer's stripe, then (inside
    /// `take`) each SKU's stripe — one global order, so no deadlock.
    private func reserveKeyed(_ lines: [LineRef], bundle: Bool, customer: ShortBytes, key: ShortBytes,
                              deadline: UInt64, nowMs: UInt64, on w: Worker) throws(Failure) -> ReserveOutcome {
        let fingerprint = Self.fingerprint(lines, bundle: bundle, customer: customer)
        if key.isEmpty {
            return try reserveCustomer(lines, bundle: bundle, customer: customer, key: key, fingerprint: fingerprint,
                                       deadline: deadline, nowMs: nowMs, on: w)
        }
        return try idempotency.with(stripe: idempotency.stripe(Int(truncatingIfNeeded: key.hash64))) {
            (bucket) throws(Failure) -> ReserveOutcome in
            if let entry = bucket[key] {
                if let live = liveState(entry.token, nowMs: nowMs) {
                    guard entry.fingerprint == fingerprint else { throw Failure(.idempotencyConflict) }
                    w.count(.idempotentReplays)
                    let available = counters.sum(counters.available, lines[0].sku)
                    return ReserveOutcome(token: entry.token, deadlineCoreMs: epochMs + TokenState.deadline(live),
                                          available: UInt64(max(0, available)), replayed: true)
                }
                bucket.remove(key)  // its token is decided: the key is free again
            }
            let outcome = try reserveCustomer(lines, bundle: bundle, customer: customer, key: key,
                                              fingerprint: fingerprint, deadline: deadline, nowMs: nowMs, on: w) {
                (token) throws(Failure) in
                try bucket.set(key, IdempotencyEntry(token: token, fingerprint: fingerprint))
            }
            return outcome
        }
    }

    private func reserveCustomer(_ lines: [LineRef], bundle: Bool, customer: ShortBytes, key: ShortBytes,
                                 fingerprint: UInt64, deadline: UInt64, nowMs: UInt64, on w: Worker,
                                 beforePublish: (Token) throws(Failure) -> Void = { _ in }) throws(Failure) -> ReserveOutcome {
        if customer.isEmpty {
            return try reserveLines(lines, bundle: bundle, customer: customer, key: key, deadline: deadline,
                                    nowMs: nowMs, on: w, beforePublish: beforePublish)
        }
        return try customers.with(stripe: customers.stripe(Int(truncatingIfNeeded: customer.hash64))) {
            (bucket) throws(Failure) -> ReserveOutcome in
            for (i, line) in lines.enumerated() {
                let limit = Int64(counters.customerLimit(line.sku))
                guard limit > 0 else { continue }
                let held = bucket[CustomerKey(customer: customer, sku: line.sku)] ?? 0
                if held + line.quantity > limit {
                    w.count(.reserveFailures)
                    throw Failure(.customerLimit, .customerLimit(line: UInt8(i), remaining: UInt64(max(0, limit - held))))
                }
            }
            let outcome = try reserveLines(lines, bundle: bundle, customer: customer, key: key, deadline: deadline,
                                           nowMs: nowMs, on: w) { (token) throws(Failure) in
                var added = 0
                do throws(Failure) {
                    for line in lines {
                        let k = CustomerKey(customer: customer, sku: line.sku)
                        try bucket.set(k, (bucket[k] ?? 0) + line.quantity)
                        added += 1
                    }
                    try beforePublish(token)
                } catch {
                    for line in lines[0..<added] {
                        let k = CustomerKey(customer: customer, sku: line.sku)
                        let v = (bucket[k] ?? 0) - line.quantity
                        if v == 0 { bucket.remove(k) } else { try? bucket.set(k, v) }
                    }
                    throw error
                }
            }
            return outcome
        }
    }

    /// Takes every line's units, then publishes one token. `beforePublish`
    /// records the token in the side tables; if it throws, everything is
    /// rolled back and nothing was ever visible.
    private func reserveLines(_ lines: [LineRef], bundle: Bool, customer: ShortBytes, key: ShortBytes,
                              deadline: UInt64, nowMs: UInt64, on w: Worker,
                              beforePublish: (Token) throws(Failure) -> Void) throws(Failure) -> ReserveOutcome {
        guard let slot = w.allocateSlot() else {
            w.count(.reserveFailures)
            throw Failure(.atCapacity)
        }
        for (i, line) in lines.enumerated() where !counters.take(line.sku, line.quantity, shard: w.shard) {
            for taken in lines[0..<i] { counters.put(taken.sku, taken.quantity, shard: w.shard) }
            w.unallocate(slot)
            w.count(.reserveFailures)
            let available = max(0, counters.sum(counters.available, line.sku))
            throw Failure(.outOfStock, .outOfStock(line: UInt8(i), available: UInt64(available)))
        }
        var flags: UInt64 = 0
        if !customer.isEmpty { flags |= TokenFlags.customer }
        if !key.isEmpty { flags |= TokenFlags.idempotencyKey }
        if bundle { flags |= TokenFlags.bundle }
        let total = lines.reduce(Int64(0)) { $0 + $1.quantity }
        let item = bundle ? TokenItem.packBundle(total: total) : TokenItem.pack(sku: lines[0].sku, quantity: lines[0].quantity)
        let token = prepare(slot, item: item, flags: flags, on: w)
        do throws(Failure) {
            try beforePublish(token)
            try extras.with(stripe: extras.stripe(Int(slot))) { (bucket) throws(Failure) in
                try bucket.set(slot, TokenExtra(customer: customer, key: key, lines: bundle ? lines : []))
            }
        } catch {
            for line in lines { counters.put(line.sku, line.quantity, shard: w.shard) }
            w.unallocate(slot)
            w.count(.reserveFailures)
            throw error
        }
        for line in lines {
            counters.add(counters.reserved, line.sku, line.quantity, shard: w.shard)
            counters.add(counters.reservations, line.sku, 1, shard: w.shard)
        }
        publish(token, deadline: deadline, on: w)
        w.count(bundle ? .bundles : .reserves)
        for (i, line) in lines.enumerated() {
            let held = TokenLineChange(token: token, quantity: line.quantity, customer: customer, index: i, of: lines.count)
            w.emit(change(line.sku, at: nowMs, .reserved(held, deadlineCoreMs: deadline, idempotencyKey: key, bundle: bundle)))
        }
        var firstAvailable: Int64 = 0
        for (i, line) in lines.enumerated() {
            let available = counters.sum(counters.available, line.sku)
            if i == 0 { firstAvailable = available }
            evaluateAlert(line.sku, available: available, nowMs: nowMs, on: w)
        }
        return ReserveOutcome(token: token, deadlineCoreMs: deadline, available: UInt64(max(0, firstAvailable)),
                              replayed: false)
    }

    /// Writes a slot's payload words and picks its token; not yet visible.
    @inline(__always)
    private func prepare(_ slot: UInt32, item: UInt64, flags: UInt64, on w: Worker) -> Token {
        let old = slab.state(slot).load(ordering: .relaxed)
        var generation = TokenState.nextGeneration(TokenState.generation(old))
        if generation == 0 { generation = 1 }  // generation 0 never names a live token
        let secret = w.secrets.draw()
        slab.secret(slot).store(secret, ordering: .relaxed)
        slab.item(slot).store(item, ordering: .relaxed)
        slab.meta(slot).store(flags, ordering: .relaxed)
        return Token(slot: slot, generation: generation, secret: secret)
    }

    /// Makes the token live (releasing store: its payload words are seen
    /// by whoever sees it live) and schedules its expiry on this worker.
    @inline(__always)
    private func publish(_ t: Token, deadline: UInt64, on w: Worker) {
        let state = TokenState.pack(.live, generation: t.generation, deadline: relative(deadline))
        slab.state(t.slot).store(state, ordering: .releasing)
        w.wheel.schedule(WheelEntry.pack(slot: t.slot, generation: t.generation), deadlineMs: deadline)
        w.count(.issued)
    }

    // MARK: - token decisions

    /// The state word of `t` if it names a live token whose deadline is
    /// still ahead; nil otherwise (no side effect).
    func liveState(_ t: Token, nowMs: UInt64) -> UInt64? {
        guard Int(t.slot) < slab.capacity else { return nil }
        let s = slab.state(t.slot).load(ordering: .acquiring)
        guard TokenState.generation(s) == t.generation, TokenState.fate(s) == .live,
              slab.secret(t.slot).load(ordering: .relaxed) == t.secret,
              epochMs + TokenState.deadline(s) > nowMs else { return nil }
        return s
    }

    /// The state word of `t` if it is live (deadline not checked), or the
    /// failure that answers a request on it.
    @inline(__always)
    private func resolve(_ t: Token) throws(Failure) -> UInt64 {
        guard Int(t.slot) < slab.capacity, t.generation != 0 else { throw Failure(.tokenUnknown) }
        let s = slab.state(t.slot).load(ordering: .acquiring)
        guard TokenState.generation(s) == t.generation,
              slab.secret(t.slot).load(ordering: .relaxed) == t.secret else { throw Failure(.tokenUnknown) }
        let fate = TokenState.fate(s)
        guard fate == .live else { throw Failure(fate.status) }
        return s
    }

    /// If `s` is past its deadline, expires the token (when this thread wins
    /// the state change) and throws `tokenExpired`.
    @inline(__always)
    private func expireIfDue(_ t: Token, _ s: UInt64, nowMs: UInt64, on w: Worker) throws(Failure) -> Bool {
        guard epochMs + TokenState.deadline(s) <= nowMs else { return false }
        if slab.state(t.slot).compareExchange(expected: s, desired: TokenState.with(s, fate: .expired),
                                              ordering: .acquiringAndReleasing).exchanged {
            settle(t.slot, token: t, fate: .expired, confirmQuantity: 0, reference: .empty, nowMs: nowMs, on: w)
            throw Failure(.tokenExpired)
        }
        return true  // somebody else changed the state: look again
    }

    /// CONFIRM: sells the units (all, or `quantity` and returns the rest).
    public func confirm(_ c: Confirm, nowMs: UInt64, on w: Worker) throws(Failure) -> ConfirmReply {
        let t = c.token
        while true {
            let s = try resolve(t)
            if try expireIfDue(t, s, nowMs: nowMs, on: w) { continue }
            let item = slab.item(t.slot).load(ordering: .relaxed)
            let isBundle = slab.meta(t.slot).load(ordering: .relaxed) & TokenFlags.bundle != 0
            let held = UInt32(truncatingIfNeeded: item)
            if isBundle && c.quantity != 0 { throw Failure(.quantityInvalid) }
            if c.quantity > held { throw Failure(.quantityInvalid) }
            guard slab.state(t.slot).compareExchange(expected: s, desired: TokenState.with(s, fate: .confirmed),
                                                     ordering: .acquiringAndReleasing).exchanged else { continue }
            let q = c.quantity == 0 ? held : c.quantity
            settle(t.slot, token: t, fate: .confirmed, confirmQuantity: Int64(q), reference: c.orderReference,
                   nowMs: nowMs, on: w)
            return ConfirmReply(confirmed: q, returned: held - q)
        }
    }

    /// RELEASE: returns the units to sale.
    public func release(_ t: Token, nowMs: UInt64, on w: Worker) throws(Failure) -> UInt32 {
        while true {
            let s = try resolve(t)
            if try expireIfDue(t, s, nowMs: nowMs, on: w) { continue }
            guard slab.state(t.slot).compareExchange(expected: s, desired: TokenState.with(s, fate: .released),
                                                     ordering: .acquiringAndReleasing).exchanged else { continue }
            let held = UInt32(truncatingIfNeeded: slab.item(t.slot).load(ordering: .relaxed))
            settle(t.slot, token: t, fate: .released, confirmQuantity: 0, reference: .empty, nowMs: nowMs, on: w)
            return held
        }
    }

    /// EXTEND: deadline = max(current, now + ttl). Returns the deadline in force.
    public func extend(_ e: Extend, nowMs: UInt64, on w: Worker) throws(Failure) -> UInt64 {
        let ttlMs = try ttl(e.ttlMs)
        let t = e.token
        while true {
            let s = try resolve(t)
            if try expireIfDue(t, s, nowMs: nowMs, on: w) { continue }
            let wanted = relative(nowMs + ttlMs)
            let current = TokenState.deadline(s)
            if wanted <= current { return epochMs + current }
            guard slab.state(t.slot).compareExchange(expected: s, desired: TokenState.with(s, deadline: wanted),
                                                     ordering: .acquiringAndReleasing).exchanged else { continue }
            // The wheel entry stays where it is: when it fires it finds the
            // later deadline and re-arms (EXTEND never shortens a hold).
            w.count(.extends)
            w.emit(Change(sku: nil, timeMs: nowMs, detail: .extended(token: t, deadlineCoreMs: epochMs + wanted)))
            return epochMs + wanted
        }
    }

    /// Moves a decided token's units (the caller won the state change), cleans
    /// its side-table entries, reports the change and retires the slot.
    private func settle(_ slot: UInt32, token t: Token, fate: Fate, confirmQuantity: Int64,
                        reference: ShortBytes, nowMs: UInt64, on w: Worker) {
        let item = slab.item(slot).load(ordering: .relaxed)
        let flags = slab.meta(slot).load(ordering: .relaxed)
        var extra: TokenExtra?
        if flags & TokenFlags.any != 0 {
            extra = try? extras.with(stripe: extras.stripe(Int(slot))) { (bucket) throws(Failure) -> TokenExtra? in
                let e = bucket[slot]
                bucket.remove(slot)
                return e
            }
            precondition(extra != nil, "token with side-table flags but no side-table entry")
        }
        let customer = extra?.customer ?? .empty
        if let lines = extra?.lines, !lines.isEmpty {
            for (i, line) in lines.enumerated() {
                settleLine(line.sku, held: line.quantity, confirmed: fate == .confirmed ? line.quantity : 0,
                           fate: fate, token: t, reference: reference, customer: customer,
                           line: i, of: lines.count, nowMs: nowMs, on: w)
            }
        } else {
            let sku = TokenItem.sku(item)
            let held = TokenItem.quantity(item)
            settleLine(sku, held: held, confirmed: confirmQuantity, fate: fate, token: t, reference: reference,
                       customer: customer, line: 0, of: 1, nowMs: nowMs, on: w)
        }
        if let extra { forgetSideEntries(extra, token: t, fate: fate, confirmQuantity: confirmQuantity, item: item) }
        switch fate {
        case .confirmed: w.count(.confirms)
        case .released: w.count(.releases)
        case .expired: w.count(.expiries)
        case .free, .live: preconditionFailure("settle needs a decided fate")
        }
        w.count(.decided)
        w.retire(slot)
    }

    private func settleLine(_ sku: UInt32, held: Int64, confirmed: Int64, fate: Fate, token: Token,
                            reference: ShortBytes, customer: ShortBytes, line: Int, of lines: Int, nowMs: UInt64,
                            on w: Worker) {
        precondition(confirmed >= 0 && confirmed <= held)
        counters.add(counters.reserved, sku, -held, shard: w.shard)
        if confirmed > 0 { counters.add(counters.confirmed, sku, confirmed, shard: w.shard) }
        let back = held - confirmed
        // Reported before the units are back on sale (see `Change`).
        switch fate {
        case .confirmed:
            w.emit(change(sku, at: nowMs, .confirmed(TokenLineChange(token: token, quantity: confirmed, customer: customer,
                                                                     index: line, of: lines),
                                                     returned: back, orderReference: reference)))
        case .released:
            w.emit(change(sku, at: nowMs, .released(TokenLineChange(token: token, quantity: held, customer: customer,
                                                                    index: line, of: lines))))
        case .expired:
            w.emit(change(sku, at: nowMs, .expired(TokenLineChange(token: token, quantity: held, customer: customer,
                                                                   index: line, of: lines))))
        case .free, .live:
            preconditionFailure("settleLine needs a decided fate")
        }
        if back > 0 { counters.put(sku, back, shard: w.shard) }
        if back > 0 { evaluateAlert(sku, available: counters.sum(counters.available, sku), nowMs: nowMs, on: w) }
    }

    /// Customer counts keep only units still held or sold; the idempotency
    /// key is forgotten with its token.
    private func forgetSideEntries(_ e: TokenExtra, token: Token, fate: Fate, confirmQuantity: Int64, item: UInt64) {
        if !e.customer.isEmpty {
            let lines = e.lines.isEmpty
                ? [LineRef(sku: TokenItem.sku(item), quantity: TokenItem.quantity(item))]
                : e.lines
            try? customers.with(stripe: customers.stripe(Int(truncatingIfNeeded: e.customer.hash64))) {
                (bucket) throws(Failure) in
                for line in lines {
                    let kept = fate != .confirmed ? 0 : (e.lines.isEmpty ? confirmQuantity : line.quantity)
                    let k = CustomerKey(customer: e.customer, sku: line.sku)
                    let v = (bucket[k] ?? 0) - (line.quantity - kept)
                    precondition(v >= 0, "customer count below zero")
                    if v == 0 { bucket.remove(k) } else { try bucket.set(k, v) }
                }
            }
        }
        if !e.key.isEmpty {
            try? idempotency.with(stripe: idempotency.stripe(Int(truncatingIfNeeded: e.key.hash64))) {
                (bucket) throws(Failure) in
                if bucket[e.key]?.token == token { bucket.remove(e.key) }
            }
        }
    }

    /// A change of SKU `sku` at `nowMs`, named for the sinks (built only
    /// when one listens: `Worker.emit` takes it as an autoclosure).
    @inline(__always) func change(_ sku: UInt32, at nowMs: UInt64, _ detail: Change.Detail) -> Change {
        Change(sku: SKURef(index: sku, name: catalog.name(sku)), timeMs: nowMs, detail: detail)
    }

    /// Expires what is due on `w`'s wheel (see `Worker.tick`).
    func tick(_ w: Worker, nowMs: UInt64, budget: Int) -> Int {
        var expired = 0
        w.rearm.removeAll(keepingCapacity: true)
        let relNow = relative(nowMs)
        w.wheel.advance(to: nowMs, budget: budget) { entry, _ in
            let slot = WheelEntry.slot(entry)
            let generation = WheelEntry.generation(entry)
            let state = slab.state(slot)
            while true {
                let s = state.load(ordering: .acquiring)
                // Decided or reused since scheduling: a stale entry, skip it.
                guard TokenState.generation(s) == generation, TokenState.fate(s) == .live else { return }
                let deadline = TokenState.deadline(s)
                if deadline > relNow {  // extended: fire again at the new deadline
                    w.rearm.append((entry, epochMs + deadline))
                    return
                }
                if state.compareExchange(expected: s, desired: TokenState.with(s, fate: .expired),
                                         ordering: .acquiringAndReleasing).exchanged {
                    let token = Token(slot: slot, generation: generation,
                                      secret: slab.secret(slot).load(ordering: .relaxed))
                    settle(slot, token: token, fate: .expired, confirmQuantity: 0, reference: .empty,
                           nowMs: nowMs, on: w)
                    expired += 1
                    return
                }
            }
        }
        for (entry, deadline) in w.rearm { w.wheel.schedule(entry, deadlineMs: deadline) }
        return expired
    }

    // MARK: - stock

    /// STOCK_SET, creating the SKU if new (see PROTOCOL.md).
    public func setStock(_ s: StockSet, nowMs: UInt64, on w: Worker) throws(Failure) -> StockInfo {
        guard s.onHand <= Limits.maxStock else { throw Failure(.quantityInvalid) }
        if catalog.lookup(s.sku) == nil, let expected = s.expectedOnHand, expected != 0 {
            throw Failure(.stockChanged, .stockChanged(current: 0))  // a new SKU has on-hand 0
        }
        let (sku, created) = try catalog.intern(s.sku)
        _ = try changeOnHand(sku, shard: w.shard) { (current) throws(Failure) -> Int64 in
            if let expected = s.expectedOnHand, UInt64(current) != expected {
                throw Failure(.stockChanged, .stockChanged(current: UInt64(current)))
            }
            return Int64(s.onHand)
        } announce: { current in
            // Under the SKU's lock, before more units are on sale (see `Change`).
            let threshold = s.lowStockThreshold ?? counters.threshold(sku)
            let limit = s.perCustomerLimit ?? counters.customerLimit(sku)
            if s.lowStockThreshold != nil || s.perCustomerLimit != nil {
                counters.setPolicy(sku, threshold: threshold, limit: limit)
            }
            w.emit(change(sku, at: nowMs, .stockSet(onHand: Int64(s.onHand), previousOnHand: current,
                                                    lowStockThreshold: threshold, perCustomerLimit: limit)))
        }
        w.count(.stockChanges)
        if !(created && s.onHand == 0) {
            evaluateAlert(sku, available: counters.sum(counters.available, sku), nowMs: nowMs, on: w)
        }
        return info(sku)
    }

    /// STOCK_ADJUST: restock or shrink; a shrink takes only available units.
    public func adjustStock(_ a: StockAdjust, nowMs: UInt64, on w: Worker) throws(Failure) -> StockInfo {
        guard a.delta != 0, a.delta.magnitude <= Limits.maxStock else { throw Failure(.quantityInvalid) }
        guard let sku = catalog.lookup(a.sku) else { throw Failure(.unknownSKU, .unknownSKU(line: 0)) }
        _ = try changeOnHand(sku, shard: w.shard) { (current) throws(Failure) -> Int64 in
            guard current + a.delta <= Int64(Limits.maxStock) else { throw Failure(.quantityInvalid) }
            return current + a.delta
        } announce: { _ in
            w.emit(change(sku, at: nowMs, .stockAdjusted(delta: a.delta, reason: a.reason)))
        }
        w.count(.stockChanges)
        evaluateAlert(sku, available: counters.sum(counters.available, sku), nowMs: nowMs, on: w)
        return info(sku)
    }

    /// Sets a SKU's on-hand to what `target` computes from the current value,
    /// under the SKU's stripe lock: more units are spread over the shards,
    /// fewer are taken from available ones only (`insufficientAvailable`
    /// otherwise, and nothing changes): backup units are not touched. `target` may refuse by throwing, and
    /// runs under the lock, so its check and the change are one step.
    /// `announce` (also under the lock) reports the change once it is sure:
    /// after a shrink took its units, before an increase spreads new ones.
    /// Returns the previous on-hand.
    private func changeOnHand(_ sku: UInt32, shard: Int,
                              _ target: (Int64) throws(Failure) -> Int64,
                              announce: (Int64) -> Void) throws(Failure) -> Int64 {
        let lock = counters.lock(sku)
        lock.lock()
        defer { lock.unlock() }
        let current = counters.onHand[Int(sku)].load(ordering: .relaxed)
        let wanted = try target(current)
        precondition(wanted <= Int64(Limits.maxStock), "on-hand above the protocol maximum")
        let delta = wanted - current
        // A shrink below zero can never be met: available <= on-hand.
        if delta < 0, wanted < 0 || !counters.takeLocked(sku, -delta, shard: shard) {
            let available = UInt64(max(0, counters.sum(counters.available, sku)))
            throw Failure(.insufficientAvailable, .insufficientAvailable(available: available))
        }
        announce(current)
        if delta > 0 { counters.spread(sku, delta) }
        counters.onHand[Int(sku)].store(wanted, ordering: .relaxed)
        return current
    }

    /// STOCK_GET.
    public func stock(_ sku: SKU) throws(Failure) -> StockInfo {
        guard let i = catalog.lookup(sku) else { throw Failure(.unknownSKU, .unknownSKU(line: 0)) }
        return info(i)
    }

    /// STOCK_LIST: up to `limit` entries from `cursor` in catalog order.
    public func list(cursor: UInt32, limit: Int) -> StockPage {
        let n = catalog.count
        let start = Int(cursor)
        guard start < n, limit > 0 else { return StockPage(nextCursor: Limits.listEnd, entries: []) }
        let end = min(n, start + limit)
        var entries = [StockEntry]()
        entries.reserveCapacity(end - start)
        for i in start..<end { entries.append(StockEntry(sku: catalog.name(UInt32(i)), info: info(UInt32(i)))) }
        return StockPage(nextCursor: end < n ? UInt32(end) : Limits.listEnd, entries: entries)
    }

    /// The counters of SKU `i` (each sum exact at quiescence; negative
    /// transients while operations are in flight read as 0).
    public func info(_ i: UInt32) -> StockInfo {
        StockInfo(onHand: UInt64(max(0, counters.onHand[Int(i)].load(ordering: .relaxed))),
                  available: UInt64(max(0, counters.sum(counters.available, i))),
                  reserved: UInt64(max(0, counters.sum(counters.reserved, i))),
                  confirmed: UInt64(max(0, counters.sum(counters.confirmed, i))),
                  lowStockThreshold: counters.threshold(i), perCustomerLimit: counters.customerLimit(i),
                  reservations: UInt64(max(0, counters.sum(counters.reservations, i))),
                  backup: UInt64(max(0, counters.backup[Int(i)].load(ordering: .relaxed))))
    }

    // MARK: - alerts

    /// Announces low stock, sold out and back in stock when the level
    /// changes. The level word changes by compare-exchange, so each change
    /// is announced once; under a race the announcements may flap, but the
    /// last one for a SKU always matches its level after the last change.
    func evaluateAlert(_ sku: UInt32, available: Int64, nowMs: UInt64, on w: Worker) {
        let level = AlertLevel(available: available, threshold: counters.threshold(sku))
        let word = counters.alert[Int(sku)]
        var old = word.load(ordering: .relaxed)
        while old != level.rawValue {
            let (done, seen) = word.compareExchange(expected: old, desired: level.rawValue, ordering: .relaxed)
            if !done {
                old = seen
                continue
            }
            let alert: Change.Detail? = switch (AlertLevel(rawValue: old) ?? .normal, level) {
            case (_, .soldOut): .soldOut
            case (.soldOut, _): .backInStock(available: max(0, available))
            case (.normal, .low): .lowStock(available: max(0, available))
            default: nil
            }
            if let alert { w.emit(change(sku, at: nowMs, alert)) }
            return
        }
    }

    // MARK: - support

    static func fingerprint(_ lines: [LineRef], bundle: Bool, customer: ShortBytes) -> UInt64 {
        var h: UInt64 = bundle ? 0x9E37_79B9_7F4A_7C15 : 0x2545_F491_4F6C_DD1D
        for line in lines {
            h = (h ^ (UInt64(line.sku) << 32 | UInt64(line.quantity))) &* 0xff51_afd7_ed55_8ccd
            h ^= h >> 31
        }
        h = (h ^ customer.hash64) &* 0xc4ce_b9fe_1a85_ec53
        return h ^ (h >> 29)
    }

    /// Sums of every worker's statistics, plus table sizes.
    public func stats() -> CoreStats {
        var sums = [Int64](repeating: 0, count: WorkerStat.count)
        registry.lock()
        for block in statBlocks {
            for s in WorkerStat.allCases { sums[s.rawValue] += block[s.rawValue].load(ordering: .relaxed) }
        }
        registry.unlock()
        func v(_ s: WorkerStat) -> UInt64 { UInt64(max(0, sums[s.rawValue])) }
        return CoreStats(
            skus: UInt64(catalog.count), liveTokens: v(.issued) &- min(v(.issued), v(.decided)),
            reserves: v(.reserves), bundles: v(.bundles), reserveFailures: v(.reserveFailures),
            confirms: v(.confirms), releases: v(.releases), expiries: v(.expiries), extends: v(.extends),
            stockChanges: v(.stockChanges), idempotentReplays: v(.idempotentReplays),
            customerEntries: UInt64(customers.count), idempotencyEntries: UInt64(idempotency.count),
            tokenCapacity: UInt64(config.tokenCapacity), skuCapacity: UInt64(config.skuCapacity))
    }
}

/// A successful reservation.
public struct ReserveOutcome: Sendable, Equatable {
    public var token: Token
    /// Deadline on the core clock (ms).
    public var deadlineCoreMs: UInt64
    /// Available units of the (first) SKU right after.
    public var available: UInt64
    /// True when an idempotent retry returned an earlier reservation.
    public var replayed: Bool
}

/// Counters for STATS.
public struct CoreStats: Sendable, Equatable {
    public var skus, liveTokens, reserves, bundles, reserveFailures, confirms, releases, expiries, extends: UInt64
    public var stockChanges, idempotentReplays, customerEntries, idempotencyEntries, tokenCapacity, skuCapacity: UInt64
}

/// One line of a held reservation: catalog index and units.
struct LineRef: Sendable, Equatable {
    var sku: UInt32
    var quantity: Int64
}

/// What a token holds beyond its slot: customer, key, bundle lines.
struct TokenExtra: Sendable {
    var customer: ShortBytes
    var key: ShortBytes
    var lines: [LineRef]
}

/// A customer's holdings of one SKU.
struct CustomerKey: Hashable, Sendable {
    var customer: ShortBytes
    var sku: UInt32
}

/// An idempotency key's reservation.
struct IdempotencyEntry: Sendable {
    var token: Token
    var fingerprint: UInt64
}
