#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Appends encoded records to segment files in a data directory.
///
/// The journal thread's loop is: `append` every buffer the workers handed
/// over (one batch), `sync()`, then acknowledge the batch. Rotation happens
/// in `sync()` once the segment holds `segmentBytes` of records, so a batch
/// is never split across files and a closed segment is always fully synced —
/// which is why recovery may call a bad record in any segment but the last
/// one corruption rather than a torn write. The next segment is opened by
/// the next `append`, named after that append's first record, and the
/// directory is fsynced before any record goes into it.
///
/// # Preallocated segments
///
/// With `preallocate` (the default) a segment is born as a file of
/// `segmentBytes` real zeros (written, not `fallocate`d: unwritten extents
/// would still need a metadata commit when converted), fdatasynced, and
/// records overwrite those zeros at an offset the writer tracks (`pwrite`).
/// An overwrite inside the file's size changes no size or extent metadata,
/// so each `sync()` is a plain data flush (measured on ext4/virtio: p50
/// ~120 µs against ~225 µs for append + fdatasync). The size of the file is
/// therefore not where the records end: readers stop at the zeros (see
/// JournalReader). A batch larger than the space left simply extends the file.
///
/// The zero-fill of the NEXT segment runs on a background thread as soon as
/// a segment is opened, under `SegmentFiles.preparedName`; opening the next
/// segment renames it (without replacing anything) to its real name and
/// fsyncs the directory. The fill is paced so it does not slow the journal's
/// own fdatasyncs (`SegmentPreparation.chunkBytes`), and unpaced once the
/// open segment is half full. The first one is started by `init`. If the
/// background preparation is still running at rotation, the journal thread
/// waits for it (finishing a half-filled file is never slower than filling
/// a new one); if it failed (ENOSPC, …), the journal thread prepares the
/// segment itself, and only if that fails too does the writer fail.
///
/// The first failure (ENOSPC, EIO, …) of a write, sync, or segment the
/// writer needs poisons the writer: the file's tail is unknown and a retried
/// fsync may falsely succeed after the kernel dropped dirty pages, so every
/// later call throws `.writerFailed(cause:)` and the server must stop
/// accepting changes. A failed background preparation alone poisons nothing
/// (`preparationFailures`, `lastPreparationFailure`).
///
/// One writer per directory (stockd holds a lock on it): the prepared file
/// has one fixed name.
///
/// `@unchecked Sendable`: no locks inside; one thread uses it at a time
/// (the background preparation shares nothing with it but the file name,
/// and is joined before the file is used).
public final class JournalWriter: @unchecked Sendable {
    /// Default segment size before rotation: 64 MiB.
    public static let defaultSegmentBytes: Int64 = 64 << 20

    /// Test hook: called before a new segment file (`path`) is zero-filled,
    /// on the background thread (`background`) or the journal thread; an
    /// errno fails the preparation with it (simulating ENOSPC and the like).
    public typealias PreparationFault = @Sendable (_ path: String, _ background: Bool) -> Int32?

    /// The data directory.
    public let directory: String
    /// Bytes of records after which `sync()` closes the segment (also the
    /// size of a preallocated segment file).
    public let segmentBytes: Int64
    /// Whether segments are preallocated (zero-filled in advance).
    public let preallocate: Bool
    /// The open segment, nil before the first append and right after a rotation.
    public private(set) var currentSegment: SegmentFile?
    /// Bytes of records in the open segment: where the next batch is written.
    /// (A preallocated file is larger; the rest of it is zeros.)
    public private(set) var currentSegmentBytes: Int64 = 0
    /// Bytes appended since creation.
    public private(set) var bytesWritten: Int64 = 0
    /// Segments created since creation.
    public private(set) var segmentsCreated = 0
    /// Segments closed since creation (rotations, `close()`); watch it
    /// after `sync()` to notice a rotation.
    public private(set) var segmentsClosed = 0
    /// The segment closed last.
    public private(set) var lastClosedSegment: SegmentFile?
    /// Whether the next segment's file is prepared (zero-filled, synced) and
    /// waiting: opening the next segment costs a rename and a directory fsync.
    /// (On the writer's thread, like everything else.)
    public var nextSegmentReady: Bool {
        guard let p = preparation, p.isDone else { return false }
        return p.succeeded
    }
    /// Segments opened from a file the background thread had finished preparing.
    public private(set) var preparedSegmentsUsed = 0
    /// Segments opened while their background preparation was still running
    /// (the journal thread waited for it: `preparationWaitNanos`).
    public private(set) var preparationsWaitedFor = 0
    /// Total time the journal thread waited for background preparations.
    public private(set) var preparationWaitNanos: UInt64 = 0
    /// Segments the journal thread zero-filled itself (no background
    /// preparation, or it failed).
    public private(set) var segmentsPreparedInline = 0
    /// How long the last background preparation that was used took (start to synced).
    public private(set) var lastPreparationNanos: UInt64 = 0
    /// Background preparations that failed (each followed by an inline attempt).
    public private(set) var preparationFailures = 0
    /// Why the last failed preparation failed.
    public private(set) var lastPreparationFailure: JournalError?

