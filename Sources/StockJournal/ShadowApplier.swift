#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Applies a standby's appended batches to its shadow state (`Replayer`) on a
/// thread of its own, so the receiver's cycle — receive, check, write,
/// fdatasync, ack — never waits for the state. Measured on the 2-core bench
/// machine: applying was two thirds of the receiver thread's time, and a round
/// arriving while the receiver applied waited for it before its fsync could
/// start (docs/replication.md §2, "Standby").
///
/// Batches are applied in the order they were queued. The queue holds at most
/// `maxQueuedRecords` records; `enqueue` waits for room beyond that, so a
/// standby whose applier falls behind slows its acks (the primary's lag
/// bound sees it) instead of growing without limit.
///
/// Who touches what: the replayer and `refusal` change only on the applier
/// thread while `busy`; the owner reads them (`drained`) only once the queue
/// is empty and `busy` is false, and every transition of those is under
/// `lock` — so each read sees every batch applied before it.
final class ShadowApplier: @unchecked Sendable {
    /// Queued records at most by default (the receiver waits above it): about
    /// a quarter second of the bench's peak rate.
    static let defaultMaxQueuedRecords = 1 << 16

    let maxQueuedRecords: Int
    private var replayer: Replayer
    private var queue: [[SequencedRecord]] = []
    private var queuedRecords = 0
    private var busy = false
    private var stopping = false
    private var refusal: ReplicaError?
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Signalled when work arrives (the applier waits on it) and when work is done (owners wait on it).
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var thread = pthread_t()
    private var running = false

    init(replayer: Replayer, maxQueuedRecords: Int = ShadowApplier.defaultMaxQueuedRecords) {
        precondition(maxQueuedRecords >= 1, "the apply queue must hold a batch")
        self.replayer = replayer
        self.maxQueuedRecords = maxQueuedRecords
        pthread_mutex_init(lock, nil)
        pthread_cond_init(changed, nil)
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            Unmanaged<ShadowApplier>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(rc == 0, "cannot start the shadow state's applier thread")
        running = true
    }

    deinit {
        precondition(!running, "an applier is stopped before it goes")
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(lock)
        changed.deallocate()
        lock.deallocate()
    }

    /// The refusal that stopped applying, if any (cheap: the receiver asks once per batch).
    var refused: ReplicaError? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return refusal
    }

    /// Queues a batch; waits while the queue holds `maxQueuedRecords` or more.
    func enqueue(_ batch: [SequencedRecord]) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        precondition(running && !stopping, "a batch queued after stop")
        while queuedRecords >= maxQueuedRecords && refusal == nil { pthread_cond_wait(changed, lock) }
        guard refusal == nil else { return }  // nothing more applies; the next append throws
        queue.append(batch)
        queuedRecords += batch.count
        pthread_cond_broadcast(changed)
    }

    /// Waits until every queued batch is applied (or one was refused), then reads the replayer:
    /// after a refusal it holds every record before the refused one (apply checks first).
    func drained<R>(_ body: (Replayer) -> R) -> (value: R, refusal: ReplicaError?) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        while (!queue.isEmpty || busy) && refusal == nil { pthread_cond_wait(changed, lock) }
        return (body(replayer), refusal)
    }

    /// Applies what is queued, then ends the thread (joined). Idempotent.
    func stop() {
        pthread_mutex_lock(lock)
        let join = running && !stopping
        stopping = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(lock)
        if join { pthread_join(thread, nil) }
        running = false
    }

    // MARK: applier thread

    private func run() {
        BackgroundPriority.lowerCurrentThread()  // off every commit's path: the receiver comes first
        pthread_mutex_lock(lock)
        while true {
            while queue.isEmpty && !stopping { pthread_cond_wait(changed, lock) }
            if queue.isEmpty || refusal != nil { break }  // stopping, and everything applied (or nothing applies)
            let batches = queue
            queue.removeAll(keepingCapacity: true)
            busy = true
            pthread_mutex_unlock(lock)
            let outcome = apply(batches)
            pthread_mutex_lock(lock)
            busy = false
            queuedRecords -= batches.reduce(0) { $0 + $1.count }
            assert(queuedRecords >= 0, "more records applied than queued")
            if let outcome { refusal = outcome }
            pthread_cond_broadcast(changed)
        }
        pthread_mutex_unlock(lock)
    }

    /// Offers the batches in order; the refusal that stops them, if one does.
    private func apply(_ batches: [[SequencedRecord]]) -> ReplicaError? {
        for batch in batches {
            for r in batch {
                do throws(JournalError) {
                    // The path and offset name a record only in errors a refusal drops (it keeps seq and reason).
                    try replayer.offer(r, path: "", offset: 0)
                } catch {
                    guard case let .replay(seq, reason) = error else {
                        preconditionFailure("seqs were checked new before the append, yet: \(error)")
                    }
                    return .doesNotApply(seq: seq, reason: reason)
                }
            }
        }
        return nil
    }
}
