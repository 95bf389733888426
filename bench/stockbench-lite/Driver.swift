// The event-loop side of stockbench-lite. State is plain structs behind
// pointers (the handle's and the loop's `data`): no reference counting and
// no exclusivity checks on the per-answer path, and nothing is allocated
// per request — every buffer is sized up front from the depth.

import BenchSupport
import CLibUV
import StockProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Bytes of the per-loop read buffer.
let readBufferBytes = 64 * 1024
/// Largest request the driver sends: RESERVE with a 64-byte SKU.
let maxRequestBytes = Limits.headerSize + 4 + 4 + (1 + Limits.maxSKULength) + 1 + 1

/// A request frame encoded once; sending it is a copy and a request-id patch.
struct Template {
    let bytes: UnsafeMutableRawPointer
    let count: Int

    init(_ request: Request) {
        var w = ByteWriter(capacity: maxRequestBytes)
        RequestCodec.encode(request, requestID: 0, into: &w)
        count = w.count
        precondition(count <= maxRequestBytes)
        bytes = .allocate(byteCount: count, alignment: 16)
        w.bytes.withUnsafeBytes { bytes.copyMemory(from: $0.baseAddress!, byteCount: count) }
    }
}

/// One driver thread: a loop, its connections and its tallies. Touched only
/// by its own thread until that thread has been joined.
struct Worker {
    let loop: UnsafeMutablePointer<uv_loop_t>
    let readBuffer: UnsafeMutableRawPointer
    let operation: Operation
    let depth: Int
    let ping: Template
    let reserve: Template
    let release: Template
    let warmupMs: UInt64
    let durationMs: UInt64
    var connections: [UnsafeMutablePointer<Connection>] = []
    /// Connections whose handle is not closed yet; at 0 the run ends early.
    var openConnections = 0
    let warmupTimer: UnsafeMutablePointer<uv_timer_t>
    let endTimer: UnsafeMutablePointer<uv_timer_t>

    // Tallies of the measured window (answers arriving between warmup end and stop).
    var recording = false
    var stopping = false
    var windowStartNs: UInt64 = 0
    var windowEndNs: UInt64 = 0
    var histogram = Histogram()
    var answered: UInt64 = 0
    let statusCounts: UnsafeMutablePointer<UInt64>  // 256, by status byte
    /// Connects that failed, and connections reset or closed by the server before the end.
    var connectionErrors = 0
    /// Answers out of order (request id not the oldest outstanding) or without the response flag.
    var protocolErrors = 0
}

/// One client connection. `depth` requests are outstanding at all times.
struct Connection {
    let worker: UnsafeMutablePointer<Worker>
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    var frames = FrameAssembler(maxFrame: Limits.defaultMaxFrame)
    /// The requests of one read callback; at most `depth` of them, since no
    /// more than `depth` answers can arrive in one read.
    let out: UnsafeMutableRawPointer
    let outCapacity: Int
    var outCount = 0
    /// Send time of each outstanding request, at `id & mask`; ids are
    /// consecutive and at most `depth` ≤ mask + 1 are outstanding.
    let sentAt: UnsafeMutablePointer<UInt64>
    let mask: UInt32
    var nextID: UInt32 = 0
    /// The first request id not yet stamped with its send time.
    var unstampedID: UInt32 = 0
    /// The oldest outstanding request (the server answers in order).
    var expectedID: UInt32 = 0
    var closing = false

    init(worker: UnsafeMutablePointer<Worker>, tcp: UnsafeMutablePointer<uv_tcp_t>, depth: Int) {
        self.worker = worker
        self.tcp = tcp
        outCapacity = depth * maxRequestBytes
        out = .allocate(byteCount: outCapacity, alignment: 16)
        var ring = 1
        while ring < depth { ring <<= 1 }
        sentAt = .allocate(capacity: ring)
        sentAt.initialize(repeating: 0, count: ring)
        mask = UInt32(ring - 1)
    }
}

