import AsyncHTTPClient
import Glibc
import StockClient
import Synchronization

/// One run: open the state dir, subscribe, then feed reader → per-SKU
/// lanes → workers posting to the receiver, with the watermark persisted
/// every 100 ms and at exit.
struct Runner: Sendable {
    /// The feed's client: one node, or (with several `--server` addresses) every node of a cluster,
    /// the feed following the primary across a failover (offsets are the same on every node).
    static func makeClient(_ config: Config) -> StockClient {
        guard !config.otherEndpoints.isEmpty else {
            return StockClient(host: config.host, port: config.port, connections: 1, credential: config.credential,
                               timeout: .seconds(5), clientName: "stock-hooks")
        }
        // The addresses were checked when the flags were parsed; a credential too long for a
        // Configuration gets the single-node client, which cuts it as it always did (the server refuses it).
        if var c = try? StockClient.Configuration(host: config.host, port: config.port, credential: config.credential,
                                                  clientName: "stock-hooks") {
            c.otherEndpoints = config.otherEndpoints
            if let client = try? StockClient(configuration: c) { return client }
        }
        return StockClient(host: config.host, port: config.port, connections: 1, credential: config.credential,
                           timeout: .seconds(5), clientName: "stock-hooks")
    }

    let config: Config

    /// Persist the watermark at most this often while running.
    static let persistEveryMs = 100

