// `stockbench hostile`: the hostile-client suite. A well-behaved checkout
// client runs a steady RESERVE + CONFIRM load (depth 1) alone, then again
// while attackers run beside it on their own threads and connections:
// garbage bytes, a 4 GiB length prefix, zero-length frames, unknown opcodes,
// HELLO floods, connect/disconnect cycles, half-open sockets, clients that
// never read, and forged tokens. Each attack is bounded in count and paced,
// so what is measured is how the server isolates clients, not a saturated
// machine. The good client's latency in both phases and their ratio are
// reported (measured, not a pass/fail check unless --max-p99-ratio is given);
// the checks are about correctness: the server is up, the good client saw no
// error, the SKU's counts are exact, no forged token did anything, stockd's
// RSS stayed bounded, and the attacks were answered as PROTOCOL.md §3-§6 say.

import ArgumentParser
import Foundation
import Histogram
import StockClient
#if canImport(Glibc)
import Glibc
#endif

struct Hostile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hostile",
        abstract: "Hostile-client suite: a checkout client's latency alone and beside bounded attackers, "
            + "and the server's answers to them.",
        discussion: """
            Phase 1 (baseline): --connections closed loops of RESERVE 1 unit + CONFIRM (depth 1) for \
            --duration. Phase 2 (under attack): the same load for the same time while attackers run: \
            random bytes, a 0xFFFFFFFF length prefix, zero-length frames, unknown opcodes, pipelined HELLOs \
            and one-HELLO connections, --cycles connect/disconnect cycles, --half-open sockets stuck mid-frame, \
            --never-read clients pipelining STOCK_LIST/STOCK_GET, and --forged-tokens random tokens at CONFIRM \
            and RELEASE. Attackers never have a credential. Exit 1 if a check fails: server up, zero good-client \
            errors, exact counts, every forged token refused, RSS under --max-rss-mib (when measured), attacks \
            answered as specified. The p99 ratio is reported, and checked only with --max-p99-ratio.
            """)

    @Option(help: "stockd host:port on loopback (default: start one).") var server: String?
    @Option(help: "The good client's credential (sent in HELLO); attackers never have one.") var token = ""
    @Option(help: "Credential for staging the SKU (default: --token).") var adminToken: String?
    @Option(help: ArgumentHelp("Use this SKU as the server has it instead of staging a fresh one "
                               + "(no holds on it; its stock must last both phases).", valueName: "SKU"))
    var sku: String?
    @Option(help: "Length of each phase (default: 10s).", transform: Seconds.parse) var duration = Seconds(10)
    @Option(help: "Good-client connections (each a closed loop at depth 1).") var connections = 4
    @Option(help: "Connect/disconnect cycles during the attack phase.") var cycles = 10_000
    @Option(help: "Random tokens thrown at CONFIRM and RELEASE during the attack phase.") var forgedTokens = 100_000
    @Option(help: "Sockets left mid-frame until the phase ends.") var halfOpen = 200
    @Option(help: "Connections that pipeline requests and never read an answer.") var neverRead = 20
    @Option(help: "Bound on stockd's RSS in MiB (sampled every 100 ms in phase 2; needs a local pid).")
    var maxRssMib = 512
    @Option(help: "Fail when p99 under attack / p99 baseline exceeds this (0: off; timing is reported, not checked).")
    var maxP99Ratio: Double = 0
    @Option(help: "pid of the stockd behind --server, to sample its RSS (default: only a stockd started here).")
    var stockdPid: Int32?
    @Option(help: "stockd worker threads when stockbench starts stockd.") var stockdWorkers = 1
    @Option(help: "stockd journaling when stockbench starts stockd: always (fdatasync, temp data dir) or none.")
    var stockdSync = "always"
    @Option(help: ArgumentHelp("Only these attacks, comma-separated (default: all): "
                               + HostileSetup.attackNames.joined(separator: ","), valueName: "names"))
    var attacks: String?
    @Option(help: "Seed of the attackers' random bytes and tokens.") var seed: UInt64 = 42
    @Flag(help: "One JSON document on stdout.") var json = false

    func validate() throws {
        if let server { _ = try LoopbackAddress(server) }
        guard duration.value >= 0.5, duration.value <= 600 else { throw ValidationError("--duration must be 500ms...10m") }
        guard (1...64).contains(connections) else { throw ValidationError("--connections must be 1...64") }
        guard (0...1_000_000).contains(cycles) else { throw ValidationError("--cycles must be 0...1000000") }
        guard (0...10_000_000).contains(forgedTokens) else { throw ValidationError("--forged-tokens must be 0...10000000") }
        guard (0...2000).contains(halfOpen) else { throw ValidationError("--half-open must be 0...2000") }
        guard (0...200).contains(neverRead) else { throw ValidationError("--never-read must be 0...200") }
        guard maxRssMib >= 1 else { throw ValidationError("--max-rss-mib must be positive") }
        guard maxP99Ratio >= 0, maxP99Ratio.isFinite else { throw ValidationError("--max-p99-ratio must be >= 0") }
        guard (1...64).contains(stockdWorkers) else { throw ValidationError("--stockd-workers must be 1...64") }
        guard ["none", "always"].contains(stockdSync) else { throw ValidationError("--stockd-sync must be none or always") }
        if let sku, SKU(sku).map({ !$0.isValidSKU }) ?? true { throw ValidationError("--sku: not a valid SKU") }
        if server == nil && stockdPid != nil { throw ValidationError("--stockd-pid goes with --server") }
        for name in selectedAttacks where !HostileSetup.attackNames.contains(name) {
            throw ValidationError("--attacks: unknown attack '\(name)'")
        }
    }

    var selectedAttacks: [String] {
        attacks.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? HostileSetup.attackNames
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        installInterruptHandler()

        // The target: given, or a stockd of our own.
        let managed: ManagedStockd?
        let address: LoopbackAddress
        if let server {
            address = try LoopbackAddress(server)
            managed = nil
        } else {
            let s = try ManagedStockd(workers: stockdWorkers, maxTokens: nil, sync: stockdSync)
            managed = s
            address = LoopbackAddress(host: "127.0.0.1", port: s.port)
        }
        defer { managed?.stop() }
        let pid: Int32? = managed?.process.processIdentifier ?? stockdPid

        // Is authentication on? A STOCK_GET before any HELLO says.
        let authOn = try probeAuth(address)
        if authOn && token.isEmpty {
            throw BenchError("stockd at \(address) requires a credential: give the good client --token")
        }

        // The SKU: staged fresh, or as the server has it.
        let skuName: String
        if let sku {
            skuName = sku
        } else {
            skuName = "hostile-\(UInt32.random(in: 0...UInt32.max) % 1_000_000)-\(getpid())"
            let admin = StockClient(host: address.host, port: address.port, connections: 1,
                                    credential: adminToken ?? token, clientName: "stockbench-hostile")
            defer { admin.close() }
            do {
                _ = try await admin.setStock(skuName, onHand: Self.stagedUnits)
            } catch {
                throw BenchError("staging \(skuName) failed: \(error)"
                                 + (authOn ? " (staging needs an admin credential: --admin-token, or give --sku)" : ""))
            }
        }
        let reader = StockClient(host: address.host, port: address.port, connections: 1, credential: token,
                                 clientName: "stockbench-hostile")
        defer { reader.close() }
        let base: StockInfo
        do { base = try await reader.stock(skuName) } catch { throw BenchError("STOCK_GET \(skuName): \(error)") }
        guard base.reserved == 0 else {
            throw BenchError("\(skuName) has \(base.reserved) units held: use a SKU with no holds")
        }

        let setup = HostileSetup(
            address: address, authOn: authOn, credential: Array(token.utf8), sku: skuName,
            connections: connections, durationNs: UInt64(duration.value * 1e9), cycles: cycles,
            forgedTokens: forgedTokens, halfOpen: halfOpen, neverRead: neverRead, seed: seed, pid: pid,
            attacks: Set(selectedAttacks))
        let outcome = try runHostilePhases(setup, progress: !json && isatty(STDERR_FILENO) == 1)

        // Afterwards: alive, and the books.
        let up = pingOnce(address)
        let processAlive = managed.map { $0.process.isRunning } ?? (pid.map { kill($0, 0) == 0 } ?? true)
        var final: StockInfo?
        var finalError: String?
        do { final = try await reader.stock(skuName) } catch { finalError = "\(error)" }

        let report = HostileReport.make(
            self, setup: setup, outcome: outcome, base: base, final: final, finalError: finalError,
            serverUp: up && processAlive, pingDetail: up ? "PING answered" : "PING not answered",
            managed: managed != nil)
        if json {
            print(encodeJSON(report))
        } else {
            report.printHuman()
        }
        fflush(nil)
        if !report.ok { throw ExitCode(1) }
    }

    /// Units staged on a fresh SKU: more than any run can reserve.
    static let stagedUnits: UInt64 = 1_000_000_000
}

