// The load engine: one libuv loop per generator thread, N connections per
// loop, the same workload code for both backends. State is plain structs
// behind pointers (a handle's or loop's `data`), so the per-answer path has
// no reference counting and no allocation: buffers are sized up front from
// the pipeline depth, and answers are matched to requests by a FIFO ring
// (both servers answer a connection's requests in order).

import BenchSupport
import CLibUV
import Histogram
import StockBenchRedis
#if canImport(Glibc)
import Glibc
#endif

/// Bytes of the per-loop read buffer.
let readBufferBytes = 64 * 1024
/// Replies one read can hold: the smallest reply of either backend is 8
/// bytes, plus one completed from the previous read.
let maxRepliesPerRead = readBufferBytes / 8 + 1

/// How requests are paced.
enum Pacing: Equatable, Sendable {
    /// `depth` requests outstanding per connection; every answer sends the next.
    case closed(depth: Int)
    /// Arrivals (new reservations) at a fixed total rate, on a schedule kept
    /// whatever the answers do; latency counts from the scheduled time, so a
    /// stall is not hidden (coordinated omission). `arrivals`: stop after
    /// this many in all (flash-sale), else at the end of the duration.
    case open(ratePerSecond: Double, arrivals: Int?)
}

/// Everything a run's workers share (read-only while they run).
struct EngineConfig {
    var pacing: Pacing
    var connections: Int
    var threads: Int
    var durationNs: UInt64
    var warmupNs: UInt64
    /// Closed loop: stop after this many answers in all (nil: duration).
    var requests: Int?
    var mix: Mix
    var chooser: SKUChooser
    var quantity: UInt32
    var ttlMs: UInt32
    var skuCount: Int
    var seed: UInt64
    /// Flash-sale: keep each confirm's arrival time (bounded by the stock).
    var confirmTimesCapacity: Int
    /// An open-loop run waits this long for outstanding answers after its last arrival.
    var drainNs: UInt64 = 10_000_000_000
    /// Print a progress line on stderr (a terminal).
    var progress: Bool
    var label: String
}

/// A request the connection is waiting for an answer to.
struct Pending {
    var token: BenchToken
    /// Send time, or the scheduled time of an open-loop arrival.
    var stampNs: UInt64
    var sku: Int32
    var kind: UInt8  // 1 reserve, 2 confirm, 3 release
    var fate: UInt8  // Fate of a reserve
}

enum Kind {
    static let reserve: UInt8 = 1, confirm: UInt8 = 2, release: UInt8 = 3
}

/// The backend's wire format, without an existential: exactly one is set.
struct Wire {
    var stockd: StockdWire?
    var redis: RedisWire?

    var maxRequestBytes: Int { stockd?.maxRequestBytes ?? redis!.maxRequestBytes }

    @inline(__always) mutating func encode(_ op: BenchOp, into out: inout OutBuffer) {
        if stockd != nil { stockd!.encode(op, into: &out) } else { redis!.encode(op, into: &out) }
    }

    @inline(__always) mutating func consume(_ input: UnsafeRawBufferPointer, _ onReply: (BenchReply) -> Void) -> Bool {
        if stockd != nil { return stockd!.consume(input, onReply) }
        return redis!.consume(input, onReply)
    }
}

/// Per-thread tallies, merged after the run.
struct Tally {
    var answered: UInt64 = 0
    var reservesGranted: UInt64 = 0
    var refused: UInt64 = 0  // OUT_OF_STOCK
    var confirmed: UInt64 = 0
    var released: UInt64 = 0
    var leftToExpire: UInt64 = 0
    var tokenGone: UInt64 = 0  // confirm/release of a token already decided (e.g. expired first)
    var failed: UInt64 = 0  // any other error answer
    var connectionErrors: UInt64 = 0
    var protocolErrors: UInt64 = 0
    var backlogged: UInt64 = 0  // open-loop ticks whose arrivals waited for a full connection
    var undrained: UInt64 = 0  // answers never received (the drain timed out): the books may differ

