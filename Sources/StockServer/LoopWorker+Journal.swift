import CLibUV
import Glibc
import StockCore
import StockJournal
import StockProtocol

// A worker's side of group commit (see JournalPipeline): journal each state
// change the core reports, hand the records over once per loop iteration,
// and release connections' held answers when the watermark passes them.

extension LoopWorker {
    /// Sets up journaling on this worker (before its loop runs).
    func attachJournal(_ journal: JournalPipeline) {
        self.journal = journal
        coreWorker.onChange = { [unowned(unsafe) self] change in self.journalChange(change) }
        uv_check_init(loop, handOverCheck)
        uv_check_start(handOverCheck) { check in
            LoopWorker.from(UnsafeMutableRawPointer(check!).assumingMemoryBound(to: uv_handle_t.self)).handOverRecords()
        }
        uv_unref(handleOf(UnsafeMutableRawPointer(handOverCheck)))
        uv_async_init(loop, durableAsync) { async in
            LoopWorker.from(UnsafeMutableRawPointer(async!).assumingMemoryBound(to: uv_handle_t.self)).releaseHeld()
        }
        durableAsyncOpen = true
    }

    /// Every record at or below this is durable (no journal: everything is).
    @inline(__always) var durableSeq: UInt64 {
        journal?.durable.load(ordering: .acquiring) ?? .max
    }

    /// The journal failed: state changes are refused.
    var journalFailed: Bool { journal?.failed.load(ordering: .relaxed) ?? false }

    /// One state change, as the core reports it (on this thread).
    func journalChange(_ change: Change) {
        guard let journal else { return }
        let record = journalRecord(change)
        if recordBuffer.recordCount == 0 { journal.willAppend(worker: index) }
        let seq = journal.takeSeq()
        RecordCodec.encode(SequencedRecord(seq: seq, timeMs: wallClock(change.timeMs), record: record),
                           into: recordBuffer)
        lastSeq = seq
    }

    /// The journal record of a change (everything it needs is in the change:
    /// no call back into the core). Deadlines go from core to wall clock.
    private func journalRecord(_ c: Change) -> JournalRecord {
        let sku = c.sku?.name ?? .empty  // nil only for .extended, whose record names no SKU
        switch c.detail {
        case let .reserved(l, deadlineCoreMs, key, bundle):
            return .reserved(token: l.token, sku: sku, quantity: units(l), deadlineWallMs: wallClock(deadlineCoreMs),
                             customer: l.customer, idempotencyKey: key, bundle: bundle, line: l.index, lines: l.count)
        case let .confirmed(l, returned, order):
            return .confirmed(token: l.token, sku: sku, quantity: units(l), returned: UInt32(returned),
                              orderReference: order, customer: l.customer, line: l.index, lines: l.count)
        case let .released(l):
            return .released(token: l.token, sku: sku, quantity: units(l), customer: l.customer, line: l.index,
                             lines: l.count)
        case let .expired(l):
            return .expired(token: l.token, sku: sku, quantity: units(l), customer: l.customer, line: l.index,
                            lines: l.count)
        case let .extended(token, deadlineCoreMs): return .extended(token: token, deadlineWallMs: wallClock(deadlineCoreMs))
        case let .stockSet(onHand, _, threshold, limit):
            return .stockSet(sku: sku, onHand: UInt64(onHand), lowStockThreshold: threshold, perCustomerLimit: limit)
        case let .stockAdjusted(delta, reason): return .stockAdjusted(sku: sku, delta: delta, reason: reason.rawValue)
        // Alerts carry no state, but the event feed hands them on in journal order.
        case let .lowStock(available): return .lowStock(sku: sku, available: UInt64(available))
        case .soldOut: return .soldOut(sku: sku)
        case let .backInStock(available): return .backInStock(sku: sku, available: UInt64(available))
        case let .backupChanged(delta, backupAfter): return .backupChanged(sku: sku, delta: delta, backup: UInt64(backupAfter))
        }
    }

    /// A token line's units as a record holds them (the core bounds them by `Limits.maxQuantity`).
    @inline(__always) private func units(_ l: TokenLineChange) -> UInt32 {
        assert(l.quantity >= 0 && l.quantity <= Int64(Limits.maxQuantity), "a line holds 0...maxQuantity units")
        return UInt32(truncatingIfNeeded: l.quantity)
    }

    /// End of a loop iteration: the records of this iteration go to the journal thread.
    func handOverRecords() {
        guard let journal, recordBuffer.recordCount > 0 else { return }
        let records = recordBuffer.recordCount
        recordBuffer.withUnsafeBytes { journal.handOver(worker: index, $0, records: records) }
        recordBuffer.reset()
    }

    /// A connection whose answers wait for the journal.
    func hold(_ conn: Connection) {
        guard !conn.isHeld else { return }
        conn.isHeld = true
        heldConnections.append(conn)
    }

    /// The watermark moved (or the journal failed): answers now durable go out.
    func releaseHeld() {
        let w = durableSeq
        let failed = journalFailed
        // Compacted in place (no allocation per journal round). A released
        // connection may re-hold itself while flushing: it is appended past
        // `end`, and the tail is kept as it is.
        let end = heldConnections.count
        var kept = 0
        for i in 0..<end {
            let conn = heldConnections[i]
            conn.isHeld = false
            guard conn.state != .closed else { continue }
            if conn.heldUntil <= w {
                conn.releaseHeldAnswers()
            } else if failed {
                conn.close()  // never acknowledge what is not on disk: the client sees the outcome as unknown
            } else {
                conn.isHeld = true
                heldConnections[kept] = conn
                kept += 1
            }
        }
        heldConnections.removeSubrange(kept..<end)
    }

    /// Wakes this worker from the journal thread (never after its loop closed the handle).
    func signalDurable() {
        pthread_mutex_lock(durableLock)
        if durableAsyncOpen { uv_async_send(durableAsync) }
        pthread_mutex_unlock(durableLock)
    }

    func closeJournalHandles() {
        guard journal != nil else { return }
        uv_close(handleOf(UnsafeMutableRawPointer(handOverCheck)), nil)
        pthread_mutex_lock(durableLock)
        durableAsyncOpen = false
        uv_close(handleOf(UnsafeMutableRawPointer(durableAsync)), nil)
        pthread_mutex_unlock(durableLock)
    }
}
