import CLibUV
import Glibc

/// Blocking TCP with bounded waits, for the standby's one connection to its
/// primary (StandbyReceiver): every call returns or throws within its timeout.
enum ReplicationSocket {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// `host:port` (IPv4 or `localhost`) to an address.
    static func address(_ hostPort: String) throws(Failure) -> sockaddr_in {
        guard let colon = hostPort.lastIndex(of: ":"), let port = UInt16(hostPort[hostPort.index(after: colon)...]),
              port > 0 else { throw Failure("\(hostPort) is not host:port") }
        var host = String(hostPort[..<colon])
        if host == "localhost" { host = "127.0.0.1" }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &a.sin_addr) == 1 else { throw Failure("\(host) is not an IPv4 address") }
        return a
    }

    /// A connected socket (non-blocking connect, then back to blocking).
    static func connect(to hostPort: String, timeoutMs: UInt64) throws(Failure) -> Int32 {
        var a = try address(hostPort)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
        let rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 && errno != EINPROGRESS {
            let e = errno
            Glibc.close(fd)
            throw Failure("connect to \(hostPort): \(String(cString: strerror(e)))")
        }
        do throws(Failure) {
            try wait(fd, Int16(POLLOUT), timeoutMs: timeoutMs, what: "connect to \(hostPort)")
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            guard err == 0 else { throw Failure("connect to \(hostPort): \(String(cString: strerror(err)))") }
        } catch {
            Glibc.close(fd)
            throw error
        }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// Waits until `fd` is ready for `events`, at most `timeoutMs`.
    static func wait(_ fd: Int32, _ events: Int16, timeoutMs: UInt64, what: String) throws(Failure) {
        var p = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let n = poll(&p, 1, Int32(min(timeoutMs, UInt64(Int32.max))))
            if n > 0 { return }
            if n == 0 { throw Failure("\(what): nothing for \(timeoutMs) ms") }
            if errno != EINTR { throw Failure("\(what): poll: \(String(cString: strerror(errno)))") }
        }
    }

    static func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, timeoutMs: UInt64) throws(Failure) {
        var sent = 0
        while sent < bytes.count {
            let n = send(fd, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            if n > 0 {
                sent += n
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                try wait(fd, Int16(POLLOUT), timeoutMs: timeoutMs, what: "send")
            } else if !(n < 0 && errno == EINTR) {
                throw Failure("send: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Reads at least one byte (at most `into.count`), waiting at most `timeoutMs`; a closed peer throws.
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, timeoutMs: UInt64) throws(Failure) -> Int {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 { return n }
            if n == 0 { throw Failure("the primary closed the connection") }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                try wait(fd, Int16(POLLIN), timeoutMs: timeoutMs, what: "the primary")
            } else if errno != EINTR {
                throw Failure("recv: \(String(cString: strerror(errno)))")
            }
        }
    }
}