    /// Adds another thread's tallies.
    mutating func add(_ o: Tally) {
        answered += o.answered
        reservesGranted += o.reservesGranted
        refused += o.refused
        confirmed += o.confirmed
        released += o.released
        leftToExpire += o.leftToExpire
        tokenGone += o.tokenGone
        failed += o.failed
        connectionErrors += o.connectionErrors
        protocolErrors += o.protocolErrors
        backlogged += o.backlogged
        undrained += o.undrained
    }
}

/// One generator thread.
struct EngineWorker {
    let loop: UnsafeMutablePointer<uv_loop_t>
    let index: Int
    let config: UnsafePointer<EngineConfig>
    let readBuffer: UnsafeMutableRawPointer
    let replies: UnsafeMutablePointer<BenchReply>
    var connections: [UnsafeMutablePointer<EngineConnection>] = []
    var openConnections = 0
    let tickTimer = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
    let warmupTimer = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
    let endTimer = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
    let progressTimer = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
    var timersOpen = false

    var recording = false
    /// The measured part is over: no new reservations, but follow-ups of
    /// granted ones still go out, and every outstanding answer is awaited, so
    /// the generator's books match the server's exactly.
    var draining = false
    var drainStartNs: UInt64 = 0
    /// Connections are closing.
    var stopping = false
    /// Open loop: no more arrivals are due (all sent, or the duration is over).
    var arrivalsDone = false
    var startNs: UInt64 = 0
    var windowStartNs: UInt64 = 0
    var windowEndNs: UInt64 = 0
    var lastAnswerNs: UInt64 = 0
    var tally = Tally()
    var histogram = Histogram<UInt64>(lowestDiscernibleValue: 100, highestTrackableValue: 200_000_000_000,
                                      numberOfSignificantValueDigits: .three)
    /// Units confirmed per SKU (the generator's own books, checked against the server's).
    let confirmedUnits: UnsafeMutablePointer<UInt64>
    /// Per SKU: when an answer first showed it exhausted (a grant leaving 0
    /// available, or OUT_OF_STOCK); 0 while it has not been.
    let exhaustedAt: UnsafeMutablePointer<UInt64>
    /// Flash-sale: arrival time of every confirm answer.
    let confirmTimes: UnsafeMutablePointer<UInt64>
    var confirmTimesCount = 0
    var arrivalsSent = 0
    /// This worker's arrivals in all (open loop with a count).
    var arrivalsTarget = Int.max
    var arrivalIntervalNs: Double = 0

    init(loop: UnsafeMutablePointer<uv_loop_t>, index: Int, config: UnsafePointer<EngineConfig>) {
        self.loop = loop
        self.index = index
        self.config = config
        readBuffer = .allocate(byteCount: readBufferBytes, alignment: 64)
        replies = .allocate(capacity: maxRepliesPerRead)
        confirmedUnits = .allocate(capacity: config.pointee.skuCount)
        confirmedUnits.initialize(repeating: 0, count: config.pointee.skuCount)
        confirmTimes = .allocate(capacity: max(1, config.pointee.confirmTimesCapacity))
        exhaustedAt = .allocate(capacity: config.pointee.skuCount)
        exhaustedAt.initialize(repeating: 0, count: config.pointee.skuCount)
    }
}

/// One client connection.
struct EngineConnection {
    let worker: UnsafeMutablePointer<EngineWorker>
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    var wire: Wire
    var out: OutBuffer
    let ring: UnsafeMutablePointer<Pending>
    let mask: Int
    var head = 0  // oldest pending
    var tail = 0  // next free
    var rng: BenchRandom
    var closing = false
    var connected = false

    var pending: Int { tail - head }
    var ringCapacity: Int { mask + 1 }
}

extension UnsafeMutablePointer where Pointee == EngineConnection {
    /// Queues one request and remembers it in the ring.
    @inline(__always)
    func send(_ op: BenchOp, kind: UInt8, sku: Int32, token: BenchToken, fate: UInt8, stampNs: UInt64) {
        precondition(pointee.pending < pointee.ringCapacity, "more outstanding requests than the ring holds")
        pointee.wire.encode(op, into: &pointee.out)
        pointee.ring[pointee.tail & pointee.mask] = Pending(token: token, stampNs: stampNs, sku: sku, kind: kind, fate: fate)
        pointee.tail += 1
    }

