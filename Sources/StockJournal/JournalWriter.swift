#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Appends encoded records to segment files in a data directory.
///
/// The journal thread's loop is: `append` every buffer the workers handed
/// over (one batch), `sync()`, then acknowledge the batch. Rotation happens
/// in `sync()` once the segment has reached `segmentBytes`, so a batch is
/// never split across files and a closed segment is always fully synced —
/// which is why recovery may call a bad record in any segment but the last
/// one corruption rather than a torn write. The next segment is created by
/// the next `append`, named after that append's first record, and the
/// directory is fsynced before any record goes into it.
///
/// The first failure (ENOSPC, EIO, …) poisons the writer: the file's tail
/// is unknown and a retried fsync may falsely succeed after the kernel
/// dropped dirty pages, so every later call throws `.writerFailed(cause:)`
/// and the server must stop accepting changes.
///
/// `@unchecked Sendable`: no locks inside; one thread uses it at a time.
public final class JournalWriter: @unchecked Sendable {
    /// Default segment size before rotation: 64 MiB.
    public static let defaultSegmentBytes: Int64 = 64 << 20

    /// The data directory.
    public let directory: String
    /// Size after which `sync()` closes the segment.
    public let segmentBytes: Int64
    /// The open segment, nil before the first append and right after a rotation.
    public private(set) var currentSegment: SegmentFile?
    /// Bytes in the open segment.
    public private(set) var currentSegmentBytes: Int64 = 0
    /// Bytes appended since creation.
    public private(set) var bytesWritten: Int64 = 0
    /// Segments created since creation.
    public private(set) var segmentsCreated = 0

    private let dir: DataDirectory
    private var file: PosixFile?
    private var unsynced = false
    private var failure: JournalError?

    /// A writer for `directory`, which must exist (recovery creates it).
    public init(directory: String, segmentBytes: Int64 = JournalWriter.defaultSegmentBytes) throws(JournalError) {
        precondition(segmentBytes > 0, "segmentBytes must be positive")
        dir = DataDirectory(directory)
        self.directory = dir.path
        self.segmentBytes = segmentBytes
        guard try dir.exists() else { throw .badDirectory(path: directory, reason: "does not exist") }
    }

    deinit { file?.closeQuietly() }

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
            try f.writeAll(bytes)
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
            if currentSegmentBytes >= segmentBytes { try closeSegment(f) }
        } catch {
            throw fail(error)
        }
    }

    /// Syncs and closes the open segment. The writer can append again afterwards (new segment).
    public func close() throws(JournalError) {
        try sync()
        if let f = file {
            do throws(JournalError) { try closeSegment(f) } catch { throw fail(error) }
        }
    }

    private func openSegment(firstSeq: UInt64) throws(JournalError) -> PosixFile {
        let name = SegmentFiles.name(firstSeq: firstSeq)
        // O_EXCL: an existing file of that name means two writers or a stale
        // journal; never append to (or clobber) a file we did not create.
        let f = try PosixFile.open(dir.file(name), O_WRONLY | O_CREAT | O_EXCL)
        file = f
        currentSegment = SegmentFile(name: name, path: f.path, firstSeq: firstSeq)
        currentSegmentBytes = 0
        segmentsCreated += 1
        try dir.sync()  // the new entry must survive a crash before its records are acknowledged
        return f
    }

    private func closeSegment(_ f: PosixFile) throws(JournalError) {
        file = nil
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
