import Glibc
import StockProtocol

/// One feed connection: HELLO and SUBSCRIBE, then an `IOThread` that queues
/// events for `take()` and sends the credit `take()` grants.
///
/// Everything that touches the socket — name resolution, connect, the
/// handshake, reads, CREDIT writes — runs on that thread (see `IOThread`
/// for why); `take()` only moves queued events and counts credit.
final class FeedSession: IOResource, @unchecked Sendable {
    private let requestID: UInt32 = 2
    private let grantEvery: UInt32
    private let wakeup: Wakeup
    private let thread = IOThread()
    private let registry: ResourceRegistry
    private let lock = Mutex()
    private var queue: [FeedEvent] = []
    private var head = 0
    private var waiter: (take: UInt64, k: CheckedContinuation<Result<FeedEvent?, StockError>, Never>)?
    /// The take whose task was cancelled before it could wait.
    private var cancelledTake: UInt64 = 0
    private var takes: UInt64 = 0
    private var ended: StockError?
    private var userClosed = false
    private var threadRunning = true
    private var takenSinceGrant: UInt32 = 0
    /// Credit granted by `take()`, not yet sent by the I/O thread.
    private var creditDue: UInt32 = 0
    /// Set once SUBSCRIBE was answered, before `open` returns.
    private(set) var started = FeedStart(start: 0, end: 0)

    private init(credit: UInt32, wakeup: Wakeup, registry: ResourceRegistry) {
        grantEvery = max(1, credit / 2)
        self.wakeup = wakeup
        self.registry = registry
    }

    /// Connects, says HELLO and subscribes on a new I/O thread, within the
    /// client's call timeout. Throws what the server answered (`offsetCompacted`,
    /// `feedUnavailable`, `rejected(...)`), `unreachable`, `timeout`,
    /// `connectionLost`, `cancelled`, or `closed` after `shutdown()`.
    static func open(client: StockClient, subscribe: Subscribe) async throws(StockError) -> FeedSession {
        guard let wakeup = Wakeup() else { throw .unreachable("no file descriptor left for the feed") }
        let s = FeedSession(credit: subscribe.credit, wakeup: wakeup, registry: client.feedSessions)
        guard client.feedSessions.add(s) else {
            wakeup.close()
            throw .closed
        }
        let now = Socket.nowNs()
        let deadline = now &+ client.timeoutNs
        let connectBy = min(deadline, now &+ client.configuration.connectTimeout.clampedNanoseconds)
        let hello = Hello(clientName: client.clientName, credential: client.credential)
        let opened = OnceResult<FeedStart>()
        // The node calls go to now: after a failover, the primary a NOT_PRIMARY named (Route).
        let target = client.route.with { $0.current }
        let route = client.route
        guard s.thread.start({
            s.run(host: target.host, port: target.port, route: route, hello: hello, subscribe: subscribe,
                  connectBy: connectBy, deadlineNs: deadline, opened: opened)
        }) else {
            client.feedSessions.remove(s)
            wakeup.close()
            throw .unreachable("cannot start the feed's I/O thread")
        }
        let result = await opened.wait(deadlineNs: deadline, onDeadline: .timeout)
        switch result {
        case .success(let start):
            s.started = start
            return s
        case .failure(let e):
            s.close()
            throw e
        }
    }

    /// The next event, waiting for it; nil once closed. Throws the error that
    /// ended the feed, or `cancelled` if the task was cancelled meanwhile
    /// (the feed itself stays open: nothing queued is lost).
    func take() async throws(StockError) -> FeedEvent? {
        if Task.isCancelled { throw .cancelled }
        let id: UInt64 = lock.with {
            takes += 1
            return takes
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { k in
                if let ready = ready(id, k) { k.resume(returning: ready) }
            }
        } onCancel: {
            cancel(id)
        }
        let e = try result.get()
        if let e, e.kind != .progress { grantIfDue() }
        return e
    }

