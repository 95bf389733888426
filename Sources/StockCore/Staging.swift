import StockProtocol

// STAGE: a show's catalog — on-hand, backup, low-stock threshold and
// per-customer limit of many SKUs — applied every line or none.
//
// 1. Lock the stripes of the SKUs already in the catalog (each stripe once).
// 2. Take off sale what each shrinking line needs (a take can fail: units
//    held by tokens or sold are never taken back). Takes are reversible
//    until announced, so a refusal puts every taken unit back and answers
//    STAGE_REFUSED listing each refused line: nothing changed.
// 3. Add the new SKUs to the catalog, all or none (AT_CAPACITY).
// 4. Announce and apply every line. Nothing can fail from here.
//
// Locks: stages are serialised by `stageGate`; every other path holds at
// most one stripe lock at a time; so a stage may take stripes in any order.

extension StockCore {
    /// STAGE (see PROTOCOL.md): every line applied, or none.
    public func stage(_ s: Stage, nowMs: UInt64, on w: Worker) throws(Failure) -> StageReply {
        let n = s.lines.count
        guard n >= 1, n <= Limits.maxStageLines else { throw Failure(.invalidArgument) }
        guard Set(s.lines.map(\.sku)).count == n else { throw Failure(.invalidArgument) }
        for line in s.lines {
            guard line.onHand <= Limits.maxStock, line.backup <= line.onHand else { throw Failure(.quantityInvalid) }
        }
        stageGate.lock()
        defer { stageGate.unlock() }
        var indices = [UInt32](repeating: 0, count: n)
        var known = [Bool](repeating: false, count: n)
        let created = try stageLocked(s.lines, indices: &indices, known: &known, nowMs: nowMs, on: w)
        for (i, line) in s.lines.enumerated() {
            w.count(.stockChanges)
            // A new SKU with nothing on sale has not "sold out" (as STOCK_SET).
            if !known[i] && line.onHand == line.backup { continue }
            evaluateAlert(indices[i], available: counters.sum(counters.available, indices[i]), nowMs: nowMs, on: w)
        }
        return StageReply(lines: UInt16(n), created: UInt16(created))
    }

    /// Steps 1-4 under the stripe locks; returns the number of SKUs created.
    private func stageLocked(_ lines: [StageLine], indices: inout [UInt32], known: inout [Bool], nowMs: UInt64,
                             on w: Worker) throws(Failure) -> Int {
        var stripes = StripeHold(counters)
        defer { stripes.unlockAll() }
        for (i, line) in lines.enumerated() {
            if let k = catalog.lookup(line.sku) {
                indices[i] = k
                known[i] = true
                stripes.lock(k)
            }
        }
        var taken = [Int64](repeating: 0, count: lines.count)
        var refused: [StageRefusal] = []
        takeShrinks(lines, indices, where: known, taken: &taken, refused: &refused, shard: w.shard)
        guard refused.isEmpty else {
            putBack(taken, indices, shard: w.shard)
            throw Failure(.stageRefused, .stageRefused(refused))
        }
        var created = 0
        let fresh = lines.indices.filter { !known[$0] }
        if !fresh.isEmpty {
            var freshIndices: [UInt32] = []
            do {
                created = try catalog.internAll(fresh.map { lines[$0].sku }, into: &freshIndices)
            } catch {
                putBack(taken, indices, shard: w.shard)
                let refusal = StageRefusal(line: UInt16(fresh[0]), status: .atCapacity, value: UInt64(catalog.free))
                throw Failure(.stageRefused, .stageRefused([refusal]))
            }
            for (k, i) in fresh.enumerated() {
                indices[i] = freshIndices[k]
                stripes.lock(freshIndices[k])
            }
            // A SKU created by a concurrent STOCK_SET since the lookup may
            // already have stock: treat the fresh lines like the others.
            let isFresh = lines.indices.map { !known[$0] }
            takeShrinks(lines, indices, where: isFresh, taken: &taken, refused: &refused, shard: w.shard)
            guard refused.isEmpty else {
                putBack(taken, indices, shard: w.shard)
                throw Failure(.stageRefused, .stageRefused(refused))
            }
        }
        for (i, line) in lines.enumerated() { applyStaged(line, indices[i], taken: taken[i], nowMs: nowMs, on: w) }
        return created
    }

