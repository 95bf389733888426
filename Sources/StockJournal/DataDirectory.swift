#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The data directory: journal segments and snapshots side by side, found
/// by name (`SegmentFiles`, `Snapshots`). POSIX calls only, so the journal
/// does not need Foundation.
struct DataDirectory {
    let path: String

    init(_ path: String) {
        // "a/b/" and "a/b" name the same directory; keep messages tidy.
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        self.path = p
    }

    /// The path of `name` inside the directory.
    func file(_ name: String) -> String { path + "/" + name }

    /// Whether the directory exists (and is one).
    func exists() throws(JournalError) -> Bool {
        var st = stat()
        if stat(path, &st) != 0 {
            if errno == ENOENT { return false }
            throw .io(operation: "stat", path: path, errno: errno)
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw .badDirectory(path: path, reason: "not a directory") }
        return true
    }

    /// Creates the directory and its missing parents (mkdir -p), syncing
    /// each parent that gained an entry so the directory survives a crash.
    func create() throws(JournalError) {
        if try exists() { return }
        let parent = DataDirectory(parentPath)
        if parent.path != path { try parent.create() }
        if mkdir(path, 0o750) != 0 && errno != EEXIST { throw .io(operation: "mkdir", path: path, errno: errno) }
        try parent.sync()
    }

    private var parentPath: String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Names of the entries (without "." and "..").
    func names() throws(JournalError) -> [String] {
        guard let dir = opendir(path) else { throw .io(operation: "opendir", path: path, errno: errno) }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    /// Makes entry creations, renames and removals durable (fsync of the directory).
    func sync() throws(JournalError) {
        let d = try PosixFile.open(path, O_RDONLY | O_DIRECTORY)
        defer { d.closeQuietly() }
        try d.syncAll()
    }

    /// Removes `name`; a missing file is not an error (a crash may have removed it already).
    func remove(_ name: String) throws(JournalError) {
        if unlink(file(name)) != 0 && errno != ENOENT { throw .io(operation: "unlink", path: file(name), errno: errno) }
    }

    /// Renames `from` to `to` inside the directory (atomically replacing `to`).
    func rename(_ from: String, to: String) throws(JournalError) {
        if sysRename(file(from), file(to)) != 0 { throw .io(operation: "rename", path: file(from), errno: errno) }
    }
}

extension DataDirectory {
    /// Gives `from` the name `to`, failing with EEXIST instead of replacing
    /// an existing `to` (a segment name is never reused). A hard link then
    /// an unlink of the old name (Glibc's Swift module has no `renameat2`);
    /// a crash in between leaves both names on one file, and the old one is
    /// a `.prep` name that recovery removes. On file systems without hard
    /// links: a check, then `rename` (one writer per directory, so no race).
    /// The caller fsyncs the directory.
    func moveNoReplace(_ from: String, to: String) throws(JournalError) {
        if link(file(from), file(to)) == 0 {
            try remove(from)
            return
        }
        let e = errno
        switch e {
        case EPERM, ENOTSUP, EOPNOTSUPP, ENOSYS, EMLINK:
            var st = stat()
            if lstat(file(to), &st) == 0 { throw .io(operation: "rename", path: file(to), errno: EEXIST) }
            try rename(from, to: to)
        default:
            throw .io(operation: "link", path: e == EEXIST ? file(to) : file(from), errno: e)
        }
    }

    /// The size of `name`, nil if it does not exist.
    func size(of name: String) throws(JournalError) -> Int64? {
        var st = stat()
        if stat(file(name), &st) != 0 {
            if errno == ENOENT { return nil }
            throw .io(operation: "stat", path: file(name), errno: errno)
        }
        return Int64(st.st_size)
    }
}

private func sysRename(_ a: String, _ b: String) -> Int32 { rename(a, b) }

/// `n` as exactly 20 decimal digits (zero-padded), so names sort by number.
func twentyDigits(_ n: UInt64) -> String {
    let s = String(n)
    return String(repeating: "0", count: 20 - s.count) + s
}

/// The number in `name` between `prefix` and `suffix`, if it is exactly 20 digits.
func parseTwentyDigits(_ name: String, prefix: String, suffix: String) -> UInt64? {
    guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
    let digits = name.dropFirst(prefix.count).dropLast(suffix.count)
    guard digits.count == 20, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    return UInt64(digits)
}