// MARK: - setup and target

/// `host:port` of a stockd on this machine (IPv4 loopback only).
struct LoopbackAddress: Sendable, CustomStringConvertible {
    let host: String
    let port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init(_ text: String) throws {
        guard let colon = text.lastIndex(of: ":"), let p = Int(text[text.index(after: colon)...]),
              (1...65535).contains(p) else {
            throw ValidationError("--server '\(text)': expected host:port")
        }
        var h = String(text[..<colon])
        if h == "localhost" { h = "127.0.0.1" }
        var a = in_addr()
        guard inet_pton(AF_INET, h, &a) == 1, UInt32(bigEndian: a.s_addr) >> 24 == 127 else {
            throw ValidationError("--server '\(text)': hostile runs only against a loopback IPv4 address (127.x.x.x)")
        }
        host = h
        port = p
    }

    var description: String { "\(host):\(port)" }
}

/// Everything the phases need (read-only).
struct HostileSetup: Sendable {
    var address: LoopbackAddress
    var authOn: Bool
    var credential: [UInt8]
    var sku: String
    var connections: Int
    var durationNs: UInt64
    var cycles: Int
    var forgedTokens: Int
    var halfOpen: Int
    var neverRead: Int
    var seed: UInt64
    var pid: Int32?
    var attacks: Set<String>

    /// The attacks, in the order of the issue.
    static let attackNames = ["garbage", "huge_length", "zero_length", "unknown_opcode", "hello_pipelined",
                              "hello_connections", "connect_cycles", "half_open", "never_read", "forged_tokens"]
}

@inline(__always) func monoNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Stop flags shared by the attack threads.
final class RunControl: @unchecked Sendable {
    private let lock = NSLock()
    private var _phaseOver = false
    private var _aborted = false

    var phaseOver: Bool { lock.withLock { _phaseOver } }
    var aborted: Bool { lock.withLock { _aborted } }
    func endPhase() { lock.withLock { _phaseOver = true } }
    func abort() { lock.withLock { _aborted = true; _phaseOver = true } }
}

/// Threads started together and waited for together.
final class ThreadGroup: @unchecked Sendable {
    private let group = DispatchGroup()

    func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        group.enter()
        let t = Thread { [group] in
            body()
            group.leave()
        }
        t.name = name
        t.stackSize = 1 << 20
        t.start()
    }

    func wait() { group.wait() }

    /// False when the threads are still running after `seconds`.
    func wait(seconds: Double) -> Bool { group.wait(timeout: .now() + seconds) == .success }
}

/// Results handed from threads to the main thread.
final class Collector<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []

    func add(_ item: T) { lock.withLock { items.append(item) } }
    var all: [T] { lock.withLock { items } }
}

// MARK: - a blocking socket

enum RawError: Error, Equatable, CustomStringConvertible {
    case eof, reset, timeout, failed(Int32), protocolError(String)

    var description: String {
        switch self {
        case .eof: "connection closed by the server"
        case .reset: "connection reset"
        case .timeout: "timed out"
        case .failed(let e): String(cString: strerror(e))
        case .protocolError(let s): "protocol error: \(s)"
        }
    }

    /// The server ended the connection.
    var isClose: Bool {
        switch self {
        case .eof, .reset: true
        default: false
        }
    }
}

/// One answer frame, without copying its payload (the first 16 bytes are kept: a token).
struct Answer {
    var opcode: UInt8
    var status: UInt8
    var id: UInt32
    var payloadCount: Int
    var head0: UInt64 = 0
    var head1: UInt64 = 0
}

/// A TCP connection to stockd with blocking reads and writes (timeouts via
/// SO_RCVTIMEO / SO_SNDTIMEO). Used by one thread at a time.
final class RawConn: @unchecked Sendable {
    let fd: Int32
    private static let capacity = 1 << 18
    private let buffer = UnsafeMutableRawPointer.allocate(byteCount: RawConn.capacity, alignment: 16)
    private var lo = 0
    private var hi = 0
    private var closed = false

    private init(fd: Int32) { self.fd = fd }

    deinit {
        close()
        buffer.deallocate()
    }

    /// Connects (bounded by `timeoutMs`), TCP_NODELAY, blocking with the given timeouts unless `nonBlocking`.
    static func open(_ a: LoopbackAddress, timeoutMs: Int32 = 2000, receiveBuffer: Int32 = 0,
                     nonBlocking: Bool = false) throws -> RawConn {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(a.port).bigEndian)
        guard inet_pton(AF_INET, a.host, &addr.sin_addr) == 1 else { throw RawError.failed(EINVAL) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RawError.failed(errno) }
        if receiveBuffer > 0 {
            var v = receiveBuffer
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, socklen_t(MemoryLayout<Int32>.size))
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            let e = errno
            guard e == EINPROGRESS else {
                Glibc.close(fd)
                throw RawError.failed(e)
            }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, timeoutMs) == 1 else {
                Glibc.close(fd)
                throw RawError.timeout
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                Glibc.close(fd)
                throw RawError.failed(err)
            }
        }
        if !nonBlocking { _ = fcntl(fd, F_SETFL, flags) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let c = RawConn(fd: fd)
        c.setTimeouts(ms: 5000)
        return c
    }

    func setTimeouts(ms: Int) {
        var tv = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
            if n > 0 {
                off += n
                continue
            }
            let e = errno
            if n < 0 && e == EINTR { continue }
            if n < 0 && (e == EAGAIN || e == EWOULDBLOCK) { throw RawError.timeout }
            if e == ECONNRESET || e == EPIPE { throw RawError.reset }
            throw RawError.failed(e)
        }
    }

    func send(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try send($0) } }

    /// The next answer frame.
    func next() throws -> Answer {
        while true {
            let view = UnsafeRawBufferPointer(start: buffer + lo, count: hi - lo)
            switch FrameParser.parse(view, maxFrame: RawConn.capacity) {
            case .frame(let h, let range):
                var a = Answer(opcode: h.opcode, status: h.status, id: h.requestID, payloadCount: range.count)
                if range.count >= 16 {
                    a.head0 = view.loadUnaligned(fromByteOffset: range.lowerBound, as: UInt64.self)
                    a.head1 = view.loadUnaligned(fromByteOffset: range.lowerBound + 8, as: UInt64.self)
                }
                lo += h.frameLength
                if lo == hi { lo = 0; hi = 0 }
                return a
            case .lengthTooSmall(let l):
                throw RawError.protocolError("answer with length \(l)")
            case .tooLarge(let l, _):
                throw RawError.protocolError("answer of \(l) bytes")
            case .needMore:
                if lo > 0 {
                    (buffer).copyMemory(from: buffer + lo, byteCount: hi - lo)
                    hi -= lo
                    lo = 0
                }
                let n = recv(fd, buffer + hi, RawConn.capacity - hi, 0)
                if n > 0 {
                    hi += n
                    continue
                }
                if n == 0 { throw RawError.eof }
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK { throw RawError.timeout }
                if e == ECONNRESET || e == EPIPE { throw RawError.reset }
                throw RawError.failed(e)
            }
        }
    }

    /// Whether the server has closed its side (checked without reading).
    func peerClosed() -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN) | 0x2000 /* POLLRDHUP */, revents: 0)
        guard poll(&p, 1, 0) == 1 else { return false }
        return p.revents & (Int16(POLLHUP) | Int16(POLLERR) | 0x2000) != 0
    }

    /// A close that resets the connection (SO_LINGER 0) instead of FIN.
    func abort() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }
}

// MARK: - frames

