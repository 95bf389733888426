import Glibc

/// The few socket calls the client needs, with bounded waits.
enum Socket {
    /// Monotonic nanoseconds.
    static func nowNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// A connected TCP socket to `host:port` — an IPv4 or IPv6 address or a
    /// host name (every resolved address is tried in turn) — or
    /// `unreachable` within `timeoutMs` of connecting.
    static func connect(host: String, port: Int, timeoutMs: Int) throws(StockError) -> Int32 {
        guard port > 0, port <= 65_535, !host.isEmpty else {
            throw .unreachable("\(host):\(port) is not a host and port")
        }
        // "[::1]" as written in host:port form.
        let name = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw .unreachable("\(host):\(port): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        let deadline = nowNs() + UInt64(max(1, timeoutMs)) * 1_000_000
        var lastError = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let ai = next {
            next = ai.pointee.ai_next
            let now = nowNs()
            guard now < deadline else { lastError = "connect timed out"; break }
            switch attempt(ai.pointee, timeoutMs: Int((deadline - now) / 1_000_000)) {
            case .success(let fd): return fd
            case .failure(let why): lastError = why.reason
            }
        }
        throw .unreachable("\(host):\(port): \(lastError)")
    }

    /// One non-blocking connect to one resolved address, bounded by `timeoutMs`.
    private static func attempt(_ ai: addrinfo, timeoutMs: Int) -> Result<Int32, Failure> {
        let fd = socket(ai.ai_family, ai.ai_socktype, ai.ai_protocol)
        guard fd >= 0 else { return .failure(Failure("socket: \(String(cString: strerror(errno)))")) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if Glibc.connect(fd, ai.ai_addr, ai.ai_addrlen) != 0 {
            guard errno == EINPROGRESS else {
                let e = errno
                Glibc.close(fd)
                return .failure(Failure(String(cString: strerror(e))))
            }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&p, 1, Int32(max(1, timeoutMs)))
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            guard ready == 1, err == 0 else {
                Glibc.close(fd)
                return .failure(Failure(ready == 1 ? String(cString: strerror(err)) : "connect timed out"))
            }
        }
        _ = fcntl(fd, F_SETFL, flags)  // blocking again: the reader thread waits with SO_RCVTIMEO
        return .success(fd)
    }

    struct Failure: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// Writes all of `bytes`; false if the connection failed.
    static func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
            if n > 0 {
                off += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return false
            }
        }
        return true
    }

    static func setReceiveTimeout(_ fd: Int32, ms: Int) {
        var tv = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
}