    private let dir: DataDirectory
    private let fault: PreparationFault?
    private var file: PosixFile?
    private var unsynced = false
    private var failure: JournalError?
    private var preparation: SegmentPreparation?
    private var preparationHurried = false
    /// First seq (name) of the last segment opened: names only go up.
    private var lastSegmentSeq: UInt64 = 0

    /// A writer for `directory`, which must exist (recovery creates it).
    /// With `preallocate`, starts preparing the first segment in the background.
    public init(directory: String, segmentBytes: Int64 = JournalWriter.defaultSegmentBytes,
                preallocate: Bool = true, preparationFault: PreparationFault? = nil) throws(JournalError) {
        precondition(segmentBytes > 0, "segmentBytes must be positive")
        dir = DataDirectory(directory)
        self.directory = dir.path
        self.segmentBytes = segmentBytes
        self.preallocate = preallocate
        fault = preparationFault
        guard try dir.exists() else { throw .badDirectory(path: directory, reason: "does not exist") }
        if preallocate { startPreparation() }
    }

    deinit {
        discardPreparation()
        file?.closeQuietly()
    }

    /// Appends the records in `buffer` (not reset: the caller owns it).
    public func append(_ buffer: RecordBuffer) throws(JournalError) {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { (b) throws(JournalError) in try append(b, firstSeq: buffer.firstSeq) }
    }

