#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file descriptor with its path, whose operations retry EINTR and
/// short transfers and report failures as `JournalError.io` naming the path.
/// Not a class: the owner closes it explicitly (the writer must know whether
/// close succeeded).
struct PosixFile {
    let fd: Int32
    let path: String

    /// Opens `path` with `flags` (O_CLOEXEC added) and `mode` for new files.
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o640) throws(JournalError) -> PosixFile {
        while true {
            let fd = sysOpen(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return PosixFile(fd: fd, path: path) }
            if errno != EINTR { throw .io(operation: "open", path: path, errno: errno) }
        }
    }

    /// Writes all of `bytes` (one loop: EINTR and short writes continue).
    func writeAll(_ bytes: UnsafeRawBufferPointer) throws(JournalError) {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = sysWrite(fd, p, left)
            if n > 0 {
                p += n
                left -= n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                // write(2) returning 0 for a non-empty regular-file write is
                // not supposed to happen; treat it as an I/O error, never spin.
                throw .io(operation: "write", path: path, errno: n == 0 ? EIO : errno)
            }
        }
    }

    /// Writes all of `bytes` at `offset` (pwrite; EINTR and short writes continue).
    /// The file position is not used, so the caller tracks where data ends.
    func writeAll(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(JournalError) {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        var at = off_t(offset)
        while left > 0 {
            let n = pwrite(fd, p, left, at)
            if n > 0 {
                p += n
                left -= n
                at += off_t(n)
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                throw .io(operation: "write", path: path, errno: n == 0 ? EIO : errno)
            }
        }
    }

    /// Writes `count` zero bytes from `offset` on, in chunks of `zeros`
    /// (which must be all zero). Real zeros, not a hole or unwritten extent:
    /// later overwrites then change no allocation metadata.
    func writeZeros(from offset: Int64, count: Int64, zeros: UnsafeRawBufferPointer) throws(JournalError) {
        var at = offset
        let end = offset + count
        while at < end {
            let n = Int(min(Int64(zeros.count), end - at))
            try writeAll(UnsafeRawBufferPointer(rebasing: zeros[0..<n]), at: at)
            at += Int64(n)
        }
    }

    /// Reads up to `count` bytes at `offset` into `into`, retrying short
    /// reads until `count` bytes or end of file; returns the bytes read.
    func read(into: UnsafeMutableRawPointer, count: Int, at offset: Int64) throws(JournalError) -> Int {
        var done = 0
        while done < count {
            let n = pread(fd, into + done, count - done, off_t(offset) + off_t(done))
            if n > 0 {
                done += n
            } else if n == 0 {
                break
            } else if errno != EINTR {
                throw .io(operation: "read", path: path, errno: errno)
            }
        }
        return done
    }

    /// The file's size.
    func size() throws(JournalError) -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(operation: "fstat", path: path, errno: errno) }
        return Int64(st.st_size)
    }

    /// Data (and the size) to stable storage: fdatasync where it exists.
    func syncData() throws(JournalError) {
        #if canImport(Glibc)
        let rc = retryingEINTR { fdatasync(fd) }
        #else
        let rc = retryingEINTR { fsync(fd) }
        #endif
        guard rc == 0 else { throw .io(operation: "fdatasync", path: path, errno: errno) }
    }

    /// Data and metadata to stable storage (directories, snapshots).
    func syncAll() throws(JournalError) {
        guard retryingEINTR({ fsync(fd) }) == 0 else { throw .io(operation: "fsync", path: path, errno: errno) }
    }

    /// Cuts the file to `length` bytes.
    func truncate(to length: Int64) throws(JournalError) {
        guard retryingEINTR({ ftruncate(fd, off_t(length)) }) == 0 else {
            throw .io(operation: "ftruncate", path: path, errno: errno)
        }
    }

    /// Closes the descriptor (never retried: on Linux the fd is gone even on EINTR).
    func close() throws(JournalError) {
        guard sysClose(fd) == 0 else { throw .io(operation: "close", path: path, errno: errno) }
    }

    /// Closes, ignoring failure (error paths, read-only files).
    func closeQuietly() { _ = sysClose(fd) }
}

@inline(__always)
func retryingEINTR(_ call: () -> Int32) -> Int32 {
    while true {
        let rc = call()
        if rc == 0 || errno != EINTR { return rc }
    }
}

// File-scope forwarders: inside `PosixFile` the method names shadow the C
// functions, and naming the module (`Glibc.write`) would not build on Darwin.
private func sysOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func sysWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
private func sysClose(_ fd: Int32) -> Int32 { close(fd) }