extension UnsafeMutablePointer where Pointee == Connection {
    /// Appends `template` with the next request id; returns where it landed.
    @inline(__always)
    @discardableResult
    func append(_ template: Template) -> UnsafeMutableRawPointer {
        let at = pointee.outCount
        precondition(at + template.count <= pointee.outCapacity, "more requests than the depth allows")
        let dst = pointee.out + at
        dst.copyMemory(from: template.bytes, byteCount: template.count)
        dst.storeBytes(of: pointee.nextID.littleEndian, toByteOffset: 8, as: UInt32.self)
        pointee.nextID &+= 1
        pointee.outCount = at + template.count
        return dst
    }

    /// Sends what `append` collected: stamps the batch's send time, then
    /// uv_try_write, the rest in one uv_write.
    func flush() {
        let count = pointee.outCount
        guard count > 0 else { return }
        pointee.outCount = 0
        let now = uv_hrtime()
        var id = pointee.unstampedID
        while id != pointee.nextID {
            pointee.sentAt[Int(id & pointee.mask)] = now
            id &+= 1
        }
        pointee.unstampedID = id
        var buf = uv_buf_init(pointee.out.assumingMemoryBound(to: CChar.self), UInt32(count))
        let tried = Int(uv_try_write(stream(pointee.tcp), &buf, 1))
        var written = 0
        if tried >= 0 {
            written = tried
        } else if tried != Int(UV_EAGAIN.rawValue) {
            fail()
            return
        }
        if written < count && !queueWrite(stream(pointee.tcp), pointee.out + written, count - written, onWrite: driverOnWrite) {
            fail()
        }
    }

    /// Handles one answer and queues the request it triggers.
    @inline(__always)
    func answer(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, receivedAt now: UInt64) {
        let w = pointee.worker
        let id = header.requestID
        if id != pointee.expectedID || !header.isResponse { w.pointee.protocolErrors += 1 }
        pointee.expectedID = id &+ 1
        if w.pointee.recording {
            w.pointee.histogram.record(now &- pointee.sentAt[Int(id & pointee.mask)])
            w.pointee.answered &+= 1
            w.pointee.statusCounts[Int(header.status)] &+= 1
        }
        switch w.pointee.operation {
        case .ping:
            append(w.pointee.ping)
        case .reserveRelease:
            if header.opcode == Opcode.reserve.rawValue && header.status == Status.ok.rawValue
                && payload.count >= Token.size {
                let dst = append(w.pointee.release)
                (dst + Limits.headerSize).copyMemory(from: payload.baseAddress!, byteCount: Token.size)
            } else {
                // A RELEASE answer, OUT_OF_STOCK or any other refusal: reserve again.
                append(w.pointee.reserve)
            }
        }
    }

    /// The first `depth` requests, right after connecting.
    func start() {
        let w = pointee.worker
        for _ in 0..<w.pointee.depth {
            append(w.pointee.operation == .ping ? w.pointee.ping : w.pointee.reserve)
        }
        flush()
    }

    /// Counts a connection error (unless the run is ending) and closes.
    func fail() {
        if !pointee.worker.pointee.stopping { pointee.worker.pointee.connectionErrors += 1 }
        close()
    }

    func close() {
        guard !pointee.closing else { return }
        pointee.closing = true
        uv_close(handle(pointee.tcp), driverOnClose)
    }
}

