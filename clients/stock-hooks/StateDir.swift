import Glibc
import Synchronization

/// A failure with a one-line message for stderr.
struct HooksError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `--state-dir`: the persisted offset watermark, the dead-letter file and
/// a lock so two stock-hooks never share one directory.
///
/// - `offset`: one decimal number and a newline, the watermark (see
///   `Watermark`). Replaced atomically: written to `offset.tmp`, fsynced,
///   renamed over `offset`, and the directory fsynced.
/// - `dead-letter.jsonl`: one JSON object per line, appended and fsynced
///   before the event's offset may count as handled.
/// - `lock`: held with `flock` while running (released by the kernel on any exit).
final class StateDir: Sendable {
    let path: String
    private let dirFD: Int32
    private let lockFD: Int32
    private let deadLetterFD: Int32
    /// Serialises appends to the dead-letter file (and fsyncs).
    private let deadLetterLock = Mutex(())
    /// Serialises offset writes (the persister and the final write).
    private let offsetLock = Mutex<UInt64?>(nil)

    var offsetPath: String { path + "/offset" }
    var deadLetterPath: String { path + "/dead-letter.jsonl" }

    /// Creates the directory (and missing parents) and takes the lock.
    init(path: String) throws(HooksError) {
        self.path = path
        try Self.makeDirectories(path)
        dirFD = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirFD >= 0 else { throw HooksError("cannot open state dir \(path): \(errnoText())") }
        lockFD = open(path + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lockFD >= 0 else {
            close(dirFD)
            throw HooksError("cannot create \(path)/lock: \(errnoText())")
        }
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else {
            close(lockFD)
            close(dirFD)
            throw HooksError("state dir \(path) is in use by another stock-hooks (\(path)/lock is locked)")
        }
        deadLetterFD = open(path + "/dead-letter.jsonl", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard deadLetterFD >= 0 else {
            close(lockFD)
            close(dirFD)
            throw HooksError("cannot open \(path)/dead-letter.jsonl: \(errnoText())")
        }
    }

    deinit {
        close(deadLetterFD)
        close(lockFD)
        close(dirFD)
    }

    /// The persisted watermark, nil if none was written yet.
    func readOffset() throws(HooksError) -> UInt64? {
        let fd = open(offsetPath, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw HooksError("cannot read \(offsetPath): \(errnoText())")
        }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 64) }
        guard n >= 0 else { throw HooksError("cannot read \(offsetPath): \(errnoText())") }
        let text = String(decoding: buffer[..<n], as: UTF8.self)
        let trimmed = text.hasSuffix("\n") ? String(text.dropLast()) : text
        guard let value = UInt64(trimmed) else {
            throw HooksError("\(offsetPath) is corrupt (expected one decimal offset, found \(n) bytes)")
        }
        offsetLock.withLock { $0 = value }
        return value
    }

    /// Persists `offset` unless it is what was persisted last; never
    /// lowers it. temp file, fsync, rename, fsync of the directory.
    func writeOffset(_ offset: UInt64) throws(HooksError) {
        let result: HooksError? = offsetLock.withLock { last in
            if let l = last, l >= offset { return nil }
            let tmp = offsetPath + ".tmp"
            let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return HooksError("cannot write \(tmp): \(errnoText())") }
            let ok = Self.writeAll(fd, Array("\(offset)\n".utf8)) && fsync(fd) == 0
            let err = errnoText()
            close(fd)
            guard ok else { return HooksError("cannot write \(tmp): \(err)") }
            guard rename(tmp, offsetPath) == 0 else { return HooksError("cannot rename \(tmp): \(errnoText())") }
            guard fsync(dirFD) == 0 else { return HooksError("cannot fsync \(path): \(errnoText())") }
            last = offset
            return nil
        }
        if let result { throw result }
    }

    /// Appends one line to the dead-letter file and fsyncs it.
    func appendDeadLetter(_ line: [UInt8]) throws(HooksError) {
        let ok = deadLetterLock.withLock { _ in
            Self.writeAll(deadLetterFD, line + [UInt8(ascii: "\n")]) && fsync(deadLetterFD) == 0
        }
        guard ok else { throw HooksError("cannot append to \(deadLetterPath): \(errnoText())") }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                done += n
            }
            return true
        }
    }

    /// `mkdir -p`.
    private static func makeDirectories(_ path: String) throws(HooksError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw HooksError("cannot create state dir \(path): \(errnoText())")
            }
            prefix += "/"
        }
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw HooksError("state dir \(path) is not a directory")
        }
    }
}

/// `strerror(errno)`.
func errnoText() -> String { String(cString: strerror(errno)) }
