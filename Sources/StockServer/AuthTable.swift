import Glibc
import StockCore
import StockProtocol

// Authentication (`stockd --auth-file`): named secrets, each with a role.
//
// File format, one credential per line: `NAME ROLE SECRET`, fields separated
// by spaces or tabs; blank lines and lines starting with `#` are skipped.
// NAME: 1-64 printable ASCII characters, unique (it names the credential in
// logs — the secret never appears anywhere). ROLE: `viewer` (read-only:
// stock get/list, STATS, the event feed), `checkout` (also reserve, confirm,
// release, extend) or `admin` (also every stock change).
// SECRET: 16-255 printable ASCII characters without spaces, unique.
//
// HELLO's credential is compared with every secret in constant time (the
// work does not depend on where, or whether, the bytes differ), so timing
// tells an attacker nothing about a secret's prefix or length.

/// One credential of the auth file.
public struct AuthEntry: Sendable, Equatable {
    public let name: String
    public let role: Role
    let secret: [UInt8]
}

/// The credentials stockd accepts; immutable (a reload builds a new one).
public final class AuthTable: Sendable {
    public let entries: [AuthEntry]
    /// Shortest secret accepted: 16 characters (about 95 bits when random printable ASCII).
    public static let minSecret = 16
    /// Longest credential name, bytes (printable ASCII).
    static let maxNameBytes = 64
    /// Largest auth file read, bytes.
    static let maxFileBytes = 1 << 20
    /// The auth file is read this many bytes at a time.
    static let readChunkBytes = 4096

    init(entries: [AuthEntry]) {
        // `match` compares `Limits.maxCredentialLength` bytes: a longer secret would match on its
        // prefix. `parse` checks every line; this is what the comparison relies on.
        precondition(!entries.isEmpty && entries.allSatisfy {
            $0.secret.count >= AuthTable.minSecret && $0.secret.count <= Limits.maxCredentialLength
        }, "auth table with an empty list or a secret outside minSecret...maxCredentialLength")
        self.entries = entries
    }

    /// The entry whose secret is `credential`, or nil. Every secret is
    /// compared over the full credential limit, whatever the inputs.
    func match(_ credential: [UInt8]) -> AuthEntry? {
        var found = -1
        for (i, e) in entries.enumerated() {
            // Branch-free choice: `found` becomes i when equal, unchanged otherwise.
            let equal = Self.constantTimeEqual(credential, e.secret)
            found = equal ? i : found
        }
        return found >= 0 ? entries[found] : nil
    }

    /// Equality of two byte strings up to `Limits.maxCredentialLength`,
    /// touching every position of both (padded with zeros) and folding in
    /// the lengths, with no early exit.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt32(truncatingIfNeeded: a.count ^ b.count)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                for i in 0..<Limits.maxCredentialLength {
                    let x = i < pa.count ? pa[i] : 0
                    let y = i < pb.count ? pb[i] : 0
                    diff |= UInt32(x ^ y)
                }
            }
        }
        return diff == 0
    }

    /// Parses an auth file's text. Every bad line is reported (with its
    /// line number, never its secret), as one error.
    public static func parse(_ text: String) throws(ConfigError) -> AuthTable {
        var entries: [AuthEntry] = []
        var problems: [String] = []
        var names: [String: Int] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if fields.isEmpty || fields[0].hasPrefix("#") { continue }
            let lineNo = n + 1
            guard fields.count == 3 else {
                problems.append("line \(lineNo): expected NAME ROLE SECRET, got \(fields.count) field(s)")
                continue
            }
            let (name, roleName, secret) = (fields[0], fields[1], Array(fields[2].utf8))
            guard name.utf8.count <= maxNameBytes, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                problems.append("line \(lineNo): name must be 1-\(maxNameBytes) printable ASCII characters")
                continue
            }
            let role: Role
            switch roleName {
            case "viewer": role = .viewer
            case "checkout": role = .checkout
            case "admin": role = .admin
            default:
                problems.append("line \(lineNo) (\(name)): role must be checkout or admin, or viewer (read-only), "
                                + "got '\(roleName)'")
                continue
            }
            guard secret.count >= minSecret, secret.count <= Limits.maxCredentialLength,
                  secret.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                problems.append("line \(lineNo) (\(name)): the secret must be \(minSecret)-\(Limits.maxCredentialLength) "
                                + "printable ASCII characters")
                continue
            }
            if let first = names[name] {
                problems.append("line \(lineNo): name \(name) already on line \(first)")
                continue
            }
            if let other = entries.first(where: { $0.secret == secret }) {
                problems.append("line \(lineNo) (\(name)): same secret as \(other.name); each credential needs its own")
                continue
            }
            names[name] = lineNo
            entries.append(AuthEntry(name: name, role: role, secret: secret))
        }
        guard problems.isEmpty else { throw ConfigError(problems.joined(separator: "; ")) }
        guard !entries.isEmpty else { throw ConfigError("no credentials (NAME ROLE SECRET lines)") }
        return AuthTable(entries: entries)
    }

    /// Reads and parses the file at `path`. Refuses a file that others may
    /// read or write: it holds secrets (chmod 600 or 640).
    public static func load(path: String) throws(ConfigError) -> AuthTable {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ConfigError("\(path): \(String(cString: strerror(errno)))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw ConfigError("\(path): not a regular file") }
        guard st.st_mode & (S_IROTH | S_IWOTH) == 0 else {
            throw ConfigError("\(path): readable or writable by others; it holds secrets (chmod 600)")
        }
        guard let f = fopen(path, "r") else { throw ConfigError("\(path): \(String(cString: strerror(errno)))") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: readChunkBytes)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n > 0 { bytes += chunk[0..<n] }
            if n < chunk.count { break }
            guard bytes.count <= maxFileBytes else { throw ConfigError("\(path): larger than \(maxFileBytes >> 20) MiB") }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw ConfigError("\(path): not UTF-8 text") }
        do {
            return try parse(text)
        } catch {
            throw ConfigError("\(path): \(error.description)")
        }
    }
}

/// The table in force, swapped whole by a reload (SIGHUP) while workers read it.
final class AuthStore: @unchecked Sendable {
    private var table: AuthTable
    private var mutex = pthread_mutex_t()

    init(_ table: AuthTable) {
        self.table = table
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    /// The current table (a HELLO holds it only while comparing).
    var current: AuthTable {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return table
    }

    func replace(_ t: AuthTable) {
        pthread_mutex_lock(&mutex)
        table = t
        pthread_mutex_unlock(&mutex)
    }
}
