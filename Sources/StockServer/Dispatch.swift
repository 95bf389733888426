import CLibUV
import StockCore
import StockProtocol

/// Turning one decoded request into one answer: the request's path reads
/// straight down (frame → typed request → core call) and back up (result →
/// answer bytes in the connection's output buffer).
extension Connection {
    func dispatch(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, nowMs: UInt64) {
        // The session's role first: an unauthenticated or under-privileged
        // client learns nothing from how its payload would have been judged.
        let facts = Opcode.access(header.opcode)
        if facts.role > role {
            fail(opcode: header.opcode, requestID: header.requestID, role == .none ? .unauthenticated : .forbidden)
            return
        }
        // A cluster node: a standby (or a fenced or demoted primary) serves no data, and a primary
        // short of in-sync standbys executes no change (docs/replication.md §4 "Minimum").
        if !worker.isPrimary || worker.gate != nil, let refusal = clusterRefusal(header.opcode, facts) {
            fail(opcode: header.opcode, requestID: header.requestID, refusal.status, refusal.detail)
            return
        }
        if worker.journal != nil, facts.changesState, worker.journalFailed {
            // The journal cannot write: nothing may change that could not be made durable.
            fail(opcode: header.opcode, requestID: header.requestID, .storageFailed)
            return
        }
        // The checkout traffic — RESERVE, RELEASE, CONFIRM, PING — skips the
        // `Request` enum: decode one struct, call the core, write the answer.
        if worker.config.reserveRate > 0,
           header.opcode == Opcode.reserve.rawValue || header.opcode == Opcode.reserveBundle.rawValue,
           !takeReserveToken(nowMs: nowMs) {
            fail(opcode: header.opcode, requestID: header.requestID, .rateLimited)
            return
        }
        if header.isWellFormedRequest, (helloDone || sawRequest || header.opcode == Opcode.ping.rawValue) {
            switch header.opcode {
            case Opcode.reserve.rawValue: return fastReserve(header, payload, nowMs: nowMs)
            case Opcode.release.rawValue: return fastRelease(header, payload, nowMs: nowMs)
            case Opcode.confirm.rawValue: return fastConfirm(header, payload, nowMs: nowMs)
            case Opcode.ping.rawValue where payload.isEmpty: return ok(header, start: beginOK(header))
            default: break
            }
        }
        let request: Request
        do {
            request = try RequestCodec.decode(header: header, payload: payload)
        } catch {
            let detail: ErrorDetail = error == .ttlTooLong ? .ttlTooLong(maxTTLMs: worker.config.core.maxTTLMs) : .none
            fail(opcode: header.opcode, requestID: header.requestID, error, detail)
            return
        }
        let id = header.requestID
        do {
            let body = try answer(request, requestID: id, nowMs: nowMs)
            let start = out.beginFrame(opcode: header.opcode, requestID: id, response: true)
            ResponseCodec.encodeBody(body, into: &out)
            out.endFrame(start)
            inflight += 1
            counters.request(opcode: header.opcode, status: .ok, tally: &answeredOps)
        } catch {
            fail(opcode: header.opcode, requestID: id, error.status, error.detail)
            // On a cluster node a refused REPL_HELLO ends the connection too (PROTOCOL.md §10): it was
            // going to be a stream. A node without a cluster name answers it like any refused request.
            if error.status.closesConnection
                || (header.opcode == Opcode.replHello.rawValue && worker.server.cluster != nil) { closeAfterFlush() }
        }
    }

    /// The reservation token bucket (`--reserve-rate`, `--reserve-burst`), in
    /// thousandths of a request so a rate below 1/ms refills exactly.
    private func takeReserveToken(nowMs: UInt64) -> Bool {
        let c = worker.config
        let capacity = Int64(c.reserveBurst > 0 ? c.reserveBurst : c.reserveRate) * 1000
        if rateRefilledMs == 0 {
            rateMilli = capacity  // a new connection starts with a full bucket
        } else {
            let elapsed = Int64(min(nowMs &- rateRefilledMs, Self.maxRefillWindowMs))
            rateMilli = min(capacity, rateMilli + elapsed * Int64(c.reserveRate))
        }
        rateRefilledMs = nowMs
        guard rateMilli >= 1000 else { return false }
        rateMilli -= 1000
        return true
    }

