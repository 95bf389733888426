// stockd-echo: the ceiling for stockd. Same framing and I/O discipline as the
// server — frames parsed over the read buffer, all answers of one read
// callback coalesced into one buffer, uv_try_write first, the rest in one
// uv_write block, reading paused above 4 MiB unwritten — and no work: every
// request is answered with a bare 12-byte OK header (what PING gets).

import BenchSupport
import CLibUV
import StockProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Unwritten output above which a connection stops reading.
let maxUnwrittenBytes = 4 * 1024 * 1024
/// Bytes of the per-loop read buffer every connection of the loop reads into.
let readBufferBytes = 64 * 1024

/// One libuv loop and its listener; owned by the thread that runs it.
final class EchoWorker {
    let loop: UnsafeMutablePointer<uv_loop_t>
    let listener: UnsafeMutablePointer<uv_tcp_t>
    /// Shared by every connection of this loop: libuv calls alloc, read(2),
    /// then the read callback back to back, so one buffer serves them all.
    let readBuffer: UnsafeMutableRawPointer

    init() {
        loop = .allocate(capacity: 1)
        check(uv_loop_init(loop), "uv_loop_init")
        listener = .allocate(capacity: 1)
        readBuffer = .allocate(byteCount: readBufferBytes, alignment: 64)
        loop.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    /// Creates the listening socket with SO_REUSEPORT, binds 127.0.0.1:`port`, listens.
    /// Returns the bound port.
    func listen(port: UInt16) -> UInt16 {
        check(uv_tcp_init_ex(loop, listener, UInt32(AF_INET)), "uv_tcp_init_ex")
        // libuv 1.44 has no UV_TCP_REUSEPORT: set it on the descriptor before bind.
        var fd: uv_os_fd_t = -1
        check(uv_fileno(handle(listener), &fd), "uv_fileno")
        var one: Int32 = 1
        if setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            fatal("setsockopt(SO_REUSEPORT) failed")
        }
        var addr = sockaddr_in()
        check(uv_ip4_addr("127.0.0.1", Int32(port), &addr), "uv_ip4_addr")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_bind(listener, $0, 0) }
        }
        check(bound, "bind 127.0.0.1:\(port)")
        check(uv_listen(stream(listener), 1024, echoOnConnection), "uv_listen")
        var storage = sockaddr_in()
        var length = Int32(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = uv_tcp_getsockname(listener, $0, &length) }
        }
        return UInt16(bigEndian: storage.sin_port)
    }

    /// Stops this loop on SIGINT or SIGTERM (libuv forwards a signal to every loop watching it).
    func watchSignals() {
        for signum in [SIGINT, SIGTERM] {
            let watcher = UnsafeMutablePointer<uv_signal_t>.allocate(capacity: 1)
            check(uv_signal_init(loop, watcher), "uv_signal_init")
            check(uv_signal_start(watcher, echoOnSignal, signum), "uv_signal_start")
        }
    }

    func run() { _ = uv_run(loop, UV_RUN_DEFAULT) }
}

/// One client connection: its carry buffer and its output buffer.
final class EchoConnection {
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    var frames = FrameAssembler(maxFrame: Limits.defaultMaxFrame)
    /// Answers of the current read callback, sent at its end.
    var out = ByteWriter(capacity: 16 * 1024)
    /// Bytes handed to uv_write and not yet written.
    var unwritten = 0
    var reading = false
    var closing = false

    init(tcp: UnsafeMutablePointer<uv_tcp_t>) { self.tcp = tcp }
    deinit { frames.deallocate() }

    func close() {
        guard !closing else { return }
        closing = true
        uv_close(handle(tcp), echoOnClose)
    }

    func startReading() {
        reading = uv_read_start(stream(tcp), echoOnAlloc, echoOnRead) == 0
        if !reading { close() }
    }

    /// Sends `out`: uv_try_write, then one uv_write of the rest in one heap block.
    func flush() {
        guard out.count > 0 else { return }
        var failed = false
        out.bytes.withUnsafeBytes { raw in
            let count = raw.count
            var buf = uv_buf_init(UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: CChar.self)),
                                  UInt32(count))
            let tried = Int(uv_try_write(stream(tcp), &buf, 1))
            var written = 0
            if tried >= 0 {
                written = tried
            } else if tried != Int(UV_EAGAIN.rawValue) {
                failed = true
                return
            }
            guard written < count else { return }
            let rest = count - written
            failed = !queueWrite(stream(tcp), raw.baseAddress! + written, rest, onWrite: echoOnWrite)
            if !failed { unwritten += rest }
        }
        out.removeAll()
        if failed {
            close()
        } else if reading && unwritten > maxUnwrittenBytes {
            uv_read_stop(stream(tcp))
            reading = false
        }
    }
}

// MARK: libuv callbacks (no captures: context travels through `data`)

