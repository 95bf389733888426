import CLibUV
import Glibc
import StockJournal
import StockProtocol

/// One feed connection on the FeedHub's loop: reads the journal from its
/// offset (FeedReader), sends the events its filter matches while it has
/// credit, and reads CREDIT frames. Touched only on the hub's thread.
///
/// Pacing: an event is encoded only while credit is positive and fewer
/// than `config.feedOutputBytes` bytes wait for the client, so a consumer
/// that stops reading or granting stops its feed and nothing else; each
/// pump hands out at most `maxPerPump` records and then yields the loop.
final class FeedSubscriber {
    /// In the order a feed goes through them (`state` only moves forward).
    enum State: Int { case open, ending, closed }

    /// Records handed out per pump at most, then the loop is yielded (`schedulePump`).
    static let maxPerPump = 8192
    /// Initial capacity of `out`, bytes (it grows past it, up to about `feedOutputBytes`).
    static let outInitialBytes = 64 * 1024
    /// Unprocessed input beyond this many bytes ends the feed MALFORMED: a client sends only
    /// small CREDIT frames, so a backlog beyond a few of them is not one.
    static let maxInputBytes = 4096
    /// The largest frame read on a feed connection, bytes (a CREDIT frame is far smaller).
    static let maxCreditFrameBytes = 64
    /// Progress markers at most this often; heartbeats after this much silence.
    static let progressEveryMs: UInt64 = 200
    static let heartbeatMs: UInt64 = 5000

    unowned(unsafe) let hub: FeedHub
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    let requestID: UInt32
    var slot = -1
    /// Only forward: open → ending → closed, or open → closed; never back, never set twice.
    var state = State.open {
        didSet { assert(state.rawValue > oldValue.rawValue, "feed state \(oldValue) -> \(state)") }
    }
    var pumpScheduled = false
    private var credit: UInt64
    private var reader: FeedReader?
    private var out = ByteWriter(capacity: FeedSubscriber.outInitialBytes)
    private var queuedBytes = 0
    private var input: [UInt8] = []
    private var reading = false
    /// Offset of the last event or progress marker sent (0: none).
    private var lastSentOffset: UInt64 = 0
    private var lastFrameMs: UInt64 = 0
    private var lastProgressMs: UInt64 = 0

    init(hub: FeedHub, adoption a: FeedHub.Adoption) {
        self.hub = hub
        requestID = a.requestID
        credit = UInt64(a.subscribe.credit)
        tcp = .allocate(capacity: 1)
        hub.assertInLoop()
        // SUBSCRIBE's decoder bounds one grant by maxFeedCredit, below the total.
        precondition(credit <= Limits.maxFeedCreditTotal, "SUBSCRIBE credit \(credit) above the total limit")
    }