    /// Appends whole encoded records (`RecordCodec` format) in one write loop.
    public func append(_ bytes: UnsafeRawBufferPointer) throws(JournalError) {
        guard bytes.count > 0 else { return }
        precondition(bytes.count >= RecordCodec.headerBytes, "append takes whole records")
        let firstSeq = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 9, as: UInt64.self))
        try append(bytes, firstSeq: firstSeq)
    }

    private func append(_ bytes: UnsafeRawBufferPointer, firstSeq: UInt64) throws(JournalError) {
        try checkHealthy()
        do throws(JournalError) {
            let f = if let file { file } else { try openSegment(firstSeq: firstSeq) }
            unsynced = true
            try f.writeAll(bytes, at: currentSegmentBytes)
            currentSegmentBytes += Int64(bytes.count)
            bytesWritten += Int64(bytes.count)
        } catch {
            throw fail(error)
        }
    }

    /// Makes every appended byte durable (fdatasync), then rotates if the
    /// segment is full. Returns only when the batch may be acknowledged.
    public func sync() throws(JournalError) {
        try checkHealthy()
        guard let f = file else { return }
        do throws(JournalError) {
            if unsynced { try f.syncData() }
            unsynced = false
            if currentSegmentBytes >= segmentBytes {
                try closeSegment(f)
            } else if currentSegmentBytes >= segmentBytes / 2, !preparationHurried, let p = preparation {
                p.hurry()  // the next segment will be needed soon: stop pacing its zero-fill
                preparationHurried = true
            }
        } catch {
            throw fail(error)
        }
    }

    /// Syncs and closes the open segment (its unused preallocated tail stays
    /// zeros, which readers accept), and stops and removes the background
    /// preparation, so nothing of the writer runs or waits on disk
    /// afterwards. The writer can append again (new segment, prepared inline).
    public func close() throws(JournalError) {
        defer { discardPreparation() }
        try sync()
        if let f = file {
            do throws(JournalError) { try closeSegment(f) } catch { throw fail(error) }
        }
    }

    /// Every segment in the directory but the open one, oldest first: the
    /// segments `Compaction.run` may take. Call on the writer's thread (for
    /// instance right after a `sync()` that closed a segment). Lists the
    /// directory; does not affect the writer.
    public func closedSegments() throws(JournalError) -> [SegmentFile] {
        let open = currentSegment
        return try SegmentFiles.list(in: directory).filter { $0 != open }
    }

    private func openSegment(firstSeq: UInt64) throws(JournalError) -> PosixFile {
        // Named after the first record, but never below an earlier segment's
        // name (a worker's late buffer could carry a lower seq): listing the
        // directory must give the segments in the order they were written.
        let seq = max(firstSeq, lastSegmentSeq + 1)
        let name = SegmentFiles.name(firstSeq: seq)
        let f: PosixFile
        if preallocate {
            let prepared = try preparedFile()
            do throws(JournalError) {
                // Never replace a file we did not create (two writers, a stale journal).
                try dir.moveNoReplace(SegmentFiles.preparedName, to: name)
            } catch {
                prepared.closeQuietly()
                try? dir.remove(SegmentFiles.preparedName)
                throw error
            }
            f = PosixFile(fd: prepared.fd, path: dir.file(name))  // errors name the segment
        } else {
            // O_EXCL: the same rule for a file created here.
            f = try PosixFile.open(dir.file(name), O_WRONLY | O_CREAT | O_EXCL)
        }
        file = f
        currentSegment = SegmentFile(name: name, path: f.path, firstSeq: seq)
        currentSegmentBytes = 0
        lastSegmentSeq = seq
        segmentsCreated += 1
        try dir.sync()  // the new entry must survive a crash before its records are acknowledged
        if preallocate { startPreparation() }
        return f
    }

    /// The prepared file for the next segment: the background one (waiting
    /// for it if needed), or one prepared here if there is none or it failed.
    private func preparedFile() throws(JournalError) -> PosixFile {
        if let p = preparation {
            preparation = nil
            let waited = !p.isDone
            let t0 = waited ? monotonicNanos() : 0
            let outcome = p.finish()
            switch outcome {
            case .success(let f):
                lastPreparationNanos = p.elapsedNanos
                if waited {
                    preparationsWaitedFor += 1
                    preparationWaitNanos += monotonicNanos() - t0
                } else {
                    preparedSegmentsUsed += 1
                }
                return f
            case .failure(let error):
                preparationFailures += 1
                lastPreparationFailure = error
            }
        }
        segmentsPreparedInline += 1
        let p = SegmentPreparation(dir: dir, bytes: segmentBytes, fault: fault)
        switch p.runInline() {
        case .success(let f): return f
        case .failure(let error):
            lastPreparationFailure = error
            throw error
        }
    }

    private func startPreparation() {
        guard preparation == nil else { return }
        let p = SegmentPreparation(dir: dir, bytes: segmentBytes, fault: fault)
        p.startInBackground()
        preparation = p
        preparationHurried = false
    }

    /// Stops a background preparation, waits for it, and removes its file.
    private func discardPreparation() {
        guard let p = preparation else { return }
        preparation = nil
        p.cancel()
        if case .success(let f) = p.finish() {
            f.closeQuietly()
            try? dir.remove(SegmentFiles.preparedName)
        }
    }

    private func closeSegment(_ f: PosixFile) throws(JournalError) {
        file = nil
        lastClosedSegment = currentSegment
        segmentsClosed += 1
        currentSegment = nil
        currentSegmentBytes = 0
        try f.close()
    }

    private func checkHealthy() throws(JournalError) {
        if let failure { throw .writerFailed(cause: failure) }
    }

    private func fail(_ error: JournalError) -> JournalError {
        failure = error
        return error
    }
}

/// One preparation of `SegmentFiles.preparedName`: created (replacing a
/// leftover of that name), `bytes` zeros written, fdatasynced; the open
/// descriptor is the result. On failure the partial file is removed.
///
/// `@unchecked Sendable`: `outcome` is written by the preparing thread
/// before it exits and read only after `pthread_join`; `done` is under `lock`.
final class SegmentPreparation: @unchecked Sendable {
    let dir: DataDirectory
    let bytes: Int64
    let fault: JournalWriter.PreparationFault?
    private var outcome: Result<PosixFile, JournalError>?
    private var thread = pthread_t()
    private var started = false
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var done = false
    private var succeededFlag = false
    private var hurried = false
    private var cancelled = false

