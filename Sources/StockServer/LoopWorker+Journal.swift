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
        guard let journal, let record = journalRecord(change) else { return }
        if recordBuffer.recordCount == 0 { journal.willAppend(worker: index) }
        let seq = journal.takeSeq()
        RecordCodec.encode(SequencedRecord(seq: seq, timeMs: wallClock(change.timeMs), record: record),
                           into: recordBuffer)
        lastSeq = seq
    }

    private func journalRecord(_ c: Change) -> JournalRecord? {
        let q = UInt32(truncatingIfNeeded: c.quantity)
        switch c.kind {
        case .reserved:
            return .reserved(token: c.token, sku: core.sku(at: c.sku), quantity: q, deadlineMs: wallClock(UInt64(c.aux)),
                             customer: c.reference, idempotencyKey: c.key, bundle: c.extra & 1 == 1,
                             line: c.line.index, lines: c.line.count)
        case .confirmed:
            return .confirmed(token: c.token, sku: core.sku(at: c.sku), quantity: q,
                              returned: UInt32(truncatingIfNeeded: c.aux), orderReference: c.reference,
                              customer: c.key, line: c.line.index, lines: c.line.count)
        case .released:
            return .released(token: c.token, sku: core.sku(at: c.sku), quantity: q, customer: c.key,
                             line: c.line.index, lines: c.line.count)
        case .expired:
            return .expired(token: c.token, sku: core.sku(at: c.sku), quantity: q, customer: c.key,
                            line: c.line.index, lines: c.line.count)
        case .extended: return .extended(token: c.token, deadlineMs: wallClock(UInt64(c.aux)))
        case .stockSet:
            return .stockSet(sku: core.sku(at: c.sku), onHand: UInt64(c.quantity),
                             lowStockThreshold: UInt32(truncatingIfNeeded: c.extra >> 32),
                             perCustomerLimit: UInt32(truncatingIfNeeded: c.extra))
        case .stockAdjusted:
            return .stockAdjusted(sku: core.sku(at: c.sku), delta: c.quantity, reason: UInt8(truncatingIfNeeded: c.aux))
        // Alerts carry no state, but the event feed hands them on in journal order.
        case .lowStock: return .lowStock(sku: core.sku(at: c.sku), available: UInt64(max(0, c.quantity)))
        case .soldOut: return .soldOut(sku: core.sku(at: c.sku))
        case .backInStock: return .backInStock(sku: core.sku(at: c.sku), available: UInt64(max(0, c.quantity)))
        case .backupChanged: return .backupChanged(sku: core.sku(at: c.sku), delta: c.quantity, backup: UInt64(c.aux))
        }
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
