import CLibUV
import Glibc
import StockCore
import StockProtocol

/// One client connection, owned by one loop worker and touched only on its
/// thread. Its libuv handle's `data` holds a retained reference, released
/// in the close callback; every `uv_*` struct is heap-allocated and freed
/// only in its own callback (shared notes).
///
/// Flow: bytes arrive → complete frames are parsed in place (straight from
/// the loop's read buffer when nothing is pending) → each request is
/// answered into `out` → at the end of the read burst `flush` hands `out`
/// to the kernel with one `uv_try_write`, queueing any rest with
/// `uv_write`. Memory per connection is bounded: `pending` holds at most one
/// read plus one partial frame, and reading stops (backpressure) while
/// `maxInflight` answers or `maxOutputBytes` bytes wait for the client.
///
/// Stored properties are `@exclusivity(unchecked)`: they are touched only on
/// the worker's thread and never through overlapping accesses, and the
/// dynamic checks cost about 5% of a request in profiles.
final class Connection {
    /// In the order a connection goes through them (`state` only moves forward).
    enum State: Int { case open, draining, closed }

    /// Initial capacity of `out`, bytes (it grows past it, up to about `maxOutputBytes`).
    static let outInitialBytes = 16 * 1024

    // unowned(unsafe): the worker outlives its connections, and a checked
    // unowned reference costs two atomic operations per access on the hot path.
    unowned(unsafe) let worker: LoopWorker
    unowned(unsafe) let core: StockCore
    unowned(unsafe) let coreWorker: Worker
    unowned(unsafe) let counters: WorkerCounters
    /// Unix ms minus core ms, for answering deadlines in wall-clock time.
    let wallOffsetMs: UInt64
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    /// Position in `worker.connections` (O(1) removal).
    var slot = -1
    /// Only forward: open → draining → closed, or open → closed. Never back to open, and never
    /// set twice to the same state (every closing path checks the state first).
    @exclusivity(unchecked) var state = State.open {
        didSet { assert(state.rawValue > oldValue.rawValue, "connection state \(oldValue) -> \(state)") }
    }
    /// Counts against max-connections (false for a connection refused with BUSY).
    let admitted: Bool
    /// Input not yet consumed: a partial frame, or frames held back by backpressure.
    @exclusivity(unchecked) var pending: [UInt8] = []
    /// Answers not yet handed to the kernel.
    @exclusivity(unchecked) var out = ByteWriter(capacity: Connection.outInitialBytes)
    /// Answers in `out`.
    @exclusivity(unchecked) var inflight = 0
    /// The operations of the answers in `out`, for the per-operation latency histogram.
    @exclusivity(unchecked) var answeredOps = AnswerTally()
    /// Bytes handed to `uv_write` and not yet written.
    @exclusivity(unchecked) var queuedBytes = 0
    @exclusivity(unchecked) var reading = false
    @exclusivity(unchecked) var lastActiveMs: UInt64
    /// When the partial frame in `pending` began (0: none): `--frame-timeout`.
    @exclusivity(unchecked) var partialSinceMs: UInt64 = 0
    /// Since when queued answers wait without any write completing (0: none): `--write-timeout`.
    @exclusivity(unchecked) var stalledSinceMs: UInt64 = 0
    /// Reservation token bucket (`--reserve-rate`): thousandths of a request, and when last refilled.
    @exclusivity(unchecked) var rateMilli: Int64 = 0
    @exclusivity(unchecked) var rateRefilledMs: UInt64 = 0
    /// What this session may do (PROTOCOL.md §4 "role"): `.none` until a
    /// HELLO with a valid credential when authentication is on; `.admin`
    /// from the start when it is off.
    @exclusivity(unchecked) var role: Role
    /// Session: HELLO succeeded / a request other than HELLO or PING was seen.
    @exclusivity(unchecked) var helloDone = false
    @exclusivity(unchecked) var sawRequest = false
    /// `out` holds the answer to a state change journaled as this record:
    /// it goes out once the journal's watermark passes it (0: nothing waits).
    @exclusivity(unchecked) var heldUntil: UInt64 = 0
    /// In the worker's list of held connections.
    @exclusivity(unchecked) var isHeld = false
    /// Close (after the answers) once they are released.
    @exclusivity(unchecked) var closeWhenReleased = false
    /// When the read burst that produced the oldest answer in `out` began
    /// (uv_hrtime; 0: `out` is empty): the latency histogram's start.
    @exclusivity(unchecked) var oldestAnswerNs: UInt64 = 0
    /// SUBSCRIBE was answered: once every answer before it is out, the
    /// socket moves to the event feed's thread (`handOffToFeed`).
    @exclusivity(unchecked) var feedRequest: FeedRequest?

