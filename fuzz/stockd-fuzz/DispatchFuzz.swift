import Glibc
import Logging
import StockCore
import StockProtocol
import StockServer

/// Entry point 2: the server's dispatch of whatever arrives on a connection, against a live core.
///
/// One in-process `StockServer` (2 loops, in-memory, port 0 on 127.0.0.1, the vectors' SKUs
/// staged) serves the whole run. Per input:
/// 1. if the input holds token placeholders (`Placeholder`), fresh tokens are reserved on a
///    helper connection and written over them, so CONFIRM / RELEASE / EXTEND reach live tokens;
/// 2. the bytes go to the server on a new connection, which is then half-closed; every answer
///    is read until the server closes (bounded: 5 s, else the server is deemed hung);
/// 3. what came back must be well-formed response frames within `max_frame`, not cut mid-frame;
/// 4. a PING on a fresh connection must be answered; the helper tokens and every token the input
///    was granted are released there, so state stays bounded over millions of inputs;
/// 5. `StockCore.checkInvariants()` must return [] (retried briefly: a token expiring on a loop
///    thread while it runs can make one reading inconsistent; a real violation persists).
/// Any failure aborts, so libFuzzer keeps the input.
enum DispatchFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        let live = LiveServer.shared
        var bytes = Array(input)
        var tokens: [[UInt8]] = []
        if Placeholder.occurs(in: bytes) {
            tokens = live.reserveHelperTokens()
            Placeholder.substitute(&bytes, tokens)
        }
        if LiveServer.verbose { fuzzLog("stockd-fuzz: \(bytes.count) bytes, \(tokens.count) helper tokens") }
        let fd = Wire.connect(port: live.port)
        let (received, ending) = Wire.exchange(fd, bytes, timeoutMs: 5_000)
        if LiveServer.verbose { fuzzLog("stockd-fuzz: \(received.count) bytes back, then \(ending)") }
        close(fd)
        guard ending != .timedOut else {
            fuzzFail("dispatch: the server neither answered everything nor closed within 5 s "
                     + "(\(received.count) bytes received)")
        }
        let issued = live.checkAnswers(received, endedByEOF: ending == .eof)
        live.pingAndRelease(tokens + issued)
        live.checkInvariants()
    }
}

/// A 16-byte token placeholder: 15 bytes `EE…EE 54` ("T"), then an index into the helper tokens.
/// The seed mode (Seeds.swift) writes it in place of the tokens of the CONFIRM, RELEASE and EXTEND vectors.
enum Placeholder {
    static let prefix: [UInt8] = [UInt8](repeating: 0xEE, count: 14) + [0x54]

    static func occurs(in bytes: [UInt8]) -> Bool { firstIndex(in: bytes, from: 0) != nil }

    static func substitute(_ bytes: inout [UInt8], _ tokens: [[UInt8]]) {
        guard !tokens.isEmpty else { return }
        var from = 0
        while let at = firstIndex(in: bytes, from: from) {
            let token = tokens[Int(bytes[at + 15]) % tokens.count]
            bytes.replaceSubrange(at..<(at + 16), with: token)
            from = at + 16
        }
    }

    static func firstIndex(in bytes: [UInt8], from: Int) -> Int? {
        guard bytes.count >= 16 else { return nil }
        var i = from
        while i + 16 <= bytes.count {
            if bytes[i] == 0xEE && bytes[i + 14] == 0x54 && bytes[(i + 1)..<(i + 14)].allSatisfy({ $0 == 0xEE }) {
                return i
            }
            i += 1
        }
        return nil
    }
}

/// The server under test, started on first use (once per process) and never stopped.
final class LiveServer: Sendable {
    static let shared = LiveServer()

    /// The SKUs named by protocol/vectors/requests.json, so seeded requests hit known stock.
    static let stagedSKUs = [
        "JACKET-RED-M", "jacket-red-m", "SCARF-BLUE", "VESTE-ÉTÉ-M", "Tee shirt / Größe M", "CAP-🧢-L",
        String(repeating: "É", count: 32), String(repeating: "S", count: 32) + "-" + String(repeating: "X", count: 31),
    ] + (0..<16).map { "LINE-" + ($0 < 10 ? "0" : "") + "\($0)" }

    /// `STOCKD_FUZZ_VERBOSE=1`: print every answer to the input (for reading a reproducer).
    static let verbose = getenv("STOCKD_FUZZ_VERBOSE").map { String(cString: $0) == "1" } ?? false

    let server: StockServer
    let port: Int
    let maxFrame: Int

