import Atomics
import Glibc
import Logging
import StockJournal
import StockProtocol

/// A standby's replication client (docs/replication.md §2 "Standby"): one
/// thread that connects to the primary, says REPL_HELLO, writes the rounds
/// it receives into this node's journal (`ReplicaLog`), fdatasyncs, and acks
/// the durable end. On any failure it closes, waits (`--repl-backoff`,
/// doubling) and says hello again from what it holds; a TRUNCATE_TO answer
/// cuts the journal back first.
///
/// Blocking sockets with poll(2) timeouts on a thread of its own: one
/// connection, and every wait is bounded (`--repl-timeout`).
final class StandbyReceiver: @unchecked Sendable {
    let config: ClusterConfig
    let directory: String
    let primary: String
    let logger: Logger
    /// Cuts the journal back to a seq and reopens it (offline: the log is closed first).
    let truncateAndReopen: (ReplicaLog, UInt64) throws -> ReplicaLog
    private var log: ReplicaLog
    private let stopping = ManagedAtomic<Bool>(false)
    /// The connection's socket (-1: none), under `fdLock`: `stop` shuts it down from another thread.
    private var socketFD: Int32 = -1
    private let fdLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var thread = pthread_t()
    private var started = false
    /// For CLUSTER_STATUS (any thread).
    let durable: ManagedAtomic<UInt64>
    let streaming = ManagedAtomic<Bool>(false)
    /// The epoch of the primary streaming to us (0: none yet).
    let streamEpoch = ManagedAtomic<UInt64>(0)
    /// The journal failed to write: the receiver stopped for good.
    let failed = ManagedAtomic<Bool>(false)
    /// Bytes read and not yet parsed: `input[inputStart...]` (consumed frames are dropped when it empties
    /// or before the next read, never one frame at a time: that moved the rest of the buffer per frame).
    private var input: [UInt8] = []
    private var inputStart = 0
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)
    /// Frames from the primary at most (rounds are far smaller; StandbyLink.roundPayloadBytes).
    static let maxFrame = 1 << 20

    init(config: ClusterConfig, directory: String, primary: String, log: ReplicaLog, logger: Logger,
         truncateAndReopen: @escaping (ReplicaLog, UInt64) throws -> ReplicaLog) {
        self.config = config
        self.directory = directory
        self.primary = primary
        self.log = log
        self.logger = logger
        self.truncateAndReopen = truncateAndReopen
        durable = ManagedAtomic(log.durable)
        pthread_mutex_init(fdLock, nil)
    }

    deinit {
        readBuffer.deallocate()
        pthread_mutex_destroy(fdLock)
        fdLock.deallocate()
    }

    /// Sets the socket (or closes the current one with -1).
    private func setSocket(_ fd: Int32) {
        pthread_mutex_lock(fdLock)
        if fd < 0 && socketFD >= 0 { Glibc.close(socketFD) }
        socketFD = fd
        pthread_mutex_unlock(fdLock)
    }

    func start() {
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            Unmanaged<StandbyReceiver>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(rc == 0, "cannot start the standby receiver thread")
        started = true
    }

    /// Ends the connection, joins the thread and hands the journal back (promotion, a new primary, shutdown).
    func stop() -> ReplicaLog {
        if started {
            stopping.store(true, ordering: .releasing)
            pthread_mutex_lock(fdLock)
            if socketFD >= 0 { shutdown(socketFD, Int32(SHUT_RDWR)) }  // wakes a poll or recv at once
            pthread_mutex_unlock(fdLock)
            pthread_join(thread, nil)
            started = false
        }
        return log
    }

    // MARK: receiver thread

    private func run() {
        var backoff = config.backoffMinMs
        while !stopping.load(ordering: .acquiring) && !failed.load(ordering: .acquiring) {
            let outcome = session()
            streaming.store(false, ordering: .releasing)
            setSocket(-1)
            switch outcome {
            case .again: continue
            case .streamed: backoff = config.backoffMinMs
            case .failed(let why):
                if !stopping.load(ordering: .acquiring) {
                    logger.warning("standby: replication from \(primary) stopped: \(why); retrying in \(backoff) ms")
                }
            }
            sleepUnlessStopping(ms: backoff)
            backoff = min(config.backoffMaxMs, backoff * 2)
        }
    }

    private enum Outcome {
        /// Say hello again at once (after a truncation).
        case again
        /// The stream ran and then ended.
        case streamed
        case failed(String)
    }

    private func session() -> Outcome {
        input.removeAll(keepingCapacity: true)  // nothing of an earlier connection carries over
        inputStart = 0
        do {
            let fd = try ReplicationSocket.connect(to: primary, timeoutMs: config.replTimeoutMs)
            setSocket(fd)
            if stopping.load(ordering: .acquiring) { return .failed("stopping") }
            try authenticate(fd)
            guard let start = try hello(fd) else { return .again }
            streaming.store(true, ordering: .releasing)
            streamEpoch.store(start.epoch, ordering: .releasing)
            logger.info("standby: streaming from \(primary), epoch \(start.epoch), from seq \(start.start)")
            try stream(fd, epoch: start.epoch)
            return .streamed
        } catch let e as ReplicationSocket.Failure {
            return .failed(e.description)
        } catch let e as ReplicaError {
            failed.store(true, ordering: .releasing)
            logger.critical("standby: cannot keep the primary's journal, replication stopped: \(e)")
            return .failed("\(e)")
        } catch {
            return .failed("\(error)")
        }
    }

    private static let helloID: UInt32 = 1
    private static let replHelloID: UInt32 = 2

    private func authenticate(_ fd: Int32) throws {
        let hello = Hello(clientName: Array("stockd standby \(config.nodeID)".utf8), credential: config.credential)
        let answer = try request(fd, .hello(hello), id: Self.helloID)
        guard case .hello = answer.body else { throw ReplicationSocket.Failure("HELLO answered \(answer.status.name)") }
    }

    /// REPL_HELLO; the OK answer, or nil after a truncation (say hello again).
    private func hello(_ fd: Int32) throws -> ReplStart? {
        let highest = try NodeEpoch.read(directory: directory)
        let held = try log.sync()
        let message = ReplHello(fingerprint: config.fingerprint, highestEpoch: highest, lastEpoch: log.lastEpoch,
                                lastSeq: held, node: ShortBytes(config.nodeID)!, cluster: ShortBytes(config.name)!)
        let answer = try request(fd, .replHello(message), id: Self.replHelloID)
        switch answer.body {
        case .replStarted(let start):
            guard start.epoch >= highest, start.start == held + 1 else {
                throw ReplicationSocket.Failure("REPL_HELLO answered epoch \(start.epoch) from seq \(start.start); we hold \(held) and saw epoch \(highest)")
            }
            try NodeEpoch.raise(directory: directory, to: start.epoch)  // before acting on its frames (§3)
            return start
        case .failure(.truncateTo, .truncateTo(let seq)):
            logger.warning("standby: \(primary) says our journal above seq \(seq) was never committed: cutting it")
            do { log = try truncateAndReopen(log, seq) } catch {
                // The old log is closed now: replication cannot go on in this process (a restart
                // recovers the directory and says hello again from what it holds).
                failed.store(true, ordering: .releasing)
                logger.critical("standby: cutting the journal back to seq \(seq) failed, replication stopped; restart this node: \(error)")
                throw ReplicationSocket.Failure("truncation to \(seq) failed: \(error)")
            }
            durable.store(log.durable, ordering: .releasing)
            return nil
        case .failure(let status, let detail):
            throw ReplicationSocket.Failure("REPL_HELLO answered \(status.name) \(detail)")
        default:
            throw ReplicationSocket.Failure("REPL_HELLO answered \(answer.body)")
        }
    }

    /// One request, one answer (the handshake only).
    private func request(_ fd: Int32, _ r: Request, id: UInt32) throws -> Response {
        var w = ByteWriter(capacity: 512)
        RequestCodec.encode(r, requestID: id, into: &w)
        try w.withUnsafeBytes { b in try ReplicationSocket.sendAll(fd, b, timeoutMs: config.replTimeoutMs) }
        while true {
            if let answer = try nextFrame({ header, payload throws -> Response in
                guard header.requestID == id else { throw ReplicationSocket.Failure("an answer to request \(header.requestID)") }
                do throws(Status) { return try ResponseCodec.decode(header: header, payload: payload) } catch {
                    throw ReplicationSocket.Failure("a malformed answer (\(error.name))")
                }
            }) { return answer }
            try receive(fd, timeoutMs: config.replTimeoutMs)
        }
    }

    /// Rounds in, acks out, until the connection ends or `stop`.
    private func stream(_ fd: Int32, epoch: UInt64) throws {
        var lastAcked = log.durable
        while !stopping.load(ordering: .acquiring) {
            try receive(fd, timeoutMs: config.replTimeoutMs)
            var appended = false
            var frames = 0
            while let count = try nextFrame({ header, payload throws -> Int in
                try round(header, payload, epoch: epoch)
            }) {
                appended = appended || count > 0
                frames += 1
            }
            guard frames > 0 else { continue }
            let synced = appended ? try log.sync() : log.durable
            durable.store(synced, ordering: .releasing)
            precondition(synced >= lastAcked, "the durable end went back")
            lastAcked = synced
            try ack(fd, epoch: epoch, durable: synced)
            // The shadow state is applied on the log's own thread (ShadowApplier), off this cycle;
            // a record it refused stops the stream here, within a heartbeat, not at the next round.
            if let refusal = log.refusal { throw refusal }
        }
    }

    /// One REPL_ROUND into the journal; returns its record count.
    private func round(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, epoch: UInt64) throws -> Int {
        guard header.opcode == Opcode.replRound.rawValue, header.isResponse, header.requestID == Self.replHelloID else {
            if header.status != 0, let s = Status(rawValue: header.status) {
                throw ReplicationSocket.Failure("the primary ended the stream: \(s.name)")
            }
            throw ReplicationSocket.Failure("a frame with opcode \(header.opcode) on the stream")
        }
        guard header.status == 0, payload.count >= ReplRound.headerSize else {
            throw ReplicationSocket.Failure("a malformed REPL_ROUND")
        }
        let roundEpoch = UInt64(littleEndian: payload.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let count = Int(UInt16(littleEndian: payload.loadUnaligned(fromByteOffset: 16, as: UInt16.self)))
        guard roundEpoch == epoch else {
            throw ReplicationSocket.Failure("a round of epoch \(roundEpoch) on a stream of epoch \(epoch)")
        }
        if count > 0 {
            try log.append(records: UnsafeRawBufferPointer(rebasing: payload[ReplRound.headerSize...]), count: count)
        }
        return count
    }

    private func ack(_ fd: Int32, epoch: UInt64, durable: UInt64) throws {
        var w = ByteWriter(capacity: 64)
        RequestCodec.encode(.replAck(ReplAck(epoch: epoch, durable: durable)), requestID: Self.replHelloID, into: &w)
        try w.withUnsafeBytes { b in try ReplicationSocket.sendAll(fd, b, timeoutMs: config.replTimeoutMs) }
    }

    /// The next whole frame in `input` through `body`, or nil if none is whole yet.
    private func nextFrame<R>(_ body: (FrameHeader, UnsafeRawBufferPointer) throws -> R) throws -> R? {
        let parsed = input.withUnsafeBytes { FrameParser.parse(UnsafeRawBufferPointer(rebasing: $0[inputStart...]), maxFrame: Self.maxFrame) }
        switch parsed {
        case .needMore: return nil
        case .lengthTooSmall, .tooLarge: throw ReplicationSocket.Failure("a broken frame from the primary")
        case .frame(let header, let range):
            let result = try input.withUnsafeBytes { b in
                try body(header, UnsafeRawBufferPointer(rebasing: b[(inputStart + range.lowerBound)..<(inputStart + range.upperBound)]))
            }
            inputStart += range.upperBound
            if inputStart == input.count {
                input.removeAll(keepingCapacity: true)
                inputStart = 0
            }
            return result
        }
    }

    /// Reads what the socket has (waiting at most `timeoutMs` for the first byte).
    private func receive(_ fd: Int32, timeoutMs: UInt64) throws {
        let n = try ReplicationSocket.receive(fd, into: readBuffer, timeoutMs: timeoutMs)
        if inputStart > 0 {
            input.removeFirst(inputStart)
            inputStart = 0
        }
        input.append(contentsOf: UnsafeRawBufferPointer(rebasing: readBuffer[0..<n]))
    }

    private func sleepUnlessStopping(ms: UInt64) {
        var left = ms
        while left > 0 && !stopping.load(ordering: .acquiring) {
            let step = min(left, 10)
            usleep(UInt32(step * 1000))
            left -= step
        }
    }
}
