import Atomics
import CLibUV
import Glibc
import StockCore
import StockJournal
import StockProtocol

/// One event-loop thread: its libuv loop, its own SO_REUSEPORT listener, its
/// connections, its share of the core (`coreWorker`: counter shard, timing
/// wheel, free token slots) and two timers — one that fires expiries when
/// the wheel next needs it, one that sweeps idle connections.
///
/// Everything here is touched only on the worker's thread, except the
/// `stopAsync` handle (which `uv_async_send` may signal from any thread)
/// and the statistics (atomic, read by STATS on any worker).
final class LoopWorker {
    let index: Int
    unowned(unsafe) let server: StockServer  // the server outlives its loops
    let config: ServerConfig
    let core: StockCore
    let coreWorker: Worker
    let counters = WorkerCounters()
    let loop: UnsafeMutablePointer<uv_loop_t>
    let listener: UnsafeMutablePointer<uv_tcp_t>
    let expiryTimer: UnsafeMutablePointer<uv_timer_t>
    let sweepTimer: UnsafeMutablePointer<uv_timer_t>
    /// Bounds a graceful stop (`shutdownGraceMs`): then every connection left is closed.
    let graceTimer: UnsafeMutablePointer<uv_timer_t>
    let stopAsync: UnsafeMutablePointer<uv_async_t>
    /// The loop's one read buffer (`lendReadBuffer`), bytes.
    static let readBufferSize = 64 * 1024
    /// The protocol listeners' accept backlog (each worker's, and the hand-off listener's): a
    /// flash-sale stampede connects faster than one loop iteration accepts.
    static let listenBacklog: Int32 = 1024
    /// How long a connection that was sent its last answer and a FIN may stay half-open before it
    /// is closed without waiting for the client's FIN (the drain sweep runs every 2 s too).
    static let drainTimeoutMs: UInt64 = 2000
    /// The idle sweep runs at a quarter (`sweepIntervalDivisor`) of the shortest connection timeout,
    /// clamped to `sweepMinIntervalMs...sweepMaxIntervalMs`; with every timeout off, at the maximum.
    static let sweepIntervalDivisor: UInt64 = 4
    static let sweepMinIntervalMs: UInt64 = 10
    static let sweepMaxIntervalMs: UInt64 = 1000
    /// Connection slots reserved up front in `connections` (it grows past them).
    static let connectionsReserved = 1024
    /// Initial capacity of the per-iteration record buffer, bytes (it grows past it).
    static let recordBufferBytes = 1 << 20
    private let readBuffer: UnsafeMutablePointer<CChar>
    /// Between `lendReadBuffer` and the read callback that consumes it (libuv calls them in pairs,
    /// and reads are processed synchronously, so one buffer serves the whole loop).
    private var readBufferLent = false
    var connections: [Connection] = []
    // Accept hand-off (only in `.handOff` mode): worker 0 polls a raw
    // listening socket; accepted descriptors travel through `handoffQueue`.
    let handoffAsync: UnsafeMutablePointer<uv_async_t>
    var handoffQueue: [Int32] = []
    let handoffLock: UnsafeMutablePointer<pthread_mutex_t>
    var listenPoll: UnsafeMutablePointer<uv_poll_t>?
    var listenFD: Int32 = -1
    /// This worker still takes hand-offs (guarded by `handoffLock`; false from `finishStop` on).
    var handOffOpen = true
    var nextTarget = 0
    private var stopping = false
    private var expiryArmedAtMs = UInt64.max
    // Journal (nil with --sync none): this iteration's records, and
    // connections whose answers wait for them to be durable.
    var journal: JournalPipeline?
    var recordBuffer = RecordBuffer(capacity: LoopWorker.recordBufferBytes)
    /// The number of the last record this worker journaled.
    var lastSeq: UInt64 = 0
    var heldConnections: [Connection] = []
    let handOverCheck: UnsafeMutablePointer<uv_check_t>
    let durableAsync: UnsafeMutablePointer<uv_async_t>
    /// Guards `durableAsyncOpen` (the journal thread signals; this thread closes).
    let durableLock: UnsafeMutablePointer<pthread_mutex_t>
    var durableAsyncOpen = false
    /// Serves state changes and data reads: always on a standalone node; on a cluster node only
    /// once this worker attached the journal of a promotion (Dispatch answers NOT_PRIMARY before).
    var isPrimary: Bool
    /// A primary's commit gate (the `--min-insync` and fencing checks); nil: standalone or standby.
    var gate: CommitGate?
    /// A promotion on another worker's thread wakes this one (cluster nodes; guarded by `durableLock`).
    let roleAsync: UnsafeMutablePointer<uv_async_t>
    var roleAsyncOpen = false
    private var openHandles = 0
    var thread = pthread_t()
    /// The thread running this worker's loop: unclaimed until `run` (see `OwningThread`).
    let loopThread = OwningThread()
    /// Rate limit of the authentication-failure log line (LoopWorker+Auth).
    var authLog: (lastMs: UInt64, suppressed: Int) = (0, 0)

