import Logging
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
    /// retried (backoff with full jitter, `EventFeed.resumeBackoff`) and the
    /// feed continues after the last offset handed out: nothing is missed,
    /// nothing repeated. Failures the server states (`offsetCompacted`,
    /// `feedUnavailable`, a rejected credential) end the sequence with that error.
    ///
    /// `onInterruption` hears each drop the feed resumes from (the error, and
    /// the offset it resumes at), e.g. to log it; it runs on the iterating task.
    /// Connecting and subscribing run on the feed's own I/O thread, never
    /// blocking the caller's executor; opening takes at most the
    /// configuration's `callTimeout`.
    ///
    /// Cancelling the iterating task ends a waiting `next()` at once with
    /// `cancelled`; `shutdown()` ends every feed (`next()` returns nil).
    ///
    /// - Throws: `offsetCompacted` (the offsets asked for are gone),
    ///   `feedUnavailable` (the server keeps no journal), `invalidArgument`
    ///   (`credit` outside 1...`Limits.maxFeedCredit`, a bad SKU prefix, or a
    ///   `from` beyond the feed's end), `rejected(.busy)` (too many
    ///   subscribers), `rejected(.authFailed)`, `rejected(.forbidden)`,
    ///   `unreachable`, `timeout`, `connectionLost`, `cancelled`, `closed`
    ///   (after `shutdown()`), `protocolError`. Iterating throws the same
    ///   server-stated errors, and with `resume: false` `connectionLost` and
    ///   `rejected(.shuttingDown)` too.
    public func events(from position: FeedPosition = .now, filter: EventFilter = .all, credit: Int = 4096,
                       resume: Bool = true, onInterruption: (@Sendable (StockError, UInt64) -> Void)? = nil)
        async throws(StockError) -> EventFeed
    {
        guard credit >= 1, credit <= Int(Limits.maxFeedCredit) else { throw .invalidArgument }
        guard let prefix = ShortBytes(filter.skuPrefix), prefix.withUnsafeBytes({ ShortBytes.isValidText($0) }) else { throw .invalidArgument }
        let subscribe = Subscribe(from: position.wire, credit: UInt32(credit), kinds: filter.mask, skuPrefix: prefix)
        let session = try await openFollowingPrimary(subscribe)
        return EventFeed(client: self, session: session, subscribe: subscribe, includeProgress: filter.includeProgress,
                         resume: resume, onInterruption: onInterruption)
    }

    /// SUBSCRIBE where the primary is: a standby's NOT_PRIMARY moves the route (FeedSession), a node
    /// that cannot be reached the next configured one; each endpoint is tried at most twice.
    private func openFollowingPrimary(_ subscribe: Subscribe) async throws(StockError) -> FeedSession {
        var tries = 0
        while true {
            tries += 1
            do { return try await FeedSession.open(client: self, subscribe: subscribe) } catch {
                let endpoints = route.with { $0.endpoints.count }
                guard tries < 2 * endpoints + 1 else { throw error }
                if error == .rejected(.notPrimary) { continue }
                guard case .unreachable = error, endpoints > 1 else { throw error }
                route.with { $0.rotate() }
            }
        }
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

    /// Ends the feed; a waiting `next()` returns nil. Throws nothing.
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

    /// Waits between resubscriptions of an interrupted feed (full jitter).
    public static let resumeBackoff = StockClient.Configuration.Backoff(base: .milliseconds(100), cap: .seconds(2))

    func next() async throws(StockError) -> FeedEvent? {
        while true {
            let (s, isClosed) = lock.with { (session, closed) }
            if isClosed { return nil }
            if Task.isCancelled { throw .cancelled }
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
            guard try await resubscribe() else { return nil }
        }
    }

    /// Subscribes again after the last offset handed out (or where the first
    /// subscription started), with backoff; false once the feed or the client was closed.
    private func resubscribe() async throws(StockError) -> Bool {
        var failures = 0
        while true {
            if lock.with({ closed }) { return false }
            failures += 1
            let waitNs = Self.resumeBackoff.waitNs(afterFailures: failures)
            var again = subscribe
            let from = lock.with { delivered }
            again.from = from > 0 ? from + 1 : start
            client.logger.info("stockd.client: event feed interrupted; resubscribing", metadata: [
                "stockd.from": "\(again.from)", "stockd.backoff_ms": "\(waitNs / 1_000_000)",
                "stockd.failures": "\(failures)",
            ])
            do { try await Task.sleep(nanoseconds: waitNs) } catch { throw .cancelled }
            do {
                let fresh = try await FeedSession.open(client: client, subscribe: again)
                let stillOpen = lock.with { () -> Bool in
                    guard !closed else { return false }
                    session = fresh
                    return true
                }
                if !stillOpen { fresh.close() }
                return stillOpen
            } catch {
                if error == .closed && client.isShutDown { return false }
                // A replicated cluster: a standby named the primary (the Route moved), or this node is gone
                // (the next configured one). Offsets are the same on every node: resume there.
                if error == .rejected(.notPrimary) { continue }
                guard error == .connectionLost || error == .rejected(.shuttingDown) || isUnreachable(error) else {
                    throw error
                }
                if case .unreachable = error { client.route.with { $0.rotate() } }
            }
        }
    }

    private func isUnreachable(_ e: StockError) -> Bool {
        if case .unreachable = e { return true }
        return e == .timeout
    }
}