    private var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
    }

    private var handle: UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)
    }

    static func from(_ stream: UnsafeMutablePointer<uv_stream_t>) -> FeedSubscriber {
        Unmanaged<FeedSubscriber>.fromOpaque(stream.pointee.data!).takeUnretainedValue()
    }

    /// Takes over the socket, reads what the client sent after SUBSCRIBE, starts feeding.
    func begin(_ a: FeedHub.Adoption) {
        hub.assertInLoop()
        uv_tcp_init(hub.loop, tcp)
        tcp.pointee.data = Unmanaged.passRetained(self).toOpaque()
        guard uv_tcp_open(tcp, a.fd) == 0 else {
            Glibc.close(a.fd)
            close()
            return
        }
        uv_tcp_nodelay(tcp, 1)
        lastFrameMs = uv_now(hub.loop)
        do {
            reader = try FeedReader(directory: hub.journal.directory, from: a.start, filter: Self.recordFilter(a.subscribe))
        } catch {
            hub.logger.error("event feed: cannot read the journal: \(error)")
            return end(.internal)
        }
        input = a.leftover
        startReading()
        processInput()
        pump()
    }

    /// SUBSCRIBE's filter, judged on raw records (event kinds are record
    /// kinds), so records it rejects are never decoded; nil: everything.
    static func recordFilter(_ s: Subscribe) -> FeedReader.RecordFilter? {
        let kinds = s.kinds
        let prefix = s.skuPrefix.bytes
        guard kinds != 0 || !prefix.isEmpty else { return nil }
        return { kind, sku in
            if kinds != 0 && (kind > 15 || kinds & (1 << UInt16(kind)) == 0) { return false }
            guard sku.count >= prefix.count else { return false }
            for i in 0..<prefix.count where sku[i] != prefix[i] { return false }
            return true
        }
    }

    // MARK: feeding

    func pump() {
        hub.assertInLoop()
        guard state == .open, let reader else { return }
        let durable = hub.journal.durable.load(ordering: .acquiring)
        let synced = hub.journal.syncedEnd()
        var handedTotal = 0
        var sent: UInt64 = 0
        defer { hub.eventsSent.wrappingIncrement(by: sent, ordering: .relaxed) }
        while credit > 0 && reader.next <= durable && out.count + queuedBytes < hub.config.feedOutputBytes
            && handedTotal < Self.maxPerPump {
            let limit = Int(min(credit, UInt64(Self.maxPerPump - handedTotal)))
            let handed: Int
            do {
                handed = try reader.read(durable: durable, synced: synced, limit: limit) { record in
                    let e = FeedEvent(record)  // the reader's filter has matched it
                    // Offsets only go up (after a progress marker too), and only durable ones go out.
                    assert(e.offset > lastSentOffset && e.offset <= durable,
                           "event offset \(e.offset) after \(lastSentOffset), durable \(durable)")
                    e.encodeFrame(requestID: requestID, into: &out)
                    credit -= 1
                    sent += 1
                    lastSentOffset = e.offset
                }
            } catch {
                return fail(error)
            }
            assert(handed >= 0 && handed <= limit, "the reader handed \(handed) records, limit \(limit)")
            handedTotal += handed
            if handed == 0 { break }
        }
        if out.count > 0 { lastFrameMs = uv_now(hub.loop) }
        maybeSendProgress(durable: durable, force: false)
        flush()
        if handedTotal >= Self.maxPerPump && state == .open { hub.schedulePump(self) }
    }

    /// A progress marker when caught up and the position moved past what the
    /// client last saw (throttled), or as a heartbeat on a silent feed —
    /// caught up or not: progress never uses credit, so a feed at credit 0
    /// still hears every 5 s how far the server has examined the journal
    /// (PROTOCOL.md §9). Skipped while the client is not reading.
    private func maybeSendProgress(durable: UInt64, force: Bool) {
        guard let reader, out.count + queuedBytes < hub.config.feedOutputBytes else { return }
        precondition(reader.next >= 1, "feed position before offset 1")
        let position = reader.next - 1
        // The reader's position passed every offset sent: events' (it read them) and markers'.
        assert(position >= lastSentOffset, "feed position \(position) behind the offset sent \(lastSentOffset)")
        let caughtUp = reader.next > durable
        let now = uv_now(hub.loop)
        let moved = caughtUp && position > lastSentOffset && now &- lastProgressMs >= Self.progressEveryMs
        let silent = now &- lastFrameMs >= Self.heartbeatMs
        guard moved || silent || (force && caughtUp && position > lastSentOffset) else { return }
        FeedEvent.progress(position, timeMs: wallNowMs()).encodeFrame(requestID: requestID, into: &out)
        lastSentOffset = max(lastSentOffset, position)
        lastProgressMs = now
        lastFrameMs = now
    }

    /// The last offset this feed has examined (sent, or skipped by its
    /// filter): how far behind the journal it is, for `FeedHub.maxLag`.
    var position: UInt64 { (reader?.next ?? 1) - 1 }

    func tick(nowMs: UInt64) {
        hub.assertInLoop()
        guard state == .open else { return }
        pump()
    }

    private func fail(_ error: FeedReadError) {
        switch error {
        case .missing(let seq):
            let floor = max(hub.journal.feedFloor.load(ordering: .acquiring), seq + 1)
            end(.offsetCompacted, .offsetCompacted(oldest: floor))
        case .corrupt(let why):
            hub.logger.critical("event feed: journal unreadable: \(why)")
            end(.internal)
        }
    }

    /// Ends the feed with `status` (an EVENT frame), then closes once it is written.
    func end(_ status: Status, _ detail: ErrorDetail = .none) {
        hub.assertInLoop()
        guard state == .open else { return }
        ResponseCodec.encodeFailure(opcode: Opcode.event.rawValue, requestID: requestID, status: status,
                                    detail: detail, into: &out)
        flush()
        guard state == .open else { return }
        state = .ending
        if queuedBytes == 0 { shutdownAndClose() }
    }

    private func shutdownAndClose() {
        hub.assertInLoop()
        assert(state == .ending && queuedBytes == 0, "FIN before the last frame is written")
        let req = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        if uv_shutdown(req, stream, { req, _ in
            let s = Unmanaged<FeedSubscriber>.fromOpaque(req!.pointee.data!).takeUnretainedValue()
            req!.deallocate()
            s.close()
        }) != 0 {
            req.deallocate()
            close()
        }
    }

    // MARK: reading CREDIT

    private func startReading() {
        hub.assertInLoop()
        guard !reading, state != .closed else { return }
        reading = true
        let rc = uv_read_start(stream, { handle, _, buf in
            let hub = FeedHub.from(handle!)
            buf!.pointee = uv_buf_init(hub.readBuffer, UInt32(FeedHub.readBufferSize))
        }, { stream, nread, buf in
            FeedSubscriber.from(stream!).onRead(nread, buf!.pointee)
        })
        if rc != 0 { close() }
    }

    private func onRead(_ nread: Int, _ buf: uv_buf_t) {
        hub.assertInLoop()
        assert(nread <= FeedHub.readBufferSize, "read past the lent buffer")
        if nread < 0 { return close() }
        guard nread > 0, state == .open else { return }
        input.append(contentsOf: UnsafeRawBufferPointer(start: buf.base, count: nread))
        if input.count > Self.maxInputBytes { return end(.malformed) }
        processInput()
        pump()
    }

    private func processInput() {
        hub.assertInLoop()
        var used = 0
        while state == .open {
            let frame: FrameParse = input.withUnsafeBytes { all in
                FrameParser.parse(UnsafeRawBufferPointer(rebasing: all[used...]), maxFrame: Self.maxCreditFrameBytes)
            }
            guard case .frame(let header, let range) = frame else {
                if case .needMore = frame { break }
                return end(.malformed)
            }
            let request: Request? = input.withUnsafeBytes { all in
                let payload = UnsafeRawBufferPointer(rebasing: all[(used + range.lowerBound)..<(used + range.upperBound)])
                return try? RequestCodec.decode(header: header, payload: payload)
            }
            guard case .credit(let n) = request else { return end(.malformed) }
            credit = min(credit + UInt64(n), Limits.maxFeedCreditTotal)
            used += header.frameLength
        }
        if used > 0 && state == .open { input.removeFirst(used) }
    }

    // MARK: writing

    private func flush() {
        hub.assertInLoop()
        guard out.count > 0, state != .closed else { return }
        let queued = out.withUnsafeBytes { raw in
            WriteBlock.send(raw, on: stream, queued: queuedBytes, owner: Unmanaged.passUnretained(self).toOpaque()) {
                req, status in
                let (owner, size) = WriteBlock.finish(req!)
                Unmanaged<FeedSubscriber>.fromOpaque(owner).takeUnretainedValue().onWritten(size, status: status)
            }
        }
        out.removeAll()
        guard let queued else { return close() }
        queuedBytes += queued
    }

    private func onWritten(_ size: Int, status: Int32) {
        hub.assertInLoop()
        queuedBytes -= size
        precondition(queuedBytes >= 0, "more feed bytes written than queued")
        guard state != .closed else { return }
        if status < 0 { return close() }
        if state == .ending {
            if queuedBytes == 0 { shutdownAndClose() }
            return
        }
        if queuedBytes < hub.config.feedOutputBytes / 2 { pump() }
    }

    // MARK: closing

    func close() {
        hub.assertInLoop()
        guard state != .closed else { return }
        state = .closed
        hub.remove(self)
        reader = nil
        uv_close(handle) { handle in
            let handle = handle!
            let s = Unmanaged<FeedSubscriber>.fromOpaque(handle.pointee.data!).takeRetainedValue()
            UnsafeMutableRawPointer(handle).deallocate()
            s.hub.subscriberClosed(s)
        }
    }
}

/// Unix epoch milliseconds now.
func wallNowMs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
}