    /// A new reservation: SKU and fate drawn here, so both backends see the same sequence for a seed.
    @inline(__always)
    func sendReserve(stampNs: UInt64) {
        let config = pointee.worker.pointee.config
        let sku = config.pointee.chooser.pick(&pointee.rng)
        let fate = config.pointee.mix.draw(&pointee.rng)
        let token = BenchToken(hi: pointee.rng.next(), lo: pointee.rng.next())
        send(.reserve(sku: sku, quantity: config.pointee.quantity, ttlMs: config.pointee.ttlMs, token: token),
             kind: Kind.reserve, sku: sku, token: token, fate: fate.rawValue, stampNs: stampNs)
    }

    /// Handles one answer: books it, and sends what follows.
    @inline(__always)
    func answer(_ reply: BenchReply, now: UInt64) {
        let w = pointee.worker
        guard pointee.pending > 0 else {
            w.pointee.tally.protocolErrors += 1
            return
        }
        let p = pointee.ring[pointee.head & pointee.mask]
        pointee.head += 1
        if w.pointee.recording {
            _ = w.pointee.histogram.record(now &- p.stampNs)
            w.pointee.tally.answered += 1
        }
        w.pointee.lastAnswerNs = now
        let config = w.pointee.config
        let closed = if case .closed = config.pointee.pacing { true } else { false }
        var followUp = false
        switch p.kind {
        case Kind.reserve:
            switch reply {
            case .reserved(let token, let available):
                w.pointee.tally.reservesGranted += 1
                if available <= 0 && w.pointee.exhaustedAt[Int(p.sku)] == 0 { w.pointee.exhaustedAt[Int(p.sku)] = now }
                let t = token == .zero ? p.token : token  // Redis: the token we sent
                switch Fate(rawValue: p.fate)! {
                case .confirm:
                    send(.confirm(sku: p.sku, token: t), kind: Kind.confirm, sku: p.sku, token: t, fate: 0, stampNs: now)
                    followUp = true
                case .release:
                    send(.release(sku: p.sku, token: t), kind: Kind.release, sku: p.sku, token: t, fate: 0, stampNs: now)
                    followUp = true
                case .expire:
                    w.pointee.tally.leftToExpire += 1
                }
            case .outOfStock:
                w.pointee.tally.refused += 1
                if w.pointee.exhaustedAt[Int(p.sku)] == 0 { w.pointee.exhaustedAt[Int(p.sku)] = now }
            case .tokenGone, .confirmed, .released, .failed:
                w.pointee.tally.failed += 1
            }
        case Kind.confirm:
            switch reply {
            case .confirmed:
                w.pointee.tally.confirmed += 1
                w.pointee.confirmedUnits[Int(p.sku)] += UInt64(config.pointee.quantity)
                if w.pointee.confirmTimesCount < config.pointee.confirmTimesCapacity {
                    w.pointee.confirmTimes[w.pointee.confirmTimesCount] = now
                    w.pointee.confirmTimesCount += 1
                }
            case .tokenGone: w.pointee.tally.tokenGone += 1
            default: w.pointee.tally.failed += 1
            }
        default:
            switch reply {
            case .released: w.pointee.tally.released += 1
            case .tokenGone: w.pointee.tally.tokenGone += 1
            default: w.pointee.tally.failed += 1
            }
        }
        if closed && !followUp && !w.pointee.draining { sendReserve(stampNs: now) }
    }

    /// Sends what `send` collected: uv_try_write, the rest in one uv_write.
    func flush() {
        let count = pointee.out.count
        guard count > 0, pointee.connected, !pointee.closing else { return }
        pointee.out.count = 0
        var buf = uv_buf_init(pointee.out.base.assumingMemoryBound(to: CChar.self), UInt32(count))
        let tried = Int(uv_try_write(stream(pointee.tcp), &buf, 1))
        var written = 0
        if tried >= 0 {
            written = tried
        } else if tried != Int(UV_EAGAIN.rawValue) {
            fail()
            return
        }
        if written < count
            && !queueWrite(stream(pointee.tcp), pointee.out.base + written, count - written, onWrite: engineOnWrite) {
            fail()
        }
    }

    func fail() {
        if !pointee.worker.pointee.stopping { pointee.worker.pointee.tally.connectionErrors += 1 }
        close()
    }

