import StockProtocol

extension StockCore {
    /// Checks the core's invariants and returns every violation found
    /// (empty when all hold). Exact only at quiescence — no operation in
    /// flight on any thread — which is when tests call it:
    /// - every available shard is >= 0;
    /// - for every SKU, on_hand = Σ available + Σ reserved + Σ confirmed + backup,
    ///   with Σ reserved, Σ confirmed and backup >= 0;
    /// - the units held by live tokens sum, per SKU, to Σ reserved;
    /// - the statistics agree: live tokens counted = live slots found.
    public func checkInvariants() -> [String] {
        var problems: [String] = []
        let n = catalog.count
        var held = [Int64](repeating: 0, count: n)
        var live = 0
        for slot in 0..<slotPool.used {
            let s = slab.state(UInt32(slot)).load(ordering: .acquiring)
            guard TokenState.fate(s) == .live else { continue }
            live += 1
            let item = slab.item(UInt32(slot)).load(ordering: .relaxed)
            let flags = slab.meta(UInt32(slot)).load(ordering: .relaxed)
            if flags & TokenFlags.bundle != 0 {
                let lines = (try? extras.with(stripe: extras.stripe(slot)) { (b) throws(Failure) in b[UInt32(slot)]?.lines }) ?? nil
                guard let lines else {
                    problems.append("bundle token in slot \(slot) has no lines")
                    continue
                }
                for line in lines { held[Int(line.sku)] += line.quantity }
            } else {
                let sku = Int(TokenItem.sku(item))
                guard sku < n else {
                    problems.append("token in slot \(slot) names SKU \(sku) beyond the catalog")
                    continue
                }
                held[sku] += TokenItem.quantity(item)
            }
        }
        for i in 0..<n {
            let sku = UInt32(i)
            for s in 0..<counters.shards where counters.available[counters.at(s, sku)].load(ordering: .relaxed) < 0 {
                problems.append("\(catalog.name(sku)): available shard \(s) negative")
            }
            let a = counters.sum(counters.available, sku)
            let r = counters.sum(counters.reserved, sku)
            let c = counters.sum(counters.confirmed, sku)
            let b = counters.backup[i].load(ordering: .relaxed)
            let onHand = counters.onHand[i].load(ordering: .relaxed)
            if onHand != a + r + c + b {
                problems.append("\(catalog.name(sku)): on_hand \(onHand) != available \(a) + reserved \(r) "
                                + "+ confirmed \(c) + backup \(b)")
            }
            if r < 0 || c < 0 || b < 0 {
                problems.append("\(catalog.name(sku)): reserved \(r), confirmed \(c) or backup \(b) negative")
            }
            if held[i] != r { problems.append("\(catalog.name(sku)): live tokens hold \(held[i]) but reserved is \(r)") }
        }
        let counted = stats().liveTokens
        if counted != UInt64(live) { problems.append("stats count \(counted) live tokens, slab holds \(live)") }
        return problems
    }
}

extension StockCore {
    /// Bytes the token machinery holds for the tokens now live on `worker`:
    /// slab slots in use, the worker's wheel, and free-slot bookkeeping
    /// (4 bytes per slot handed out). For the bytes-per-token figure.
    public func tokenMemoryBytes(worker: Worker) -> Int {
        let used = slotPool.used
        return used * TokenSlab.wordsPerSlot * 8 + worker.wheel.memoryBytes + used * 4
    }
}
