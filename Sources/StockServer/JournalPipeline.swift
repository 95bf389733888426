import Atomics
import Glibc
import StockJournal
import StockProtocol

// # Group commit
//
// Workers journal every state change as it happens (the core reports it
// synchronously, see `Change`), into a buffer of their own, each record
// numbered from one global atomic sequence. At the end of each loop
// iteration a worker hands its buffer to the journal thread (one lock per
// iteration, not per request). The journal thread writes everything handed
// over since its last round with one `write`, makes it durable with one
// `fdatasync`, and publishes the **durable watermark**: every record with
// a sequence number at or below it is on disk. A connection whose answers
// include a state change waits until the watermark passes that change's
// record; answers are never reordered, so a read answer queued behind a
// write answer waits too, and an idle reader is not delayed at all.
//
// Why a gap-free watermark is safe to compute without stopping workers:
// before a worker's buffer goes from empty to non-empty it stores, in its
// `pendingLow` slot, a lower bound of the sequence numbers it is about to
// take (the global counter's current value), and it clears the slot (to
// UInt64.max) only after handing the buffer over. The journal thread, each
// round: (1) loads the global counter G, (2) loads every `pendingLow`,
// (3) takes the handed-over buffers, (4) writes and syncs them, then
// (5) publishes W = min(G, every pendingLow) − 1. A record numbered below
// G was either handed over before step 2 read its worker's slot — so step 3
// took it (or an earlier round did) — or its worker had not handed it over
// yet, and then that worker's slot bounds W below it. All loads and stores
// of G and the slots are sequentially consistent.

/// The journal thread and what workers share with it.
final class JournalPipeline: @unchecked Sendable {
    /// Initial capacity of each worker's hand-over buffers (`handed`, `spare`), bytes.
    static let handedReserveBytes = 1 << 20
    /// When records are numbered but not handed over yet, the journal thread
    /// looks again after this long (ns) instead of waiting for a hand-over.
    static let recordsOnTheirWayWaitNs = 1_000_000
    /// `stop` polls for a background snapshot to finish this often (µs).
    static let compactionPollUs: UInt32 = 1000
    /// Buckets of the fdatasync latency histogram (`syncLatencyBuckets`).
    static let syncLatencyBucketCount = 20

    let directory: String
    /// The first sequence number of this run (`durable` starts just below it).
    private let firstSeq: UInt64
    /// The next sequence number to hand out.
    let nextSeq: ManagedAtomic<UInt64>
    /// The commit point: every record numbered at or below this may be
    /// acknowledged (answers and the event feed wait on it). Standalone it is
    /// `localDurable`; on a primary with standbys it is also bounded by their
    /// acks (`commitGate`, docs/replication.md §2). Only moves forward.
    let durable: ManagedAtomic<UInt64>
    /// Every record numbered at or below this is on this node's disk.
    let localDurable: ManagedAtomic<UInt64>
    /// Every record numbered at or below this is written to the segment files
    /// (fdatasync may still be running): replication senders read up to it, so
    /// shipping a round runs in parallel with its local sync.
    let written: ManagedAtomic<UInt64>
    /// The standbys' side of the commit point (nil: standalone, committed = local durable).
    /// Set before `start`.
    var commitGate: CommitGate?
    /// Called on the journal thread after `written` moved (wakes the replication senders).
    var onWritten: (() -> Void)?
    /// Per worker: a lower bound of its unhanded records' numbers, or .max.
    private let pendingLow: [ManagedAtomic<UInt64>]
    /// Set when a write or sync failed: the journal no longer advances and
    /// the server refuses state changes.
    let failed = ManagedAtomic<Bool>(false)
    private(set) var failure: String?

