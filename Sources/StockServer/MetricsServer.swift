import Atomics
import CLibUV
import Glibc
import Logging
import StockCore
import StockProtocol

/// `GET /metrics` in the Prometheus text format (`--metrics-port`), on a
/// thread and libuv loop of its own, so a scrape never runs on a
/// reservation loop: it reads the same relaxed atomics STATS reads.
///
/// A minimal HTTP/1.1 server: one request per connection (answered with
/// `Connection: close`), the request head at most 8 KiB, at most 16
/// scrapers at once, each given 5 s. Besides `/metrics`: `GET /healthz`
/// (liveness: 200 `ok` while the process serves) and `GET /ready`
/// (readiness: 200 `ready`, else 503 and the reason on one line), answered
/// from atomics like the metrics, so a probe never waits on a loop.
/// Other paths are 404, other methods 405, a bad request line 400. Bound
/// to the protocol's host.
final class MetricsServer: @unchecked Sendable {
    /// The longest request head read, bytes (beyond: 431).
    static let maxHead = 8 * 1024
    /// Scrapers connected at once at most (beyond: closed at accept).
    static let maxClients = 16
    /// Scrapers and probes connect a few at a time; beyond `maxClients` they are refused anyway.
    static let listenBacklog: Int32 = 64
    /// A scraper still connected this long after accept is closed (ms).
    static let clientTimeoutMs: UInt64 = 5000
    /// How often the client timeout is checked (ms).
    static let sweepIntervalMs: UInt64 = 1000
    /// The metrics loop's one read buffer, bytes.
    static let readBufferSize = 4096

    unowned(unsafe) let server: StockServer
    let loop: UnsafeMutablePointer<uv_loop_t>
    private let listener: UnsafeMutablePointer<uv_tcp_t>
    private let stopAsync: UnsafeMutablePointer<uv_async_t>
    private let sweep: UnsafeMutablePointer<uv_timer_t>
    private var thread = pthread_t()
    /// The metrics thread (claimed first thing on it; see `OwningThread`).
    private let loopThread = OwningThread()
    private var started = false
    var clients: [MetricsClient] = []
    let readBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: MetricsServer.readBufferSize)
    /// The bound port.
    private(set) var port = 0

    init(server: StockServer) {
        self.server = server
        loop = .allocate(capacity: 1)
        precondition(uv_loop_init(loop) == 0, "uv_loop_init failed")
        listener = .allocate(capacity: 1)
        stopAsync = .allocate(capacity: 1)
        sweep = .allocate(capacity: 1)
    }

    deinit {
        for p in [UnsafeMutableRawPointer(listener), UnsafeMutableRawPointer(stopAsync), UnsafeMutableRawPointer(sweep)] {
            p.deallocate()
        }
        readBuffer.deallocate()
        uv_loop_close(loop)
        loop.deallocate()
    }

    static func from(_ h: UnsafeMutablePointer<uv_handle_t>) -> MetricsServer {
        Unmanaged<MetricsServer>.fromOpaque(uv_loop_get_data(h.pointee.loop)!).takeUnretainedValue()
    }

    private func raw<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_handle_t.self)
    }

    /// Asserts (debug builds only) that the caller runs on the metrics thread (nothing of the
    /// loop side runs before it starts: `start` only binds and initialises the handles).
    @inline(__always) func assertInLoop(file: StaticString = #file, line: UInt = #line) {
        assert(loopThread.isCurrent, "metrics state touched off the metrics thread", file: file, line: line)
    }

    /// Binds `host:port` (0: any free port) and starts the thread.
    func start(host: String, port wanted: Int) throws(ConfigError) {
        uv_loop_set_data(loop, Unmanaged.passUnretained(self).toOpaque())
        uv_tcp_init(loop, listener)
        var addr = sockaddr_in()
        guard uv_ip4_addr(host, Int32(wanted), &addr) == 0 else { throw ConfigError("--host \(host) is not an IPv4 address") }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_bind(listener, $0, 0) } }
        let lrc = rc == 0 ? uv_listen(UnsafeMutableRawPointer(listener).assumingMemoryBound(to: uv_stream_t.self), Self.listenBacklog) { s, status in
            guard status == 0 else { return }
            MetricsServer.from(UnsafeMutableRawPointer(s!).assumingMemoryBound(to: uv_handle_t.self)).accept()
        } : rc
        guard lrc == 0 else {
            uv_close(raw(listener), nil)
            _ = uv_run(loop, UV_RUN_DEFAULT)
            throw ConfigError("--metrics-port \(wanted): \(String(cString: uv_strerror(lrc)))")
        }
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = uv_tcp_getsockname(listener, $0, &len) }
        }
        port = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
        uv_async_init(loop, stopAsync) { h in
            MetricsServer.from(UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_handle_t.self)).closeAll()
        }
        uv_timer_init(loop, sweep)
        uv_timer_start(sweep, { h in
            let m = MetricsServer.from(UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_handle_t.self))
            let now = uv_now(m.loop)
            for c in m.clients where now &- c.startedMs >= MetricsServer.clientTimeoutMs { c.close() }
        }, Self.sweepIntervalMs, Self.sweepIntervalMs)
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard pthread_create(&thread, nil, { arg in
            let m = Unmanaged<MetricsServer>.fromOpaque(arg!).takeUnretainedValue()
            m.loopThread.claim("the metrics thread runs once")
            // Like the feed thread: below the reservation loops when the machine is busy.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, FeedHub.niceness)
            _ = uv_run(m.loop, UV_RUN_DEFAULT)
            return nil
        }, context) == 0 else { throw ConfigError("--metrics-port: cannot start its thread") }
        started = true
    }

    /// Closes everything and joins the thread.
    func stop() {
        guard started else { return }
        uv_async_send(stopAsync)
        pthread_join(thread, nil)
        started = false
    }

    private func accept() {
        assertInLoop()
        let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(loop, tcp)
        guard uv_accept(UnsafeMutableRawPointer(listener).assumingMemoryBound(to: uv_stream_t.self),
                        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)) == 0,
              clients.count < Self.maxClients else {
            uv_close(raw(tcp)) { h in UnsafeMutableRawPointer(h!).deallocate() }
            return
        }
        let c = MetricsClient(metrics: self, tcp: tcp)
        clients.append(c)
        precondition(clients.count <= Self.maxClients, "\(clients.count) metrics clients")
        c.start()
    }

    func remove(_ c: MetricsClient) {
        assertInLoop()
        clients.removeAll { $0 === c }
    }

    private func closeAll() {
        assertInLoop()
        for c in clients { c.close() }
        uv_close(raw(listener), nil)
        uv_close(raw(stopAsync), nil)
        uv_close(raw(sweep), nil)
    }

    /// The answer to a request head.
    func respond(to head: String) -> (status: String, contentType: String, body: String) {
        let requestLine = head.split(separator: "\r\n", maxSplits: 1).first.map(String.init) ?? ""
        let parts = requestLine.split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return ("400 Bad Request", "text/plain", "bad request\n") }
        let path = parts[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard ["/metrics", "/healthz", "/ready"].contains(path) else {
            return ("404 Not Found", "text/plain", "only /metrics, /healthz and /ready here\n")
        }
        guard parts[0] == "GET" else { return ("405 Method Not Allowed", "text/plain", "GET only\n") }
        switch path {
        case "/healthz": return Self.probe(server.notLiveReason, ok: "ok")
        case "/ready": return Self.probe(server.notReadyReason, ok: "ready")
        default: return ("200 OK", "text/plain; version=0.0.4; charset=utf-8", MetricsText.render(server))
        }
    }

    /// A probe's answer: 200 and `ok`, or 503 and the reason, one line each.
    private static func probe(_ problem: String?, ok: String) -> (status: String, contentType: String, body: String) {
        guard let problem else { return ("200 OK", "text/plain; charset=utf-8", ok + "\n") }
        return ("503 Service Unavailable", "text/plain; charset=utf-8", problem + "\n")
    }
}

