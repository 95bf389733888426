import StockProtocol

// Backup units: stock on hand that is held back from sale — neither
// available nor reserved — until an operator releases it mid-show (a hero
// product's reserve, units set aside for the host). They count in on-hand,
// so on_hand = available + reserved + confirmed + backup. Backup changes
// only under the SKU's stripe lock, like on-hand.

extension StockCore {
    /// BACKUP_RELEASE: puts `quantity` backup units (0: all of them) on sale.
    public func releaseBackup(_ m: BackupMove, nowMs: UInt64, on w: Worker) throws(Failure) -> StockInfo {
        guard m.quantity <= Limits.maxStock else { throw Failure(.quantityInvalid) }
        guard let sku = catalog.lookup(m.sku) else { throw Failure(.unknownSKU, .unknownSKU(line: 0)) }
        let released: Int64 = try withStripe(sku) { () throws(Failure) -> Int64 in
            let held = counters.backup[Int(sku)].load(ordering: .relaxed)
            let q = m.quantity == 0 ? held : Int64(m.quantity)
            guard q <= held else { throw Failure(.insufficientBackup, .insufficientBackup(backup: UInt64(held))) }
            guard q > 0 else { return 0 }
            // Reported before the units are on sale (see `Change`).
            w.emit(change(sku, at: nowMs, .backupChanged(delta: -q, backupAfter: held - q)))
            counters.backup[Int(sku)].store(held - q, ordering: .relaxed)
            counters.spread(sku, q)
            return q
        }
        if released > 0 {
            w.count(.stockChanges)
            evaluateAlert(sku, available: counters.sum(counters.available, sku), nowMs: nowMs, on: w)
        }
        return info(sku)
    }

    /// BACKUP_HOLD: takes `quantity` available units off sale as backup.
    public func holdBackup(_ m: BackupMove, nowMs: UInt64, on w: Worker) throws(Failure) -> StockInfo {
        guard m.quantity > 0, m.quantity <= Limits.maxStock else { throw Failure(.quantityInvalid) }
        guard let sku = catalog.lookup(m.sku) else { throw Failure(.unknownSKU, .unknownSKU(line: 0)) }
        try withStripe(sku) { () throws(Failure) in
            let q = Int64(m.quantity)
            guard counters.takeLocked(sku, q, shard: w.shard) else {
                let available = UInt64(max(0, counters.sum(counters.available, sku)))
                throw Failure(.insufficientAvailable, .insufficientAvailable(available: available))
            }
            let held = counters.backup[Int(sku)].load(ordering: .relaxed) + q
            precondition(held <= counters.onHand[Int(sku)].load(ordering: .relaxed), "backup above on-hand")
            counters.backup[Int(sku)].store(held, ordering: .relaxed)
            w.emit(change(sku, at: nowMs, .backupChanged(delta: q, backupAfter: held)))
        }
        w.count(.stockChanges)
        evaluateAlert(sku, available: counters.sum(counters.available, sku), nowMs: nowMs, on: w)
        return info(sku)
    }

    /// Runs `body` holding `sku`'s stripe lock.
    func withStripe<T>(_ sku: UInt32, _ body: () throws(Failure) -> T) throws(Failure) -> T {
        let lock = counters.lock(sku)
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