    /// After a granted RESERVE or RESERVE_BUNDLE: the expiry timer may need
    /// to fire earlier, and an idempotent replay reports a reservation an
    /// earlier request made, so its answer waits until that is durable.
    @inline(__always) private func reservationMade(_ o: ReserveOutcome) {
        worker.expiryMayHaveMoved(o.deadlineCoreMs)
        if o.replayed { awaitIssuedRecords() }
    }

    /// The longest silence a reservation bucket refills over: after an hour it is full whatever the
    /// rate, and the cap keeps `elapsed × rate` far from overflow.
    static let maxRefillWindowMs: UInt64 = 3_600_000

    /// The OK answer to `request`, or the failure to send.
    private func answer(_ request: Request, requestID: UInt32, nowMs: UInt64) throws(Failure) -> ResponseBody {
        let core = worker.core
        let w = worker.coreWorker
        if case .hello(let hello) = request { return try self.hello(hello) }
        if case .ping = request { return .pong }
        sawRequest = true
        switch request {
        case .reserve(let r):
            let o = try core.reserve(r, nowMs: nowMs, on: w)
            reservationMade(o)
            return .reserved(Reservation(token: o.token, expiresAtMs: worker.wallClock(o.deadlineCoreMs),
                                         available: o.available))
        case .reserveBundle(let b):
            let o = try core.reserveBundle(b, nowMs: nowMs, on: w)
            reservationMade(o)
            return .bundleReserved(BundleReservation(token: o.token, expiresAtMs: worker.wallClock(o.deadlineCoreMs)))
        case .confirm(let c):
            return .confirmed(try core.confirm(c, nowMs: nowMs, on: w))
        case .release(let t):
            return .released(units: try core.release(t, nowMs: nowMs, on: w))
        case .extend(let e):
            return .extended(expiresAtMs: worker.wallClock(try core.extend(e, nowMs: nowMs, on: w)))
        case .stockSet(let s):
            return .stock(try core.setStock(s, nowMs: nowMs, on: w))
        case .stockAdjust(let a):
            return .stock(try core.adjustStock(a, nowMs: nowMs, on: w))
        case .backupRelease(let m):
            return .stock(try core.releaseBackup(m, nowMs: nowMs, on: w))
        case .backupHold(let m):
            return .stock(try core.holdBackup(m, nowMs: nowMs, on: w))
        case .stage(let s):
            return .staged(try core.stage(s, nowMs: nowMs, on: w))
        case .stockGet(let sku):
            return .stock(try core.stock(sku))
        case .stockList(let l):
            return .stockPage(page(l))
        case .stats:
            return .stats(statsThatFit(worker.server.statsEntries()))
        case .subscribe(let s):
            return .subscribed(try subscribe(s, requestID: requestID))
        case .credit:
            throw Failure(.invalidArgument)  // only a feed connection takes credit
        case .replAck:
            throw Failure(.invalidArgument)  // only a replication connection takes acks
        case .replHello(let h):
            return .replStarted(try acceptStandby(h, requestID: requestID))
        case .role(let r):
            return .role(try worker.server.changeRole(r, on: worker))
        case .fence(let until):
            return .committed(try fence(untilNs: until))
        case .isrSet(let set):
            return .committed(try replaceWaitSet(set))
        case .clusterStatus:
            return .clusterStatus(clusterStatus())
        case .hello, .ping:
            preconditionFailure("handled above")
        }
    }

    /// CONFIG_MISMATCH's field when the node has no cluster name.
    static let clusterField = ShortBytes("cluster")!

    /// SUBSCRIBE: checks the offset against the feed's range, and marks the
    /// connection for the hand-off to the feed thread (after this answer).
    private func subscribe(_ s: Subscribe, requestID: UInt32) throws(Failure) -> FeedStart {
        guard let journal = worker.journal, let hub = worker.server.feedHub else { throw Failure(.feedUnavailable) }
        let end = journal.durable.load(ordering: .acquiring)
        let floor = journal.feedFloor.load(ordering: .acquiring)
        let start: UInt64
        switch s.from {
        case Limits.feedFromOldest: start = floor
        case Limits.feedFromNow: start = end + 1
        case let from where from < floor: throw Failure(.offsetCompacted, .offsetCompacted(oldest: floor))
        case let from where from > end + 1: throw Failure(.invalidArgument)
        case let from: start = from
        }
        guard hub.reserveSlot() else { throw Failure(.busy) }
        feedRequest = FeedRequest(requestID: requestID, subscribe: s, start: max(start, 1))
        return FeedStart(start: max(start, 1), end: end)
    }