    func close() {
        guard !pointee.closing else { return }
        pointee.closing = true
        uv_close(handle(pointee.tcp), engineOnClose)
    }
}

extension UnsafeMutablePointer where Pointee == EngineWorker {
    /// Opens `count` connections to `host:port`, each with its own wire.
    func start(port: Int, count: Int, makeWire: () -> Wire, firstConnection: Int) {
        let config = pointee.config.pointee
        var addr = sockaddr_in()
        check(uv_ip4_addr("127.0.0.1", Int32(port), &addr), "uv_ip4_addr")
        let ringSize: Int
        switch config.pacing {
        case .closed(let depth): ringSize = depth
        case .open: ringSize = 4096
        }
        var ring = 1
        while ring < ringSize { ring <<= 1 }
        for i in 0..<count {
            let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
            check(uv_tcp_init(pointee.loop, tcp), "uv_tcp_init")
            let wire = makeWire()
            let c = UnsafeMutablePointer<EngineConnection>.allocate(capacity: 1)
            c.initialize(to: EngineConnection(
                worker: self, tcp: tcp, wire: wire, out: OutBuffer(capacity: max(ring, 64) * wire.maxRequestBytes * 2),
                ring: .allocate(capacity: ring), mask: ring - 1,
                rng: BenchRandom(seed: config.seed &+ UInt64(firstConnection + i) &* 0x9E37_79B9_7F4A_7C15)))
            tcp.pointee.data = UnsafeMutableRawPointer(c)
            pointee.connections.append(c)
            pointee.openConnections += 1
            let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_connect(req, tcp, $0, engineOnConnect) }
            }
            if r < 0 {
                req.deallocate()
                c.fail()
            }
        }
        check(uv_timer_init(pointee.loop, pointee.tickTimer), "uv_timer_init")
        check(uv_timer_init(pointee.loop, pointee.warmupTimer), "uv_timer_init")
        check(uv_timer_init(pointee.loop, pointee.endTimer), "uv_timer_init")
        check(uv_timer_init(pointee.loop, pointee.progressTimer), "uv_timer_init")
        pointee.timersOpen = true
    }

    /// Called once every connection is up: starts the clock, the schedule and the timers.
    func go() {
        let config = pointee.config.pointee
        pointee.startNs = uv_hrtime()
        let durationMs = config.durationNs / 1_000_000
        let warmupMs = config.warmupNs / 1_000_000
        if config.progress && pointee.index == 0 {
            check(uv_timer_start(pointee.progressTimer, engineOnProgress, 500, 500), "uv_timer_start")
        }
        if warmupMs == 0 {
            beginWindow()
        } else {
            check(uv_timer_start(pointee.warmupTimer, engineOnWarmupEnd, warmupMs, 0), "uv_timer_start")
        }
        switch config.pacing {
        case .closed(let depth):
            for c in pointee.connections where !c.pointee.closing {
                for _ in 0..<depth { c.sendReserve(stampNs: pointee.startNs) }
                c.flush()
            }
            check(uv_timer_start(pointee.endTimer, engineOnEnd, warmupMs + durationMs, 0), "uv_timer_start")
            check(uv_timer_start(pointee.tickTimer, engineOnTick, 5, 5), "uv_timer_start")
        case .open:
            check(uv_timer_start(pointee.tickTimer, engineOnTick, 1, 1), "uv_timer_start")
            tick()
            if config.requestsBound == nil {
                check(uv_timer_start(pointee.endTimer, engineOnArrivalsEnd, warmupMs + durationMs, 0), "uv_timer_start")
            }
        }
    }

    func beginWindow() {
        pointee.recording = true
        pointee.windowStartNs = uv_hrtime()
    }

    /// Open loop: sends every arrival due by now, round-robin over the connections.
    func tick() {
        let now = uv_hrtime()
        if case .closed = pointee.config.pointee.pacing {
            checkDrained(now)
            return
        }
        if !pointee.arrivalsDone {
            let elapsed = Double(now &- pointee.startNs)
            let due = min(pointee.arrivalsTarget, Int(elapsed / pointee.arrivalIntervalNs) + 1)
            let conns = pointee.connections
            var sent = pointee.arrivalsSent
            var stalled = 0
            while sent < due && stalled < conns.count {
                let c = conns[sent % conns.count]
                if c.pointee.closing || c.pointee.pending >= c.pointee.ringCapacity - 2 {
                    // This connection is full: the arrival waits, keeping its scheduled time.
                    stalled += 1
                    pointee.tally.backlogged += 1
                    break
                }
                let scheduled = pointee.startNs &+ UInt64(Double(sent) * pointee.arrivalIntervalNs)
                c.sendReserve(stampNs: scheduled)
                sent += 1
            }
            pointee.arrivalsSent = sent
            for c in conns { c.flush() }
            if sent >= pointee.arrivalsTarget { pointee.arrivalsDone = true }
        }
        if pointee.arrivalsDone && !pointee.draining { beginDrain(now) }
        checkDrained(now)
    }

    /// Ends the measured window; answers are still awaited.
    func beginDrain(_ now: UInt64) {
        guard !pointee.draining else { return }
        pointee.draining = true
        pointee.drainStartNs = now
        if case .closed = pointee.config.pointee.pacing {
            pointee.windowEndNs = now
        } else {
            pointee.windowEndNs = max(pointee.lastAnswerNs, pointee.windowStartNs)
        }
        pointee.recording = false
    }

    /// Stops once every answer is in (or the drain has waited too long).
    func checkDrained(_ now: UInt64) {
        guard pointee.draining, !pointee.stopping else { return }
        let idle = pointee.connections.allSatisfy { $0.pointee.pending == 0 || $0.pointee.closing }
        if idle { return stop() }
        if now &- pointee.drainStartNs > pointee.config.pointee.drainNs {
            for c in pointee.connections where !c.pointee.closing { pointee.tally.undrained += UInt64(c.pointee.pending) }
            stop()
        }
    }

    /// Ends the window and closes everything, so that `uv_run` returns.
    func stop() {
        guard !pointee.stopping else { return }
        beginDrain(uv_hrtime())
        pointee.stopping = true
        for c in pointee.connections { c.close() }
        if pointee.timersOpen {
            pointee.timersOpen = false
            uv_close(handle(pointee.tickTimer), nil)
            uv_close(handle(pointee.warmupTimer), nil)
            uv_close(handle(pointee.endTimer), nil)
            uv_close(handle(pointee.progressTimer), nil)
        }
    }

    func run() { _ = uv_run(pointee.loop, UV_RUN_DEFAULT) }
}

