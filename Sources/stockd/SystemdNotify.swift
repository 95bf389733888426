import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The systemd notification protocol (sd_notify(3)), spoken directly: one
/// datagram such as `READY=1` to the unix socket named by `$NOTIFY_SOCKET`,
/// which systemd sets for a `Type=notify` unit. No libsystemd: the protocol
/// is one `sendto`, and stockd's Debian runtime stays libuv-only.
///
/// A name starting with `@` is in the abstract namespace (the `@` becomes
/// a NUL byte and the address is not NUL-terminated); anything else is a
/// filesystem path. Without `$NOTIFY_SOCKET` (not under systemd) every call
/// does nothing. A failed send is reported to the caller, never fatal:
/// systemd then times the start out by itself, which is the right outcome.
enum SystemdNotify {
    /// The longest socket name `sockaddr_un` holds (`sun_path`, 108 bytes on Linux).
    static let maxPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path)

    /// Whether stockd runs under a supervisor that listens for notifications.
    static var isEnabled: Bool { socketName != nil }

    private static var socketName: String? {
        guard let name = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !name.isEmpty else { return nil }
        return name
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines). Returns nil when
    /// sent or not under systemd, else why it could not be sent.
    @discardableResult
    static func send(_ state: String) -> String? {
        guard let name = socketName else { return nil }
        guard name.hasPrefix("/") || name.hasPrefix("@") else {
            return "NOTIFY_SOCKET=\(name): neither a path nor an abstract name (@...)"
        }
        var path = Array(name.utf8)
        let abstract = path[0] == UInt8(ascii: "@")
        if abstract { path[0] = 0 }
        guard path.count < maxPathBytes || (abstract && path.count == maxPathBytes) else {
            return "NOTIFY_SOCKET=\(name): longer than \(maxPathBytes) bytes"
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "NOTIFY_SOCKET: socket: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { dst in
            dst.copyBytes(from: path)  // zero-initialised: a path is NUL-terminated by what follows it
        }
        // Abstract names are exactly their bytes long; paths include their terminating NUL.
        let length = MemoryLayout<sa_family_t>.size + path.count + (abstract ? 0 : 1)
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, socklen_t(length)) }
            }
        }
        guard sent == message.count else { return "NOTIFY_SOCKET=\(name): sendto: \(String(cString: strerror(errno)))" }
        return nil
    }
}