    /// Returns the exit code.
    func run() async -> Int32 {
        let control = Control()
        let pipelineHandle = PipelineHandle()
        let signals = SignalWatcher(
            onFirst: { sig in
                control.stop(exitCode: 0, reason: "\(sig == SIGINT ? "SIGINT" : "SIGTERM"): stopping (finishing requests in flight)")
            },
            onSecond: {
                logLine("second signal: cancelling requests in flight")
                pipelineHandle.cancel()
            })
        defer { signals.cancel() }

        let state: StateDir
        let persisted: UInt64?
        do throws(HooksError) {
            state = try StateDir(path: config.stateDir)
            persisted = try state.readOffset()
        } catch {
            logLine("error: \(error)")
            return 1
        }

        let client = Self.makeClient(config)
        defer { client.close() }
        let position = persisted.map { FeedPosition.offset($0 + 1) } ?? config.from
        let feed: EventFeed
        switch await openFeed(client, from: position, control: control) {
        case .opened(let f): feed = f
        case .stopped: return control.exitCode
        case .failed(let message):
            logLine("error: \(message)")
            return 1
        }
        control.onStop { feed.close() }

        // Everything at or below `initial` is handled: the persisted offset,
        // or (first run) whatever lies before where the feed starts.
        let initial = persisted ?? (max(feed.start, 1) - 1)
        let watermark = Watermark(initial: initial)
        do throws(HooksError) {
            try state.writeOffset(initial)  // a restart resumes here instead of resolving --from again
        } catch {
            logLine("error: \(error)")
            return 1
        }
        logLine("forwarding \(config.kinds.map(\.name).sorted().joined(separator: ","))"
                + (config.skuPrefix.isEmpty ? "" : " sku \(config.skuPrefix)*")
                + " from stockd \(config.host):\(config.port) offset \(initial + 1) (feed end \(feed.end))"
                + " to \(config.url); concurrency \(config.concurrency), state \(config.stateDir)")
        if config.untilCaughtUp && initial >= feed.end {
            control.stop(exitCode: 0, reason: "caught up: nothing after offset \(initial)")
        }

        var httpConfig = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .milliseconds(Int64(min(config.timeoutMs, 10_000))),
                           read: .milliseconds(Int64(config.timeoutMs))),
            connectionPool: .init(idleTimeout: .seconds(60),
                                  concurrentHTTP1ConnectionsPerHostSoftLimit: config.concurrency),
            decompression: .disabled)
        httpConfig.httpVersion = .http1Only
        // A refused connection fails the attempt at once (our backoff and logs take over) instead of
        // AsyncHTTPClient retrying the connect silently until the request's deadline.
        httpConfig.connectionPool.retryConnectionEstablishment = false
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: httpConfig)
        let deliverer = Deliverer(http: http, url: config.url, signer: Signer(secret: config.secret),
                                  timeoutMs: config.timeoutMs, policy: config.retry, state: state, control: control)
        let dispatcher = Dispatcher(capacity: config.maxBuffered)
        control.onStop { dispatcher.stop() }

        let pipeline = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await readFeed(feed, dispatcher, watermark, control) }
                for _ in 0..<config.concurrency {
                    group.addTask { await work(dispatcher, deliverer, watermark, control) }
                }
            }
        }
        pipelineHandle.set(pipeline)
        let persister = Task { await persist(state, watermark, control, target: config.untilCaughtUp ? feed.end : nil) }

        await control.waitUntilStopping()
        // Requests in flight finish within their timeout; retries stop at once.
        if !(await finishes(pipeline, withinMs: config.timeoutMs + 2000)) {
            logLine("requests still in flight after \(config.timeoutMs + 2000)ms: cancelling them")
            pipeline.cancel()
            await pipeline.value
        }
        persister.cancel()
        await persister.value
        var code = control.exitCode
        let final = watermark.value
        do throws(HooksError) {
            try state.writeOffset(final)
        } catch {
            logLine("error: \(error)")
            code = 1
        }
        do {
            try await http.shutdown()
        } catch {
            logLine("HTTP client shutdown: \(error)")
        }
        let (delivered, dead) = watermark.counts
        logLine("stopped at offset \(final): \(delivered) delivered, \(dead) dead-lettered")
        return code
    }

    private enum FeedOpen {
        case opened(EventFeed)
        case stopped
        case failed(String)
    }

    /// Subscribes; an unreachable or restarting stockd is retried (one log
    /// line per attempt, backoff 200 ms doubling to 5 s) until a stop.
    private func openFeed(_ client: StockClient, from: FeedPosition, control: Control) async -> FeedOpen {
        let filter = EventFilter(kinds: config.kinds, skuPrefix: config.skuPrefix, includeProgress: true)
        let credit = min(1024, config.maxBuffered)
        var delayMs = 200
        while true {
            if control.isStopping { return .stopped }
            do throws(StockError) {
                let address = "\(config.host):\(config.port)"
                return .opened(try await client.events(from: from, filter: filter, credit: credit, resume: true) {
                    error, offset in logLine("stockd at \(address): \(error); resuming the feed at offset \(offset)")
                })
            } catch {
                let address = "\(config.host):\(config.port)"
                switch error {
                case .unreachable, .connectionLost, .timeout, .rejected(.shuttingDown), .rejected(.busy),
                     .rejected(.atCapacity), .rejected(.rateLimited):
                    logLine("stockd at \(address): \(error); retrying in \(delayMs)ms")
                case .offsetCompacted(let oldest):
                    return .failed("stockd at \(address) no longer holds offset \(Self.describe(from)) (oldest held: \(oldest));"
                                   + " events in between are lost to this state dir. Remove \(config.stateDir)/offset"
                                   + " and start with --from oldest to go on from what remains")
                case .invalidArgument:
                    return .failed("stockd at \(address) refused to start the feed at \(Self.describe(from)):"
                                   + " beyond its last offset (a state dir from another stockd or data dir?)")
                case .feedUnavailable:
                    return .failed("stockd at \(address) has no event feed (it runs with --sync none)")
                case .rejected(.unknownOpcode):
                    return .failed("stockd at \(address) does not know SUBSCRIBE (an older stockd without the event feed)")
                default:
                    return .failed("stockd at \(address) refused the feed: \(error)")
                }
            }
            guard await control.sleep(ms: delayMs) else { return .stopped }
            delayMs = min(delayMs * 2, 5000)
        }
    }

    private static func describe(_ p: FeedPosition) -> String {
        switch p {
        case .oldest: "oldest"
        case .now: "now"
        case .offset(let o): String(o)
        }
    }
}

