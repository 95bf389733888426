import Foundation
import Glibc
import StockProtocol

/// A blocking TCP client on 127.0.0.1 speaking raw frames. Not thread-safe:
/// one thread per client (a concurrent sender may use `sendInBackground`).
///
/// Every wait is bounded: reads wait with `poll` for at most their timeout,
/// sends are bounded by `SO_SNDTIMEO` (which on Linux also bounds `connect`).
public final class RawClient {
    /// What the socket said when asked for more bytes.
    public enum Fill: Equatable {
        case bytes(Int)
        case eof
        case reset
        case timeout
    }

    /// Decoded frames received until the connection ended or the wait ran out.
    public struct Drain {
        public var responses: [Response]
        /// EOF (or a reset) was seen.
        public var closed: Bool
        /// The end was a reset rather than an orderly EOF.
        public var reset: Bool
    }

    public private(set) var fd: Int32
    public let port: Int
    private var decoder = FrameDecoder(maxFrame: Limits.maxFrameCeiling)
    private var nextID: UInt32 = 1
    /// Bytes of the last frame decoded (header included).
    public private(set) var lastFrameSize = 0
    /// Whether EOF or a reset was seen.
    public private(set) var sawEnd = false
    /// Whether the end was a reset (or another socket error) rather than EOF.
    public private(set) var sawReset = false