enum HFrame {
    static func encode(_ r: Request, id: UInt32) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        RequestCodec.encode(r, requestID: id, into: &w)
        return w.bytes
    }

    static func ping(_ id: UInt32) -> [UInt8] { encode(.ping, id: id) }

    static func hello(_ id: UInt32, credential: [UInt8], name: String = "stockbench-hostile") -> [UInt8] {
        encode(.hello(Hello(clientName: Array(name.utf8), credential: credential)), id: id)
    }

    /// A header with any opcode and an empty payload (`length` 8).
    static func bare(opcode: UInt8, id: UInt32) -> [UInt8] {
        var b: [UInt8] = [8, 0, 0, 0, opcode, 0, 0, 0]
        appendU32(&b, id)
        return b
    }

    static func appendU32(_ b: inout [UInt8], _ v: UInt32) {
        for i in 0..<4 { b.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
    }
}

func statusName(_ s: UInt8) -> String { Status(rawValue: s)?.name ?? "STATUS_\(s)" }

/// PING on a fresh connection, answered within 2 s.
func pingOnce(_ a: LoopbackAddress) -> Bool {
    guard let c = try? RawConn.open(a) else { return false }
    defer { c.close() }
    c.setTimeouts(ms: 2000)
    guard (try? c.send(HFrame.ping(77))) != nil, let r = try? c.next() else { return false }
    return r.status == 0 && r.opcode == Opcode.ping.rawValue && r.id == 77
}

/// True when the server wants HELLO with a credential before anything else.
func probeAuth(_ a: LoopbackAddress) throws -> Bool {
    let c: RawConn
    do { c = try RawConn.open(a) } catch { throw BenchError("cannot connect to stockd at \(a): \(error)") }
    defer { c.close() }
    c.setTimeouts(ms: 3000)
    do {
        try c.send(HFrame.ping(1) + HFrame.encode(.stockGet(SKU("hostile-probe")!), id: 2))
        let p = try c.next()
        guard p.status == 0, p.id == 1 else { throw BenchError("PING answered \(statusName(p.status))") }
        let g = try c.next()
        return g.status == Status.unauthenticated.rawValue
    } catch let e as BenchError {
        throw e
    } catch {
        throw BenchError("stockd at \(a) did not answer PING: \(error)")
    }
}

// MARK: - the good client

/// What the good client saw in one phase.
struct GoodPhase: Sendable {
    var histogram = Histogram<UInt64>(lowestDiscernibleValue: 100, highestTrackableValue: 200_000_000_000,
                                      numberOfSignificantValueDigits: .three)
    var requests: UInt64 = 0
    var reserves: UInt64 = 0
    var confirms: UInt64 = 0
    var errors: [String: Int] = [:]
    var seconds = 0.0

    var errorCount: Int { errors.values.reduce(0, +) }

    mutating func add(_ o: GoodPhase) {
        histogram.add(o.histogram)
        requests += o.requests
        reserves += o.reserves
        confirms += o.confirms
        for (k, v) in o.errors { errors[k, default: 0] += v }
        seconds = max(seconds, o.seconds)
    }
}

/// `connections` closed loops of RESERVE 1 + CONFIRM, one thread each, for `durationNs`.
func runGoodClient(_ s: HostileSetup) throws -> GoodPhase {
    var conns: [RawConn] = []
    for _ in 0..<s.connections {
        let c: RawConn
        do { c = try RawConn.open(s.address) } catch { throw BenchError("good client: cannot connect: \(error)") }
        if !s.credential.isEmpty {
            do {
                try c.send(HFrame.hello(1, credential: s.credential, name: "stockbench-hostile-good"))
                let r = try c.next()
                guard r.status == 0 else { throw BenchError("good client: HELLO answered \(statusName(r.status))") }
            } catch let e as BenchError {
                throw e
            } catch {
                throw BenchError("good client: HELLO: \(error)")
            }
        }
        conns.append(c)
    }
    let reserveTemplate = HFrame.encode(.reserve(Reserve(sku: SKU(s.sku)!, quantity: 1, ttlMs: 60_000)), id: 0)
    let confirmTemplate = HFrame.encode(.confirm(Confirm(token: Token(slot: 0, generation: 0, secret: 0))), id: 0)
    let results = Collector<GoodPhase>()
    let threads = ThreadGroup()
    let start = monoNs()
    let end = start + s.durationNs
    for (i, c) in conns.enumerated() {
        threads.spawn("good-\(i)") {
            var phase = GoodPhase()
            var reserve = reserveTemplate
            var confirm = confirmTemplate
            var id: UInt32 = 1
            do {
                while true {
                    let t0 = monoNs()
                    if t0 >= end { break }
                    id &+= 1
                    reserve.withUnsafeMutableBytes { $0.storeBytes(of: id.littleEndian, toByteOffset: 8, as: UInt32.self) }
                    try c.send(reserve)
                    let r = try c.next()
                    let t1 = monoNs()
                    _ = phase.histogram.record(t1 &- t0)
                    phase.requests += 1
                    guard r.opcode == Opcode.reserve.rawValue, r.id == id else {
                        throw RawError.protocolError("RESERVE answered by opcode \(r.opcode) id \(r.id)")
                    }
                    guard r.status == 0, r.payloadCount >= 32 else {
                        phase.errors["RESERVE \(statusName(r.status))", default: 0] += 1
                        continue
                    }
                    phase.reserves += 1
                    id &+= 1
                    confirm.withUnsafeMutableBytes {
                        $0.storeBytes(of: id.littleEndian, toByteOffset: 8, as: UInt32.self)
                        $0.storeBytes(of: r.head0, toByteOffset: 12, as: UInt64.self)
                        $0.storeBytes(of: r.head1, toByteOffset: 20, as: UInt64.self)
                    }
                    try c.send(confirm)
                    let a = try c.next()
                    _ = phase.histogram.record(monoNs() &- t1)
                    phase.requests += 1
                    guard a.opcode == Opcode.confirm.rawValue, a.id == id else {
                        throw RawError.protocolError("CONFIRM answered by opcode \(a.opcode) id \(a.id)")
                    }
                    if a.status == 0 {
                        phase.confirms += 1
                    } else {
                        phase.errors["CONFIRM \(statusName(a.status))", default: 0] += 1
                    }
                }
            } catch {
                phase.errors["connection: \(error)", default: 0] += 1
            }
            phase.seconds = Double(monoNs() - start) / 1e9
            c.close()
            results.add(phase)
        }
    }
    threads.wait()
    var total = GoodPhase()
    for p in results.all { total.add(p) }
    return total
}

// MARK: - attacks

/// One attack's counts and what it observed.
struct AttackTally: Sendable {
    var name: String
    var what: String
    var unit: String
    var planned: Int
    var expected: String
    /// Whether `expected` is checked (else the outcome is only observed).
    var checked: Bool
    var sent = 0
    var connections = 0
    var frames = 0
    var bytes = 0
    var answers: [String: Int] = [:]
    var closesSeen = 0
    var outcomes: [String: Int] = [:]
    var violations = 0
    var firstViolation: String?
    var startNs: UInt64 = 0
    var endNs: UInt64 = 0
    var incomplete = false

    init(_ name: String, _ what: String, unit: String, planned: Int, expected: String, checked: Bool) {
        self.name = name
        self.what = what
        self.unit = unit
        self.planned = planned
        self.expected = expected
        self.checked = checked
    }

    mutating func answer(_ a: Answer) { answers[statusName(a.status), default: 0] += 1 }
    mutating func outcome(_ s: String, _ n: Int = 1) { outcomes[s, default: 0] += n }
    mutating func violate(_ s: String) {
        violations += 1
        if firstViolation == nil { firstViolation = s }
    }
    mutating func closed(_ e: RawError) {
        closesSeen += 1
        outcome(e == .reset ? "closed by the server (reset)" : "closed by the server")
    }
}

/// What every attack thread shares.
struct AttackEnv: Sendable {
    var setup: HostileSetup
    var control: RunControl
    var startNs: UInt64
    /// Attacks are spread over this span (a little less than the phase).
    var spanNs: UInt64

    var address: LoopbackAddress { setup.address }

    /// Waits for item `i` of `count` on an even schedule; false when aborted.
    func waitTurn(_ i: Int, of count: Int) -> Bool {
        let due = startNs + UInt64(Double(spanNs) * Double(i) / Double(max(count, 1)))
        while true {
            if control.aborted { return false }
            let now = monoNs()
            if now >= due { return true }
            usleep(UInt32(min(due - now, 20_000_000) / 1000))
        }
    }

