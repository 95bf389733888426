import CLibUV
import Glibc
import StockCore

/// One stockd per port.
///
/// The workers share their port with SO_REUSEPORT, which the kernel grants
/// to any process of the same user: a second stockd started on a served
/// port (another data directory: another inventory) would bind it too, and
/// the kernel would split new connections between two inventories that
/// each sell the same units. Two checks keep the port to one process:
/// - before binding, a probe socket *without* SO_REUSEPORT binds the
///   address: it fails with EADDRINUSE while anyone listens there (it sets
///   SO_REUSEADDR, as libuv does, so a restart is not refused for the
///   TIME_WAIT connections of the previous run);
/// - after every worker listens, `/proc/net/tcp{,6}` must show no listening
///   socket on the port but ours (by inode). This closes the race of two
///   processes starting at once: both see the other and both refuse, before
///   either loop runs, so no connection was ever served twice.
enum PortGuard {
    /// Lines of a /proc/net/tcp file read at most: a host has at most ~65k sockets per family, and
    /// /proc lists each once.
    static let maxProcLines = 1 << 20

    /// The error for a port another process serves.
    static func inUse(_ port: Int) -> ConfigError {
        ConfigError("--port \(port): already in use by another process (stockd refuses to share its port: "
                    + "two servers on one port would sell the same units twice)")
    }

    /// Throws `inUse` if something listens on `host:port` (not for port 0).
    static func probe(host: String, port: Int) throws(ConfigError) {
        guard port != 0 else { return }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { return }  // bind reports a bad host
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 && errno == EADDRINUSE { throw inUse(port) }
    }

    /// Throws `inUse` if a listening socket on `port` is not one of `fds`.
    /// Without a readable /proc/net/tcp the probe is all there is.
    static func checkSoleListener(port: Int, fds: [Int32]) throws(ConfigError) {
        precondition(port > 0 && port <= 65_535, "port out of range")
        var ours = Set<UInt64>()
        for fd in fds {
            var st = stat()
            if fstat(fd, &st) == 0 { ours.insert(UInt64(st.st_ino)) }
        }
        precondition(!ours.isEmpty, "no listening socket of ours to compare")
        for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for inode in listeningInodes(path, port: port) where !ours.contains(inode) { throw inUse(port) }
        }
    }

    /// Inodes of the sockets in state LISTEN (0A) on local `port` in a
    /// /proc/net/tcp-format file: `sl local_address rem_address st ... uid timeout inode`.
    static func listeningInodes(_ path: String, port: Int) -> [UInt64] {
        guard let f = fopen(path, "r") else { return [] }
        defer { fclose(f) }
        var out: [UInt64] = []
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        var lines = 0
        while getline(&line, &capacity, f) > 0, lines < maxProcLines {
            lines += 1
            let fields = String(cString: line!).split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, fields[3] == "0A" else { continue }
            guard let colon = fields[1].lastIndex(of: ":") else { continue }
            let localPort = fields[1][fields[1].index(after: colon)...]
            guard UInt16(localPort, radix: 16) == UInt16(port) else { continue }
            if let inode = UInt64(fields[9]), inode != 0 { out.append(inode) }
        }
        return out
    }
}
