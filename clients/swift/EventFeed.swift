import Glibc
import StockProtocol

/// Where an event feed starts.
public enum FeedPosition: Sendable, Equatable {
    /// The oldest event the server still holds.
    case oldest
    /// Only events after the feed's current end.
    case now
    /// This offset and everything after it (resume with last handled + 1).
    case offset(UInt64)

    var wire: UInt64 {
        switch self {
        case .oldest: Limits.feedFromOldest
        case .now: Limits.feedFromNow
        case .offset(let o): o
        }
    }
}

/// Which events a feed carries.
public struct EventFilter: Sendable, Equatable {
    /// Kinds wanted; empty = every kind.
    public var kinds: Set<EventKind>
    /// Only events whose SKU starts with this; empty = every SKU.
    public var skuPrefix: String
    /// Whether progress markers (`EventKind.progress`) are handed to the
    /// consumer too (they always advance `EventFeed.position`).
    public var includeProgress: Bool

    public init(kinds: Set<EventKind> = [], skuPrefix: String = "", includeProgress: Bool = false) {
        self.kinds = kinds
        self.skuPrefix = skuPrefix
        self.includeProgress = includeProgress
    }

    public static let all = EventFilter()

    var mask: UInt16 { kinds.reduce(0) { $1 == .progress ? $0 : $0 | $1.bit } }
}

extension StockClient {
    /// Subscribes to the event feed on a connection of its own and returns
    /// it as an `AsyncSequence` of events in offset order.
    ///
    /// Flow control follows the consumer: the server may send `credit`
    /// events beyond what the loop has taken, and more credit is granted as
    /// events are taken, so a slow consumer slows only its own feed. With
    /// `resume` (the default), a dropped connection or a restarting server is
    /// retried (backoff 100 ms doubling to 2 s) and the feed continues after
    /// the last offset handed out: nothing is missed, nothing repeated.
    /// Failures the server states (`offsetCompacted`, `feedUnavailable`,
    /// a rejected credential) end the sequence with that error.
    ///
    /// `onInterruption` hears each drop the feed resumes from (the error, and
    /// the offset it resumes at), e.g. to log it; it runs on the iterating task.
    /// Connecting and subscribing run on a thread of their own, never
    /// blocking the caller's executor.
    public func events(from position: FeedPosition = .now, filter: EventFilter = .all, credit: Int = 4096,
                       resume: Bool = true, onInterruption: (@Sendable (StockError, UInt64) -> Void)? = nil)
        async throws(StockError) -> EventFeed
    {
        guard credit >= 1, credit <= Int(Limits.maxFeedCredit) else { throw .invalidArgument }
        guard let prefix = ShortBytes(filter.skuPrefix), prefix.withUnsafeBytes({ ShortBytes.isValidText($0) }) else { throw .invalidArgument }
        let subscribe = Subscribe(from: position.wire, credit: UInt32(credit), kinds: filter.mask, skuPrefix: prefix)
        let session = try await FeedSession.openOffThread(client: self, subscribe: subscribe)
        return EventFeed(client: self, session: session, subscribe: subscribe, includeProgress: filter.includeProgress,
                         resume: resume, onInterruption: onInterruption)
    }
}

/// A running subscription (see `StockClient.events`). Iterate it once, from
/// one task; `close()` ends it from anywhere.
public final class EventFeed: AsyncSequence, @unchecked Sendable {
    public typealias Element = FeedEvent
    public typealias Failure = StockError

    /// The first offset the feed could carry, as the server resolved it.
    public let start: UInt64
    /// The feed's last offset when it was opened: a consumer that wants
    /// "everything so far" stops once `position >= end`.
    public let end: UInt64

    private let client: StockClient
    private let subscribe: Subscribe
    private let includeProgress: Bool
    private let resume: Bool
    private let onInterruption: (@Sendable (StockError, UInt64) -> Void)?
    private let lock = Mutex()
    private var session: FeedSession
    private var delivered: UInt64 = 0
    private var closed = false

    init(client: StockClient, session: FeedSession, subscribe: Subscribe, includeProgress: Bool, resume: Bool,
         onInterruption: (@Sendable (StockError, UInt64) -> Void)?) {
        self.client = client
        self.onInterruption = onInterruption
        self.session = session
        self.subscribe = subscribe
        self.includeProgress = includeProgress
        self.resume = resume
        start = session.started.start
        end = session.started.end
    }

    deinit { session.close() }

    /// Every offset at or below this has been handed out (or skipped as
    /// filtered out); 0 before the first. What a consumer persists.
    public var position: UInt64 { lock.with { delivered } }