    struct FeedRequest {
        let requestID: UInt32
        let subscribe: Subscribe
        let start: UInt64
    }

    /// REPL_HELLO was answered OK: once every answer before it is out, the
    /// socket moves to the replication thread (`handOffToReplication`).
    @exclusivity(unchecked) var replRequest: ReplRequest?

    struct ReplRequest {
        let requestID: UInt32
        let node: String
        let start: UInt64
    }

    init(worker: LoopWorker, tcp: UnsafeMutablePointer<uv_tcp_t>, admitted: Bool) {
        self.worker = worker
        core = worker.core
        coreWorker = worker.coreWorker
        counters = worker.counters
        wallOffsetMs = worker.server.wallOffsetMs
        self.tcp = tcp
        self.admitted = admitted
        role = worker.server.auth == nil ? .admin : .none
        lastActiveMs = uv_now(worker.loop)
    }

    var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
    }

    var handle: UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)
    }

    /// Whether the client is behind on reading its answers.
    var backlogged: Bool {
        inflight >= worker.config.maxInflight || out.count + queuedBytes >= worker.config.maxOutputBytes
    }

    // MARK: reading

    func startReading() {
        worker.assertInLoop()
        guard !reading, state != .closed else { return }
        reading = true
        let rc = uv_read_start(stream, { handle, _, buf in
            LoopWorker.from(handle!).lendReadBuffer(buf!)
        }, { stream, nread, buf in
            let conn = Connection.from(stream!)
            conn.onRead(nread, buf!.pointee)
        })
        if rc != 0 { close() }
    }

    func stopReading() {
        worker.assertInLoop()
        guard reading, state != .closed else { return }
        reading = false
        uv_read_stop(stream)
    }

    static func from(_ stream: UnsafeMutablePointer<uv_stream_t>) -> Connection {
        Unmanaged<Connection>.fromOpaque(stream.pointee.data!).takeUnretainedValue()
    }

    func onRead(_ nread: Int, _ buf: uv_buf_t) {
        worker.assertInLoop()
        worker.readBufferReturned(buf)
        assert(nread <= LoopWorker.readBufferSize, "read past the lent buffer")
        if nread < 0 {  // EOF or error: whatever was partial is dropped, nothing happened
            close()
            return
        }
        guard nread > 0 else { return }
        counters.add(.bytesIn, Int64(nread))
        guard state == .open else { return }  // draining: discard (and do not count as activity)
        lastActiveMs = uv_now(worker.loop)
        let bytes = UnsafeRawBufferPointer(start: buf.base, count: nread)
        if pending.isEmpty {
            let used = process(bytes)
            if used < nread && state == .open { pending.append(contentsOf: bytes[used...]) }
        } else {
            pending.append(contentsOf: bytes)
            // Reading is on only while `pending` holds a partial frame at most (shorter than
            // maxFrame; complete frames held back by backpressure stop reading): "one read plus
            // one partial frame", the bound of the type's doc comment.
            assert(pending.count <= worker.config.maxFrame + LoopWorker.readBufferSize,
                   "pending input \(pending.count) bytes: above one read plus one partial frame")
            processPending()
        }
        pump()
    }

    /// Processes held-back input and flushes until done or blocked; then
    /// reads again unless the client is behind.
    func pump() {
        worker.assertInLoop()
        while true {
            flush()
            guard state == .open, !pending.isEmpty, !backlogged else { break }
            let before = pending.count
            processPending()
            if pending.count == before { break }  // only a partial frame left
        }
        guard state == .open else { return }
        // A partial frame left over starts the frame clock (reset when a frame completes).
        if pending.isEmpty || backlogged {
            partialSinceMs = 0
        } else if partialSinceMs == 0 {
            partialSinceMs = uv_now(worker.loop)
        }
        if feedRequest != nil {
            stopReading()
            return handOffToFeed()
        }
        if replRequest != nil {
            stopReading()
            return handOffToReplication()
        }
        if backlogged || queuedBytes >= worker.config.maxOutputBytes { stopReading() } else { startReading() }
    }

    /// Moves the socket to the feed thread once nothing of this connection
    /// is left to send: a duplicate descriptor (with the unread input) goes
    /// to the hub, and this connection closes its own.
    private func handOffToFeed() {
        worker.assertInLoop()
        guard let f = feedRequest, let hub = worker.server.feedHub, state == .open, out.count == 0,
              queuedBytes == 0, !isHeld else { return }
        feedRequest = nil
        var fd: uv_os_fd_t = -1
        let dup = uv_fileno(handle, &fd) == 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1
        if dup < 0 {
            hub.releaseSlot()
            return close()
        }
        hub.adopt(FeedHub.Adoption(fd: dup, requestID: f.requestID, subscribe: f.subscribe, start: f.start,
                                   leftover: pending))
        pending = []
        close()
    }

    /// As `handOffToFeed`, to the replication thread (a standby's stream).
    private func handOffToReplication() {
        worker.assertInLoop()
        guard let r = replRequest, state == .open, out.count == 0, queuedBytes == 0, !isHeld else { return }
        replRequest = nil
        guard let hub = worker.server.cluster?.hub else { return close() }
        var fd: uv_os_fd_t = -1
        let dup = uv_fileno(handle, &fd) == 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1
        if dup < 0 {
            hub.release(r.node)
            return close()
        }
        hub.adopt(ReplicationHub.Adoption(fd: dup, requestID: r.requestID, node: r.node, start: r.start, leftover: pending))
        pending = []
        close()
    }

    private func processPending() {
        let used = pending.withUnsafeBytes { process($0) }
        if state != .open {
            pending.removeAll()
        } else if used > 0 {
            pending.removeFirst(used)
        }
    }

    /// Answers the complete frames at the start of `bytes`; returns the bytes consumed.
    private func process(_ bytes: UnsafeRawBufferPointer) -> Int {
        worker.assertInLoop()
        var offset = 0
        let now = uv_now(worker.loop)
        let burstNs = uv_hrtime()
        defer { if oldestAnswerNs == 0 && out.count > 0 { oldestAnswerNs = burstNs } }
        counters.add(.readBursts)
        let seqBefore = worker.lastSeq
        defer { if worker.lastSeq != seqBefore { heldUntil = max(heldUntil, worker.lastSeq) } }
        while state == .open && !backlogged && feedRequest == nil && replRequest == nil {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            switch FrameParser.parse(rest, maxFrame: worker.config.maxFrame) {
            case .needMore:
                return offset
            case .frame(let header, let range):
                partialSinceMs = 0
                let answersBefore = inflight
                dispatch(header, UnsafeRawBufferPointer(rebasing: rest[range]), nowMs: now)
                // Exactly one answer per request (PROTOCOL.md). Unless it was flushed by a
                // closeAfterFlush in dispatch, which leaves the connection draining or closed.
                assert(state != .open || inflight == answersBefore + 1, "a request without exactly one answer")
                offset += header.frameLength
                assert(offset <= bytes.count, "a frame past the end of the input")
            case .lengthTooSmall:
                fail(opcode: 0, requestID: 0, .malformed)
                closeAfterFlush()
                return bytes.count
            case .tooLarge(_, let requestID):
                fail(opcode: rest[4], requestID: requestID, .frameTooLarge,
                     .frameTooLarge(maxFrame: UInt32(worker.config.maxFrame)))
                closeAfterFlush()
                return bytes.count
            }
        }
        return offset
    }

    /// Appends a failure answer.
    func fail(opcode: UInt8, requestID: UInt32, _ status: Status, _ detail: ErrorDetail = .none) {
        switch status {
        case .tokenConfirmed, .tokenReleased, .tokenExpired: awaitIssuedRecords()  // a fate decided elsewhere
        default: break
        }
        ResponseCodec.encodeFailure(opcode: opcode, requestID: requestID, status: status, detail: detail, into: &out)
        inflight += 1
        // Requests are read only below maxInflight (`backlogged`); the one answer beyond it is
        // the SHUTTING_DOWN frame of `shutDown`.
        assert(inflight <= worker.config.maxInflight + 1, "\(inflight) answers waiting, limit \(worker.config.maxInflight)")
        counters.request(opcode: opcode, status: status, tally: &answeredOps)
    }

    /// An answer that reports state another request made — an idempotent
    /// replay's token, a fate decided by an earlier CONFIRM or RELEASE on any
    /// worker — goes out only once that state is durable: a retried CONFIRM
    /// told TOKEN_CONFIRMED must never meet, after a crash, a token that is
    /// live again. Its record's seq is not known here, so the answer waits
    /// for every seq issued so far (rare answers; one journal round at most).
    func awaitIssuedRecords() {
        guard let journal = worker.journal else { return }
        let issued = journal.nextSeq.load(ordering: .acquiring) &- 1
        if issued > heldUntil { heldUntil = issued }
    }

    // MARK: writing

    /// Hands `out` to the kernel: `uv_try_write` first, the rest to `uv_write`.
    func flush() {
        worker.assertInLoop()
        assert((out.count == 0) == (inflight == 0), "inflight \(inflight) for \(out.count) bytes of answers")
        guard out.count > 0, state != .closed else { return }
        if heldUntil != 0 && heldUntil > worker.durableSeq {
            worker.hold(self)  // answers to state changes go out once those are durable
            return
        }
        counters.add(.bytesOut, Int64(out.count))
        if oldestAnswerNs != 0 {
            counters.latency(nanos: uv_hrtime() &- oldestAnswerNs, tally: &answeredOps)
            oldestAnswerNs = 0
        }
        let queued = out.withUnsafeBytes { raw in
            WriteBlock.send(raw, on: stream, queued: queuedBytes, owner: Unmanaged.passUnretained(self).toOpaque()) {
                req, status in
                let (owner, size) = WriteBlock.finish(req!)
                Unmanaged<Connection>.fromOpaque(owner).takeUnretainedValue().onWritten(size, status: status)
            }
        }
        out.removeAll()
        inflight = 0
        guard let queued else { return close() }
        if queued > 0 && stalledSinceMs == 0 { stalledSinceMs = uv_now(worker.loop) }
        queuedBytes += queued
    }

    private func onWritten(_ size: Int, status: Int32) {
        worker.assertInLoop()
        queuedBytes -= size
        precondition(queuedBytes >= 0, "more bytes written than queued")
        guard state != .closed else { return }
        stalledSinceMs = queuedBytes > 0 ? uv_now(worker.loop) : 0  // progress: the clock restarts
        if status < 0 {
            close()
            return
        }
        if queuedBytes == 0 && state == .draining { return }
        if state == .open && (queuedBytes < worker.config.maxOutputBytes / 2 || feedRequest != nil || replRequest != nil) {
            pump()
        }
    }

    // MARK: closing

    /// Sends what is in `out`, then FIN; input is discarded until the client
    /// closes (or the sweep gives up), so the final answer is not lost to a
    /// reset caused by unread input.
    func closeAfterFlush() {
        worker.assertInLoop()
        guard state == .open else { return }
        if heldUntil != 0 && heldUntil > worker.durableSeq && out.count > 0 {
            closeWhenReleased = true
            worker.hold(self)
            stopReading()
            return
        }
        flush()
        guard state == .open else { return }
        state = .draining
        lastActiveMs = uv_now(worker.loop)  // the sweep closes it 2 s from now at the latest
        pending.removeAll()
        startReading()  // keep draining input
        let req = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let rc = uv_shutdown(req, stream) { req, _ in
            req!.deallocate()
        }
        if rc != 0 {
            req.deallocate()
            close()
        }
    }

    /// The server is stopping (PROTOCOL.md §6 "Stopping"): nothing more is
    /// read — input held back by backpressure was never executed and is
    /// dropped —, the answers already made go out (after the journal when
    /// they wait for it), then one SHUTTING_DOWN frame, then FIN.
    func shutDown() {
        worker.assertInLoop()
        guard state == .open else { return }
        pending.removeAll()
        partialSinceMs = 0
        fail(opcode: 0, requestID: 0, .shuttingDown)
        closeAfterFlush()
    }

    /// The journal made this connection's answers durable: send them, read on.
    func releaseHeldAnswers() {
        worker.assertInLoop()
        assert(!isHeld && heldUntil <= worker.durableSeq, "answers released before their records are durable")
        if closeWhenReleased {
            closeWhenReleased = false
            closeAfterFlush()
        } else {
            pump()
        }
    }

    /// Closes now. Queued writes are cancelled (their callbacks free their blocks).
    func close() {
        worker.assertInLoop()
        guard state != .closed else { return }
        if feedRequest != nil {
            feedRequest = nil
            worker.server.feedHub?.releaseSlot()  // the hand-off will not happen
        }
        if let r = replRequest {
            replRequest = nil
            worker.server.cluster?.hub?.release(r.node)
        }
        state = .closed
        pending = []
        worker.remove(self)
        uv_close(handle) { handle in
            let handle = handle!
            let conn = Unmanaged<Connection>.fromOpaque(handle.pointee.data!).takeRetainedValue()
            UnsafeMutableRawPointer(handle).deallocate()
            conn.worker.connectionClosed(conn)
        }
    }
}