    /// What `take` can answer now, or nil after parking `k`.
    private func ready(_ id: UInt64, _ k: CheckedContinuation<Result<FeedEvent?, StockError>, Never>)
        -> Result<FeedEvent?, StockError>?
    {
        lock.with {
            if head < queue.count {
                let e = queue[head]
                head += 1
                if head == queue.count {
                    queue.removeAll(keepingCapacity: true)
                    head = 0
                }
                return .success(e)
            }
            if userClosed { return .success(nil) }
            if let ended { return ended == .closed ? .success(nil) : .failure(ended) }
            if cancelledTake == id { return .failure(.cancelled) }
            waiter = (id, k)
            return nil
        }
    }

    private func cancel(_ id: UInt64) {
        let k: CheckedContinuation<Result<FeedEvent?, StockError>, Never>? = lock.with {
            guard let w = waiter, w.take == id else {
                cancelledTake = id
                return nil
            }
            waiter = nil
            return w.k
        }
        k?.resume(returning: .failure(.cancelled))
    }

    /// Counts a taken event; every `grantEvery` of them become credit for the I/O thread to send.
    private func grantIfDue() {
        lock.with {
            takenSinceGrant += 1
            guard takenSinceGrant >= grantEvery else { return }
            creditDue += takenSinceGrant
            takenSinceGrant = 0
            if threadRunning { wakeup.signal() }
        }
    }

    /// Ends the feed: a waiting `take()` returns nil, and the I/O thread closes the socket.
    func close() {
        let k: CheckedContinuation<Result<FeedEvent?, StockError>, Never>? = lock.with {
            userClosed = true
            if threadRunning { wakeup.signal() }
            defer { waiter = nil }
            return waiter?.k
        }
        k?.resume(returning: .success(nil))
    }

    func exited() async { await thread.exited() }

    // MARK: the I/O thread

    private func run(host: String, port: Int, route: Locked<Route>, hello: Hello, subscribe: Subscribe,
                     connectBy: UInt64, deadlineNs: UInt64, opened: OnceResult<FeedStart>) {
        defer {
            lock.with { threadRunning = false }
            wakeup.close()
            registry.remove(self)
        }
        let fd: Int32
        do {
            fd = try Socket.connect(host: host, port: port, deadlineNs: connectBy, abort: wakeup.fd)
        } catch {
            opened.resume(.failure(error))
            return finish(error)
        }
        defer { Glibc.close(fd) }
        var decoder = FrameDecoder(maxFrame: Limits.maxFrameCeiling)
        do throws(StockError) {
            let start = try handshake(fd, hello, subscribe, &decoder, deadlineNs, route: route)
            guard opened.resume(.success(start)) else { return finish(.closed) }
            try readLoop(fd, &decoder)
        } catch {
            opened.resume(.failure(error))
            finish(error)
        }
    }

