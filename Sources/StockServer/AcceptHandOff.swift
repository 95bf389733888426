import CLibUV
import Glibc
import StockCore

/// The hand-off accept mode (`--accept handoff`): one accepting socket,
/// polled by worker 0, which accepts every pending connection per wake-up
/// and deals them round-robin to the workers. A descriptor for another
/// worker goes into that worker's locked queue, followed by `uv_async_send`;
/// async signals coalesce, so a wake-up drains the whole queue.
///
/// Compared with SO_REUSEPORT (the default) it spreads connections evenly,
/// at the price of one queue hop per connection (accept is not the hot path).
extension LoopWorker {
    /// Creates, binds and listens on worker 0's raw socket; returns the bound port.
    func bindHandOff(host: String, port: Int) -> Result<Int, ConfigError> {
        assertInLoop()
        // `finishStop` and `acceptAll` rely on it: worker 0 alone polls the socket.
        precondition(index == 0 && config.acceptMode == .handOff, "hand-off listener on worker \(index)")
        uv_loop_set_data(loop, Unmanaged.passUnretained(self).toOpaque())
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .failure(ConfigError("socket failed: errno \(errno)")) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var addr = sockaddr_in()
        guard uv_ip4_addr(host, Int32(port), &addr) == 0 else {
            Glibc.close(fd)
            return .failure(ConfigError("--host \(host) is not an IPv4 address"))
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, len) } }
        guard rc == 0, listen(fd, LoopWorker.listenBacklog) == 0 else {
            let e = errno
            Glibc.close(fd)
            if e == EADDRINUSE { return .failure(PortGuard.inUse(port)) }
            return .failure(ConfigError("--port \(port): bind failed: \(String(cString: strerror(e)))"))
        }
        withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) }
        }
        let poll = UnsafeMutablePointer<uv_poll_t>.allocate(capacity: 1)
        uv_poll_init(loop, poll, fd)
        uv_poll_start(poll, Int32(UV_READABLE.rawValue)) { poll, status, _ in
            guard status == 0 else { return }
            LoopWorker.from(UnsafeMutableRawPointer(poll!).assumingMemoryBound(to: uv_handle_t.self)).acceptAll()
        }
        listenPoll = poll
        listenFD = fd
        return .success(Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// Joins a worker that accepts nothing itself (hand-off mode, workers 1...).
    func attachWithoutListener() {
        assertInLoop()
        precondition(index > 0 && config.acceptMode == .handOff, "worker \(index) without a listener")
        uv_loop_set_data(loop, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Accepts everything pending and deals it out.
    func acceptAll() {
        assertInLoop()
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { return }  // EAGAIN: nothing more now (or a transient error: next wake-up)
            let target = server.workers[nextTarget % server.workers.count]
            nextTarget &+= 1
            // A worker that already finished its stop takes nothing: this one answers it instead.
            if target === self || !target.enqueueHandOff(fd) { adopt(fd) }
        }
    }

    /// Called on another worker's thread: queue `fd` for this worker and
    /// wake it; false once this worker's loop is ending (`finishStop`). The
    /// wake-up is sent under the lock, so it can never reach a closed handle.
    func enqueueHandOff(_ fd: Int32) -> Bool {
        assertNotInLoop()  // worker 0's thread; it adopts its own share directly
        pthread_mutex_lock(handoffLock)
        defer { pthread_mutex_unlock(handoffLock) }
        guard handOffOpen else { return false }
        handoffQueue.append(fd)
        uv_async_send(handoffAsync)
        return true
    }

    /// Takes the whole queue (any thread may be appending).
    func drainHandOffs() -> [Int32] {
        assertInLoop()
        pthread_mutex_lock(handoffLock)
        defer { pthread_mutex_unlock(handoffLock) }
        let fds = handoffQueue
        handoffQueue.removeAll(keepingCapacity: true)
        return fds
    }

    /// Async callback: adopt every queued descriptor.
    func takeHandOffs() {
        assertInLoop()
        for fd in drainHandOffs() { adopt(fd) }
    }

    /// Wraps an accepted descriptor in a libuv handle on this loop.
    private func adopt(_ fd: Int32) {
        assertInLoop()
        let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(loop, tcp)
        guard uv_tcp_open(tcp, fd) == 0 else {
            Glibc.close(fd)
            uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { h in
                UnsafeMutableRawPointer(h!).deallocate()
            }
            return
        }
        register(tcp)
    }
}
