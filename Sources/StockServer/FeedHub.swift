import Atomics
import CLibUV
import Glibc
import Logging
import StockJournal
import StockProtocol

/// The event feed's own thread and libuv loop (PROTOCOL.md §9).
///
/// A SUBSCRIBE arrives on a worker's connection like any request; once its
/// answer is out, the worker hands the socket over here (`adopt`) and
/// forgets it. From then on everything about that subscriber — reading the
/// journal's segment files, encoding events, writing them, reading CREDIT —
/// happens on this thread, so a feed costs the reservation loops nothing
/// but one `uv_async_send` per journal round (and only while someone
/// subscribes). The journal thread calls `wake()` after each durable
/// watermark move; a timer (`tickMs`) sends progress markers and heartbeats.
///
/// Limits: `config.maxSubscribers` feeds at once (beyond: BUSY); per
/// subscriber, `config.feedOutputBytes` of unsent frames and the reader's
/// bounded read-ahead (FeedReader).
final class FeedHub: @unchecked Sendable {
    struct Adoption {
        let fd: Int32
        let requestID: UInt32
        let subscribe: Subscribe
        /// The first offset to send (resolved by the worker).
        let start: UInt64
        /// Bytes the client sent after SUBSCRIBE (CREDIT frames).
        let leftover: [UInt8]
    }

    let config: ServerConfig
    let journal: JournalPipeline
    let logger: Logger
    let loop: UnsafeMutablePointer<uv_loop_t>
    private let wakeAsync: UnsafeMutablePointer<uv_async_t>
    private let adoptAsync: UnsafeMutablePointer<uv_async_t>
    private let stopAsync: UnsafeMutablePointer<uv_async_t>
    private let timer: UnsafeMutablePointer<uv_timer_t>
    private let batchTimer: UnsafeMutablePointer<uv_timer_t>
    private let againIdle: UnsafeMutablePointer<uv_idle_t>
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private var adoptions: [Adoption] = []
    private var handlesOpen = false
    private var thread = pthread_t()
    /// The feed thread (claimed first thing on it; see `OwningThread`).
    private let loopThread = OwningThread()
    private var started = false

    // Loop thread only.
    var subscribers: [FeedSubscriber] = []
    private var pumpAgain: [FeedSubscriber] = []
    private var stopping = false
    /// The feed loop's one read buffer (CREDIT frames), bytes.
    static let readBufferSize = 64 * 1024
    /// Progress markers, heartbeats and a pump this often (ms): a missed wake-up costs at most this.
    static let tickMs: UInt64 = 100
    let readBuffer: UnsafeMutablePointer<CChar>

    /// Subscribers open or on their way (`maxSubscribers` bounds it).
    let active = ManagedAtomic<Int>(0)
    // Statistics.
    let eventsSent = ManagedAtomic<UInt64>(0)
    let subscriptionsTotal = ManagedAtomic<UInt64>(0)
    let refusedBusy = ManagedAtomic<UInt64>(0)
    /// Records the slowest open feed is behind the durable watermark,
    /// refreshed every tick (100 ms); 0 without subscribers. A consumer
    /// that stops reading or granting credit shows here first.
    let maxLag = ManagedAtomic<UInt64>(0)

    init(config: ServerConfig, journal: JournalPipeline, logger: Logger) {
        self.config = config
        self.journal = journal
        self.logger = logger
        loop = .allocate(capacity: 1)
        precondition(uv_loop_init(loop) == 0, "uv_loop_init failed")
        wakeAsync = .allocate(capacity: 1)
        adoptAsync = .allocate(capacity: 1)
        stopAsync = .allocate(capacity: 1)
        timer = .allocate(capacity: 1)
        batchTimer = .allocate(capacity: 1)
        againIdle = .allocate(capacity: 1)
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        readBuffer = .allocate(capacity: Self.readBufferSize)
    }

    deinit {
        for p in [UnsafeMutableRawPointer(wakeAsync), UnsafeMutableRawPointer(adoptAsync),
                  UnsafeMutableRawPointer(stopAsync), UnsafeMutableRawPointer(timer), UnsafeMutableRawPointer(batchTimer),
                  UnsafeMutableRawPointer(againIdle)] { p.deallocate() }
        readBuffer.deallocate()
        pthread_mutex_destroy(lock)
        lock.deallocate()
        uv_loop_close(loop)
        loop.deallocate()
    }

    static func from(_ handle: UnsafeMutablePointer<uv_handle_t>) -> FeedHub {
        Unmanaged<FeedHub>.fromOpaque(uv_loop_get_data(handle.pointee.loop)!).takeUnretainedValue()
    }

