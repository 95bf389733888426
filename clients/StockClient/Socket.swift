import Glibc

/// The few socket calls the client needs. Every one of them runs on a
/// connection's own I/O thread (`IOThread`), never on the Swift cooperative
/// pool: `getaddrinfo` and a connect to a black-holed address block for as
/// long as they like, and only a thread of our own may wait that long.
enum Socket {
    /// Monotonic nanoseconds.
    static func nowNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Milliseconds from now until `deadlineNs` (0 once it passed), for poll.
    static func msUntil(_ deadlineNs: UInt64) -> Int32 {
        let now = nowNs()
        guard deadlineNs > now else { return 0 }
        return Int32(clamping: (deadlineNs - now + 999_999) / 1_000_000)
    }

    /// A connected, non-blocking TCP socket to `host:port` — an IPv4 or IPv6
    /// address or a host name (every resolved address is tried in turn) — or
    /// `unreachable` once `deadlineNs` passed. A readable `abort` descriptor
    /// (the connection's wakeup) ends the attempt with `closed`; name
    /// resolution itself cannot be interrupted, so `abort` is looked at after it.
    static func connect(host: String, port: Int, deadlineNs: UInt64, abort: Int32) throws(StockError) -> Int32 {
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
        var lastError = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let ai = next {
            next = ai.pointee.ai_next
            guard nowNs() < deadlineNs else { lastError = "connect timed out"; break }
            switch attempt(ai.pointee, deadlineNs: deadlineNs, abort: abort) {
            case .success(let fd): return fd
            case .failure(.aborted): throw .closed
            case .failure(.failed(let why)): lastError = why
            }
        }
        throw .unreachable("\(host):\(port): \(lastError)")
    }

    private enum AttemptFailure: Error {
        case aborted
        case failed(String)
    }

    /// One non-blocking connect to one resolved address, until `deadlineNs` or `abort`.
    private static func attempt(_ ai: addrinfo, deadlineNs: UInt64, abort: Int32) -> Result<Int32, AttemptFailure> {
        let fd = socket(ai.ai_family, ai.ai_socktype | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue),
                        ai.ai_protocol)
        guard fd >= 0 else { return .failure(.failed("socket: \(String(cString: strerror(errno)))")) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if Glibc.connect(fd, ai.ai_addr, ai.ai_addrlen) == 0 { return .success(fd) }
        guard errno == EINPROGRESS else {
            let e = errno
            Glibc.close(fd)
            return .failure(.failed(String(cString: strerror(e))))
        }
        switch wait(fd, events: POLLOUT, abort: abort, timeoutMs: msUntil(deadlineNs)) {
        case .aborted:
            Glibc.close(fd)
            return .failure(.aborted)
        case .timedOut:
            Glibc.close(fd)
            return .failure(.failed("connect timed out"))
        case .ready:
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            guard err == 0 else {
                Glibc.close(fd)
                return .failure(.failed(String(cString: strerror(err))))
            }
            return .success(fd)
        }
    }

    enum Readiness { case ready, timedOut, aborted }

    /// Waits until `fd` has `events` (or an error / hang-up), `abort` is
    /// readable, or `timeoutMs` passed (-1: no limit).
    static func wait(_ fd: Int32, events: Int32, abort: Int32, timeoutMs: Int32) -> Readiness {
        var fds = [pollfd(fd: fd, events: Int16(events), revents: 0), pollfd(fd: abort, events: Int16(POLLIN), revents: 0)]
        while true {
            let n = poll(&fds, 2, timeoutMs)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return .timedOut }
            if fds[1].revents != 0 { return .aborted }
            return .ready
        }
    }

    /// Writes what the socket takes now of `bytes` without waiting: the
    /// count written (possibly 0), or nil if the connection failed.
    static func sendSome(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int? {
        var off = 0
        while off < bytes.count {
            let n = send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            if n > 0 {
                off += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return off
            } else {
                return nil
            }
        }
        return off
    }

    /// Reads what is there without waiting: bytes read, 0 for nothing yet, nil for EOF or an error.
    static func receiveSome(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ capacity: Int) -> Int? {
        while true {
            let n = recv(fd, buffer, capacity, Int32(MSG_DONTWAIT))
            if n > 0 { return n }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return 0 }
            return nil
        }
    }
}

/// A self-pipe that wakes an I/O thread out of `poll`: a frame left to
/// write, credit to send, or a close. Owned by that thread, which calls
/// `close()` when it ends; its owner signals it only while the thread runs
/// (so a descriptor number the kernel reuses is never written to).
struct Wakeup: Sendable {
    /// The end `poll` watches.
    let fd: Int32
    private let writeEnd: Int32

    /// nil when the process has no descriptor left.
    init?() {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return nil }
        for e in ends {
            _ = fcntl(e, F_SETFL, fcntl(e, F_GETFL) | O_NONBLOCK)
            _ = fcntl(e, F_SETFD, FD_CLOEXEC)
        }
        fd = ends[0]
        writeEnd = ends[1]
    }

    /// One byte in the pipe; a full pipe already wakes the thread.
    func signal() {
        var one: UInt8 = 1
        _ = write(writeEnd, &one, 1)
    }

    func drain() {
        var sink = [UInt8](repeating: 0, count: 64)
        while read(fd, &sink, 64) > 0 {}
    }

    func close() {
        Glibc.close(fd)
        Glibc.close(writeEnd)
    }
}