    private init() {
        signal(SIGPIPE, SIG_IGN)  // as stockd: a vanished peer is an error return, not a death
        var config = ServerConfig()
        config.host = "127.0.0.1"
        config.port = 0
        config.workers = 2
        config.core.shardCount = 2
        config.core.skuCapacity = 4_096
        config.core.tokenCapacity = 1 << 16
        config.core.customerCapacity = 1 << 16
        config.core.idempotencyCapacity = 1 << 16
        config.core.fateMemoryPerWorker = 1 << 12
        config.core.defaultTTLMs = 10_000
        if let raw = getenv("STOCKD_FUZZ_MAX_FRAME"), let n = Int(String(cString: raw)) { config.maxFrame = n }
        var logger = Logger(label: "stockd-fuzz")
        logger.logLevel = .critical
        do {
            server = try StockServer(config: config, logger: logger)
        } catch {
            fuzzFail("cannot create the server: \(error)")
        }
        let stock = LiveServer.stagedSKUs.map { StockSet(sku: ShortBytes($0)!, onHand: 1_000_000) }
        do { try server.stage(stock) } catch { fuzzFail("cannot stage: \(error.status.name)") }
        do { try server.start() } catch { fuzzFail("cannot start the server: \(error)") }
        port = server.port
        maxFrame = config.maxFrame
        fuzzLog("stockd-fuzz: dispatch: stockd \(StockServer.version) on 127.0.0.1:\(port), 2 loops, "
                + "\(stock.count) SKUs staged, max_frame \(maxFrame)")
    }

    /// The helper reservations whose tokens replace placeholders (a failed one is skipped).
    static let helperRequests: [Request] = [
        .reserve(Reserve(sku: ShortBytes("JACKET-RED-M")!, quantity: 2)),
        .reserve(Reserve(sku: ShortBytes("SCARF-BLUE")!, quantity: 1, customer: ShortBytes("fuzz-customer")!)),
        .reserveBundle(ReserveBundle(lines: [BundleLine(sku: ShortBytes("LINE-00")!, quantity: 1),
                                             BundleLine(sku: ShortBytes("LINE-01")!, quantity: 3)])),
        .reserve(Reserve(sku: ShortBytes("VESTE-ÉTÉ-M")!, quantity: 1, idempotencyKey: ShortBytes("fuzz-key")!)),
    ]

    /// Reserves the helper tokens (restocking once if a fuzz input emptied a SKU).
    func reserveHelperTokens() -> [[UInt8]] {
        let fd = Wire.connect(port: port)
        defer { close(fd) }
        var tokens: [[UInt8]] = []
        for (i, request) in LiveServer.helperRequests.enumerated() {
            for attempt in 0..<2 {
                let answer = Wire.roundTrip(fd, [request], firstID: 0x4800_0000 + UInt32(i))[0]
                switch answer.body {
                case .reserved(let r): tokens.append(Wire.tokenBytes(r.token))
                case .bundleReserved(let b): tokens.append(Wire.tokenBytes(b.token))
                case .failure(.outOfStock, _) where attempt == 0:
                    let skus: [SKU] = switch request {
                    case .reserve(let r): [r.sku]
                    case .reserveBundle(let b): b.lines.map(\.sku)
                    default: []
                    }
                    let restock = skus.map { Request.stockAdjust(StockAdjust(sku: $0, delta: 1_000_000, reason: .restock)) }
                    _ = Wire.roundTrip(fd, restock, firstID: 0x4900_0000)
                    continue
                default: break
                }
                break
            }
        }
        return tokens
    }

    /// Every answer the server sent must be a well-formed response frame within `max_frame`,
    /// and a connection the server ended cleanly must not end mid-frame. Returns the tokens granted.
    func checkAnswers(_ received: [UInt8], endedByEOF: Bool) -> [[UInt8]] {
        var decoder = FrameDecoder(maxFrame: maxFrame)
        decoder.feed(received)
        var issued: [[UInt8]] = []
        do {
            while let bad = try decoder.next({ header, payload -> String? in
                do throws(Status) {
                    let r = try ResponseCodec.decode(header: header, payload: payload)
                    if LiveServer.verbose { fuzzLog("  answer id \(r.requestID) opcode \(r.opcode): \(r.body)") }
                    switch r.body {
                    case .reserved(let x): issued.append(Wire.tokenBytes(x.token))
                    case .bundleReserved(let x): issued.append(Wire.tokenBytes(x.token))
                    default: break
                    }
                    return nil
                } catch {
                    return "\(error.name): \(Hex.encode(DecodeFuzz.frameBytes(header, payload).prefix(64)))"
                }
            }) {
                if let bad { fuzzFail("dispatch: the server sent an answer that does not decode (\(bad))") }
            }
        } catch {
            fuzzFail("dispatch: the server's answers do not frame: \(error) (max_frame \(maxFrame))")
        }
        if endedByEOF && decoder.buffered > 0 {
            fuzzFail("dispatch: the server closed in the middle of an answer (\(decoder.buffered) bytes of it sent)")
        }
        return issued
    }