    // Handed-over bytes per worker, swapped out by the journal thread.
    private var handed: [[UInt8]]
    private var spare: [[UInt8]]
    private var handedRecords: [Int]
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var stopping = false
    private var thread = pthread_t()
    /// The journal thread (claimed in `run`): everything under "journal thread" runs on it.
    private let journalThread = OwningThread()
    private let writer: JournalWriter
    /// Called on the journal thread after the watermark moved (wakes the workers).
    var onDurable: (() -> Void)?
    let logFailure: @Sendable (String) -> Void
    /// Compaction: every this many records (at a segment rotation), the closed
    /// segments are folded into a snapshot on a background thread.
    private let snapshotEvery: UInt64
    private var recordsSinceSnapshot: UInt64 = 0
    private var segmentsClosedSeen = 0
    private let compacting = ManagedAtomic<Bool>(false)
    var logInfo: (@Sendable (String) -> Void)?
    let snapshots = ManagedAtomic<UInt64>(0)
    /// Covered segments kept for the event feed (bytes).
    private let retainBytes: Int64
    /// Decided tokens a snapshot remembers: the core's total fate memory.
    private let fateLimit: Int
    /// The oldest offset the event feed can serve (raised before compaction deletes).
    let feedFloor: ManagedAtomic<UInt64>
    /// How far the segment files are durable (published after each sync,
    /// before the watermark; read by the event feed).
    private var syncedEndValue: SyncedEnd
    /// How far the segment files are written (published after each write, before its sync).
    private var writtenEndValue: SyncedEnd
    private let syncedLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    // Statistics (journal thread writes, STATS reads).
    let syncs = ManagedAtomic<UInt64>(0)
    let syncNanosTotal = ManagedAtomic<UInt64>(0)
    let syncNanosMax = ManagedAtomic<UInt64>(0)
    let recordsWritten = ManagedAtomic<UInt64>(0)
    let bytesWritten = ManagedAtomic<UInt64>(0)
    let batchRecordsMax = ManagedAtomic<UInt64>(0)
    /// fdatasync latency histogram: bucket i counts syncs under 2^i µs (the last: the rest).
    let syncLatencyBuckets = (0..<JournalPipeline.syncLatencyBucketCount).map { _ in ManagedAtomic<UInt64>(0) }

    init(directory: String, firstSeq: UInt64, workers: Int, segmentBytes: Int, snapshotEvery: Int,
         retainBytes: Int64 = 0, feedFloor: UInt64 = 1, fateLimit: Int = FateMemory.defaultLimit,
         logFailure: @escaping @Sendable (String) -> Void) throws {
        precondition(fateLimit >= 0, "fate memory limit below zero")
        self.fateLimit = fateLimit
        self.snapshotEvery = UInt64(max(1, snapshotEvery))
        self.retainBytes = retainBytes
        self.feedFloor = ManagedAtomic(feedFloor)
        // Segments of earlier runs are closed: readable to their end.
        syncedEndValue = try SegmentFiles.list(in: directory).last.map {
            SyncedEnd(segmentFirstSeq: $0.firstSeq, bytes: .max)
        } ?? .none
        writtenEndValue = syncedEndValue
        pthread_mutex_init(syncedLock, nil)
        precondition(firstSeq >= 1)
        precondition(workers >= 1, "a journal without workers")
        self.firstSeq = firstSeq
        self.directory = directory
        self.logFailure = logFailure
        nextSeq = ManagedAtomic(firstSeq)
        durable = ManagedAtomic(firstSeq - 1)
        localDurable = ManagedAtomic(firstSeq - 1)
        written = ManagedAtomic(firstSeq - 1)
        pendingLow = (0..<workers).map { _ in ManagedAtomic<UInt64>(.max) }
        handed = Array(repeating: [], count: workers)
        spare = Array(repeating: [], count: workers)
        handedRecords = Array(repeating: 0, count: workers)
        for i in 0..<workers {
            handed[i].reserveCapacity(Self.handedReserveBytes)
            spare[i].reserveCapacity(Self.handedReserveBytes)
        }
        writer = try JournalWriter(directory: directory, segmentBytes: Int64(segmentBytes))
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_mutex_destroy(syncedLock)
        syncedLock.deallocate()
    }

    /// How far the segment files are durable (any thread).
    func syncedEnd() -> SyncedEnd {
        pthread_mutex_lock(syncedLock)
        defer { pthread_mutex_unlock(syncedLock) }
        return syncedEndValue
    }