    /// HELLO (request id 1) and SUBSCRIBE (2), pipelined; both answers read before `deadlineNs`.
    private func handshake(_ fd: Int32, _ hello: Hello, _ subscribe: Subscribe, _ decoder: inout FrameDecoder,
                           _ deadlineNs: UInt64, route: Locked<Route>) throws(StockError) -> FeedStart {
        var w = ByteWriter(capacity: 512)
        RequestCodec.encode(.hello(hello), requestID: 1, into: &w)
        RequestCodec.encode(.subscribe(subscribe), requestID: requestID, into: &w)
        while w.count > 0 {
            guard let n = w.withUnsafeBytes({ Socket.sendSome(fd, $0) }) else { throw .connectionLost }
            w.removeFirst(n)
            if w.count > 0 { try waitFor(fd, POLLOUT, deadlineNs) }
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        var answers: [Response] = []
        while answers.count < 2 {
            if let r = try Self.nextResponse(&decoder) {
                if case .failure(.notPrimary, .notPrimary(let epoch, let primary)) = r.body {
                    _ = route.with { $0.notPrimary(epoch: epoch, primary: primary) }  // the resubscribe goes there
                }
                if case .failure(let s, let d) = r.body { throw StockError(status: s, detail: d) }
                answers.append(r)
                continue
            }
            try waitFor(fd, POLLIN, deadlineNs)
            guard let n = Socket.receiveSome(fd, buffer, 64 * 1024) else { throw .connectionLost }
            decoder.feed(UnsafeRawBufferPointer(start: buffer, count: n))
        }
        guard case .subscribed(let started) = answers[1].body else {
            throw .protocolError("SUBSCRIBE answered with \(answers[1].body)")
        }
        return started
    }

    /// Waits for `events` on `fd` until `deadlineNs`; `timeout` after it, `closed` on a close.
    private func waitFor(_ fd: Int32, _ events: Int32, _ deadlineNs: UInt64) throws(StockError) {
        switch Socket.wait(fd, events: events, abort: wakeup.fd, timeoutMs: Socket.msUntil(deadlineNs)) {
        case .ready: return
        case .timedOut: throw .timeout
        case .aborted: throw .closed
        }
    }

    /// Events in, credit out, until the connection or the user ends it.
    private func readLoop(_ fd: Int32, _ decoder: inout FrameDecoder) throws(StockError) {
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var outgoing = ByteWriter(capacity: 64)
        var fds = [pollfd(fd: fd, events: 0, revents: 0), pollfd(fd: wakeup.fd, events: Int16(POLLIN), revents: 0)]
        while true {
            let (closed, due): (Bool, UInt32) = lock.with {
                defer { creditDue = 0 }
                return (userClosed, creditDue)
            }
            if closed { throw .closed }
            var grant = due
            while grant > 0 {
                let chunk = min(grant, Limits.maxFeedCredit)
                RequestCodec.encode(.credit(chunk), requestID: requestID, into: &outgoing)
                grant -= chunk
            }
            if outgoing.count > 0 {
                guard let n = outgoing.withUnsafeBytes({ Socket.sendSome(fd, $0) }) else { throw .connectionLost }
                outgoing.removeFirst(n)
            }
            fds[0].events = Int16(POLLIN) | (outgoing.count > 0 ? Int16(POLLOUT) : 0)
            let ready = poll(&fds, 2, -1)
            if ready < 0 && errno != EINTR { throw .connectionLost }
            if fds[1].revents != 0 { wakeup.drain() }
            if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                try read(fd, &decoder, buffer, capacity)
            }
        }
    }

    private func read(_ fd: Int32, _ decoder: inout FrameDecoder, _ buffer: UnsafeMutableRawPointer,
                      _ capacity: Int) throws(StockError) {
        while true {
            guard let n = Socket.receiveSome(fd, buffer, capacity) else { throw .connectionLost }
            if n == 0 { return }
            decoder.feed(UnsafeRawBufferPointer(start: buffer, count: n))
            while let r = try Self.nextResponse(&decoder) {
                switch r.body {
                case .event(let e): push(e)
                case .failure(let s, let d): throw StockError(status: s, detail: d)
                default: throw .protocolError("unexpected frame on a feed: opcode \(r.opcode)")
                }
            }
        }
    }

    private static func nextResponse(_ decoder: inout FrameDecoder) throws(StockError) -> Response? {
        let next: Result<Response, StockError>?
        do {
            next = try decoder.next { header, payload -> Result<Response, StockError> in
                do throws(Status) { return .success(try ResponseCodec.decode(header: header, payload: payload)) } catch {
                    return .failure(.protocolError("undecodable \(error.name) frame"))
                }
            }
        } catch {
            throw .protocolError("bad frame from the server")
        }
        switch next {
        case nil: return nil
        case .success(let r): return r
        case .failure(let e): throw e
        }
    }

    /// Queues an event (a progress marker replaces a progress marker still
    /// queued, so markers cannot pile up behind a slow consumer).
    private func push(_ e: FeedEvent) {
        let k: CheckedContinuation<Result<FeedEvent?, StockError>, Never>? = lock.with {
            if let w = waiter {
                waiter = nil
                return w.k
            }
            if e.kind == .progress, head < queue.count, queue[queue.count - 1].kind == .progress {
                queue[queue.count - 1] = e
            } else {
                queue.append(e)
            }
            return nil
        }
        k?.resume(returning: .success(e))
    }

    private func finish(_ error: StockError) {
        let k: CheckedContinuation<Result<FeedEvent?, StockError>, Never>? = lock.with {
            ended = error
            defer { waiter = nil }
            return waiter?.k
        }
        guard let k else { return }
        k.resume(returning: error == .closed ? .success(nil) : .failure(error))
    }
}