    /// Zeros are written in chunks of this size; in the background each
    /// chunk is fdatasynced, then the thread sleeps `pauseMicros`. Unpaced,
    /// a zero-fill floods the disk's queue and write cache, and the journal's
    /// fdatasyncs (whose cache flush carries whatever else is in flight) went
    /// from ~100 µs to 5–10 ms for the first dozens of batches of each
    /// segment; paced, the worst sync stays around 1 ms (make bench-journal).
    /// 64 MiB then take about a second; the writer calls `hurry()` when its
    /// segment is half full and the file is not ready yet, and before waiting
    /// for it.
    static let chunkBytes = 128 << 10
    static let pauseMicros: UInt32 = 1000

    init(dir: DataDirectory, bytes: Int64, fault: JournalWriter.PreparationFault?) {
        self.dir = dir
        self.bytes = bytes
        self.fault = fault
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    /// Starts the preparation on a new thread (inline if no thread can be made).
    func startInBackground() {
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let p = Unmanaged<SegmentPreparation>.fromOpaque(arg!).takeRetainedValue()
            p.complete(p.prepare(background: true))
            return nil
        }, context)
        if rc == 0 {
            started = true
        } else {
            Unmanaged<SegmentPreparation>.fromOpaque(context).release()
            complete(prepare(background: false))
        }
    }

    /// Prepares on the calling thread.
    func runInline() -> Result<PosixFile, JournalError> {
        complete(prepare(background: false))
        return finish()
    }

    /// Drops the pacing: the file is needed soon.
    func hurry() {
        pthread_mutex_lock(lock)
        hurried = true
        pthread_mutex_unlock(lock)
    }

    /// Stops the preparation at its next chunk (the file will not be used).
    func cancel() {
        pthread_mutex_lock(lock)
        cancelled = true
        pthread_mutex_unlock(lock)
    }

    private var isHurried: Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return hurried
    }

    private var isCancelled: Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return cancelled
    }

    /// Whether it finished successfully (valid once `isDone`).
    var succeeded: Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return done && succeededFlag
    }

    /// Whether the preparation has finished (successfully or not).
    var isDone: Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return done
    }

    /// Waits for the preparation and returns its file. Call once.
    func finish() -> Result<PosixFile, JournalError> {
        if started {
            hurry()
            pthread_join(thread, nil)
            started = false
        }
        return outcome!
    }

    /// Time from start to completion (valid once done).
    private(set) var elapsedNanos: UInt64 = 0
    private let startNanos = monotonicNanos()

    private func complete(_ result: Result<PosixFile, JournalError>) {
        outcome = result
        elapsedNanos = monotonicNanos() - startNanos
        pthread_mutex_lock(lock)
        done = true
        if case .success = result { succeededFlag = true }
        pthread_mutex_unlock(lock)
    }

    private func prepare(background: Bool) -> Result<PosixFile, JournalError> {
        let name = SegmentFiles.preparedName
        let path = dir.file(name)
        var file: PosixFile?
        do throws(JournalError) {
            // A leftover of this name (a crash, a writer that was never closed) is ours to replace.
            try dir.remove(name)
            let f = try PosixFile.open(path, O_RDWR | O_CREAT | O_EXCL)
            file = f
            if let fault, let e = fault(path, background) { throw .io(operation: "write", path: path, errno: e) }
            let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkBytes, alignment: 4096)
            defer { zeros.deallocate() }
            zeros.initializeMemory(as: UInt8.self, repeating: 0)
            var at: Int64 = 0
            while at < bytes {
                if background && isCancelled { throw .io(operation: "prepare", path: path, errno: ECANCELED) }
                let n = min(Int64(Self.chunkBytes), bytes - at)
                try f.writeZeros(from: at, count: n, zeros: UnsafeRawBufferPointer(zeros))
                at += n
                // Paced in the background (see `chunkBytes`); flat out when the journal thread needs it.
                if background && !isHurried {
                    try f.syncData()
                    usleep(Self.pauseMicros)
                }
            }
            try f.syncData()
            return .success(f)
        } catch {
            file?.closeQuietly()
            try? dir.remove(name)
            return .failure(error)
        }
    }
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
