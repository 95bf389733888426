import Glibc
import Logging
import StockProtocol

/// One TCP connection to stockd, shared by any number of concurrent calls.
///
/// Its `IOThread` connects (name resolution included), then polls the
/// socket and a `Wakeup`: it decodes answers and resumes the call with the
/// same request id, writes what callers could not write at once, fails
/// calls whose deadline passed (it wakes at least every `tickMs`) and, when
/// the connection ends, fails every call still waiting.
///
/// A caller never blocks: it registers its continuation under `stateLock`,
/// appends its frame under `writeLock` and tries one non-blocking send;
/// bytes the socket does not take now (server backpressure) are left to the
/// I/O thread. Two locks, not one: a full send buffer must never stop the
/// I/O thread from delivering the answers that relieve it.
///
/// A call that times out or is cancelled after its frame was queued leaves
/// its id "overdue": the late answer is discarded when it comes, and the id
/// is not handed to another call until then, so a late answer can never be
/// taken for a newer call's.
final class ClientConnection: IOResource, @unchecked Sendable {
    /// Answers a connection may owe to calls that gave up (timed out or were
    /// cancelled) before it is dropped as hopeless: a server that far behind
    /// serves no one, and a fresh connection starts with a clean slate.
    static let maxOverdue = 4096
    /// How often the I/O thread looks for expired calls: the precision of call deadlines.
    static let tickMs: Int32 = 50

    private enum Call {
        /// The id is taken; the call has not registered its continuation yet.
        case reserved
        /// Cancelled before it registered: its frame is never written.
        case cancelledEarly
        case waiting(CheckedContinuation<Result<Response, StockError>, Never>, deadlineNs: UInt64)
    }

    private let wakeup: Wakeup
    private let thread = IOThread()
    private let logger: Logger
    private let stateLock = Mutex()
    private var calls: [UInt32: Call] = [:]
    private var overdue: Set<UInt32> = []
    private var nextID: UInt32 = 1
    private var alive = true
    private var threadRunning = true
    private var closedByUser = false
    /// `retire()`d: closes once no call waits (no new call picks it: `isAlive` is false).
    private var retiring = false
    /// An unsolicited failure (BUSY, SHUTTING_DOWN) announcing the close.
    private var farewell: Status?
    private let writeLock = Mutex()
    /// The socket for writers; -1 before the connect and once the I/O thread closed it.
    private var writeFD: Int32 = -1
    /// Frame bytes not yet taken by the socket.
    private var outbox = ByteWriter(capacity: 4096)

    private let registry: ResourceRegistry

    private init(wakeup: Wakeup, logger: Logger, registry: ResourceRegistry) {
        self.wakeup = wakeup
        self.logger = logger
        self.registry = registry
    }

    /// Connects on a new I/O thread, bounded by `deadlineNs` (monotonic).
    /// Throws `unreachable` (no connection, or the deadline passed while
    /// resolving or connecting), `cancelled`, or `closed` (the client was shut
    /// down); the caller's thread never blocks. The connection is in `registry`
    /// while its thread runs.
    static func open(host: String, port: Int, deadlineNs: UInt64, logger: Logger, registry: ResourceRegistry)
        async throws(StockError) -> ClientConnection
    {
        guard let wakeup = Wakeup() else { throw .unreachable("no file descriptor left for the connection") }
        let c = ClientConnection(wakeup: wakeup, logger: logger, registry: registry)
        guard registry.add(c) else {
            wakeup.close()
            throw .closed
        }
        let opened = OnceResult<Void>()
        guard c.thread.start({ c.run(host: host, port: port, deadlineNs: deadlineNs, opened: opened) }) else {
            registry.remove(c)
            wakeup.close()
            throw .unreachable("cannot start the connection's I/O thread")
        }
        // A thread that returns after the deadline finds its result lost and closes.
        let result = await opened.wait(deadlineNs: deadlineNs,
                                       onDeadline: .unreachable("\(host):\(port): connect timed out"))
        if case .failure(let e) = result {
            c.close()
            throw e
        }
        return c
    }

    var isAlive: Bool { stateLock.with { alive && !closedByUser && !retiring } }