/// The feed reader: buffers matching events in the lanes (waiting while
/// the buffer is full, which pauses the feed), and hands progress markers
/// to the watermark.
private func readFeed(_ feed: EventFeed, _ dispatcher: Dispatcher, _ watermark: Watermark, _ control: Control) async {
    var last: UInt64 = 0
    do throws(StockError) {
        for try await event in feed {
            if control.isStopping { return }
            // Offsets only grow on a feed; anything else would break the watermark, so it is skipped.
            guard event.offset > last else {
                logLine("ignoring event \(event.offset) from the feed: not after \(last)")
                continue
            }
            last = event.offset
            // term_started is never posted (Config.forwardableKinds), but the server sends it when
            // the subscription asks for every kind: its offset is handled like a filtered one.
            if event.kind == .progress || event.kind == .termStarted {
                watermark.saw(event.offset)
                continue
            }
            guard await dispatcher.waitForSpace() else { return }
            watermark.register(event.offset)
            dispatcher.add(Job(offset: event.offset, lane: event.sku.string, kind: event.kind.name,
                               body: EventJSON.body(event)))
        }
        if !control.isStopping { control.stop(exitCode: 1, reason: "error: the event feed ended") }
    } catch {
        control.stop(exitCode: 1, reason: "error: the event feed failed: \(error)")
    }
}

/// A worker: one job at a time from the dispatcher, until it stops.
private func work(_ dispatcher: Dispatcher, _ deliverer: Deliverer, _ watermark: Watermark, _ control: Control) async {
    while let job = await dispatcher.next() {
        switch await deliverer.deliver(job) {
        case .delivered: watermark.complete(job.offset, deadLettered: false)
        case .deadLettered: watermark.complete(job.offset, deadLettered: true)
        case .abandoned: break
        case .failed(let error): control.stop(exitCode: 1, reason: "error: \(error)")
        }
        dispatcher.finish(job)
    }
}

/// Persists the watermark every `persistEveryMs` while it moves; with a
/// `target`, stops the run once the watermark reaches it.
private func persist(_ state: StateDir, _ watermark: Watermark, _ control: Control, target: UInt64?) async {
    var lastWriteNs: UInt64 = 0
    let tickMs = target == nil ? Runner.persistEveryMs : 20  // caught-up checks are quicker
    while !Task.isCancelled {
        try? await Task.sleep(for: .milliseconds(tickMs))
        let value = watermark.value
        if let target, value >= target, !control.isStopping {
            control.stop(exitCode: 0, reason: "caught up: every event up to offset \(target) handled")
        }
        let now = monotonicNs()
        if now - lastWriteNs >= UInt64(Runner.persistEveryMs) * 1_000_000 {
            lastWriteNs = now
            do throws(HooksError) {
                try state.writeOffset(value)
            } catch {
                control.stop(exitCode: 1, reason: "error: \(error)")
            }
        }
    }
}

/// Whether `task` ends within `ms` (polled: awaiting an unstructured
/// task's value cannot itself be abandoned).
private func finishes(_ task: Task<Void, Never>, withinMs ms: Int) async -> Bool {
    let done = Mutex(false)
    Task {
        await task.value
        done.withLock { $0 = true }
    }
    let deadline = monotonicNs() + UInt64(ms) * 1_000_000
    while !done.withLock({ $0 }) {
        if monotonicNs() >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return true
}

/// The pipeline task, for a second signal to cancel.
final class PipelineHandle: Sendable {
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let cancelled = Mutex(false)

    func set(_ t: Task<Void, Never>) {
        task.withLock { $0 = t }
        if cancelled.withLock({ $0 }) { t.cancel() }
    }

    func cancel() {
        cancelled.withLock { $0 = true }
        task.withLock { $0 }?.cancel()
    }
}