    /// Sleeps until the phase is over (or aborted).
    func holdUntilPhaseEnd() {
        while !control.phaseOver { usleep(10_000) }
    }

    /// The attacker's (wrong) credential when the server has auth, else none.
    var wrongCredential: [UInt8] { setup.authOn ? Array("not-a-credential-\(setup.seed)".utf8) : [] }
}

extension BenchRandom {
    mutating func bytes(_ n: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(n + 8)
        while out.count < n {
            let v = next()
            for i in 0..<8 where out.count < n { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
        }
        return out
    }
}

/// Reads answers until the server closes, `stop` says so, or a read times out;
/// every answer `stop` does not stop at is counted. Returns how it ended.
@discardableResult
func readAnswers(_ c: RawConn, _ t: inout AttackTally, timeoutMs: Int, stop: (Answer) -> Bool = { _ in false })
    -> String {
    c.setTimeouts(ms: timeoutMs)
    while true {
        do {
            let a = try c.next()
            if stop(a) { return "stopped" }
            t.answer(a)
        } catch let e as RawError {
            if e.isClose {
                t.closed(e)
                return "closed"
            }
            if e == .timeout {
                t.outcome("no further answer within \(timeoutMs) ms, left open")
                return "timeout"
            }
            t.outcome("read failed: \(e)")
            return "failed"
        } catch {
            return "failed"
        }
    }
}

/// 1. Random bytes: half pure noise, half frames with sane lengths and random
/// opcodes/headers/payloads; each followed by a PING to see whether the
/// connection survived.
func attackGarbage(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("garbage", "random bytes (seeded): noise, or frames with random opcodes/header bits/payloads, "
                        + "then a PING", unit: "connections", planned: count,
                        expected: "error answers (MALFORMED, FRAME_TOO_LARGE, UNKNOWN_OPCODE, ...) and/or close; "
                            + "never a crash", checked: false)
    var rng = BenchRandom(seed: env.setup.seed &+ 1)
    let assigned: [UInt8] = [0x01, 0x02, 0x10, 0x11, 0x12, 0x13, 0x14, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26,
                             0x30, 0x41, 0x42]
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        var bytes: [UInt8]
        if i % 2 == 0 {
            bytes = rng.bytes(64 + rng.below(2048 - 64))
        } else {
            bytes = []
            for _ in 0..<(1 + rng.below(20)) {
                let n = rng.below(49)
                HFrame.appendU32(&bytes, UInt32(8 + n))
                bytes.append(rng.below(2) == 0 ? assigned[rng.below(assigned.count)] : UInt8(truncatingIfNeeded: rng.next()))
                if rng.below(4) == 0 {
                    bytes += rng.bytes(3)
                } else {
                    bytes += [0, 0, 0]
                }
                HFrame.appendU32(&bytes, UInt32(truncatingIfNeeded: rng.next()))
                bytes += rng.bytes(n)
                t.frames += 1
            }
        }
        let pingID = 0xFEED_0000 | UInt32(i & 0xFFFF)
        bytes += HFrame.ping(pingID)
        let c: RawConn
        do { c = try RawConn.open(env.address) } catch {
            t.outcome("connect failed: \(error)")
            continue
        }
        t.connections += 1
        t.sent += 1
        t.bytes += bytes.count
        do { try c.send(bytes) } catch let e as RawError where e.isClose {
            t.closed(e)  // closed while we were still sending
            c.close()
            continue
        } catch {
            t.outcome("send failed: \(error)")
            c.close()
            continue
        }
        let how = readAnswers(c, &t, timeoutMs: 500) { $0.opcode == Opcode.ping.rawValue && $0.id == pingID }
        if how == "stopped" { t.outcome("connection kept: the PING after the garbage was answered") }
        c.close()
    }
    return t
}

/// 2. A 0xFFFFFFFF length prefix (4 GiB) on a PING header.
func attackHugeLength(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("huge_length", "length prefix 0xFFFFFFFF (4 GiB) on a PING header", unit: "connections",
                        planned: count, expected: "FRAME_TOO_LARGE echoing the request id, then close", checked: true)
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        let id = 0xB16_0000 | UInt32(i & 0xFFFF)
        var bytes: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, Opcode.ping.rawValue, 0, 0, 0]
        HFrame.appendU32(&bytes, id)
        oneFrameThenClose(env, &t, bytes) { $0.status == Status.frameTooLarge.rawValue && $0.id == id }
    }
    return t
}

/// 3. A zero length field.
func attackZeroLength(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("zero_length", "length field 0 (below the 8-byte minimum)", unit: "connections",
                        planned: count, expected: "MALFORMED (opcode 0, request id 0), then close", checked: true)
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        var bytes: [UInt8] = [0, 0, 0, 0, Opcode.ping.rawValue, 0, 0, 0]
        HFrame.appendU32(&bytes, UInt32(i + 1))
        oneFrameThenClose(env, &t, bytes) { $0.status == Status.malformed.rawValue && $0.id == 0 && $0.opcode == 0 }
    }
    return t
}

/// Sends `bytes` on a fresh connection; the server must answer exactly once
/// (`expected`) and close.
func oneFrameThenClose(_ env: AttackEnv, _ t: inout AttackTally, _ bytes: [UInt8], expected: (Answer) -> Bool) {
    guard let c = try? RawConn.open(env.address) else {
        t.outcome("connect failed")
        t.violate("connect failed")
        return
    }
    t.connections += 1
    t.sent += 1
    t.frames += 1
    t.bytes += bytes.count
    var got: [Answer] = []
    do { try c.send(bytes) } catch { t.outcome("send failed: \(error)") }
    let how = readAnswers(c, &t, timeoutMs: 3000) { a in
        got.append(a)
        return false
    }
    if got.count != 1 || !expected(got[0]) || how != "closed" {
        t.violate("answers \(got.map { statusName($0.status) + " op \($0.opcode) id \($0.id)" }), then \(how)")
    }
    c.close()
}

/// 4. Unassigned opcodes, in pipelined batches on two long-lived connections, each batch followed by a PING.
func attackUnknownOpcodes(_ env: AttackEnv, frames: Int) -> AttackTally {
    let batch = 25
    let batches = (frames + batch - 1) / batch
    var t = AttackTally("unknown_opcode", "unassigned opcodes 0x7E 0x50 0x03 0x0F 0x41 0x80 0xFF, batches of "
                        + "\(batch) + a PING on 2 connections", unit: "frames", planned: batches * batch,
                        expected: "UNKNOWN_OPCODE echoing opcode and id for each, connection kept (PING answered)",
                        checked: true)
    let opcodes: [UInt8] = [0x7E, 0x50, 0x03, 0x0F, 0x41, 0x80, 0xFF]
    var conns: [RawConn?] = [nil, nil]
    var id: UInt32 = 0
    for b in 0..<batches {
        guard env.waitTurn(b, of: batches) else { t.incomplete = true; break }
        let slot = b % 2
        if conns[slot] == nil {
            conns[slot] = try? RawConn.open(env.address)
            if conns[slot] == nil {
                t.outcome("connect failed")
                t.violate("connect failed")
                continue
            }
            t.connections += 1
        }
        let c = conns[slot]!
        var bytes: [UInt8] = []
        var expect: [(UInt8, UInt32)] = []
        for k in 0..<batch {
            id &+= 1
            let op = opcodes[(b * batch + k) % opcodes.count]
            bytes += HFrame.bare(opcode: op, id: id)
            expect.append((op, id))
        }
        id &+= 1
        let pingID = id
        bytes += HFrame.ping(pingID)
        t.sent += batch
        t.frames += batch + 1
        t.bytes += bytes.count
        do {
            c.setTimeouts(ms: 5000)
            try c.send(bytes)
            for (op, rid) in expect {
                let a = try c.next()
                t.answer(a)
                if a.status != Status.unknownOpcode.rawValue || a.opcode != op || a.id != rid {
                    t.violate("opcode 0x\(String(op, radix: 16)) answered \(statusName(a.status)) op \(a.opcode) id \(a.id)")
                }
            }
            let p = try c.next()
            if p.status == 0 && p.id == pingID {
                t.outcome("connection kept: PING after the batch answered")
            } else {
                t.violate("PING after the batch answered \(statusName(p.status)) id \(p.id)")
            }
        } catch let e as RawError {
            if e.isClose { t.closed(e) } else { t.outcome("failed: \(e)") }
            t.violate("connection \(e) during a batch")
            c.close()
            conns[slot] = nil
        } catch {}
    }
    for c in conns { c?.close() }
    return t
}

