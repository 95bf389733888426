import CLibUV
import Glibc
import StockJournal
import StockProtocol

/// One standby's replication connection on the primary (ReplicationHub's
/// thread only): REPL_ROUND frames out, REPL_ACK frames in.
///
/// Records go out in seq order, so a round's `end` is its last record's seq
/// and the standby's gap-free durable end is simply the last seq it synced.
/// Bounded: at most `--repl-queue` bytes wait unsent (then the link stops
/// reading the journal until the standby takes them), rounds of at most
/// `roundPayloadBytes` (they fit any standby's frame limit).
final class StandbyLink {
    unowned let hub: ReplicationHub
    let fd: Int32
    let node: String
    private let requestID: UInt32
    private let reader: FeedReader
    private var out = ByteWriter(capacity: 256 << 10)
    private var outSent = 0
    private var input: [UInt8] = []
    /// What one recv takes (acks are 29 bytes each: one read holds every ack a poll finds).
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 10, alignment: 16)
    private let scratch = RecordBuffer(capacity: StandbyLink.roundPayloadBytes)
    /// The last seq sent (the standby held everything below its start).
    private(set) var sentEnd: UInt64
    /// The standby's last ack: it holds every record up to it, fdatasynced.
    private(set) var acked: UInt64
    private(set) var lastHeardNs: UInt64
    /// When the oldest round it has not acked was sent (0: it acked everything sent): how long it
    /// has been sitting on records — its lag for the ISR (CLUSTER_STATUS `lag_ms`).
    var oldestUnackedNs: UInt64 { unacked.first?.sentNs ?? 0 }
    private var lastSentNs: UInt64 = 0
    private(set) var closed = false
    /// Whether the last pump found nothing more to read (the standby is at the live end).
    private var live = false
    /// Rounds sent and not yet acked: (last seq, when sent), oldest first, at most `sentRoundsKept`
    /// (the ack latency statistic; older ones are forgotten, not waited for).
    private var unacked: [(end: UInt64, sentNs: UInt64)] = []
    static let sentRoundsKept = 4096

    /// A round's records at most (bytes): below the smallest frame limit (64 KiB default) with room to spare.
    static let roundPayloadBytes = 48 << 10
    /// Records per round at most (`count` is a u16).
    static let roundRecords = 1024
    /// An ack this many records below the commit point still counts as caught up (it joins the wait set;
    /// commits then wait for it, which costs latency only).
    static let catchUpSlack: UInt64 = 4096

    init(hub: ReplicationHub, adoption a: ReplicationHub.Adoption, reader: FeedReader) {
        precondition(a.start >= 1, "seqs start at 1")
        self.hub = hub
        fd = a.fd
        node = a.node
        requestID = a.requestID
        self.reader = reader
        sentEnd = a.start - 1
        acked = a.start - 1
        lastHeardNs = JournalPipeline.nanos()
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { readBuffer.deallocate() }

    var hasOutput: Bool { out.count > outSent }

    private var heartbeatNs: UInt64 { hub.config.replTimeoutMs * 1_000_000 / 4 }

    /// Sends what the journal has written beyond `sentEnd` (as far as the queue allows), or a heartbeat.
    func pump() {
        guard !closed else { return }
        let now = JournalPipeline.nanos()
        if now &- lastHeardNs > hub.config.replTimeoutMs * 1_000_000 {
            return close(reason: "nothing heard for \(hub.config.replTimeoutMs) ms")
        }
        // `written` first: its end was published before it (JournalPipeline.publishWritten).
        let written = hub.journal.written.load(ordering: .acquiring)
        let end = hub.journal.writtenEnd()
        live = false
        while out.count - outSent < hub.config.replQueueBytes && sentEnd < written {
            guard let n = readRound(written: written, end: end) else { return }
            if n == 0 { break }
        }
        live = sentEnd >= written
        if !hasOutput && now &- lastSentNs > heartbeatNs { appendRound(count: 0) }
        flush()
    }

    /// One round from the segment files; nil when the link failed.
    private func readRound(written: UInt64, end: SyncedEnd) -> Int? {
        scratch.reset()
        var n = 0
        var last = sentEnd
        do {
            // The segment's own bytes, checked (length, checksum) but not decoded: the standby
            // decodes them anyway, and decoding and encoding each record here was most of this thread.
            _ = try reader.readRaw(durable: written, synced: end, limit: Self.roundRecords,
                                   maxBytes: Self.roundPayloadBytes) { frame in
                scratch.append(frame)
                last = RecordCodec.seq(ofFrame: frame)
                n += 1
            }
        } catch {
            close(reason: "cannot read the journal from seq \(sentEnd + 1): \(error)")
            return nil
        }
        guard n > 0 else { return 0 }
        precondition(last == sentEnd + UInt64(n), "rounds are sent gap-free in seq order")
        sentEnd = last
        appendRound(count: n)
        // Thinned from the second entry on: the first stays the oldest unacked round (`oldestUnackedNs`).
        if unacked.count == Self.sentRoundsKept { unacked.removeSubrange(1...(Self.sentRoundsKept / 2)) }
        unacked.append((last, lastSentNs))
        hub.roundsSent.wrappingIncrement(ordering: .relaxed)
        hub.recordsSent.wrappingIncrement(by: UInt64(n), ordering: .relaxed)
        return n
    }

    private func appendRound(count: Int) {
        precondition(count <= Int(UInt16.max))
        let start = out.beginFrame(opcode: Opcode.replRound.rawValue, requestID: requestID, response: true)
        ResponseCodec.encodeRoundHeader(epoch: hub.epoch, end: sentEnd, count: UInt16(count), into: &out)
        if count > 0 { scratch.withUnsafeBytes { out.writeBytes($0) } }
        out.endFrame(start)
        lastSentNs = JournalPipeline.nanos()
    }

    /// The socket is readable or writable (or failed).
    func onReady() {
        guard !closed else { return }
        while true {
            let n = recv(fd, readBuffer.baseAddress, readBuffer.count, Int32(MSG_DONTWAIT))
            if n > 0 {
                takeInput(UnsafeRawBufferPointer(rebasing: readBuffer[0..<n]))
                if closed { return }
                continue
            }
            if n == 0 { return close(reason: "the standby closed the connection") }
            if errno == EAGAIN || errno == EWOULDBLOCK { break }
            if errno == EINTR { continue }
            return close(reason: "read failed: \(String(cString: strerror(errno)))")
        }
        flush()
    }

    /// Acks from the standby (the only frames it may send).
    func takeInput(_ bytes: UnsafeRawBufferPointer) {
        input.append(contentsOf: bytes)
        var used = 0
        while !closed {
            let parsed = input.withUnsafeBytes { b in
                FrameParser.parse(UnsafeRawBufferPointer(rebasing: b[used...]), maxFrame: Limits.maxFrameFloor)
            }
            guard case .frame(let header, let range) = parsed else {
                if parsed != .needMore { refuse(FrameHeader(opcode: 0, requestID: 0, payloadLength: 0), "a broken frame") }
                break
            }
            input.withUnsafeBytes { b in
                onFrame(header, UnsafeRawBufferPointer(rebasing: b[(used + range.lowerBound)..<(used + range.upperBound)]))
            }
            used += header.payloadLength + Limits.headerSize
        }
        input.removeFirst(min(used, input.count))
    }

    private func onFrame(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer) {
        guard header.opcode == Opcode.replAck.rawValue, !header.isResponse,
              case .replAck(let ack)? = try? RequestCodec.decode(header: header, payload: payload) else {
            return refuse(header, "a frame other than REPL_ACK")
        }
        guard ack.epoch == hub.epoch else { return refuse(header, "an ack of epoch \(ack.epoch)") }
        guard ack.durable >= acked, ack.durable <= sentEnd else {
            return refuse(header, "ack \(ack.durable) outside \(acked)...\(sentEnd)")
        }
        lastHeardNs = JournalPipeline.nanos()
        guard ack.durable > acked || !hub.gate.isWaitingFor(node) else { return }
        acked = ack.durable
        noteAckLatency(now: lastHeardNs)
        hub.gate.ack(node, durable: acked)
        let committed = hub.journal.durable.load(ordering: .acquiring)
        if acked >= committed || (live && committed - acked <= Self.catchUpSlack), hub.gate.admit(node) {
            hub.logger.notice("replication: standby \(node) caught up at seq \(acked): commits now wait for it")
        }
        hub.journal.advanceCommitted()
    }

    /// The newest round this ack covers: its send-to-ack time.
    private func noteAckLatency(now: UInt64) {
        var covered: UInt64?
        while let first = unacked.first, first.end <= acked {
            covered = first.sentNs
            unacked.removeFirst()
        }
        if let sent = covered { hub.recordAck(latencyNs: now &- sent) }
    }

    /// A protocol violation: MALFORMED, then the link ends.
    private func refuse(_ header: FrameHeader, _ what: String) {
        let start = out.beginFrame(opcode: header.opcode, requestID: header.requestID, response: true,
                                   status: Status.malformed.rawValue)
        out.endFrame(start)
        flush()
        close(reason: "it sent \(what)")
    }

    private func flush() {
        while hasOutput && !closed {
            let n = out.withUnsafeBytes { b in
                send(fd, b.baseAddress! + outSent, b.count - outSent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n > 0 {
                outSent += n
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                break
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return close(reason: "write failed: \(String(cString: strerror(errno)))")
            }
        }
        if outSent == out.count {
            out.removeAll()
            outSent = 0
        }
    }

    func close(reason: String) {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
        hub.logger.warning("replication: standby \(node) disconnected at ack \(acked): \(reason)")
    }
}