    /// Sends `request` and waits for its answer until `deadlineNs` (monotonic).
    /// Throws `timeout`, `cancelled` (the task was cancelled: the request may
    /// or may not have been sent), `connectionLost`, `rejected(.shuttingDown)`
    /// / `rejected(.busy)` (the server's farewell) or `closed`.
    func call(_ request: Request, deadlineNs: UInt64) async throws(StockError) -> Response {
        if Task.isCancelled { throw .cancelled }
        let id = try reserveID()
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { k in start(id, request, deadlineNs: deadlineNs, k) }
        } onCancel: {
            cancel(id)
        }
        return try result.get()
    }

    /// Closes the connection; waiting calls fail with `closed`.
    func close() {
        stateLock.with {
            closedByUser = true
            if threadRunning { wakeup.signal() }
        }
    }

    /// Closes the connection once the calls waiting on it have their answers (or time out): the
    /// route moved to another node, and calls in flight here — a change this node may have made —
    /// must get their answers, not `closed`.
    func retire() {
        stateLock.with {
            retiring = true
            if threadRunning { wakeup.signal() }
        }
    }

    /// Returns once the I/O thread ended and closed its descriptors.
    func exited() async { await thread.exited() }

    // MARK: calls

    private func reserveID() throws(StockError) -> UInt32 {
        let id: UInt32? = stateLock.with {
            guard alive, !closedByUser else { return nil }
            // Terminates: at most calls.count + maxOverdue + 1 ids are skipped.
            var id = nextID
            while calls[id] != nil || overdue.contains(id) { id = id == UInt32.max ? 1 : id + 1 }
            nextID = id == UInt32.max ? 1 : id + 1
            calls[id] = .reserved
            return id
        }
        guard let id else { throw endError() }
        return id
    }

    private func start(_ id: UInt32, _ request: Request, deadlineNs: UInt64,
                       _ k: CheckedContinuation<Result<Response, StockError>, Never>) {
        let refusal: StockError? = stateLock.with {
            guard alive, !closedByUser, let state = calls[id] else {
                calls[id] = nil
                return endErrorLocked()
            }
            if case .cancelledEarly = state {
                calls[id] = nil
                return .cancelled
            }
            calls[id] = .waiting(k, deadlineNs: deadlineNs)
            return nil
        }
        if let refusal { return k.resume(returning: .failure(refusal)) }
        write(request, id: id)
    }

    private func cancel(_ id: UInt32) {
        let k: CheckedContinuation<Result<Response, StockError>, Never>? = stateLock.with {
            switch calls[id] {
            case .reserved?:
                calls[id] = .cancelledEarly
                return nil
            case .waiting(let k, _)?:
                calls[id] = nil
                overdue.insert(id)
                return k
            default:
                return nil  // answered, or the connection ended: nothing to do
            }
        }
        k?.resume(returning: .failure(.cancelled))
    }

    /// Appends the frame and sends what the socket takes now; the rest is the I/O thread's.
    private func write(_ request: Request, id: UInt32) {
        let leftover: Bool = writeLock.with {
            guard writeFD >= 0 else { return false }  // ended: the call fails with the connection
            let backlog = outbox.count > 0
            RequestCodec.encode(request, requestID: id, into: &outbox)
            guard !backlog else { return false }  // the I/O thread is already waiting to write
            return !flushLocked()
        }
        if leftover { stateLock.with { if threadRunning { wakeup.signal() } } }
    }

    /// Sends what the socket takes of `outbox` (under `writeLock`); true when nothing is left.
    /// A send error leaves the bytes: the I/O thread sees the error on its next poll.
    private func flushLocked() -> Bool {
        guard outbox.count > 0, writeFD >= 0 else { return true }
        guard let n = outbox.withUnsafeBytes({ Socket.sendSome(writeFD, $0) }) else { return false }
        outbox.removeFirst(n)
        return outbox.count == 0
    }

    private func endError() -> StockError { stateLock.with { endErrorLocked() } }

    private func endErrorLocked() -> StockError {
        closedByUser ? .closed : farewell.map { .rejected($0) } ?? .connectionLost
    }

    // MARK: the I/O thread

    private func run(host: String, port: Int, deadlineNs: UInt64, opened: OnceResult<Void>) {
        defer {
            stateLock.with { threadRunning = false }
            wakeup.close()
            registry.remove(self)
        }
        let fd: Int32
        do {
            fd = try Socket.connect(host: host, port: port, deadlineNs: deadlineNs, abort: wakeup.fd)
        } catch {
            stateLock.with { alive = false }
            opened.resume(.failure(error))
            return
        }
        writeLock.with { writeFD = fd }
        if opened.resume(.success(())) {
            logger.trace("stockd.client: socket open", metadata: ["stockd.address": "\(host):\(port)"])
            loop(fd)
        }
        drop()
        writeLock.with { writeFD = -1 }  // no caller writes to a number the kernel may hand out again
        Glibc.close(fd)
    }

    private func loop(_ fd: Int32) {
        var decoder = FrameDecoder(maxFrame: Limits.maxFrameCeiling)
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var fds = [pollfd(fd: fd, events: 0, revents: 0), pollfd(fd: wakeup.fd, events: Int16(POLLIN), revents: 0)]
        var lastExpiryNs = Socket.nowNs()
        while stateLock.with({ alive && !closedByUser && !(retiring && calls.isEmpty) }) {
            let wantWrite = writeLock.with { outbox.count > 0 }
            fds[0].events = Int16(POLLIN) | (wantWrite ? Int16(POLLOUT) : 0)
            let n = poll(&fds, 2, Self.tickMs)
            if n < 0 && errno != EINTR { return }
            if fds[1].revents != 0 { wakeup.drain() }
            if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                guard read(fd, &decoder, buffer, capacity) else { return }
            }
            if fds[0].revents & Int16(POLLOUT) != 0 {
                _ = writeLock.with { flushLocked() }
            }
            // Once per tick, not per read: a busy connection must not scan every waiting call per frame.
            let now = Socket.nowNs()
            if now &- lastExpiryNs >= UInt64(Self.tickMs) * 1_000_000 {
                lastExpiryNs = now
                guard expireCalls(now) else { return }
            }
        }
    }

    /// Reads and delivers what arrived; false on EOF, an error or a framing error.
    private func read(_ fd: Int32, _ decoder: inout FrameDecoder, _ buffer: UnsafeMutableRawPointer,
                      _ capacity: Int) -> Bool {
        while true {
            guard let n = Socket.receiveSome(fd, buffer, capacity) else { return false }
            if n == 0 { return true }
            decoder.feed(UnsafeRawBufferPointer(start: buffer, count: n))
            guard deliver(&decoder) else { return false }
            if n < capacity { return true }  // drained: spare the recv that would say EAGAIN
        }
    }

    /// Hands every complete answer to its caller; false on a framing error.
    private func deliver(_ decoder: inout FrameDecoder) -> Bool {
        while true {
            let next: Result<Response, StockError>?
            do {
                next = try decoder.next { header, payload -> Result<Response, StockError> in
                    do throws(Status) { return .success(try ResponseCodec.decode(header: header, payload: payload)) } catch {
                        return .failure(.protocolError("undecodable \(error.name) answer"))
                    }
                }
            } catch {
                return false
            }
            guard let next else { return true }
            guard case .success(let response) = next else { return false }
            let k: CheckedContinuation<Result<Response, StockError>, Never>? = stateLock.with {
                let id = response.requestID
                if case .waiting(let k, _)? = calls[id] {
                    calls[id] = nil
                    return k
                }
                if overdue.remove(id) == nil, id == 0, case .failure(let status, _) = response.body {
                    farewell = status  // BUSY / SHUTTING_DOWN before the close
                }
                return nil  // otherwise the late answer to a call that gave up
            }
            k?.resume(returning: .success(response))
        }
    }

    /// Fails the calls whose deadline passed; false if the connection owes too many answers.
    private func expireCalls(_ now: UInt64) -> Bool {
        let (expired, hopeless): ([CheckedContinuation<Result<Response, StockError>, Never>], Bool) = stateLock.with {
            var due: [CheckedContinuation<Result<Response, StockError>, Never>] = []
            for (id, call) in calls {
                guard case .waiting(let k, let deadline) = call, deadline <= now else { continue }
                calls[id] = nil
                overdue.insert(id)
                due.append(k)
            }
            return (due, overdue.count > Self.maxOverdue)
        }
        for k in expired { k.resume(returning: .failure(.timeout)) }
        if hopeless {
            logger.info("stockd.client: dropping a connection that owes too many answers",
                        metadata: ["stockd.overdue": "\(Self.maxOverdue)"])
        }
        return !hopeless
    }

    /// Marks the connection dead and fails every waiting call.
    private func drop() {
        let (orphans, error): ([CheckedContinuation<Result<Response, StockError>, Never>], StockError) = stateLock.with {
            alive = false
            let waiting = calls.values.compactMap { call -> CheckedContinuation<Result<Response, StockError>, Never>? in
                if case .waiting(let k, _) = call { return k }
                return nil
            }
            calls.removeAll()
            overdue.removeAll()
            return (waiting, endErrorLocked())
        }
        for k in orphans { k.resume(returning: .failure(error)) }
    }
}