    /// How far the segment files are written (any thread): every record up to
    /// `written` lies within it.
    func writtenEnd() -> SyncedEnd {
        pthread_mutex_lock(syncedLock)
        defer { pthread_mutex_unlock(syncedLock) }
        return writtenEndValue
    }

    /// Where the writer's bytes end now (nil: it never opened a segment).
    private func currentEnd() -> SyncedEnd? {
        assert(journalThread.isCurrent, "segment end read off the journal thread")
        if let open = writer.currentSegment {
            return SyncedEnd(segmentFirstSeq: open.firstSeq, bytes: writer.currentSegmentBytes)
        } else if let closed = writer.lastClosedSegment {
            return SyncedEnd(segmentFirstSeq: closed.firstSeq, bytes: .max)
        }
        return nil
    }

    private func publishSyncedEnd() {
        guard let end = currentEnd() else { return }
        pthread_mutex_lock(syncedLock)
        // Only forward: segments in the order of their names, bytes within one; a closed one is
        // readable to its end (.max). The event feed reads up to it.
        assert(Self.atOrAfter(end, syncedEndValue), "synced end moved back: \(syncedEndValue) -> \(end)")
        syncedEndValue = end
        pthread_mutex_unlock(syncedLock)
    }

    /// After a round's write, before its sync: what replication may read.
    private func publishWritten(through seq: UInt64) {
        assert(journalThread.isCurrent, "written end published off the journal thread")
        guard seq > written.load(ordering: .relaxed) else { return }
        if let end = currentEnd() {
            pthread_mutex_lock(syncedLock)
            assert(Self.atOrAfter(end, writtenEndValue), "written end moved back: \(writtenEndValue) -> \(end)")
            writtenEndValue = end
            pthread_mutex_unlock(syncedLock)
        }
        written.store(seq, ordering: .releasing)
        onWritten?()
    }

    private static func atOrAfter(_ a: SyncedEnd, _ b: SyncedEnd) -> Bool {
        a.segmentFirstSeq > b.segmentFirstSeq || (a.segmentFirstSeq == b.segmentFirstSeq && a.bytes >= b.bytes)
    }

    /// Moves the commit point to min(local durable, the standbys' acks) if
    /// that is higher (any thread: the journal thread after a sync, the
    /// replication thread after an ack). Wakes the workers when it moved.
    func advanceCommitted() {
        var target = localDurable.load(ordering: .acquiring)
        if let gate = commitGate {
            guard let limit = gate.commitLimit() else { return }  // fenced: nothing more may be acknowledged
            target = min(target, limit)
        }
        var current = durable.load(ordering: .acquiring)
        while target > current {
            let (done, seen) = durable.compareExchange(expected: current, desired: target, ordering: .acquiringAndReleasing)
            if done {
                onDurable?()
                return
            }
            current = seen
        }
    }