    init(index: Int, server: StockServer) {
        self.index = index
        self.server = server
        config = server.config
        core = server.core
        loop = .allocate(capacity: 1)
        precondition(uv_loop_init(loop) == 0, "uv_loop_init failed")
        coreWorker = core.makeWorker(shard: index % config.core.shardCount, nowMs: uv_now(loop))
        listener = .allocate(capacity: 1)
        expiryTimer = .allocate(capacity: 1)
        sweepTimer = .allocate(capacity: 1)
        graceTimer = .allocate(capacity: 1)
        stopAsync = .allocate(capacity: 1)
        readBuffer = .allocate(capacity: LoopWorker.readBufferSize)
        handoffAsync = .allocate(capacity: 1)
        handOverCheck = .allocate(capacity: 1)
        durableAsync = .allocate(capacity: 1)
        roleAsync = .allocate(capacity: 1)
        isPrimary = server.cluster == nil
        durableLock = .allocate(capacity: 1)
        pthread_mutex_init(durableLock, nil)
        handoffLock = .allocate(capacity: 1)
        pthread_mutex_init(handoffLock, nil)
        connections.reserveCapacity(LoopWorker.connectionsReserved)
    }

    deinit {
        readBuffer.deallocate()
        for p in [UnsafeMutableRawPointer(listener), UnsafeMutableRawPointer(expiryTimer),
                  UnsafeMutableRawPointer(sweepTimer), UnsafeMutableRawPointer(graceTimer),
                  UnsafeMutableRawPointer(stopAsync),
                  UnsafeMutableRawPointer(handoffAsync), UnsafeMutableRawPointer(handOverCheck),
                  UnsafeMutableRawPointer(durableAsync), UnsafeMutableRawPointer(roleAsync)] { p.deallocate() }
        pthread_mutex_destroy(handoffLock)
        pthread_mutex_destroy(durableLock)
        durableLock.deallocate()
        handoffLock.deallocate()
        listenPoll?.deallocate()
        uv_loop_close(loop)
        loop.deallocate()
    }

    static func from(_ handle: UnsafeMutablePointer<uv_handle_t>) -> LoopWorker {
        Unmanaged<LoopWorker>.fromOpaque(uv_loop_get_data(handle.pointee.loop)!).takeUnretainedValue()
    }

    var handleOf: (UnsafeMutableRawPointer) -> UnsafeMutablePointer<uv_handle_t> {
        { $0.assumingMemoryBound(to: uv_handle_t.self) }
    }

    // MARK: thread confinement

    /// Asserts (debug builds only) that the caller runs on this worker's loop thread — or that the
    /// loop has not started yet: setup (`bind`, `prepare`, `attachJournal`, restored expiries) runs
    /// on the starting thread before the loop thread exists. SwiftNIO's `assertInEventLoop`.
    @inline(__always) func assertInLoop(file: StaticString = #file, line: UInt = #line) {
        assert(loopThread.isCurrentOrUnclaimed, "worker \(index) touched off its loop thread", file: file, line: line)
    }

    /// Asserts (debug builds only) that the caller is not this worker's loop thread: for what
    /// another thread does to this worker (the journal's wake-up, another worker's hand-off).
    @inline(__always) func assertNotInLoop(file: StaticString = #file, line: UInt = #line) {
        assert(!loopThread.isCurrent, "worker \(index): called on its own loop thread", file: file, line: line)
    }

    // MARK: setup (main thread, before the loop runs)