extension EngineConfig {
    /// Open loop with a fixed number of arrivals.
    var requestsBound: Int? {
        if case .open(_, let arrivals) = pacing { return arrivals }
        return nil
    }
}

// MARK: libuv callbacks (no captures: context travels through `data`)

@inline(__always)
func engineConnection(_ h: UnsafeMutablePointer<uv_stream_t>) -> UnsafeMutablePointer<EngineConnection> {
    h.pointee.data.assumingMemoryBound(to: EngineConnection.self)
}

@inline(__always)
func engineWorker(_ loop: UnsafeMutablePointer<uv_loop_t>) -> UnsafeMutablePointer<EngineWorker> {
    loop.pointee.data.assumingMemoryBound(to: EngineWorker.self)
}

func engineOnConnect(_ req: UnsafeMutablePointer<uv_connect_t>?, _ status: Int32) {
    let s = req!.pointee.handle!
    req!.deallocate()
    let c = engineConnection(s)
    guard status == 0 else {
        c.fail()
        engineMaybeGo(c.pointee.worker)
        return
    }
    guard !c.pointee.closing else { return }
    _ = uv_tcp_nodelay(c.pointee.tcp, 1)
    guard uv_read_start(s, engineOnAlloc, engineOnRead) == 0 else {
        c.fail()
        engineMaybeGo(c.pointee.worker)
        return
    }
    c.pointee.connected = true
    engineMaybeGo(c.pointee.worker)
}

/// Starts the run when every connection has connected or failed.
func engineMaybeGo(_ w: UnsafeMutablePointer<EngineWorker>) {
    guard w.pointee.startNs == 0, !w.pointee.stopping else { return }
    let settled = w.pointee.connections.allSatisfy { $0.pointee.connected || $0.pointee.closing }
    guard settled else { return }
    if w.pointee.connections.allSatisfy({ $0.pointee.closing }) {
        w.stop()
        return
    }
    w.go()
}