    /// Units line `i` must take off sale: its on-sale target minus what is on sale now.
    private func availableChange(_ line: StageLine, _ sku: UInt32) -> Int64 {
        let current = counters.onHand[Int(sku)].load(ordering: .relaxed)
        let backup = counters.backup[Int(sku)].load(ordering: .relaxed)
        return (Int64(line.onHand) - Int64(line.backup)) - (current - backup)
    }

    private func takeShrinks(_ lines: [StageLine], _ indices: [UInt32], where selected: [Bool],
                             taken: inout [Int64], refused: inout [StageRefusal], shard: Int) {
        for (i, line) in lines.enumerated() where selected[i] {
            let change = availableChange(line, indices[i])
            guard change < 0 else { continue }
            if counters.takeLocked(indices[i], -change, shard: shard) {
                taken[i] = -change
            } else {
                let available = UInt64(max(0, counters.sum(counters.available, indices[i])))
                refused.append(StageRefusal(line: UInt16(i), status: .insufficientAvailable, value: available))
            }
        }
    }

    private func putBack(_ taken: [Int64], _ indices: [UInt32], shard: Int) {
        for (i, q) in taken.enumerated() where q > 0 { counters.put(indices[i], q, shard: shard) }
    }

    /// Announces and applies one line whose shrink (`taken`) is done. The
    /// journal replays each record on its own, so the two records of a line
    /// go in the order that keeps available >= 0 after each: a lower backup
    /// first, else the on-hand first (one of the two orders always does).
    private func applyStaged(_ line: StageLine, _ sku: UInt32, taken: Int64, nowMs: UInt64, on w: Worker) {
        let current = counters.onHand[Int(sku)].load(ordering: .relaxed)
        let backup = counters.backup[Int(sku)].load(ordering: .relaxed)
        let onSaleDelta = (Int64(line.onHand) - Int64(line.backup)) - (current - backup)
        precondition(onSaleDelta >= 0 || -onSaleDelta == taken, "a stage line's shrink was not taken")
        let newBackup = Int64(line.backup)
        counters.setPolicy(sku, threshold: line.lowStockThreshold, limit: line.perCustomerLimit)
        let stockSet = Change.Detail.stockSet(onHand: Int64(line.onHand), previousOnHand: current,
                                              lowStockThreshold: line.lowStockThreshold,
                                              perCustomerLimit: line.perCustomerLimit)
        let backupChanged = Change.Detail.backupChanged(delta: newBackup - backup, backupAfter: newBackup)
        if newBackup < backup {
            w.emit(change(sku, at: nowMs, backupChanged))
            w.emit(change(sku, at: nowMs, stockSet))
        } else {
            w.emit(change(sku, at: nowMs, stockSet))
            if newBackup != backup { w.emit(change(sku, at: nowMs, backupChanged)) }
        }
        counters.onHand[Int(sku)].store(Int64(line.onHand), ordering: .relaxed)
        counters.backup[Int(sku)].store(newBackup, ordering: .relaxed)
        if onSaleDelta > 0 { counters.spread(sku, onSaleDelta) }
    }
}

/// The stripe locks a stage holds, each taken once.
private struct StripeHold {
    let counters: ShardedCounters
    var held: Set<Int> = []

    init(_ counters: ShardedCounters) { self.counters = counters }

    mutating func lock(_ sku: UInt32) {
        guard held.insert(counters.stripe(sku)).inserted else { return }
        counters.lock(sku).lock()
    }

    func unlockAll() {
        for stripe in held { counters.locks.lock(for: stripe).unlock() }
    }
}