/// 5a. Many HELLOs pipelined on one connection.
func attackHelloPipelined(_ env: AttackEnv, connections count: Int, hellos: Int) -> AttackTally {
    let auth = env.setup.authOn
    var t = AttackTally("hello_pipelined", "\(hellos) HELLOs pipelined per connection"
                        + (auth ? " (wrong credential)" : " (no credential)"), unit: "HELLO frames",
                        planned: count * hellos,
                        expected: auth ? "AUTH_FAILED, then close (the rest unanswered)"
                            : "OK for the first, HELLO_OUT_OF_ORDER for every other, connection kept",
                        checked: true)
    var burst: [UInt8] = []
    for k in 0..<hellos { burst += HFrame.hello(UInt32(k + 1), credential: env.wrongCredential, name: "hostile-flood") }
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        guard let c = try? RawConn.open(env.address) else {
            t.outcome("connect failed")
            t.violate("connect failed")
            continue
        }
        t.connections += 1
        t.sent += hellos
        t.frames += hellos
        t.bytes += burst.count
        do { try c.send(burst) } catch let e as RawError where e.isClose {
            _ = e  // the server may close (AUTH_FAILED) before the whole burst is written
        } catch {
            t.outcome("send failed: \(error)")
        }
        var got: [Answer] = []
        let how = readAnswers(c, &t, timeoutMs: 2000) { a in
            got.append(a)
            return !auth && got.count == hellos
        }
        if how == "stopped", let last = got.last { t.answer(last) }
        if auth {
            if got.count != 1 || got[0].status != Status.authFailed.rawValue || how != "closed" {
                t.violate("\(got.count) answers, first \(got.first.map { statusName($0.status) } ?? "-"), then \(how)")
            }
        } else {
            let ok = got.count == hellos && got[0].status == 0
                && got.dropFirst().allSatisfy { $0.status == Status.helloOutOfOrder.rawValue }
            if ok {
                t.outcome("connection kept after \(hellos) HELLOs")
            } else {
                t.violate("\(got.count) answers, first \(got.first.map { statusName($0.status) } ?? "-"), then \(how)")
            }
        }
        c.close()
    }
    return t
}

/// 5b. Many connections each sending one HELLO.
func attackHelloSingle(_ env: AttackEnv, count: Int) -> AttackTally {
    let auth = env.setup.authOn
    var t = AttackTally("hello_connections", "connections each sending one HELLO"
                        + (auth ? " with a wrong credential" : " (no credential)"), unit: "connections",
                        planned: count, expected: auth ? "AUTH_FAILED, then close" : "OK (the client then closes)",
                        checked: true)
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        guard let c = try? RawConn.open(env.address) else {
            t.outcome("connect failed")
            t.violate("connect failed")
            continue
        }
        t.connections += 1
        t.sent += 1
        t.frames += 1
        let hello = HFrame.hello(UInt32(i + 1), credential: env.wrongCredential, name: "hostile-hello")
        t.bytes += hello.count
        var got: [Answer] = []
        do { try c.send(hello) } catch { t.outcome("send failed: \(error)") }
        let how = readAnswers(c, &t, timeoutMs: 2000) { a in
            got.append(a)
            return !auth
        }
        if how == "stopped", let last = got.last { t.answer(last) }
        if auth {
            if got.count != 1 || got[0].status != Status.authFailed.rawValue || how != "closed" {
                t.violate("answers \(got.map { statusName($0.status) }), then \(how)")
            }
        } else if got.count != 1 || got[0].status != 0 {
            t.violate("answers \(got.map { statusName($0.status) }), then \(how)")
        }
        if i % 2 == 0 { c.close() } else { c.abort() }
    }
    return t
}

/// 6. Connect, then disconnect at once (alternately FIN and RST).
func attackCycles(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("connect_cycles", "connect, then close at once (alternately FIN and RST)",
                        unit: "connections", planned: count, expected: "every connect accepted", checked: true)
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        do {
            let c = try RawConn.open(env.address)
            t.connections += 1
            t.sent += 1
            if i % 2 == 0 { c.close() } else { c.abort() }
        } catch {
            t.outcome("connect failed: \(error)")
            t.violate("connect failed: \(error)")
        }
    }
    t.outcome("connected and closed", t.sent)
    return t
}

/// 7. Half a frame header, then silence (3 in 4) or shutdown(SHUT_WR) (1 in 4), held until the phase ends.
func attackHalfOpen(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("half_open", "half a frame header then silence (3 in 4), or 7 bytes then shutdown(SHUT_WR); "
                        + "held until the phase ends", unit: "connections", planned: count,
                        expected: "shut-down ones closed by the server; silent ones closed by --frame-timeout "
                            + "(10 s by default) or left open", checked: true)
    var held: [(RawConn, Bool)] = []
    let openSpan = AttackEnv(setup: env.setup, control: env.control, startNs: env.startNs, spanNs: env.spanNs / 10)
    let ping = HFrame.ping(0xAAAA)
    for i in 0..<count {
        guard openSpan.waitTurn(i, of: count) else { t.incomplete = true; break }
        guard let c = try? RawConn.open(env.address) else {
            t.outcome("connect failed")
            continue
        }
        t.connections += 1
        let shut = i % 4 == 3
        let part = Array(ping.prefix(shut ? 7 : 5))
        do {
            try c.send(part)
            if shut { shutdown(c.fd, Int32(SHUT_WR)) }
            t.sent += 1
            t.bytes += part.count
            held.append((c, shut))
        } catch {
            t.outcome("send failed: \(error)")
            c.close()
        }
    }
    env.holdUntilPhaseEnd()
    for (c, shut) in held {
        let closed = c.peerClosed()
        let kind = shut ? "shutdown(SHUT_WR) mid-frame" : "half a header, then silence"
        t.outcome("\(kind): " + (closed ? "closed by the server before the phase ended" : "still open at the phase end"))
        if closed { t.closesSeen += 1 }
        if shut && !closed { t.violate("a connection shut down mid-frame was still open at the phase end") }
        c.close()
    }
    return t
}

/// 8. Pipelines STOCK_LIST / STOCK_GET and never reads (small receive buffer), held until the phase ends.
/// Every connection is fed a block of 64 requests every 50 ms (1,280/s each), up to `blocks` blocks,
/// as long as the server keeps reading it; what it could not write is counted as backpressure.
func attackNeverRead(_ env: AttackEnv, count: Int, blocks: Int) -> AttackTally {
    var t = AttackTally("never_read", "pipeline 64 STOCK_LIST (limit 1000) / STOCK_GET every 50 ms per connection "
                        + "(up to \(blocks * 64) each), never read (SO_RCVBUF 4 KiB); held until the phase ends",
                        unit: "connections", planned: count,
                        expected: "answers pile up server-side up to --max-output, then it stops reading them "
                            + "(backpressure); others unaffected", checked: false)
    var block: [UInt8] = []
    var ends: [Int] = []  // where each of the 64 frames of a block ends
    let sku = SKU(env.setup.sku)!
    for k in 0..<64 {
        block += k % 2 == 0 ? HFrame.encode(.stockList(StockList(cursor: 0, limit: 1000)), id: UInt32(k))
            : HFrame.encode(.stockGet(sku), id: UInt32(k))
        ends.append(block.count)
    }
    let limit = blocks * block.count
    struct Deaf {
        let conn: RawConn
        var written = 0
        var blocked = false
        var failed = false
    }
    var held: [Deaf] = []
    let openSpan = AttackEnv(setup: env.setup, control: env.control, startNs: env.startNs, spanNs: env.spanNs / 10)
    for i in 0..<count {
        guard openSpan.waitTurn(i, of: count) else { t.incomplete = true; break }
        guard let c = try? RawConn.open(env.address, receiveBuffer: 4096, nonBlocking: true) else {
            t.outcome("connect failed")
            continue
        }
        t.connections += 1
        t.sent += 1
        held.append(Deaf(conn: c))
    }
    // Feed every 50 ms until the phase ends (or every connection is done).
    var round = 0
    let feedStart = monoNs()
    while !env.control.phaseOver {
        var active = false
        for k in held.indices where !held[k].blocked && !held[k].failed && held[k].written < limit {
            active = true
            var target = min(limit, (held[k].written / block.count + 1) * block.count)
            while held[k].written < target {
                let offset = held[k].written % block.count
                let n = block.withUnsafeBytes {
                    Glibc.send(held[k].conn.fd, $0.baseAddress! + offset, target - held[k].written, Int32(MSG_NOSIGNAL))
                }
                if n > 0 {
                    held[k].written += n
                } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    held[k].blocked = true  // the kernel buffers are full: the server stopped reading it
                    target = held[k].written
                } else {
                    held[k].failed = true
                    t.outcome("send failed: \(String(cString: strerror(errno)))")
                    target = held[k].written
                }
            }
        }
        if !active { break }
        round += 1
        let due = feedStart + UInt64(round) * 50_000_000
        while !env.control.phaseOver && monoNs() < due { usleep(5_000) }
    }
    env.holdUntilPhaseEnd()
    for d in held {
        t.bytes += d.written
        t.frames += (d.written / block.count) * 64 + ends.filter { $0 <= d.written % block.count }.count
        t.outcome(d.blocked ? "server stopped reading it (send would block)"
                  : d.written >= limit ? "all \(blocks * 64) requests written" : "server still reading at the phase end")
        let closed = d.conn.peerClosed()
        t.outcome(closed ? "closed by the server before the phase ended" : "still open at the phase end")
        if closed { t.closesSeen += 1 }
        d.conn.close()
    }
    return t
}