    /// Creates the listening socket with SO_REUSEPORT and binds it. Returns
    /// the bound port, or a message naming what failed.
    func bind(host: String, port: Int) -> Result<Int, ConfigError> {
        assertInLoop()
        uv_loop_set_data(loop, Unmanaged.passUnretained(self).toOpaque())
        // libuv 1.44 has no UV_TCP_REUSEPORT: make the socket now, set the option, then bind.
        guard uv_tcp_init_ex(loop, listener, UInt32(AF_INET)) == 0 else { return .failure(ConfigError("socket failed")) }
        openHandles += 1
        var fd: uv_os_fd_t = -1
        uv_fileno(handleOf(UnsafeMutableRawPointer(listener)), &fd)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        guard uv_ip4_addr(host, Int32(port), &addr) == 0 else {
            return .failure(ConfigError("--host \(host) is not an IPv4 address"))
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_bind(listener, $0, 0) }
        }
        if rc == UV_EADDRINUSE.rawValue { return .failure(PortGuard.inUse(port)) }
        guard rc == 0 else { return .failure(ConfigError("--port \(port): bind failed: \(LoopWorker.message(rc))")) }
        let lrc = uv_listen(UnsafeMutableRawPointer(listener).assumingMemoryBound(to: uv_stream_t.self), LoopWorker.listenBacklog) {
            server, status in
            guard status == 0 else { return }
            LoopWorker.from(UnsafeMutableRawPointer(server!).assumingMemoryBound(to: uv_handle_t.self)).accept()
        }
        // libuv may report a bind's EADDRINUSE only at listen.
        if lrc == UV_EADDRINUSE.rawValue { return .failure(PortGuard.inUse(port)) }
        guard lrc == 0 else { return .failure(ConfigError("--port \(port): listen failed: \(LoopWorker.message(lrc))")) }
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = uv_tcp_getsockname(listener, $0, &len) }
        }
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
        return .success(bound)
    }

    /// The descriptor of this worker's listening socket (nil: it has none, hand-off workers 1...).
    var listeningFD: Int32? {
        if listenPoll != nil { return listenFD }
        guard config.acceptMode == .reusePort else { return nil }
        var fd: uv_os_fd_t = -1
        return uv_fileno(handleOf(UnsafeMutableRawPointer(listener)), &fd) == 0 ? fd : nil
    }

    /// Timers and the stop signal; the loop can then run.
    func prepare() {
        assertInLoop()
        uv_timer_init(loop, expiryTimer)
        uv_timer_init(loop, sweepTimer)
        uv_timer_init(loop, graceTimer)
        openHandles += 3
        uv_async_init(loop, stopAsync) { async in
            LoopWorker.from(UnsafeMutableRawPointer(async!).assumingMemoryBound(to: uv_handle_t.self)).beginStop()
        }
        openHandles += 1
        if server.cluster != nil {
            uv_async_init(loop, roleAsync) { async in
                LoopWorker.from(UnsafeMutableRawPointer(async!).assumingMemoryBound(to: uv_handle_t.self)).roleChanged()
            }
            pthread_mutex_lock(durableLock)
            roleAsyncOpen = true
            pthread_mutex_unlock(durableLock)
        }
        if config.acceptMode == .handOff {
            uv_async_init(loop, handoffAsync) { async in
                LoopWorker.from(UnsafeMutableRawPointer(async!).assumingMemoryBound(to: uv_handle_t.self)).takeHandOffs()
            }
        }
        // A quarter of the shortest connection timeout, 10 ms to 1 s.
        let timeouts = [config.idleTimeoutMs, config.frameTimeoutMs, config.writeTimeoutMs].filter { $0 > 0 }
        let interval = max(LoopWorker.sweepMinIntervalMs, min(LoopWorker.sweepMaxIntervalMs,
            timeouts.min().map { $0 / LoopWorker.sweepIntervalDivisor } ?? LoopWorker.sweepMaxIntervalMs))
        uv_timer_start(sweepTimer, { timer in
            LoopWorker.from(UnsafeMutableRawPointer(timer!).assumingMemoryBound(to: uv_handle_t.self)).sweep()
        }, interval, interval)
    }

    static func message(_ rc: Int32) -> String { String(cString: uv_strerror(rc)) }

    // MARK: the loop (worker thread)

    func run() {
        loopThread.claim("a worker's loop runs once")
        _ = uv_run(loop, UV_RUN_DEFAULT)
    }

    /// The loop's read buffer: reads are processed synchronously in the read
    /// callback, so one buffer per loop serves every connection.
    func lendReadBuffer(_ buf: UnsafeMutablePointer<uv_buf_t>) {
        assertInLoop()
        assert(!readBufferLent, "read buffer lent again before its read callback ran")
        readBufferLent = true
        buf.pointee = uv_buf_init(readBuffer, UInt32(LoopWorker.readBufferSize))
    }

    /// The read callback got the buffer `lendReadBuffer` lent (whatever it read, or an error).
    /// libuv also reports a hang-up (POLLHUP) as EOF with an empty buffer it never asked
    /// for (`uv__stream_io`), so a callback without a buffer is not a pairing error.
    @inline(__always) func readBufferReturned(_ buf: uv_buf_t) {
        guard buf.base != nil else { return }
        assert(readBufferLent, "a read callback without a lent buffer")
        assert(UnsafeMutableRawPointer(buf.base) == UnsafeMutableRawPointer(readBuffer), "a read callback with a foreign buffer")
        readBufferLent = false
    }

    private func accept() {
        assertInLoop()
        let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(loop, tcp)
        let stream = UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
        let listenStream = UnsafeMutableRawPointer(listener).assumingMemoryBound(to: uv_stream_t.self)
        guard uv_accept(listenStream, stream) == 0 else {
            uv_close(handleOf(UnsafeMutableRawPointer(tcp))) { h in UnsafeMutableRawPointer(h!).deallocate() }
            return
        }
        register(tcp)
    }

    /// Takes over an accepted TCP handle: options, connection object, limits.
    func register(_ tcp: UnsafeMutablePointer<uv_tcp_t>) {
        assertInLoop()
        uv_tcp_nodelay(tcp, 1)
        let admitted = !stopping && server.admitConnection()
        let conn = Connection(worker: self, tcp: tcp, admitted: admitted)
        tcp.pointee.data = Unmanaged.passRetained(conn).toOpaque()
        conn.slot = connections.count
        connections.append(conn)
        counters.add(.connectionsAccepted)
        if admitted {
            conn.startReading()
        } else {
            // Over the limit (or stopping): one answer that says why, then close.
            conn.fail(opcode: 0, requestID: 0, stopping ? .shuttingDown : .busy)
            conn.closeAfterFlush()
        }
    }

    func remove(_ conn: Connection) {
        assertInLoop()
        let i = conn.slot
        precondition(i >= 0 && i < connections.count && connections[i] === conn, "connection list corrupted")
        let last = connections.removeLast()
        if i < connections.count {
            connections[i] = last
            last.slot = i
        }
        conn.slot = -1
    }

    /// Called from a connection's close callback.
    func connectionClosed(_ conn: Connection) {
        assertInLoop()
        precondition(conn.state == .closed && conn.slot == -1, "close callback of a connection still listed")
        counters.add(.connectionsClosed)
        if conn.admitted { server.releaseConnection() }
        if stopping && connections.isEmpty { finishStop() }
    }

    // MARK: expiry

    /// Called after a reservation with its deadline: re-arm only if it is
    /// earlier than the armed timer (almost never: TTLs are mostly equal).
    @inline(__always) func expiryMayHaveMoved(_ deadlineMs: UInt64) {
        assertInLoop()
        guard deadlineMs < expiryArmedAtMs else { return }
        armExpiry(at: deadlineMs)
    }

    /// After restored tokens were scheduled on this worker's wheel (before the loop runs).
    func armExpiryAfterRestore() {
        assertInLoop()
        if let next = coreWorker.nextWakeMs { armExpiry(at: next) }
    }

    private func armExpiry(at deadline: UInt64) {
        assertInLoop()
        let now = uv_now(loop)
        expiryArmedAtMs = deadline
        uv_timer_start(expiryTimer, { timer in
            LoopWorker.from(UnsafeMutableRawPointer(timer!).assumingMemoryBound(to: uv_handle_t.self)).expire()
        }, deadline > now ? deadline - now : 0, 0)
    }

    private func expire() {
        assertInLoop()
        expiryArmedAtMs = .max
        let n = coreWorker.tick(nowMs: uv_now(loop), budget: config.expiryBudget)
        assert(n >= 0 && n <= config.expiryBudget, "expired \(n) tokens, budget \(config.expiryBudget)")
        counters.add(.expired, Int64(n))
        if let next = coreWorker.nextWakeMs { armExpiry(at: next) }  // a backlog re-arms at 0 ms
    }

    // MARK: idle sweep

    private func sweep() {
        assertInLoop()
        let now = uv_now(loop)
        var i = connections.count - 1
        while i >= 0 {
            let c = connections[i]
            let silent = now &- c.lastActiveMs
            let slowFrame = config.frameTimeoutMs > 0 && c.partialSinceMs != 0
                && now &- c.partialSinceMs >= config.frameTimeoutMs
            let notReading = config.writeTimeoutMs > 0 && c.stalledSinceMs != 0
                && now &- c.stalledSinceMs >= config.writeTimeoutMs
            if c.state != .closed && (slowFrame || notReading) {
                // A frame dribbling in (slowloris), or a client that stopped taking its answers.
                counters.add(.slowClientsClosed)
                c.close()
            } else {
                switch c.state {
                case .open where config.idleTimeoutMs > 0 && silent >= config.idleTimeoutMs:
                    c.close()
                case .draining where silent >= LoopWorker.drainTimeoutMs:
                    c.close()  // the client never closed its side
                default:
                    break
                }
            }
            i = min(i, connections.count) - 1
        }
    }

    // MARK: stopping

    /// PROTOCOL.md §6 "Stopping": read no more requests; answer every one
    /// already read (state changes once durable, as always); then one
    /// SHUTTING_DOWN frame and FIN on every connection. The listener stays
    /// open meanwhile, so a client connecting now is told why rather than
    /// refused (`register`). The loop ends when the last connection closed
    /// or the grace period ran out; `finishStop` then closes the listener.
    private func beginStop() {
        assertInLoop()
        guard !stopping else { return }
        stopping = true
        for c in connections where c.state == .open { c.shutDown() }
        uv_timer_start(graceTimer, { timer in
            let w = LoopWorker.from(UnsafeMutableRawPointer(timer!).assumingMemoryBound(to: uv_handle_t.self))
            for c in w.connections { c.close() }
            if w.connections.isEmpty { w.finishStop() }
        }, config.shutdownGraceMs, 0)
        if connections.isEmpty { finishStop() }
    }

    private var finished = false

    private func finishStop() {
        assertInLoop()
        precondition(stopping, "finishStop before beginStop")
        guard !finished else { return }
        finished = true
        if let poll = listenPoll {
            uv_close(handleOf(UnsafeMutableRawPointer(poll)), nil)
            Glibc.close(listenFD)
        } else if config.acceptMode == .reusePort || index == 0 {
            uv_close(handleOf(UnsafeMutableRawPointer(listener)), nil)
        }
        uv_close(handleOf(UnsafeMutableRawPointer(expiryTimer)), nil)
        uv_close(handleOf(UnsafeMutableRawPointer(sweepTimer)), nil)
        uv_close(handleOf(UnsafeMutableRawPointer(graceTimer)), nil)
        uv_close(handleOf(UnsafeMutableRawPointer(stopAsync)), nil)
        handOverRecords()
        closeJournalHandles()
        if server.cluster != nil {
            pthread_mutex_lock(durableLock)
            roleAsyncOpen = false
            uv_close(handleOf(UnsafeMutableRawPointer(roleAsync)), nil)
            pthread_mutex_unlock(durableLock)
        }
        if config.acceptMode == .handOff {
            // No hand-off may signal the async handle once it is closing (enqueueHandOff checks under the lock).
            pthread_mutex_lock(handoffLock)
            handOffOpen = false
            pthread_mutex_unlock(handoffLock)
            uv_close(handleOf(UnsafeMutableRawPointer(handoffAsync)), nil)
            for fd in drainHandOffs() { Glibc.close(fd) }
        }
    }

    /// Asks the loop to stop (any thread).
    func requestStop() { uv_async_send(stopAsync) }

    /// Wall-clock Unix ms for a core deadline.
    @inline(__always) func wallClock(_ coreMs: UInt64) -> UInt64 { coreMs &+ server.wallOffsetMs }
}

/// The one thread allowed to touch a libuv loop's state, for debug `assert`s in the style of
/// SwiftNIO's `assertInEventLoop`. Unclaimed (0: glibc's `pthread_t` is a pointer, never 0) until
/// that thread claims it, first thing in its run function. Atomic (relaxed) so that a check on
/// another thread is not itself a data race; such a thread reads 0 or the owner, never itself.
struct OwningThread: Sendable {
    private let id = ManagedAtomic<pthread_t>(0)

    /// Called once, first thing on the owning thread.
    func claim(_ message: @autoclosure () -> String) {
        precondition(id.exchange(pthread_self(), ordering: .relaxed) == 0, message())
    }

    /// On the owning thread (false before the claim).
    var isCurrent: Bool {
        let t = id.load(ordering: .relaxed)
        return t != 0 && pthread_equal(t, pthread_self()) != 0
    }

    /// On the owning thread, or not claimed yet (setup on the starting thread).
    var isCurrentOrUnclaimed: Bool {
        let t = id.load(ordering: .relaxed)
        return t == 0 || pthread_equal(t, pthread_self()) != 0
    }
}