    /// Ends the feed; a waiting `next()` returns nil.
    public func close() {
        let s: FeedSession = lock.with {
            closed = true
            return session
        }
        s.close()
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let feed: EventFeed
        public mutating func next() async throws(StockError) -> FeedEvent? { try await feed.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(feed: self) }

    func next() async throws(StockError) -> FeedEvent? {
        var backoffMs = 100
        while true {
            let (s, isClosed) = lock.with { (session, closed) }
            if isClosed { return nil }
            do {
                guard let e = try await s.take() else { return nil }
                lock.with { delivered = Swift.max(delivered, e.offset) }
                if e.kind == .progress && !includeProgress { continue }
                return e
            } catch {
                guard resume, error == .connectionLost || error == .rejected(.shuttingDown) else { throw error }
                let from = lock.with { delivered }
                onInterruption?(error, from > 0 ? from + 1 : start)
            }
            // Resume after the last offset handed out (or where the first subscription started).
            while true {
                if lock.with({ closed }) { return nil }
                try? await Task.sleep(for: .milliseconds(backoffMs))
                backoffMs = Swift.min(backoffMs * 2, 2000)
                var again = subscribe
                let from = lock.with { delivered }
                again.from = from > 0 ? from + 1 : start
                do {
                    let fresh = try await FeedSession.openOffThread(client: client, subscribe: again)
                    let stillOpen = lock.with { () -> Bool in
                        guard !closed else { return false }
                        session = fresh
                        return true
                    }
                    guard stillOpen else {
                        fresh.close()
                        return nil
                    }
                    backoffMs = 100
                    break
                } catch {
                    guard error == .connectionLost || error == .rejected(.shuttingDown) || isUnreachable(error) else {
                        throw error
                    }
                }
            }
        }
    }

    private func isUnreachable(_ e: StockError) -> Bool {
        if case .unreachable = e { return true }
        return e == .timeout
    }
}

/// One feed connection: HELLO and SUBSCRIBE, then a reader thread that
/// queues events for `take()` and grants credit as they are taken.
final class FeedSession: @unchecked Sendable {
    let fd: Int32
    let started: FeedStart
    private let requestID: UInt32 = 2
    private let grantEvery: UInt32
    private let lock = Mutex()
    private var queue: [FeedEvent] = []
    private var head = 0
    private var waiter: CheckedContinuation<FeedEvent?, any Error>?
    private var ended: StockError?
    private var userClosed = false
    private var takenSinceGrant: UInt32 = 0

    private init(fd: Int32, started: FeedStart, credit: UInt32) {
        self.fd = fd
        self.started = started
        grantEvery = max(1, credit / 2)
    }

    deinit { Glibc.close(fd) }

    /// `open` on a thread of its own (it blocks for up to the client's timeout).
    static func openOffThread(client: StockClient, subscribe: Subscribe) async throws(StockError) -> FeedSession {
        let result: Result<FeedSession, StockError> = await withCheckedContinuation { k in
            let job = Unmanaged.passRetained(OpenJob {
                do throws(StockError) { k.resume(returning: .success(try open(client: client, subscribe: subscribe))) } catch {
                    k.resume(returning: .failure(error))
                }
            }).toOpaque()
            var thread = pthread_t()
            if pthread_create(&thread, nil, { arg in
                Unmanaged<OpenJob>.fromOpaque(arg!).takeRetainedValue().body()
                return nil
            }, job) == 0 {
                pthread_detach(thread)
            } else {
                Unmanaged<OpenJob>.fromOpaque(job).takeRetainedValue().body()  // no thread: here, then
            }
        }
        return try result.get()
    }

    /// Connects, says HELLO, subscribes (bounded by the client's timeout).
    static func open(client: StockClient, subscribe: Subscribe) throws(StockError) -> FeedSession {
        let timeoutMs = Int(client.timeoutNs / 1_000_000)
        let fd = try Socket.connect(host: client.host, port: client.port, timeoutMs: timeoutMs)
        var w = ByteWriter(capacity: 512)
        RequestCodec.encode(.hello(Hello(clientName: client.clientName, credential: client.credential)),
                            requestID: 1, into: &w)
        RequestCodec.encode(.subscribe(subscribe), requestID: 2, into: &w)
        guard w.withUnsafeBytes({ Socket.sendAll(fd, $0) }) else {
            Glibc.close(fd)
            throw .connectionLost
        }
        var decoder = FrameDecoder(maxFrame: Limits.maxFrameCeiling)
        Socket.setReceiveTimeout(fd, ms: 50)
        let deadline = Socket.nowNs() + client.timeoutNs
        var answers: [Response] = []
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        do throws(StockError) {
            while answers.count < 2 {
                if let r = try nextResponse(&decoder) {
                    if r.requestID == 0, case .failure(let s, let d) = r.body { throw StockError(status: s, detail: d) }
                    answers.append(r)
                    if case .failure(let s, let d) = r.body { throw StockError(status: s, detail: d) }
                    continue
                }
                guard Socket.nowNs() < deadline else { throw .timeout }
                let n = recv(fd, buffer, 64 * 1024, 0)
                if n > 0 {
                    decoder.feed(UnsafeRawBufferPointer(start: buffer, count: n))
                } else if !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                    throw .connectionLost
                }
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        guard case .subscribed(let started) = answers[1].body else {
            Glibc.close(fd)
            throw .protocolError("SUBSCRIBE answered with \(answers[1].body)")
        }
        let session = FeedSession(fd: fd, started: started, credit: subscribe.credit)
        session.startReader(decoder)
        return session
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

    private func startReader(_ decoder: FrameDecoder) {
        let box = Unmanaged.passRetained(ReaderStart(session: self, decoder: decoder)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            let start = Unmanaged<ReaderStart>.fromOpaque(arg!).takeRetainedValue()
            start.session.readLoop(start.decoder)
            return nil
        }, box)
        if rc == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<ReaderStart>.fromOpaque(box).release()
            finish(.connectionLost)
        }
    }