    func start() {
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let p = Unmanaged<JournalPipeline>.fromOpaque(arg!).takeRetainedValue()
            p.run()
            return nil
        }, context)
        precondition(rc == 0, "cannot start the journal thread")
    }

    /// Stops after writing and syncing everything handed over.
    func stop() {
        precondition(!journalThread.isCurrent, "the journal thread cannot stop (join) itself")
        pthread_mutex_lock(&mutex)
        stopping = true
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&mutex)
        pthread_join(thread, nil)
        // A background snapshot must finish before anyone else touches the directory.
        while compacting.load(ordering: .acquiring) { usleep(Self.compactionPollUs) }
    }

    // MARK: worker side (each worker's own thread)

    /// Before a worker appends its first record since its last hand-over.
    @inline(__always) func willAppend(worker: Int) {
        // Set only while the worker's buffer holds records; `handOver` clears it.
        assert(pendingLow[worker].load(ordering: .relaxed) == .max, "worker \(worker) announced records twice")
        pendingLow[worker].store(nextSeq.load(ordering: .sequentiallyConsistent), ordering: .sequentiallyConsistent)
    }

    /// The number for one record.
    @inline(__always) func takeSeq() -> UInt64 {
        nextSeq.loadThenWrappingIncrement(ordering: .sequentiallyConsistent)
    }

    /// Hands a worker's records over (end of a loop iteration), then clears its slot.
    func handOver(worker: Int, _ bytes: UnsafeRawBufferPointer, records: Int) {
        precondition(records > 0 && bytes.count >= records * RecordCodec.headerBytes,
                     "\(records) records in \(bytes.count) bytes")
        // The records were announced (`willAppend`: the slot bounds their numbers from below),
        // and at least one number was taken since.
        let low = pendingLow[worker].load(ordering: .sequentiallyConsistent)
        precondition(low != .max && low < nextSeq.load(ordering: .sequentiallyConsistent),
                     "worker \(worker) hands over records it did not announce")
        pthread_mutex_lock(&mutex)
        handed[worker].append(contentsOf: bytes)
        handedRecords[worker] += records
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&mutex)
        pendingLow[worker].store(.max, ordering: .sequentiallyConsistent)
    }

    // MARK: journal thread

    private func run() {
        journalThread.claim("the journal thread runs once")
        while true {
            let g = nextSeq.load(ordering: .sequentiallyConsistent)
            var low = g
            for slot in pendingLow { low = min(low, slot.load(ordering: .sequentiallyConsistent)) }
            pthread_mutex_lock(&mutex)
            var records = 0
            for i in handed.indices {
                swap(&handed[i], &spare[i])
                records += handedRecords[i]
                handedRecords[i] = 0
            }
            let done = stopping
            pthread_mutex_unlock(&mutex)
            if records > 0 {
                writeAndSync(records: records, gapFreeEnd: low - 1)
            } else if !failed.load(ordering: .acquiring) {
                publishWritten(through: low - 1)  // written by an earlier round, now gap-free
            }
            // The watermark only moves forward (this guard), and never past what was written:
            // every number in firstSeq..<low was handed over and written, this round or before.
            if !failed.load(ordering: .acquiring) && low - 1 > localDurable.load(ordering: .relaxed) {
                precondition(low - firstSeq <= recordsWritten.load(ordering: .relaxed),
                             "watermark \(low - 1) past the \(recordsWritten.load(ordering: .relaxed)) records written")
                localDurable.store(low - 1, ordering: .releasing)
                advanceCommitted()
            }
            if done && records == 0 {
                // A stop comes after the workers ended (StockServer.wait joins them first), each
                // having handed everything over: unless the journal failed, every number is durable.
                assert(failed.load(ordering: .acquiring)
                       || (localDurable.load(ordering: .relaxed) == g - 1 && recordsWritten.load(ordering: .relaxed) == g - firstSeq),
                       "journal stopped with records not durable: watermark \(localDurable.load(ordering: .relaxed)), next \(g)")
                // Stops (and joins) the next segment's background preparation, so nothing writes in the
                // directory after us — also after a failure: a failed writer's close writes nothing (its
                // sync throws at once) but still joins that thread (a leak ThreadSanitizer found).
                try? writer.close()
                return
            }
            if records == 0 { waitForWork(moreExpected: low < g) }
        }
    }

    /// Sleeps until a hand-over, or 1 ms when records are still on their way.
    private func waitForWork(moreExpected: Bool) {
        assert(journalThread.isCurrent, "journal wait off the journal thread")
        pthread_mutex_lock(&mutex)
        if !stopping && handedRecords.allSatisfy({ $0 == 0 }) {
            if moreExpected {
                var ts = timespec()
                clock_gettime(CLOCK_REALTIME, &ts)
                ts.tv_nsec += Self.recordsOnTheirWayWaitNs
                if ts.tv_nsec >= 1_000_000_000 { ts.tv_sec += 1; ts.tv_nsec -= 1_000_000_000 }
                pthread_cond_timedwait(&cond, &mutex, &ts)
            } else {
                pthread_cond_wait(&cond, &mutex)
            }
        }
        pthread_mutex_unlock(&mutex)
    }

    private func writeAndSync(records: Int, gapFreeEnd: UInt64) {
        assert(journalThread.isCurrent, "journal write off the journal thread")
        guard !failed.load(ordering: .acquiring) else {
            for i in spare.indices { spare[i].removeAll(keepingCapacity: true) }
            return
        }
        var bytes = 0
        do {
            for i in spare.indices where !spare[i].isEmpty {
                try spare[i].withUnsafeBytes { try writer.append($0) }
                bytes += spare[i].count
                spare[i].removeAll(keepingCapacity: true)
            }
            publishWritten(through: gapFreeEnd)  // standbys receive it while we sync
            let t0 = Self.nanos()
            try writer.sync()
            publishSyncedEnd()
            let dt = Self.nanos() - t0
            syncs.wrappingIncrement(ordering: .relaxed)
            syncNanosTotal.wrappingIncrement(by: dt, ordering: .relaxed)
            if dt > syncNanosMax.load(ordering: .relaxed) { syncNanosMax.store(dt, ordering: .relaxed) }
            let micros = dt / 1000
            let bucket = micros == 0 ? 0 : min(syncLatencyBuckets.count - 1, 64 - micros.leadingZeroBitCount)
            syncLatencyBuckets[bucket].wrappingIncrement(ordering: .relaxed)
            recordsWritten.wrappingIncrement(by: UInt64(records), ordering: .relaxed)
            bytesWritten.wrappingIncrement(by: UInt64(bytes), ordering: .relaxed)
            if UInt64(records) > batchRecordsMax.load(ordering: .relaxed) {
                batchRecordsMax.store(UInt64(records), ordering: .relaxed)
            }
            recordsSinceSnapshot += UInt64(records)
            if recordsSinceSnapshot >= snapshotEvery { startCompaction() }
        } catch {
            for i in spare.indices { spare[i].removeAll(keepingCapacity: true) }
            failure = "\(error)"
            failed.store(true, ordering: .releasing)
            logFailure("journal write failed, refusing state changes from now on: \(error)")
            onDurable?()  // wake the workers: held answers must not wait forever
        }
    }

    /// Folds the closed segments into a snapshot on a thread of its own (one
    /// at a time; never the open segment, so the journal thread is not held up).
    private func startCompaction() {
        assert(journalThread.isCurrent, "compaction started off the journal thread")
        // Only when a segment closed since the last look (listing the directory is not free).
        guard !compacting.load(ordering: .acquiring), writer.segmentsClosed != segmentsClosedSeen else { return }
        segmentsClosedSeen = writer.segmentsClosed
        guard let closed = try? writer.closedSegments(), !closed.isEmpty else { return }
        guard compacting.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        recordsSinceSnapshot = 0
        let dir = directory
        let info = logInfo
        let fail = logFailure
        let done = compacting
        let count = snapshots
        let retain = retainBytes
        let fates = fateLimit
        let floor = feedFloor
        var thread = pthread_t()
        let job = Unmanaged.passRetained(CompactionJob {
            defer { done.store(false, ordering: .releasing) }
            BackgroundPriority.lowerCurrentThread()  // the journal and worker threads come first
            let now = UInt64(Self.wallNanos() / 1_000_000)
            do {
                let r = try Compaction.run(dataDirectory: dir, closedSegments: closed, nowWallMs: now,
                                           retainBytes: retain, fateLimit: fates) { newFloor in
                    // Before any segment goes: a new subscriber below it is refused up front.
                    if newFloor > floor.load(ordering: .acquiring) { floor.store(newFloor, ordering: .releasing) }
                }
                count.wrappingIncrement(ordering: .relaxed)
                info?("snapshot at seq \(r.snapshotSeq): \(r.recordsReplayed) records folded in, \(r.segmentsRemoved.count) segments removed (\(r.bytesFreed >> 20) MiB)")
            } catch {
                fail("background snapshot failed (the journal is intact; recovery replays it): \(error)")
            }
        }).toOpaque()
        if pthread_create(&thread, nil, { arg in
            Unmanaged<CompactionJob>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, job) == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<CompactionJob>.fromOpaque(job).release()
            compacting.store(false, ordering: .releasing)
        }
    }

    static func wallNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func nanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// A compaction to run on its own thread.
private final class CompactionJob: @unchecked Sendable {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}