extension UnsafeMutablePointer where Pointee == Worker {
    /// Opens this worker's connections and arms the warmup and end timers.
    func start(port: UInt16, connections: Int) {
        var addr = sockaddr_in()
        check(uv_ip4_addr("127.0.0.1", Int32(port), &addr), "uv_ip4_addr")
        for _ in 0..<connections {
            let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
            check(uv_tcp_init(pointee.loop, tcp), "uv_tcp_init")
            let c = UnsafeMutablePointer<Connection>.allocate(capacity: 1)
            c.initialize(to: Connection(worker: self, tcp: tcp, depth: pointee.depth))
            tcp.pointee.data = UnsafeMutableRawPointer(c)
            pointee.connections.append(c)
            pointee.openConnections += 1
            let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_connect(req, tcp, $0, driverOnConnect) }
            }
            if r < 0 {
                req.deallocate()
                c.fail()
            }
        }
        check(uv_timer_init(pointee.loop, pointee.warmupTimer), "uv_timer_init")
        check(uv_timer_init(pointee.loop, pointee.endTimer), "uv_timer_init")
        if pointee.warmupMs == 0 {
            beginWindow()
        } else {
            check(uv_timer_start(pointee.warmupTimer, driverOnWarmupEnd, pointee.warmupMs, 0), "uv_timer_start")
        }
        check(uv_timer_start(pointee.endTimer, driverOnEnd, pointee.warmupMs + pointee.durationMs, 0), "uv_timer_start")
    }

    func beginWindow() {
        pointee.recording = true
        pointee.windowStartNs = uv_hrtime()
    }

    /// Ends the window and closes everything, so that `uv_run` returns.
    func stop() {
        guard !pointee.stopping else { return }
        pointee.windowEndNs = uv_hrtime()
        pointee.recording = false
        pointee.stopping = true
        for c in pointee.connections { c.close() }
        uv_close(handle(pointee.warmupTimer), nil)
        uv_close(handle(pointee.endTimer), nil)
    }

    func run() { _ = uv_run(pointee.loop, UV_RUN_DEFAULT) }
}

// MARK: libuv callbacks (no captures: context travels through `data`)

@inline(__always)
func connection(_ h: UnsafeMutablePointer<uv_stream_t>) -> UnsafeMutablePointer<Connection> {
    h.pointee.data.assumingMemoryBound(to: Connection.self)
}

func driverOnConnect(_ req: UnsafeMutablePointer<uv_connect_t>?, _ status: Int32) {
    let s = req!.pointee.handle!
    req!.deallocate()
    let c = connection(s)
    guard status == 0 else {
        c.fail()
        return
    }
    guard !c.pointee.closing else { return }
    _ = uv_tcp_nodelay(c.pointee.tcp, 1)
    guard uv_read_start(s, driverOnAlloc, driverOnRead) == 0 else {
        c.fail()
        return
    }
    c.start()
}

func driverOnAlloc(_ h: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ buf: UnsafeMutablePointer<uv_buf_t>?) {
    let w = h!.pointee.loop.pointee.data.assumingMemoryBound(to: Worker.self)
    buf!.pointee = uv_buf_init(w.pointee.readBuffer.assumingMemoryBound(to: CChar.self), UInt32(readBufferBytes))
}

func driverOnRead(_ s: UnsafeMutablePointer<uv_stream_t>?, _ nread: Int, _ buf: UnsafePointer<uv_buf_t>?) {
    let c = connection(s!)
    if nread < 0 {
        c.fail()  // EOF or reset while requests were outstanding
        return
    }
    guard nread > 0, !c.pointee.closing else { return }
    let now = uv_hrtime()  // every answer of this read arrived together
    var frames = c.pointee.frames
    let failure = frames.consume(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread)) { header, payload in
        c.answer(header, payload, receivedAt: now)
    }
    c.pointee.frames = frames
    if failure != nil {
        c.pointee.worker.pointee.protocolErrors += 1
        c.fail()
        return
    }
    c.flush()
}

func driverOnWrite(_ req: UnsafeMutablePointer<uv_write_t>?, _ status: Int32) {
    let s = req!.pointee.handle!
    free(req)
    if status < 0 { connection(s).fail() }
}

func driverOnClose(_ h: UnsafeMutablePointer<uv_handle_t>?) {
    // The Connection stays allocated for the process's life (the worker lists it); only the handle goes.
    let w = h!.pointee.data.assumingMemoryBound(to: Connection.self).pointee.worker
    h!.deallocate()
    w.pointee.openConnections -= 1
    if w.pointee.openConnections == 0 && !w.pointee.stopping { w.stop() }  // every connection failed
}

func driverOnWarmupEnd(_ timer: UnsafeMutablePointer<uv_timer_t>?) {
    timer!.pointee.loop.pointee.data.assumingMemoryBound(to: Worker.self).beginWindow()
}

func driverOnEnd(_ timer: UnsafeMutablePointer<uv_timer_t>?) {
    timer!.pointee.loop.pointee.data.assumingMemoryBound(to: Worker.self).stop()
}

func driverThread(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    arg!.assumingMemoryBound(to: Worker.self).run()
    return nil
}