    @inline(__always) private func beginOK(_ header: FrameHeader) -> Int {
        out.beginFrame(opcode: header.opcode, requestID: header.requestID, response: true)
    }

    @inline(__always) private func ok(_ header: FrameHeader, start: Int) {
        out.endFrame(start)
        inflight += 1
        counters.request(opcode: header.opcode, status: .ok, tally: &answeredOps)
    }

    private func failDecoded(_ header: FrameHeader, _ status: Status) {
        let detail: ErrorDetail = status == .ttlTooLong ? .ttlTooLong(maxTTLMs: worker.config.core.maxTTLMs) : .none
        fail(opcode: header.opcode, requestID: header.requestID, status, detail)
    }

    private func fastReserve(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, nowMs: UInt64) {
        let r: Reserve
        do { r = try RequestCodec.decodeReserve(payload: payload) } catch { return failDecoded(header, error) }
        sawRequest = true
        let o: ReserveOutcome
        do { o = try core.reserve(r, nowMs: nowMs, on: coreWorker) } catch {
            return fail(opcode: header.opcode, requestID: header.requestID, error.status, error.detail)
        }
        reservationMade(o)
        let start = beginOK(header)
        ResponseCodec.encodeReserved(Reservation(token: o.token, expiresAtMs: o.deadlineCoreMs &+ wallOffsetMs,
                                                 available: o.available), into: &out)
        ok(header, start: start)
    }

    private func fastRelease(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, nowMs: UInt64) {
        let t: Token
        do { t = try RequestCodec.decodeRelease(payload: payload) } catch { return failDecoded(header, error) }
        sawRequest = true
        let units: UInt32
        do { units = try core.release(t, nowMs: nowMs, on: coreWorker) } catch {
            return fail(opcode: header.opcode, requestID: header.requestID, error.status, error.detail)
        }
        let start = beginOK(header)
        ResponseCodec.encodeReleased(units: units, into: &out)
        ok(header, start: start)
    }

    private func fastConfirm(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, nowMs: UInt64) {
        let c: Confirm
        do { c = try RequestCodec.decodeConfirm(payload: payload) } catch { return failDecoded(header, error) }
        sawRequest = true
        let reply: ConfirmReply
        do { reply = try core.confirm(c, nowMs: nowMs, on: coreWorker) } catch {
            return fail(opcode: header.opcode, requestID: header.requestID, error.status, error.detail)
        }
        let start = beginOK(header)
        ResponseCodec.encodeConfirmed(reply, into: &out)
        ok(header, start: start)
    }

    private func hello(_ h: Hello) throws(Failure) -> ResponseBody {
        guard !helloDone, !sawRequest else { throw Failure(.helloOutOfOrder) }
        guard h.version == Limits.protocolVersion else {
            throw Failure(.unsupportedVersion,
                          .unsupportedVersion(min: Limits.protocolVersion, max: Limits.protocolVersion))
        }
        if let auth = worker.server.auth {
            guard let entry = auth.current.match(h.credential) else {
                worker.authFailed(client: h.clientName, peer: peerAddress)
                throw Failure(.authFailed)  // closes the connection
            }
            role = entry.role
        }
        helloDone = true
        let c = worker.config
        return .hello(HelloReply(
            role: role, maxFrame: UInt32(c.maxFrame), maxTTLMs: c.core.maxTTLMs, defaultTTLMs: c.core.defaultTTLMs,
            maxInflight: UInt32(c.maxInflight), serverName: Array("stockd \(c.buildVersion)".utf8)))
    }

    /// STATS cut to fit the maximum frame (the most general counters come
    /// first; per-worker and journal details are what a 1 KiB frame drops).
    private func statsThatFit(_ entries: [StatEntry]) -> [StatEntry] {
        var room = worker.config.maxFrame - Limits.headerSize - 2  // the header holds the length prefix
        var n = 0
        for e in entries {
            room -= 1 + e.name.count + 8
            guard room >= 0 else { break }
            n += 1
        }
        return Array(entries.prefix(n))
    }

    /// A STOCK_LIST page cut to fit the maximum frame.
    private func page(_ l: StockList) -> StockPage {
        let wanted = Int(l.limit == 0 ? Limits.defaultListPage : l.limit)
        // Header 12 + cursor/count 6; each entry at most 1 + 64 + 40 bytes.
        let fits = (worker.config.maxFrame - Limits.headerSize - 6) / (1 + Limits.maxSKULength + StockInfo.size)
        return worker.core.list(cursor: l.cursor, limit: min(wanted, fits))
    }
}