func engineOnAlloc(_ h: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ buf: UnsafeMutablePointer<uv_buf_t>?) {
    let w = engineWorker(h!.pointee.loop)
    buf!.pointee = uv_buf_init(w.pointee.readBuffer.assumingMemoryBound(to: CChar.self), UInt32(readBufferBytes))
}

func engineOnRead(_ s: UnsafeMutablePointer<uv_stream_t>?, _ nread: Int, _ buf: UnsafePointer<uv_buf_t>?) {
    let c = engineConnection(s!)
    if nread < 0 {
        c.fail()
        return
    }
    guard nread > 0, !c.pointee.closing else { return }
    let now = uv_hrtime()  // every answer of this read arrived together
    let w = c.pointee.worker
    // Replies are collected first, then handled: handling sends follow-ups
    // through the same wire that is decoding.
    let replies = w.pointee.replies
    var n = 0
    let ok = c.pointee.wire.consume(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread)) { reply in
        precondition(n < maxRepliesPerRead, "more replies in one read than the reply buffer holds")
        replies[n] = reply
        n += 1
    }
    for i in 0..<n { c.answer(replies[i], now: now) }
    if !ok {
        w.pointee.tally.protocolErrors += 1
        c.fail()
        return
    }
    c.flush()
    if let limit = w.pointee.config.pointee.requestsPerWorker(w.pointee.index), w.pointee.tally.answered >= limit {
        w.beginDrain(now)
    }
    if w.pointee.draining && c.pointee.pending == 0 { w.checkDrained(now) }
}

func engineOnWrite(_ req: UnsafeMutablePointer<uv_write_t>?, _ status: Int32) {
    let s = req!.pointee.handle!
    free(req)
    if status < 0 { engineConnection(s).fail() }
}

func engineOnClose(_ h: UnsafeMutablePointer<uv_handle_t>?) {
    let c = h!.pointee.data.assumingMemoryBound(to: EngineConnection.self)
    let w = c.pointee.worker
    h!.deallocate()
    w.pointee.openConnections -= 1
    if w.pointee.openConnections == 0 && !w.pointee.stopping { w.stop() }
}

func engineOnWarmupEnd(_ timer: UnsafeMutablePointer<uv_timer_t>?) {
    engineWorker(timer!.pointee.loop).beginWindow()
}

func engineOnEnd(_ timer: UnsafeMutablePointer<uv_timer_t>?) {
    engineWorker(timer!.pointee.loop).beginDrain(uv_hrtime())
}

func engineOnArrivalsEnd(_ timer: UnsafeMutablePointer<uv_timer_t>?) {
    engineWorker(timer!.pointee.loop).pointee.arrivalsDone = true
}

func engineOnTick(_ timer: UnsafeMutablePointer<uv_timer_t>?) {
    engineWorker(timer!.pointee.loop).tick()
}

/// A progress line on stderr (worker 0's own tallies; a terminal only).
func engineOnProgress(_ timer: UnsafeMutablePointer<uv_timer_t>?) {
    let w = engineWorker(timer!.pointee.loop)
    let elapsed = Double(uv_hrtime() &- w.pointee.startNs) / 1e9
    let t = w.pointee.tally
    let sent = t.answered
    let rate = elapsed > 0 ? Double(sent) / elapsed : 0
    let state = w.pointee.draining ? "  draining" : ""
    let line = "\r\u{1B}[2K[\(w.pointee.config.pointee.label)] \(formatSeconds(elapsed))  \(sent) answers  "
        + "\(formatRate(rate))  granted \(t.reservesGranted)  refused \(t.refused)\(state)"
    writeStderr(line)
}

func engineThread(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    arg!.assumingMemoryBound(to: EngineWorker.self).run()
    return nil
}

extension EngineConfig {
    /// Closed loop with `--requests`: this worker's share of the answers.
    func requestsPerWorker(_ index: Int) -> UInt64? {
        guard case .closed = pacing, let requests else { return nil }
        return UInt64(requests / threads + (index < requests % threads ? 1 : 0))
    }
}