/// 9. Forged tokens at CONFIRM and RELEASE, pipelined 32 at a time; every answer read.
func attackForgedTokens(_ env: AttackEnv, index: Int, of lanes: Int, total: Int) -> AttackTally {
    let auth = env.setup.authOn
    let mine = total / lanes + (index < total % lanes ? 1 : 0)
    var t = AttackTally("forged_tokens", "random tokens (half fully random, half with a live-looking slot and "
                        + "generation) at CONFIRM and RELEASE, \(lanes) connections, 32 pipelined",
                        unit: "tokens", planned: mine,
                        expected: auth ? "UNAUTHENTICATED for every one (attackers have no credential)"
                            : "TOKEN_UNKNOWN for every one", checked: true)
    let want = auth ? Status.unauthenticated.rawValue : Status.tokenUnknown.rawValue
    var rng = BenchRandom(seed: env.setup.seed &+ 100 &+ UInt64(index))
    let batch = 32
    let batches = (mine + batch - 1) / batch
    var conn: RawConn?
    var id: UInt32 = 0
    var done = 0
    for b in 0..<batches {
        guard env.waitTurn(b, of: batches) else { t.incomplete = true; break }
        if conn == nil {
            conn = try? RawConn.open(env.address)
            guard conn != nil else {
                t.outcome("connect failed")
                t.violate("connect failed")
                continue
            }
            t.connections += 1
        }
        let c = conn!
        let n = min(batch, mine - done)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(n * 33)
        let firstID = id &+ 1
        for k in 0..<n {
            id &+= 1
            let token = (done + k) % 2 == 0
                ? Token(slot: UInt32(truncatingIfNeeded: rng.next()), generation: UInt32(truncatingIfNeeded: rng.next()),
                        secret: rng.next())
                : Token(slot: UInt32(rng.below(1 << 16)), generation: UInt32(rng.below(4)), secret: rng.next())
            bytes += HFrame.encode(k % 2 == 0 ? .confirm(Confirm(token: token)) : .release(token), id: id)
        }
        t.sent += n
        t.frames += n
        t.bytes += bytes.count
        done += n
        do {
            try c.send(bytes)
            for k in 0..<n {
                let a = try c.next()
                t.answer(a)
                let op = k % 2 == 0 ? Opcode.confirm.rawValue : Opcode.release.rawValue
                if a.status != want || a.id != firstID &+ UInt32(k) || a.opcode != op {
                    t.violate("forged token answered \(statusName(a.status)) op \(a.opcode) id \(a.id)")
                }
            }
        } catch let e as RawError {
            if e.isClose { t.closed(e) } else { t.outcome("failed: \(e)") }
            t.violate("connection \(e) with answers outstanding")
            c.close()
            conn = nil
        } catch {}
    }
    conn?.close()
    return t
}

/// Merges the lanes of one attack.
func mergeTallies(_ ts: [AttackTally]) -> AttackTally {
    var m = ts[0]
    for t in ts.dropFirst() {
        m.planned += t.planned
        m.sent += t.sent
        m.connections += t.connections
        m.frames += t.frames
        m.bytes += t.bytes
        for (k, v) in t.answers { m.answers[k, default: 0] += v }
        for (k, v) in t.outcomes { m.outcomes[k, default: 0] += v }
        m.closesSeen += t.closesSeen
        m.violations += t.violations
        if m.firstViolation == nil { m.firstViolation = t.firstViolation }
        m.startNs = min(m.startNs, t.startNs)
        m.endNs = max(m.endNs, t.endNs)
        m.incomplete = m.incomplete || t.incomplete
    }
    return m
}

// MARK: - RSS

/// VmRSS of `pid` in KiB (nil: no such process or unreadable).
func rssKiB(_ pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
    }
    return nil
}

final class RSSSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private var peak = 0
    private var samples = 0
    private let done = DispatchSemaphore(value: 0)

    init(pid: Int32) {
        let t = Thread { [self] in
            while lock.withLock({ running }) {
                if let kib = rssKiB(pid) {
                    lock.withLock {
                        peak = max(peak, kib)
                        samples += 1
                    }
                }
                usleep(100_000)
            }
            done.signal()
        }
        t.name = "rss"
        t.start()
    }

    func stop() -> (peakKiB: Int, samples: Int) {
        lock.withLock { running = false }
        done.wait()
        return lock.withLock { (peak, samples) }
    }
}

// MARK: - the two phases

struct HostileOutcome {
    var baseline: GoodPhase
    var attack: GoodPhase
    var attacks: [AttackTally]
    var rssBeforeKiB: Int?
    var rssPeakKiB: Int?
    var rssAfterKiB: Int?
    var rssSamples = 0
    var attackSpanSeconds: Double
    /// Attackers still running when the grace period ended (then aborted).
    var overran: Bool
}