    private func raw<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_handle_t.self)
    }

    /// Asserts (debug builds only) that the caller runs on the feed thread. Nothing of the loop
    /// side runs before that thread starts: `start` only initialises the handles.
    @inline(__always) func assertInLoop(file: StaticString = #file, line: UInt = #line) {
        assert(loopThread.isCurrent, "event feed state touched off the feed thread", file: file, line: line)
    }

    func start() {
        uv_loop_set_data(loop, Unmanaged.passUnretained(self).toOpaque())
        uv_async_init(loop, wakeAsync) { h in FeedHub.from(UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_handle_t.self)).pumpSoon() }
        uv_async_init(loop, adoptAsync) { h in FeedHub.from(UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_handle_t.self)).takeAdoptions() }
        uv_async_init(loop, stopAsync) { h in FeedHub.from(UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_handle_t.self)).beginStop() }
        uv_timer_init(loop, timer)
        uv_timer_init(loop, batchTimer)
        uv_idle_init(loop, againIdle)
        uv_timer_start(timer, { h in
            FeedHub.from(UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_handle_t.self)).tick()
        }, Self.tickMs, Self.tickMs)
        handlesOpen = true
        let context = Unmanaged.passUnretained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let hub = Unmanaged<FeedHub>.fromOpaque(arg!).takeUnretainedValue()
            hub.loopThread.claim("the event feed thread runs once")
            // Below the reservation loops and the journal: on a busy machine the feed waits, not checkout.
            // (On Linux the nice value is per thread, and 0 names the calling one.)
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, FeedHub.niceness)
            _ = uv_run(hub.loop, UV_RUN_DEFAULT)
            return nil
        }, context)
        precondition(rc == 0, "cannot start the event feed thread")
        started = true
    }

    /// Stops every feed (SHUTTING_DOWN) and joins the thread.
    func stop() {
        guard started else { return }
        pthread_mutex_lock(lock)
        if handlesOpen { uv_async_send(stopAsync) }
        pthread_mutex_unlock(lock)
        pthread_join(thread, nil)
        started = false
    }

    // MARK: other threads

    /// A worker wants to hand a SUBSCRIBE over: false if at the limit.
    func reserveSlot() -> Bool {
        let n = active.loadThenWrappingIncrement(ordering: .acquiringAndReleasing)
        precondition(n >= 0, "negative subscriber count \(n)")
        if n < config.maxSubscribers { return true }
        active.wrappingDecrement(ordering: .acquiringAndReleasing)
        refusedBusy.wrappingIncrement(ordering: .relaxed)
        return false
    }

    /// Gives a slot back that `adopt` will not use.
    func releaseSlot() {
        // One release per granted slot (the connection, or the subscriber's close callback).
        let n = active.loadThenWrappingDecrement(ordering: .acquiringAndReleasing)
        precondition(n > 0, "subscriber slot released twice")
    }

    /// Takes a subscriber's socket (its slot reserved); from a worker thread.
    func adopt(_ a: Adoption) {
        pthread_mutex_lock(lock)
        let open = handlesOpen && !stoppingFlag
        if open {
            adoptions.append(a)
            uv_async_send(adoptAsync)
        }
        pthread_mutex_unlock(lock)
        if !open {
            Glibc.close(a.fd)
            releaseSlot()
        }
    }

    /// Set under `lock` when the stop began (no more adoptions).
    private var stoppingFlag = false

    /// The durable watermark moved (journal thread, every round): feed the
    /// subscribers — batched, see `pumpSoon`. One atomic exchange per round
    /// while a wake-up is already on its way.
    func wake() {
        guard active.load(ordering: .relaxed) > 0, !wakePending.exchange(true, ordering: .acquiringAndReleasing) else {
            return
        }
        pthread_mutex_lock(lock)
        if handlesOpen { uv_async_send(wakeAsync) }
        pthread_mutex_unlock(lock)
    }

    private let wakePending = ManagedAtomic<Bool>(false)
    /// The feed thread runs at this nice value (the loops at 0).
    static let niceness: Int32 = 10
    /// Pumps at most this often under load: a journal round every ~250 µs
    /// would otherwise wake the feed thread (and every consumer) thousands
    /// of times a second for a handful of events each; batching costs a
    /// feed at most this much latency.
    static let batchMs: UInt64 = 5

    // MARK: loop thread

    private func takeAdoptions() {
        assertInLoop()
        pthread_mutex_lock(lock)
        let taken = adoptions
        adoptions.removeAll()
        pthread_mutex_unlock(lock)
        for a in taken {
            subscriptionsTotal.wrappingIncrement(ordering: .relaxed)
            let s = FeedSubscriber(hub: self, adoption: a)
            s.slot = subscribers.count
            subscribers.append(s)
            // Each holds a slot until its close callback, and slots are granted below the limit.
            precondition(subscribers.count <= config.maxSubscribers, "\(subscribers.count) subscribers")
            s.begin(a)
        }
    }

    private var lastPumpMs: UInt64 = 0
    private var batchArmed = false

    /// A wake-up from the journal: pump now, or at the end of the current batch window.
    private func pumpSoon() {
        assertInLoop()
        wakePending.store(false, ordering: .releasing)
        guard !batchArmed else { return }
        let now = uv_now(loop)
        if now &- lastPumpMs >= Self.batchMs { return pumpAll() }
        batchArmed = true
        uv_timer_start(batchTimer, { h in
            let hub = FeedHub.from(UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_handle_t.self))
            hub.batchArmed = false
            hub.pumpAll()
        }, Self.batchMs - (now &- lastPumpMs), 0)
    }

    private func pumpAll() {
        assertInLoop()
        lastPumpMs = uv_now(loop)
        for s in subscribers { s.pump() }
    }

    /// Every 100 ms: progress markers, heartbeats, and a pump (a missed wake-up costs at most this).
    private func tick() {
        assertInLoop()
        let now = uv_now(loop)
        for s in subscribers { s.tick(nowMs: now) }
        let durable = journal.durable.load(ordering: .acquiring)
        var worst: UInt64 = 0
        for s in subscribers where s.state == .open { worst = max(worst, durable &- min(durable, s.position)) }
        maxLag.store(worst, ordering: .relaxed)
    }

    /// A subscriber stopped at its per-pump limit with more to send: pump it again on the next loop turn.
    func schedulePump(_ s: FeedSubscriber) {
        assertInLoop()
        guard !s.pumpScheduled else { return }
        s.pumpScheduled = true
        pumpAgain.append(s)
        if pumpAgain.count == 1 {
            uv_idle_start(againIdle) { h in
                FeedHub.from(UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_handle_t.self)).runPumpAgain()
            }
        }
    }

    private func runPumpAgain() {
        assertInLoop()
        let list = pumpAgain
        pumpAgain.removeAll(keepingCapacity: true)
        uv_idle_stop(againIdle)
        for s in list {
            s.pumpScheduled = false
            s.pump()
        }
    }

    func remove(_ s: FeedSubscriber) {
        assertInLoop()
        let i = s.slot
        precondition(i >= 0 && i < subscribers.count && subscribers[i] === s, "subscriber list corrupted")
        let last = subscribers.removeLast()
        if i < subscribers.count {
            subscribers[i] = last
            last.slot = i
        }
        s.slot = -1
    }

    /// Called from a subscriber's close callback.
    func subscriberClosed(_ s: FeedSubscriber) {
        assertInLoop()
        precondition(s.state == .closed && s.slot == -1, "close callback of a subscriber still listed")
        releaseSlot()
        if stopping && subscribers.isEmpty { closeHandles() }
    }

    private func beginStop() {
        assertInLoop()
        guard !stopping else { return }
        stopping = true
        pthread_mutex_lock(lock)
        stoppingFlag = true
        let orphans = adoptions
        adoptions.removeAll()
        pthread_mutex_unlock(lock)
        for a in orphans {
            Glibc.close(a.fd)
            releaseSlot()
        }
        for s in subscribers { s.end(.shuttingDown) }
        if subscribers.isEmpty { closeHandles() }
        // Clients that never read their last frame: closed after the grace period.
        uv_timer_start(timer, { h in
            let hub = FeedHub.from(UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_handle_t.self))
            for s in hub.subscribers { s.close() }
            if hub.subscribers.isEmpty { hub.closeHandles() }
        }, config.shutdownGraceMs, 0)
    }

    private var handlesClosed = false

    private func closeHandles() {
        assertInLoop()
        guard !handlesClosed else { return }
        handlesClosed = true
        pthread_mutex_lock(lock)
        handlesOpen = false
        pthread_mutex_unlock(lock)
        for h in [raw(wakeAsync), raw(adoptAsync), raw(stopAsync), raw(timer), raw(batchTimer), raw(againIdle)] {
            uv_close(h, nil)
        }
    }
}