func echoOnConnection(_ server: UnsafeMutablePointer<uv_stream_t>?, _ status: Int32) {
    guard status == 0, let server else { return }
    let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
    check(uv_tcp_init(server.pointee.loop, tcp), "uv_tcp_init")
    guard uv_accept(server, stream(tcp)) == 0 else {
        uv_close(handle(tcp), freeHandle)
        return
    }
    _ = uv_tcp_nodelay(tcp, 1)
    let connection = EchoConnection(tcp: tcp)
    tcp.pointee.data = Unmanaged.passRetained(connection).toOpaque()
    connection.startReading()
}

func echoOnAlloc(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ buf: UnsafeMutablePointer<uv_buf_t>?) {
    let worker = Unmanaged<EchoWorker>.fromOpaque(handle!.pointee.loop.pointee.data).takeUnretainedValue()
    buf!.pointee = uv_buf_init(worker.readBuffer.assumingMemoryBound(to: CChar.self), UInt32(readBufferBytes))
}

func echoOnRead(_ s: UnsafeMutablePointer<uv_stream_t>?, _ nread: Int, _ buf: UnsafePointer<uv_buf_t>?) {
    let connection = Unmanaged<EchoConnection>.fromOpaque(s!.pointee.data).takeUnretainedValue()
    if nread < 0 {
        connection.close()  // EOF or error
        return
    }
    guard nread > 0, !connection.closing else { return }
    // Take the writer out of the object: appends then touch a unique local.
    var out = ByteWriter(capacity: 0)
    swap(&out, &connection.out)
    let failure = connection.frames.consume(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread)) { header, _ in
        let start = out.beginFrame(opcode: header.opcode, requestID: header.requestID, response: true)
        out.endFrame(start)
    }
    swap(&out, &connection.out)
    connection.flush()
    if failure != nil { connection.close() }
}

func echoOnWrite(_ req: UnsafeMutablePointer<uv_write_t>?, _ status: Int32) {
    let req = req!
    let bytes = Int(bitPattern: req.pointee.data)
    let s = req.pointee.handle!
    free(req)
    let connection = Unmanaged<EchoConnection>.fromOpaque(s.pointee.data).takeUnretainedValue()
    connection.unwritten -= bytes
    if status < 0 {
        connection.close()
    } else if !connection.reading && !connection.closing && connection.unwritten <= maxUnwrittenBytes {
        connection.startReading()
    }
}

func echoOnClose(_ h: UnsafeMutablePointer<uv_handle_t>?) {
    Unmanaged<EchoConnection>.fromOpaque(h!.pointee.data).release()
    h!.deallocate()
}

func echoOnSignal(_ watcher: UnsafeMutablePointer<uv_signal_t>?, _ signum: Int32) {
    uv_stop(watcher!.pointee.loop)
}

func echoWorkerThread(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    Unmanaged<EchoWorker>.fromOpaque(arg!).takeUnretainedValue().run()
    return nil
}

// MARK: entry point

@main
enum EchoMain {
    static func main() {
        programName = "stockd-echo"
        var port: UInt16 = 0
        var portFile: String?
        var workers = 1
        var args = CommandLine.arguments.dropFirst()
        while let flag = args.popFirst() {
            func value() -> String {
                guard let v = args.popFirst() else { fatal("\(flag) needs a value") }
                return v
            }
            switch flag {
            case "--port":
                guard let v = UInt16(value()) else { fatal("--port: not a port number") }
                port = v
            case "--port-file": portFile = value()
            case "--workers":
                guard let v = Int(value()) else { fatal("--workers: not a number") }
                workers = v
            case "-h", "--help":
                print("usage: stockd-echo [--port N] [--port-file FILE] [--workers N]")
                return
            default: fatal("unknown flag \(flag)")
            }
        }
        guard workers >= 1 && workers <= 64 else { fatal("--workers: 1...64") }
        signal(SIGPIPE, SIG_IGN)

        // Worker 0 binds first to learn an ephemeral port; the others join it.
        var loops: [EchoWorker] = []
        for index in 0..<workers {
            let worker = EchoWorker()
            let bound = worker.listen(port: port)
            if index == 0 { port = bound }
            worker.watchSignals()
            loops.append(worker)
        }
        if let portFile { writeFile(portFile, "\(port)\n") }
        print("stockd-echo: listening on 127.0.0.1:\(port) with \(workers) loop(s)")
        fflush(nil)

        var threads: [pthread_t] = []
        for worker in loops.dropFirst() {
            var thread = pthread_t()
            let arg = Unmanaged.passUnretained(worker).toOpaque()
            guard pthread_create(&thread, nil, echoWorkerThread, arg) == 0 else { fatal("pthread_create failed") }
            threads.append(thread)
        }
        loops[0].run()  // returns on SIGINT/SIGTERM
        for thread in threads { pthread_join(thread, nil) }
        print("stockd-echo: stopped")
        fflush(nil)
        exit(0)
    }
}