func runHostilePhases(_ s: HostileSetup, progress: Bool) throws -> HostileOutcome {
    let seconds = Double(s.durationNs) / 1e9
    func say(_ text: String) { if progress { writeStderr("\r\u{1B}[2K[hostile] \(text)") } }

    let rssBefore = s.pid.flatMap(rssKiB)
    say("baseline: the good client alone for \(formatSeconds(seconds))")
    let baseline = try runGoodClient(s)

    // Phase 2: attackers first (they pace themselves from `start`), then the good client.
    let control = RunControl()
    let start = monoNs()
    let env = AttackEnv(setup: s, control: control, startNs: start, spanNs: s.durationNs * 9 / 10)
    let sampler = s.pid.map { RSSSampler(pid: $0) }
    let tallies = Collector<AttackTally>()
    let attackers = ThreadGroup()
    func launch(_ name: String, _ body: @escaping @Sendable () -> AttackTally) {
        attackers.spawn("attack-\(name)") {
            let t0 = monoNs()
            var t = body()
            t.startNs = t0
            t.endNs = monoNs()
            tallies.add(t)
        }
    }
    // Rates per second of the phase (bounded: the point is isolation, not saturating two cores).
    let scaled = { (rate: Double) in max(1, Int(rate * seconds)) }
    let garbage = scaled(50), huge = scaled(20), zero = scaled(20), opcodes = scaled(500)
    let helloBursts = scaled(2), hellos = scaled(100)
    let on = s.attacks
    if on.contains("garbage") { launch("garbage") { attackGarbage(env, count: garbage) } }
    if on.contains("huge_length") { launch("huge") { attackHugeLength(env, count: huge) } }
    if on.contains("zero_length") { launch("zero") { attackZeroLength(env, count: zero) } }
    if on.contains("unknown_opcode") { launch("opcode") { attackUnknownOpcodes(env, frames: opcodes) } }
    if on.contains("hello_pipelined") {
        launch("hello-pipe") { attackHelloPipelined(env, connections: helloBursts, hellos: 500) }
    }
    if on.contains("hello_connections") { launch("hello-conn") { attackHelloSingle(env, count: hellos) } }
    if on.contains("connect_cycles") && s.cycles > 0 { launch("cycles") { attackCycles(env, count: s.cycles) } }
    if on.contains("half_open") && s.halfOpen > 0 { launch("half-open") { attackHalfOpen(env, count: s.halfOpen) } }
    if on.contains("never_read") && s.neverRead > 0 {
        launch("never-read") { attackNeverRead(env, count: s.neverRead, blocks: 320) }
    }
    let lanes = 4
    if on.contains("forged_tokens") && s.forgedTokens > 0 {
        for lane in 0..<lanes {
            launch("forged-\(lane)") { attackForgedTokens(env, index: lane, of: lanes, total: s.forgedTokens) }
        }
    }
    say("under attack: the good client beside the attackers for \(formatSeconds(seconds))")
    let attack = try runGoodClient(s)
    control.endPhase()
    // Bounded attacks finish their counts; a slow server gets a grace period, then they are stopped.
    say("waiting for the attackers to finish")
    var overran = false
    if !attackers.wait(seconds: max(10, seconds)) {
        overran = true
        control.abort()
        attackers.wait()
    }
    let rss = sampler?.stop()
    usleep(300_000)  // the held sockets are closed: let the server settle
    let rssAfter = s.pid.flatMap(rssKiB)
    if progress { writeStderr("\r\u{1B}[2K") }

    // One entry per attack, lanes merged, in the order of the issue.
    let all = tallies.all
    var merged: [AttackTally] = []
    for name in HostileSetup.attackNames {
        let lanes = all.filter { $0.name == name }
        if !lanes.isEmpty { merged.append(mergeTallies(lanes)) }
    }
    return HostileOutcome(
        baseline: baseline, attack: attack, attacks: merged, rssBeforeKiB: rssBefore,
        rssPeakKiB: rss.map { max($0.peakKiB, rssBefore ?? 0) }, rssAfterKiB: rssAfter, rssSamples: rss?.samples ?? 0,
        attackSpanSeconds: Double(env.spanNs) / 1e9, overran: overran)
}

// MARK: - report

struct HostileReport: Codable {
    struct Phase: Codable {
        var requests: UInt64
        var ops_per_sec: Double
        var checkouts: UInt64
        var checkouts_per_sec: Double
        var reserves_ok: UInt64
        var confirms_ok: UInt64
        var errors: Int
        var error_kinds: [String: Int]
        var p50_us: Double
        var p99_us: Double
        var p999_us: Double
        var max_us: Double
        var seconds: Double

        init(_ g: GoodPhase) {
            let h = g.histogram
            let us = { (p: Double) in h.totalCount > 0 ? Double(h.valueAtPercentile(p)) / 1000 : 0 }
            requests = g.requests
            ops_per_sec = g.seconds > 0 ? Double(g.requests) / g.seconds : 0
            checkouts = g.confirms
            checkouts_per_sec = g.seconds > 0 ? Double(g.confirms) / g.seconds : 0
            reserves_ok = g.reserves
            confirms_ok = g.confirms
            errors = g.errorCount
            error_kinds = g.errors
            p50_us = us(50)
            p99_us = us(99)
            p999_us = us(99.9)
            max_us = h.totalCount > 0 ? Double(h.max) / 1000 : 0
            seconds = g.seconds
        }
    }

    struct Attack: Codable {
        var name: String
        var what: String
        var unit: String
        var planned: Int
        var sent: Int
        var per_second: Double
        var connections: Int
        var frames: Int
        var bytes: Int
        var seconds: Double
        var answers: [String: Int]
        var closes_seen: Int
        var outcomes: [String: Int]
        var expected: String
        var checked: Bool
        var as_expected: Bool
        var violations: Int
        var first_violation: String?
        var incomplete: Bool
    }

    struct Volume: Codable {
        var connections_per_sec: Double
        var frames_per_sec: Double
        var bytes_per_sec: Double
    }

    struct RSS: Codable {
        var measured: Bool
        var pid: Int32?
        var before_mib: Double?
        var peak_mib: Double?
        var after_mib: Double?
        var samples: Int
        var max_mib: Int
        var note: String?
    }

    struct Counts: Codable {
        var on_hand: UInt64
        var available: UInt64
        var reserved: UInt64
        var confirmed: UInt64
        var backup: UInt64
        var confirmed_before: UInt64
    }

    struct Check: Codable {
        var ok: Bool
        var skipped: Bool
        var detail: String
    }

    var scenario = "hostile"
    var server: String
    var started_here: Bool
    var stockd_workers: Int?
    var stockd_sync: String?
    var auth: Bool
    var attacker_credential: String
    var sku: String
    var connections: Int
    var duration_s: Double
    var baseline: Phase
    var under_attack: Phase
    var p99_ratio: Double
    var max_p99_ratio: Double
    var attacks: [Attack]
    var attack_volume: Volume
    var attack_span_s: Double
    var rss: RSS
    var final_counts: Counts?
    var checks: [String: Check]
    var ok: Bool

    static let checkOrder = ["server_up", "good_client_no_errors", "counts_exact", "forged_tokens_refused",
                             "rss_bound", "attack_answers_as_specified", "p99_ratio"]