    public init(port: Int, timeout: Double = 5, noDelay: Bool = true) throws {
        self.port = port
        // CLOEXEC: a stockd started later must not inherit (and so keep open) this socket.
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: errno \(errno)") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if noDelay {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            let e = errno
            Glibc.close(fd)
            fd = -1
            throw HarnessError("connect 127.0.0.1:\(port): \(String(cString: strerror(e))) (errno \(e))")
        }
    }

    deinit { close() }

    /// Closes the socket (idempotent).
    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Shuts down the sending side only (the peer reads EOF).
    public func shutdownWrite() {
        if fd >= 0 { _ = shutdown(fd, Int32(SHUT_WR)) }
    }

    /// Shuts down both directions without releasing the descriptor, so a
    /// `sendInBackground` still running fails at once instead of writing
    /// into a reused descriptor; `close` afterwards.
    public func shutdownBoth() {
        if fd >= 0 { _ = shutdown(fd, Int32(SHUT_RDWR)) }
    }

    /// A fresh request id (1, 2, 3…).
    public func freshID() -> UInt32 {
        defer { nextID &+= 1 }
        return nextID
    }

    // MARK: sending

    /// Sends all of `bytes`; throws if the socket fails or stays full past its send timeout.
    public func send(_ bytes: [UInt8]) throws {
        try RawClient.sendAll(fd: fd, bytes)
    }

    /// Alias of `send`, for tests that send deliberately broken bytes.
    public func sendRaw(_ bytes: [UInt8]) throws { try send(bytes) }

    public static func sendAll(fd: Int32, _ bytes: [UInt8]) throws {
        guard fd >= 0 else { throw HarnessError("send on a closed client") }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                throw HarnessError("send: \(String(cString: strerror(e))) (errno \(e)) after \(offset) of \(bytes.count) bytes")
            }
            offset += n
        }
    }

    /// Sends `bytes` on another thread, so that a large pipelined write and
    /// the reading of its answers can proceed together.
    public func sendInBackground(_ bytes: [UInt8]) -> BackgroundJob {
        let fd = self.fd
        return BackgroundJob {
            try RawClient.sendAll(fd: fd, bytes)
        }
    }

    /// Encodes `request` with a fresh id and sends it; returns the id.
    @discardableResult
    public func sendRequest(_ request: Request) throws -> UInt32 {
        let id = freshID()
        try send(Wire.frame(request, id: id))
        return id
    }

    // MARK: receiving

    /// Decodes a response, turning the typed throw into a value.
    public static func decode(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer) -> Result<Response, Status> {
        do { return .success(try ResponseCodec.decode(header: header, payload: payload)) } catch { return .failure(error) }
    }

    /// Waits up to `timeout` for bytes and feeds them to the decoder.
    public func fill(timeout: Double) -> Fill {
        guard fd >= 0 else { return .eof }
        let deadline = monotonicSeconds() + timeout
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let remaining = max(0, deadline - monotonicSeconds())
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32((remaining * 1000).rounded(.up)))
            if ready < 0 {
                if errno == EINTR { continue }
                return .reset
            }
            if ready == 0 {
                if monotonicSeconds() >= deadline { return .timeout }
                continue
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                buffer.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                return .bytes(n)
            }
            if n == 0 {
                sawEnd = true
                return .eof
            }
            let e = errno
            if e == EINTR || e == EAGAIN || e == EWOULDBLOCK { continue }
            sawEnd = true
            sawReset = true
            return .reset
        }
    }

    /// The next complete response already received, if any. Throws if the
    /// bytes are not a well-formed response frame.
    public func nextBuffered() throws -> Response? {
        var size = 0
        let result: Result<Response, Status>?
        do {
            result = try decoder.next { header, payload -> Result<Response, Status> in
                size = header.frameLength
                return RawClient.decode(header, payload)
            }
        } catch {
            throw HarnessError("response stream broken: \(error)")
        }
        guard let result else { return nil }
        lastFrameSize = size
        switch result {
        case .success(let r): return r
        case .failure(let s): throw HarnessError("undecodable response frame (\(s.name))")
        }
    }

    /// The next response, waiting at most `timeout`. Throws on timeout, on
    /// EOF or reset before a full frame, or on a frame that does not decode.
    public func readResponse(timeout: Double = 5) throws -> Response {
        if let r = try readResponseOrEnd(timeout: timeout) { return r }
        throw HarnessError("connection closed before a response arrived")
    }

    /// The next response, or nil when the connection ended first. Throws on timeout.
    public func readResponseOrEnd(timeout: Double = 5) throws -> Response? {
        let deadline = monotonicSeconds() + timeout
        while true {
            if let r = try nextBuffered() { return r }
            switch fill(timeout: max(0, deadline - monotonicSeconds())) {
            case .bytes: continue
            case .eof, .reset:
                if let r = try nextBuffered() { return r }
                return nil
            case .timeout:
                throw HarnessError("no response within \(timeout) s (\(decoder.buffered) bytes of a partial frame buffered)")
            }
        }
    }

    /// Reads `count` responses (each wait bounded by the overall `timeout`).
    public func readResponses(_ count: Int, timeout: Double = 10) throws -> [Response] {
        let deadline = monotonicSeconds() + timeout
        var out: [Response] = []
        out.reserveCapacity(count)
        while out.count < count {
            guard let r = try readResponseOrEnd(timeout: max(0, deadline - monotonicSeconds())) else {
                throw HarnessError("connection closed after \(out.count) of \(count) responses")
            }
            out.append(r)
        }
        return out
    }

    /// Reads every response until the connection ends or `timeout` passes.
    /// `closed` tells whether EOF (or a reset) was seen; this never waits past `timeout`.
    public func readUntilClosed(timeout: Double) throws -> Drain {
        let deadline = monotonicSeconds() + timeout
        var drain = Drain(responses: [], closed: false, reset: false)
        while true {
            while let r = try nextBuffered() { drain.responses.append(r) }
            switch fill(timeout: max(0, deadline - monotonicSeconds())) {
            case .bytes: continue
            case .eof:
                while let r = try nextBuffered() { drain.responses.append(r) }
                drain.closed = true
                return drain
            case .reset:
                while let r = try nextBuffered() { drain.responses.append(r) }
                drain.closed = true
                drain.reset = true
                return drain
            case .timeout:
                return drain
            }
        }
    }

    /// Whether nothing at all arrives for `seconds` (no bytes, no EOF).
    public func staysSilent(for seconds: Double) -> Bool {
        fill(timeout: seconds) == .timeout && decoder.buffered == 0
    }

    /// Sends `request` with a fresh id and waits for its answer; throws if
    /// the answer carries another id.
    public func request(_ request: Request, timeout: Double = 5) throws -> Response {
        let id = try sendRequest(request)
        let r = try readResponse(timeout: timeout)
        guard r.requestID == id else {
            throw HarnessError("answer to request \(id) carries request id \(r.requestID): \(r)")
        }
        return r
    }

    /// Sends a raw frame built by `Wire.rawFrame` with a fresh id and waits for the answer.
    public func rawRequest(opcode: UInt8, payload: [UInt8], timeout: Double = 5) throws -> Response {
        let id = freshID()
        try send(Wire.rawFrame(opcode: opcode, id: id, payload: payload))
        let r = try readResponse(timeout: timeout)
        guard r.requestID == id else {
            throw HarnessError("answer to request \(id) carries request id \(r.requestID): \(r)")
        }
        return r
    }

    // MARK: shorthands

    public func ping() throws -> Response { try request(.ping) }

    public func stockGet(_ sku: String) throws -> Response { try request(.stockGet(SKU(sku)!)) }

    /// STOCK_GET that must succeed.
    public func info(_ sku: String) throws -> StockInfo {
        let r = try stockGet(sku)
        guard let info = r.stockInfo else { throw HarnessError("STOCK_GET \(sku): \(r.status.name) \(r.body)") }
        return info
    }

    public func stockSet(_ sku: String, onHand: UInt64, expected: UInt64? = nil, threshold: UInt32? = nil,
                  limit: UInt32? = nil) throws -> Response {
        try request(.stockSet(StockSet(sku: SKU(sku)!, onHand: onHand, expectedOnHand: expected,
                                       lowStockThreshold: threshold, perCustomerLimit: limit)))
    }

    public func reserve(_ sku: String, _ quantity: UInt32, ttlMs: UInt32 = 0, customer: String = "",
                 key: String = "") throws -> Response {
        try request(.reserve(Reserve(sku: SKU(sku)!, quantity: quantity, ttlMs: ttlMs,
                                     customer: ShortBytes(customer)!, idempotencyKey: ShortBytes(key)!)))
    }

    /// RESERVE that must succeed.
    public func reserveOK(_ sku: String, _ quantity: UInt32, ttlMs: UInt32 = 0, customer: String = "",
                   key: String = "") throws -> Reservation {
        let r = try reserve(sku, quantity, ttlMs: ttlMs, customer: customer, key: key)
        guard let res = r.reservation else { throw HarnessError("RESERVE \(sku) x\(quantity): \(r.status.name) \(r.body)") }
        return res
    }

    public func confirm(_ token: Token, quantity: UInt32 = 0, orderReference: String = "") throws -> Response {
        try request(.confirm(Confirm(token: token, quantity: quantity, orderReference: ShortBytes(orderReference)!)))
    }

    public func release(_ token: Token) throws -> Response { try request(.release(token)) }

    public func extend(_ token: Token, ttlMs: UInt32) throws -> Response { try request(.extend(Extend(token: token, ttlMs: ttlMs))) }

    /// STATS as a dictionary.
    public func stats() throws -> [String: UInt64] {
        let r = try request(.stats)
        guard case .stats(let entries) = r.body else { throw HarnessError("STATS: \(r.status.name) \(r.body)") }
        var out: [String: UInt64] = [:]
        for e in entries { out[e.name.string] = e.value }
        return out
    }
}

/// Work on a separate thread whose outcome is collected with `wait`.
public final class BackgroundJob: Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let outcome = Locked<String?>(nil)

    public init(_ body: @escaping @Sendable () throws -> Void) {
        let thread = Thread { [done, outcome] in
            do { try body() } catch { outcome.set("\(error)") }
            done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Waits at most `timeout`; nil when the job finished without error,
    /// else what went wrong (including "still running").
    public func wait(timeout: Double) -> String? {
        if done.wait(timeout: .now() + timeout) == .timedOut { return "background job still running after \(timeout) s" }
        return outcome.get()
    }
}

/// Runs `count` threads of `body(index)` and waits for all of them, at most
/// `timeout`. Returns false if some were still running (their sockets have
/// timeouts, so they end on their own soon after).
public func runThreads(_ count: Int, timeout: Double, _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            body(i)
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    return group.wait(timeout: .now() + timeout) == .success
}

/// A value shared between threads under a lock.
public final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    public func get() -> Value {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    public func set(_ v: Value) {
        lock.lock()
        value = v
        lock.unlock()
    }

    public func update<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