    /// A fresh connection must get PONG; `tokens` are released on it (whatever each answer).
    func pingAndRelease(_ tokens: [[UInt8]]) {
        let fd = Wire.connect(port: port)
        defer { close(fd) }
        var requests: [Request] = [.ping]
        for t in tokens { requests.append(.release(Wire.token(t))) }
        let answers = Wire.roundTrip(fd, requests, firstID: 0x5000_0000)
        guard answers[0].body == .pong else { fuzzFail("dispatch: PING on a fresh connection answered \(answers[0])") }
    }

    func checkInvariants() {
        var problems = server.core.checkInvariants()
        var tries = 0
        while !problems.isEmpty && tries < 50 {
            usleep(2_000)
            problems = server.core.checkInvariants()
            tries += 1
        }
        if !problems.isEmpty {
            fuzzFail("dispatch: core invariants violated:\n  " + problems.joined(separator: "\n  "))
        }
    }
}

/// Blocking and polled loopback I/O for the harness (every wait bounded).
enum Wire {
    enum Ending { case eof, reset, timedOut }

    static func connect(port: Int) -> Int32 {
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { fuzzFail("socket: errno \(errno)") }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if rc == 0 {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                var tv = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                return fd
            }
            let e = errno
            close(fd)
            guard e == EADDRNOTAVAIL || e == EAGAIN || e == EINTR else {
                fuzzFail("dispatch: connect to the server: errno \(e) (the server is gone?)")
            }
            usleep(10_000)
        }
        fuzzFail("dispatch: connect to the server kept failing")
    }

    /// Sends `bytes` (then half-closes) while reading, until the server closes or `timeoutMs` passes.
    static func exchange(_ fd: Int32, _ bytes: [UInt8], timeoutMs: Int) -> (received: [UInt8], ending: Ending) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var sent = 0
        var writing = true
        if bytes.isEmpty {
            shutdown(fd, Int32(SHUT_WR))
            writing = false
        }
        let deadline = monotonicMs() + timeoutMs
        while true {
            let left = deadline - monotonicMs()
            if left <= 0 { return (received, .timedOut) }
            var p = pollfd(fd: fd, events: Int16(POLLIN) | (writing ? Int16(POLLOUT) : 0), revents: 0)
            let n = poll(&p, 1, Int32(left))
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { fuzzFail("poll: errno \(errno)") }
            if writing && p.revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 {
                let w = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if w > 0 {
                    sent += w
                    if sent == bytes.count {
                        shutdown(fd, Int32(SHUT_WR))
                        writing = false
                    }
                } else if w < 0 && errno != EAGAIN && errno != EINTR {
                    writing = false  // the server closed (e.g. after a framing error); read what it said
                }
            }
            if p.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
                let r = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if r > 0 {
                    received.append(contentsOf: buffer[0..<r])
                } else if r == 0 {
                    return (received, .eof)
                } else if errno != EAGAIN && errno != EINTR {
                    return (received, .reset)
                }
            }
        }
    }

    /// Sends `requests` pipelined (ids from `firstID`) on a blocking socket and reads one answer each.
    static func roundTrip(_ fd: Int32, _ requests: [Request], firstID: UInt32) -> [Response] {
        var w = ByteWriter()
        for (i, r) in requests.enumerated() { RequestCodec.encode(r, requestID: firstID + UInt32(i), into: &w) }
        let out = w.bytes
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }  // libFuzzer's SIGALRM (-timeout) interrupts blocking calls
            guard n > 0 else { fuzzFail("dispatch: helper send failed: errno \(errno)") }
            sent += n
        }
        var decoder = FrameDecoder(maxFrame: Limits.maxFrameCeiling)
        var answers: [Response] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while answers.count < requests.count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                fuzzFail("dispatch: no answer on a helper connection (\(answers.count)/\(requests.count) answers, "
                         + (n == 0 ? "EOF" : "errno \(errno)") + ")")
            }
            decoder.feed(Array(buffer[0..<n]))
            do {
                while let r = try decoder.next({ h, p in Result { () throws(Status) in try ResponseCodec.decode(header: h, payload: p) } }) {
                    switch r {
                    case .success(let response):
                        guard response.requestID == firstID + UInt32(answers.count) else {
                            fuzzFail("dispatch: helper answer out of order: \(response)")
                        }
                        answers.append(response)
                    case .failure(let e): fuzzFail("dispatch: helper answer does not decode: \(e.name)")
                    }
                }
            } catch {
                fuzzFail("dispatch: helper answers do not frame: \(error)")
            }
        }
        return answers
    }

    static func tokenBytes(_ t: Token) -> [UInt8] {
        var w = ByteWriter(capacity: Token.size)
        w.writeToken(t)
        return w.bytes
    }

    static func token(_ bytes: [UInt8]) -> Token {
        bytes.withUnsafeBytes { raw in
            Token(slot: UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self)),
                  generation: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                  secret: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
    }

    static func monotonicMs() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }
}