    static func make(_ cmd: Hostile, setup s: HostileSetup, outcome o: HostileOutcome, base: StockInfo,
                     final f: StockInfo?, finalError: String?, serverUp: Bool, pingDetail: String,
                     managed: Bool) -> HostileReport {
        let baseline = Phase(o.baseline)
        let underAttack = Phase(o.attack)
        let ratio = baseline.p99_us > 0 ? underAttack.p99_us / baseline.p99_us : 0
        let span = max(o.attackSpanSeconds, 0.001)
        let attacks = o.attacks.map { t in
            let secs = Double(t.endNs &- t.startNs) / 1e9
            return Attack(name: t.name, what: t.what, unit: t.unit, planned: t.planned, sent: t.sent,
                          per_second: Double(t.sent) / span, connections: t.connections, frames: t.frames,
                          bytes: t.bytes, seconds: secs, answers: t.answers, closes_seen: t.closesSeen,
                          outcomes: t.outcomes, expected: t.expected, checked: t.checked,
                          as_expected: !t.checked || (t.violations == 0 && !t.incomplete), violations: t.violations,
                          first_violation: t.firstViolation, incomplete: t.incomplete)
        }
        let volume = Volume(connections_per_sec: Double(attacks.map(\.connections).reduce(0, +)) / span,
                            frames_per_sec: Double(attacks.map(\.frames).reduce(0, +)) / span,
                            bytes_per_sec: Double(attacks.map(\.bytes).reduce(0, +)) / span)

        var checks: [String: Check] = [:]
        checks["server_up"] = Check(ok: serverUp, skipped: false, detail: pingDetail
                                    + (serverUp ? "" : " (or the stockd process is gone)"))
        let errs = baseline.errors + underAttack.errors
        var errDetail = "baseline \(baseline.errors), under attack \(underAttack.errors) errors; "
            + "\(o.baseline.reserves + o.attack.reserves) RESERVE OK, \(o.baseline.confirms + o.attack.confirms) CONFIRM OK"
        let kinds = o.baseline.errors.merging(o.attack.errors, uniquingKeysWith: +)
        if !kinds.isEmpty { errDetail += "; " + kinds.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ") }
        let goodOK = errs == 0 && o.baseline.reserves == o.baseline.confirms && o.attack.reserves == o.attack.confirms
            && o.baseline.confirms > 0 && o.attack.confirms > 0
        checks["good_client_no_errors"] = Check(ok: goodOK, skipped: false, detail: errDetail)

        let goodConfirms = o.baseline.confirms + o.attack.confirms
        var counts: Counts?
        if let f {
            counts = Counts(on_hand: f.onHand, available: f.available, reserved: f.reserved, confirmed: f.confirmed,
                            backup: f.backup, confirmed_before: base.confirmed)
            let sold = f.confirmed &- base.confirmed
            let balanced = f.onHand == f.available + f.reserved + f.confirmed + f.backup
            let ok = sold == goodConfirms && f.reserved == 0 && balanced && f.confirmed >= base.confirmed
            checks["counts_exact"] = Check(
                ok: ok, skipped: false,
                detail: "confirmed \(f.confirmed)" + (base.confirmed > 0 ? " (\(sold) in this run)" : "")
                    + " vs the good client's \(goodConfirms) confirms; reserved \(f.reserved); on_hand \(f.onHand) "
                    + (balanced ? "==" : "!=") + " available \(f.available) + reserved \(f.reserved) + confirmed "
                    + "\(f.confirmed) + backup \(f.backup)")
        } else {
            checks["counts_exact"] = Check(ok: false, skipped: false, detail: "STOCK_GET failed: \(finalError ?? "?")")
        }

        let forged = o.attacks.first { $0.name == "forged_tokens" }
        let want = s.authOn ? "UNAUTHENTICATED" : "TOKEN_UNKNOWN"
        if let forged {
            let answered = forged.answers.values.reduce(0, +)
            let refused = forged.answers[want] ?? 0
            let others = forged.answers.filter { $0.key != want }.sorted { $0.key < $1.key }
                .map { "\($0.key) ×\($0.value)" }
            let ok = forged.sent == s.forgedTokens && answered == forged.sent && refused == answered
            checks["forged_tokens_refused"] = Check(
                ok: ok, skipped: false,
                detail: "\(forged.sent) of \(s.forgedTokens) sent, \(answered) answered, \(refused) \(want)"
                    + (others.isEmpty ? "" : "; other answers: " + others.joined(separator: ", ")))
        } else {
            checks["forged_tokens_refused"] = Check(ok: true, skipped: true, detail: "--forged-tokens 0")
        }

        let mib = { (k: Int?) in k.map { Double($0) / 1024 } }
        var rss = RSS(measured: s.pid != nil && o.rssPeakKiB != nil, pid: s.pid, before_mib: mib(o.rssBeforeKiB),
                      peak_mib: mib(o.rssPeakKiB), after_mib: mib(o.rssAfterKiB), samples: o.rssSamples,
                      max_mib: cmd.maxRssMib, note: nil)
        if let peak = rss.peak_mib, rss.measured {
            checks["rss_bound"] = Check(ok: peak < Double(cmd.maxRssMib), skipped: false,
                                        detail: String(format: "peak %.1f MiB (%d samples every 100 ms) vs bound %d MiB",
                                                       peak, o.rssSamples, cmd.maxRssMib))
        } else {
            rss.note = s.pid == nil ? "not measured: stockd was not started here (give --stockd-pid to sample it)"
                : "not measured: /proc/\(s.pid!)/status unreadable"
            checks["rss_bound"] = Check(ok: true, skipped: true, detail: rss.note!)
        }

        let bad = attacks.filter { !$0.as_expected }
        checks["attack_answers_as_specified"] = Check(
            ok: bad.isEmpty && !o.overran, skipped: false,
            detail: bad.isEmpty && !o.overran
                ? "\(attacks.filter(\.checked).count) attacks with a specified answer, all as specified"
                : (o.overran ? "attackers stopped after the grace period; " : "")
                    + bad.map { "\($0.name): \($0.violations) off" + ($0.incomplete ? " (incomplete)" : "")
                        + ($0.first_violation.map { ", first: \($0)" } ?? "") }.joined(separator: "; "))

        if cmd.maxP99Ratio > 0 {
            checks["p99_ratio"] = Check(ok: ratio <= cmd.maxP99Ratio, skipped: false,
                                        detail: String(format: "%.2f× vs --max-p99-ratio %.2f", ratio, cmd.maxP99Ratio))
        } else {
            checks["p99_ratio"] = Check(ok: true, skipped: true,
                                        detail: String(format: "%.2f× (measured, not checked: --max-p99-ratio off)", ratio))
        }

        return HostileReport(
            server: s.address.description, started_here: managed, stockd_workers: managed ? cmd.stockdWorkers : nil,
            stockd_sync: managed ? cmd.stockdSync : nil, auth: s.authOn,
            attacker_credential: s.authOn ? "none (wrong credential in HELLO)" : "none (server has no auth)",
            sku: s.sku, connections: s.connections, duration_s: Double(s.durationNs) / 1e9, baseline: baseline,
            under_attack: underAttack, p99_ratio: ratio, max_p99_ratio: cmd.maxP99Ratio, attacks: attacks,
            attack_volume: volume, attack_span_s: span, rss: rss, final_counts: counts, checks: checks,
            ok: checks.values.allSatisfy { $0.ok || $0.skipped })
    }

    func printHuman() {
        let where_ = started_here
            ? "started here: --workers \(stockd_workers ?? 1) --sync \(stockd_sync ?? "?")" : "given by --server"
        print("stockbench hostile: stockd \(server) (\(where_)), auth \(auth ? "on" : "off"); SKU \(sku); "
              + "\(connections) connections × depth 1 (RESERVE 1 + CONFIRM), \(formatSeconds(duration_s)) per phase")
        print("")
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count) }
        print(pad("phase", 14) + pad("requests", 10) + pad("req/s", 10) + pad("checkouts/s", 12) + pad("p50 µs", 9)
              + pad("p99 µs", 9) + pad("p99.9 µs", 10) + pad("max µs", 10) + "errors")
        for (name, p) in [("baseline", baseline), ("under attack", under_attack)] {
            print(pad(name, 14) + pad("\(p.requests)", 10) + pad(formatRate(p.ops_per_sec).replacingOccurrences(of: "/s", with: ""), 10)
                  + pad(formatRate(p.checkouts_per_sec).replacingOccurrences(of: "/s", with: ""), 12)
                  + pad(String(format: "%.1f", p.p50_us), 9) + pad(String(format: "%.1f", p.p99_us), 9)
                  + pad(String(format: "%.1f", p.p999_us), 10) + pad(String(format: "%.1f", p.max_us), 10) + "\(p.errors)")
        }
        print(String(format: "p99 under attack / baseline: %.2f×", p99_ratio)
              + (max_p99_ratio > 0 ? String(format: " (bound %.2f×)", max_p99_ratio) : " (measured and reported; not a check)"))
        print("")
        print(pad("attack", 18) + pad("sent", 20) + pad("per s", 8) + pad("closes", 8) + "answers / outcomes")
        for a in attacks {
            let answers = a.answers.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let outcomes = a.outcomes.sorted { $0.value > $1.value }.map { "\($0.key): \($0.value)" }.joined(separator: "; ")
            print(pad(a.name, 18) + pad("\(a.sent) \(a.unit)", 20) + pad(String(format: "%.0f", a.per_second), 8)
                  + pad("\(a.closes_seen)", 8) + (answers.isEmpty ? "-" : answers))
            if !outcomes.isEmpty { print(String(repeating: " ", count: 18) + "  " + outcomes) }
            let verdict = a.checked ? (a.as_expected ? "as specified" : "NOT as specified (\(a.violations))") : "observed"
            print(String(repeating: " ", count: 18) + "  expected: \(a.expected) — \(verdict)"
                  + (a.first_violation.map { "; first: \($0)" } ?? ""))
        }
        print(String(format: "attack volume beside the good client: %.0f connections/s, %.0f frames/s, %.0f KiB/s "
                     + "(per s: over the %.1f s attack span; half_open and never_read open theirs in its first tenth)",
                     attack_volume.connections_per_sec, attack_volume.frames_per_sec, attack_volume.bytes_per_sec / 1024,
                     attack_span_s))
        print("")
        if rss.measured {
            print(String(format: "stockd RSS (pid %d): before %.1f MiB, peak %.1f MiB (%d samples every 100 ms), "
                         + "after %.1f MiB; bound %d MiB", rss.pid ?? 0, rss.before_mib ?? 0, rss.peak_mib ?? 0,
                         rss.samples, rss.after_mib ?? 0, rss.max_mib))
        } else {
            print("stockd RSS: \(rss.note ?? "not measured")")
        }
        if let f = final_counts {
            print("final counts of \(sku): on_hand \(f.on_hand), available \(f.available), reserved \(f.reserved), "
                  + "confirmed \(f.confirmed), backup \(f.backup)")
        }
        print("")
        print("checks:")
        for name in Self.checkOrder {
            guard let c = checks[name] else { continue }
            print("  \(c.skipped ? "SKIP" : c.ok ? "PASS" : "FAIL")  \(name): \(c.detail)")
        }
        print(ok ? "hostile: all checks passed" : "hostile: CHECKS FAILED")
    }
}