    /// The next event, waiting for it; nil once closed by the user.
    func take() async throws(StockError) -> FeedEvent? {
        do {
            let e: FeedEvent? = try await withCheckedThrowingContinuation { (k: CheckedContinuation<FeedEvent?, any Error>) in
                let ready: Result<FeedEvent?, StockError>? = lock.with {
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
                    if let ended { return .failure(ended) }
                    waiter = k
                    return nil
                }
                switch ready {
                case .success(let e): k.resume(returning: e)
                case .failure(let err): k.resume(throwing: err)
                case nil: break
                }
            }
            if let e, e.kind != .progress { grantIfDue() }
            return e
        } catch let e as StockError {
            throw e
        } catch {
            throw .protocolError("\(error)")
        }
    }

    /// Grants credit for the events taken since the last grant, in batches.
    private func grantIfDue() {
        let grant: UInt32 = lock.with {
            takenSinceGrant += 1
            guard takenSinceGrant >= grantEvery else { return 0 }
            defer { takenSinceGrant = 0 }
            return takenSinceGrant
        }
        guard grant > 0 else { return }
        var w = ByteWriter(capacity: 16)
        RequestCodec.encode(.credit(grant), requestID: requestID, into: &w)
        _ = w.withUnsafeBytes { Socket.sendAll(fd, $0) }  // a failure shows up as EOF on the reader
    }

    func close() {
        let k: CheckedContinuation<FeedEvent?, any Error>? = lock.with {
            userClosed = true
            defer { waiter = nil }
            return waiter
        }
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        k?.resume(returning: nil)
    }

    private func readLoop(_ start: FrameDecoder) {
        var decoder = start
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        Socket.setReceiveTimeout(fd, ms: 200)
        do throws(StockError) {
            while true {
                while let r = try Self.nextResponse(&decoder) {
                    switch r.body {
                    case .event(let e): push(e)
                    case .failure(let s, let d): throw StockError(status: s, detail: d)
                    default: throw .protocolError("unexpected frame on a feed: opcode \(r.opcode)")
                    }
                }
                let n = recv(fd, buffer, 64 * 1024, 0)
                if n > 0 {
                    decoder.feed(UnsafeRawBufferPointer(start: buffer, count: n))
                } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    if lock.with({ userClosed }) { throw .closed }
                } else {
                    throw .connectionLost
                }
            }
        } catch {
            finish(error)
        }
    }

    /// Queues an event (a progress marker replaces a progress marker still
    /// queued, so markers cannot pile up behind a slow consumer).
    private func push(_ e: FeedEvent) {
        let k: CheckedContinuation<FeedEvent?, any Error>? = lock.with {
            if let w = waiter {
                waiter = nil
                return w
            }
            if e.kind == .progress, head < queue.count, queue[queue.count - 1].kind == .progress {
                queue[queue.count - 1] = e
            } else {
                queue.append(e)
            }
            return nil
        }
        k?.resume(returning: e)
    }

    private func finish(_ error: StockError) {
        let k: CheckedContinuation<FeedEvent?, any Error>? = lock.with {
            ended = error
            defer { waiter = nil }
            return waiter
        }
        guard let k else { return }
        if error == .closed { k.resume(returning: nil) } else { k.resume(throwing: error) }
    }
}

private final class OpenJob: @unchecked Sendable {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

private final class ReaderStart: @unchecked Sendable {
    let session: FeedSession
    let decoder: FrameDecoder
    init(session: FeedSession, decoder: FrameDecoder) {
        self.session = session
        self.decoder = decoder
    }
}