/// One scraper's connection: read the head, write the answer, close.
final class MetricsClient {
    unowned(unsafe) let metrics: MetricsServer
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    let startedMs: UInt64
    private var head: [UInt8] = []
    private var closed = false
    private var answered = false

    init(metrics: MetricsServer, tcp: UnsafeMutablePointer<uv_tcp_t>) {
        self.metrics = metrics
        self.tcp = tcp
        startedMs = uv_now(metrics.loop)
    }

    private var stream: UnsafeMutablePointer<uv_stream_t> { UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self) }

    func start() {
        metrics.assertInLoop()
        tcp.pointee.data = Unmanaged.passRetained(self).toOpaque()
        uv_read_start(stream, { h, _, buf in
            let c = Unmanaged<MetricsClient>.fromOpaque(h!.pointee.data!).takeUnretainedValue()
            buf!.pointee = uv_buf_init(c.metrics.readBuffer, UInt32(MetricsServer.readBufferSize))
        }, { s, n, buf in
            Unmanaged<MetricsClient>.fromOpaque(s!.pointee.data!).takeUnretainedValue().onRead(n, buf!.pointee)
        })
    }

    private func onRead(_ n: Int, _ buf: uv_buf_t) {
        metrics.assertInLoop()
        guard n >= 0 else { return close() }
        guard !answered else { return }
        head.append(contentsOf: UnsafeRawBufferPointer(start: buf.base, count: n))
        // Unanswered means the head read so far was at most maxHead: one read more at most.
        assert(head.count <= MetricsServer.maxHead + MetricsServer.readBufferSize, "request head of \(head.count) bytes")
        let text = String(decoding: head, as: UTF8.self)
        if text.contains("\r\n\r\n") || text.contains("\n\n") {
            answer(metrics.respond(to: text))
        } else if head.count > MetricsServer.maxHead {
            answer(("431 Request Header Fields Too Large", "text/plain", "request head above \(MetricsServer.maxHead >> 10) KiB\n"))
        }
    }

    private func answer(_ r: (status: String, contentType: String, body: String)) {
        metrics.assertInLoop()
        answered = true
        uv_read_stop(stream)
        let body = Array(r.body.utf8)
        let bytes = Array("HTTP/1.1 \(r.status)\r\nContent-Type: \(r.contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body
        let (req, buf) = bytes.withUnsafeBytes {
            WriteBlock.make(owner: Unmanaged.passUnretained(self).toOpaque(), copying: $0.baseAddress!, count: $0.count)
        }
        var b = buf
        if uv_write(req, stream, &b, 1, { req, _ in
            let (owner, _) = WriteBlock.finish(req!)
            Unmanaged<MetricsClient>.fromOpaque(owner).takeUnretainedValue().close()
        }) != 0 {
            _ = WriteBlock.finish(req)
            close()
        }
    }

    func close() {
        metrics.assertInLoop()
        guard !closed else { return }
        closed = true
        metrics.remove(self)
        uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { h in
            Unmanaged<MetricsClient>.fromOpaque(h!.pointee.data!).release()
            UnsafeMutableRawPointer(h!).deallocate()
        }
    }
}
