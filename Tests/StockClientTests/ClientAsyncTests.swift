import Foundation
import Glibc
import StockClient
import Testing
import TestSupport

/// StockClient's async hygiene: cancellation, per-call deadlines, a checked
/// configuration, graceful shutdown, AUTH_FAILED surfaced without retries,
/// request ids never confused after a call gave up, Token as Codable text.
/// A `FakeStockd` (a listener in this process) plays the server that never
/// answers; a real stockd the rest. Every wait is bounded.
@Suite(.ownThread, .timeLimit(.minutes(2))) struct ClientAsyncTests {
    /// How long a cancelled or timed-out call may take to return: generous for a loaded CI machine,
    /// far below the 30 s call timeout the clients below are given.
    /// "Promptly": well below the clients' 30 s call timeout, so a call that ignored a cancellation or
    /// its own deadline still fails the check, yet loose enough that a loaded 2-core CI machine (the
    /// whole suite runs in parallel) does not make it flaky. Correctness, not speed, is checked.
    static let promptly: Duration = .seconds(10)

    static func client(port: Int, timeout: Duration = .seconds(30), connections: Int = 1,
                       backoff: StockClient.Configuration.Backoff = .init()) throws -> StockClient {
        try StockClient(configuration: .init(host: "127.0.0.1", port: port, connections: connections,
                                             callTimeout: timeout, reconnectBackoff: backoff))
    }

    /// Runs `body`, returns its StockError (nil if it succeeded) and how long it took.
    static func timed<R>(_ body: () async throws -> R) async -> (StockError?, Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        let e = await stockError(body)
        return (e, clock.now - start)
    }

    @Test("cancelling a call to a server that never answers ends it at once with `cancelled`")
    func cancelHangingCall() async throws {
        for mode in [FakeStockd.Mode.silent, .answerHelloOnly] {
            let fake = try FakeStockd(mode)
            defer { fake.stop() }
            let client = try Self.client(port: fake.port)
            let call = Task { await Self.timed { try await client.ping() } }
            // Wait (bounded) until the request is with the server: the call is then truly parked.
            try await fake.waitForFrames(mode == .silent ? 1 : 2)
            call.cancel()
            let (e, took) = await call.value
            #expect(e == .cancelled, "\(mode)")
            #expect(took < .seconds(10), "the call ran for \(took) in all")
            // Cancelled before it started: refused without touching the connection.
            let early = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return await Self.timed { try await client.ping() }
            }
            let (e2, took2) = await early.value
            #expect(e2 == .cancelled && took2 < Self.promptly)
            await client.shutdown(gracePeriod: .milliseconds(100))
        }
    }

    @Test("a per-call timeout fires against a silent server, during HELLO or after it")
    func perCallTimeout() async throws {
        for mode in [FakeStockd.Mode.silent, .answerHelloOnly] {
            let fake = try FakeStockd(mode)
            defer { fake.stop() }
            let client = try Self.client(port: fake.port)
            let (e, took) = await Self.timed { try await client.ping(timeout: .milliseconds(300)) }
            #expect(e == .timeout, "\(mode)")
            #expect(took >= .milliseconds(250) && took < .milliseconds(300) + Self.promptly, "took \(took)")
            #expect(e?.isServerRejection == false)
            // A timeout that is not above zero is refused before anything is sent.
            #expect(await stockError { try await client.ping(timeout: .zero) } == .invalidArgument)
            await client.shutdown(gracePeriod: .milliseconds(100))
        }
        // The configured default applies when a call gives none.
        let fake = try FakeStockd(.answerHelloOnly)
        defer { fake.stop() }
        let client = try Self.client(port: fake.port, timeout: .milliseconds(200))
        // Connected first, with a deadline of its own: under a loaded parallel run the connect alone
        // could take the 200 ms, and that is a connect failure, not the call timeout checked here.
        _ = try await client.serverInfo(timeout: .seconds(30))
        let (e, took) = await Self.timed { try await client.stock("A") }
        #expect(e == .timeout && took < .milliseconds(200) + Self.promptly)
        await client.shutdown(gracePeriod: .milliseconds(100))
    }

    @Test("after a call gave up, the next call on the same connection gets its own answer")
    func idsNotConfusedAfterCancel() async throws {
        let fake = try FakeStockd(.answerHelloOnly)
        defer { fake.stop() }
        let client = try Self.client(port: fake.port)
        let first = Task { await stockError { try await client.stock("FIRST") } }
        try await fake.waitForFrames(2)  // HELLO, STOCK_GET FIRST
        first.cancel()
        #expect(await first.value == .cancelled)
        let second = Task { try await client.stock("SECOND") }
        try await fake.waitForFrames(3)
        let frames = fake.frames
        #expect(frames.count == 3 && frames[1].id != frames[2].id)
        // The server answers both, in request order, as stockd does: the late answer to the
        // cancelled call must be dropped, not handed to the call now waiting.
        fake.answer(frames[1], .stock(Self.info(onHand: 111)))
        fake.answer(frames[2], .stock(Self.info(onHand: 222)))
        #expect(try await second.value.onHand == 222)
        // And a timed-out call likewise.
        #expect(await stockError { try await client.stock("THIRD", timeout: .milliseconds(100)) } == .timeout)
        let fourth = Task { try await client.stock("FOURTH") }
        try await fake.waitForFrames(5)
        let later = fake.frames
        fake.answer(later[3], .stock(Self.info(onHand: 333)))
        fake.answer(later[4], .stock(Self.info(onHand: 444)))
        #expect(try await fourth.value.onHand == 444)
        await client.shutdown(gracePeriod: .milliseconds(100))
    }

    static func info(onHand: UInt64) -> StockInfo {
        StockInfo(onHand: onHand, available: onHand, reserved: 0, confirmed: 0, lowStockThreshold: 0,
                  perCustomerLimit: 0)
    }

    @Test("against a real stockd: calls cancelled mid-flight never disturb the answers of the others")
    func cancellationStormRealServer() async throws {
        let server = try StockdProcess(catalog: "A,11\nB,22\n")
        let client = try Self.client(port: server.port, timeout: .seconds(10), connections: 2)
        for round in 0..<50 {
            let doomed = Task { try await client.stock("A") }
            if round % 2 == 0 { await Task.yield() }
            doomed.cancel()
            if let e = await stockError({ try await doomed.value }) { #expect(e == .cancelled) }
            #expect(try await client.stock("B").onHand == 22)
        }
        // Times next to the raw milliseconds.
        let hold = try await client.reserve(sku: "A", quantity: 1, ttl: .seconds(30), idempotencyKey: "async-1",
                                            timeout: .seconds(5))
        let inThirty = Date().addingTimeInterval(30)
        #expect(abs(hold.expiresAt.timeIntervalSince(inThirty)) < 5)
        #expect(hold.expiresAt == StockClient.date(unixMs: hold.expiresAtMs))
        #expect(try await client.serverInfo().defaultTTL == .milliseconds(90_000))
        await client.shutdown()
    }

    @Test("cancelling the task iterating an event feed ends the iteration with `cancelled`")
    func cancelFeedIteration() async throws {
        let server = try StockdProcess(catalog: "A,5\n")
        let client = try Self.client(port: server.port, timeout: .seconds(10))
        let feed = try await client.events(from: .now)
        defer { feed.close() }
        let clock = ContinuousClock()
        let iteration = Task { () -> (StockError?, Int) in
            var seen = 0
            do {
                for try await _ in feed { seen += 1 }
                return (nil, seen)
            } catch {
                return (error as? StockError ?? .protocolError("not a StockError: \(error)"), seen)
            }
        }
        try await Task.sleep(for: .milliseconds(300))  // parked in next(): nothing happens on the server
        let cancelledAt = clock.now
        iteration.cancel()
        let (e, seen) = await iteration.value
        #expect(e == .cancelled && seen == 0)
        #expect(clock.now - cancelledAt < Self.promptly)
        await client.shutdown()
    }

    @Test("a Configuration out of range throws, naming the field; the original init still works")
    func badConfiguration() throws {
        typealias C = StockClient.Configuration
        func field(_ make: () throws -> C) -> String? { configurationErrorField(make) }
        #expect(field { try C(host: "") } == "host")
        #expect(field { try C(host: "bad host") } == "host")
        #expect(field { try C(port: 0) } == "port")
        #expect(field { try C(port: 65_536) } == "port")
        #expect(field { try C(connections: 0) } == "connections")
        #expect(field { try C(connections: 65) } == "connections")
        #expect(field { try C(callTimeout: .zero) } == "callTimeout")
        #expect(field { try C(callTimeout: .milliseconds(-5)) } == "callTimeout")
        #expect(field { try C(connectTimeout: .zero) } == "connectTimeout")
        #expect(field { try C(reconnectBackoff: .init(base: .seconds(2), cap: .seconds(1))) } == "reconnectBackoff")
        #expect(field { try C(credential: String(repeating: "x", count: Limits.maxCredentialLength + 1)) }
            == "credential")
        #expect(field { try C(host: "::1", port: 1, connections: 64) } == nil)
        #expect(field { try C(host: "[::1]") } == nil)
        // A valid value made invalid afterwards is caught by the client too.
        var c = try C()
        c.port = -1
        do {
            _ = try StockClient(configuration: c)
            Issue.record("a port of -1 was accepted")
        } catch {
            #expect(error.field == "port")  // the initialiser throws ConfigurationError only
        }
        // A configuration may be logged: its description never shows the credential.
        let secret = try C(credential: "s3cret-credential")
        #expect(!secret.description.contains("s3cret") && secret.description.contains("17 bytes"))
        let plain = StockClient(host: "127.0.0.1", port: 7878, connections: 2, timeout: .seconds(1))
        #expect(plain.configuration.connections == 2 && plain.configuration.callTimeout == .seconds(1))
    }

    @Test("shutdown(): calls in flight fail with `closed` after the grace period, later calls at once, sockets closed")
    func shutdownWithCallsInFlight() async throws {
        let fake = try FakeStockd(.answerHelloOnly)
        defer { fake.stop() }
        let client = try Self.client(port: fake.port)
        _ = try await client.serverInfo()  // connected: the calls below share this connection
        let calls = (0..<3).map { i in Task { await stockError { try await client.stock("S\(i)") } } }
        try await fake.waitForFrames(4)
        let clock = ContinuousClock()
        let start = clock.now
        await client.shutdown(gracePeriod: .milliseconds(300))
        let took = clock.now - start
        #expect(took >= .milliseconds(250) && took < .milliseconds(300) + Self.promptly, "took \(took)")
        for c in calls { #expect(await c.value == .closed) }
        #expect(await stockError { try await client.ping() } == .closed)
        #expect(await stockError { try await client.events() } == .closed)
        try await fake.waitForPeerClose(count: 1)
        await client.shutdown()  // a second call returns at once

        // A real server: calls in flight are answered within the grace period, feeds end with nil.
        let server = try StockdProcess(catalog: "A,5\n")
        let real = try Self.client(port: server.port, timeout: .seconds(10), connections: 2)
        _ = try await real.ping()
        let feed = try await real.events(from: .now)
        let reader = Task { () -> StockError? in
            do {
                for try await _ in feed {}
                return nil
            } catch {
                return error as? StockError ?? .protocolError("not a StockError: \(error)")
            }
        }
        let answered = (0..<20).map { _ in Task { try await real.stock("A").onHand } }
        await real.shutdown(gracePeriod: .seconds(5))
        for a in answered {
            do {
                #expect(try await a.value == 5)
            } catch {
                #expect(error as? StockError == .closed)  // it came after shutdown began
            }
        }
        #expect(await reader.value == nil)  // the feed iteration finished
    }

    @Test("AUTH_FAILED is surfaced at once and never retried (one connection in all)")
    func authFailedNotRetried() async throws {
        let fake = try FakeStockd(.refuseHello)
        defer { fake.stop() }
        // A tiny backoff: were AUTH_FAILED retried after it, the calls below would reconnect.
        let client = try Self.client(port: fake.port, connections: 2,
                                     backoff: .init(base: .milliseconds(1), cap: .milliseconds(2)))
        #expect(await stockError { try await client.ping() } == .rejected(.authFailed))
        for _ in 0..<5 {
            try await Task.sleep(for: .milliseconds(20))
            let (e, took) = await Self.timed { try await client.stock("A") }
            #expect(e == .rejected(.authFailed) && took < Self.promptly)
        }
        #expect(fake.accepted == 1)
        await client.shutdown()

        // And from a real stockd with an auth file: the wrong credential, then the same answer without a connect.
        let dir = try TempDirectory(prefix: "client-auth")
        defer { dir.remove() }
        let server = try StockdProcess(["--auth-file", try AuthFixture.authFile(dir)], catalog: "A,5\n")
        let wrong = try StockClient(configuration: .init(port: server.port, credential: "not-the-secret"))
        #expect(await stockError { try await wrong.ping() } == .rejected(.authFailed))
        #expect(await stockError { try await wrong.ping() } == .rejected(.authFailed))
        let right = try StockClient(configuration: .init(port: server.port, credential: AuthFixture.checkoutSecret))
        #expect(try await right.stock("A").onHand == 5)
        await wrong.shutdown()
        await right.shutdown()
    }

    @Test("Token is Codable as its 32-hex-digit text")
    func tokenCodable() throws {
        struct Cart: Codable, Equatable {
            var token: Token
            var units: Int
        }
        let cart = Cart(token: Token(slot: 7, generation: 3, secret: 0x0123_4567_89AB_CDEF), units: 2)
        let json = try JSONEncoder().encode(cart)
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains("\"\(cart.token.description)\""), "\(text)")
        #expect(try JSONDecoder().decode(Cart.self, from: json) == cart)
        let bad = Data(#"{"token":"xyz","units":1}"#.utf8)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Cart.self, from: bad) }
        let short = Data(#"{"token":"0123","units":1}"#.utf8)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Cart.self, from: short) }
    }
}

/// A listener in the test process that plays a stockd which does not answer:
/// `silent` answers nothing, `answerHelloOnly` answers HELLO and then only
/// what the test sends with `answer`, `refuseHello` answers HELLO with
/// AUTH_FAILED and closes. It counts connections and records every frame.
final class FakeStockd: @unchecked Sendable {
    enum Mode: Sendable, Equatable { case silent, answerHelloOnly, refuseHello }

    struct Frame: Sendable {
        let fd: Int32
        let id: UInt32
        let opcode: UInt8
    }

    let port: Int
    let mode: Mode
    private let listenFD: Int32
    private let lock = NSLock()
    private var _accepted = 0
    private var _frames: [Frame] = []
    private var _peerCloses = 0
    private var connections: [Int32] = []
    private var stopped = false

    init(_ mode: Mode) throws {
        self.mode = mode
        (listenFD, port) = try loopbackSocket(listening: 16)
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    var accepted: Int { lock.withLock { _accepted } }
    /// Every frame received, in arrival order (HELLO included).
    var frames: [Frame] { lock.withLock { _frames } }

    /// Waits (at most 20 s: the parallel suite can starve this process's threads) until `count` frames
    /// have arrived.
    func waitForFrames(_ count: Int) async throws {
        let deadline = monotonicSeconds() + 20
        while frames.count < count {
            guard monotonicSeconds() < deadline else {
                throw HarnessError("fake stockd: \(frames.count) frames, not \(count), within 20 s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits (at most 5 s) until the client closed `count` connections.
    func waitForPeerClose(count: Int) async throws {
        let deadline = monotonicSeconds() + 5
        while lock.withLock({ _peerCloses }) < count {
            guard monotonicSeconds() < deadline else { throw HarnessError("fake stockd: the client kept its socket") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Answers `frame` with `body` (status OK).
    func answer(_ frame: Frame, _ body: ResponseBody) {
        var w = ByteWriter(capacity: 256)
        ResponseCodec.encode(Response(requestID: frame.id, opcode: frame.opcode, body: body), into: &w)
        _ = try? RawClient.sendAll(fd: frame.fd, w.bytes)
    }

    /// Shuts the listener and every connection still open. Under the lock that `serve` closes its
    /// descriptor under: a number closed there may already belong to another test's socket, and
    /// shutting that down would break a test that has nothing to do with this one.
    func stop() {
        lock.withLock {
            guard !stopped else { return }
            stopped = true
            shutdown(listenFD, Int32(SHUT_RDWR))
            for fd in connections { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    private func acceptLoop() {
        defer { close(listenFD) }
        while true {
            let fd = accept(listenFD, nil, nil)
            guard fd >= 0 else {
                if errno == EINTR { continue }
                return
            }
            let go = lock.withLock { () -> Bool in
                guard !stopped else { return false }
                _accepted += 1
                connections.append(fd)
                return true
            }
            guard go else {
                close(fd)
                return
            }
            Thread.detachNewThread { [self] in serve(fd) }
        }
    }

    private func serve(_ fd: Int32) {
        defer {
            lock.withLock {
                connections.removeAll { $0 == fd }
                close(fd)
            }
        }
        var decoder = FrameDecoder(maxFrame: Limits.maxFrameCeiling)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else {
                if n == 0 { lock.withLock { _peerCloses += 1 } }
                return
            }
            decoder.feed(Array(buffer[0..<n]))
            while let header = try? decoder.next({ header, _ in header }) {
                let frame = Frame(fd: fd, id: header.requestID, opcode: header.opcode)
                lock.withLock { _frames.append(frame) }
                guard header.opcode == Opcode.hello.rawValue else { continue }
                switch mode {
                case .silent: break
                case .answerHelloOnly:
                    answer(frame, .hello(HelloReply(role: .admin, maxFrame: UInt32(Limits.defaultMaxFrame),
                                                    maxTTLMs: 3_600_000, defaultTTLMs: 90_000, maxInflight: 1024,
                                                    serverName: Array("fake".utf8))))
                case .refuseHello:
                    var w = ByteWriter(capacity: 64)
                    ResponseCodec.encodeFailure(opcode: header.opcode, requestID: header.requestID, status: .authFailed,
                                                detail: .none, into: &w)
                    _ = try? RawClient.sendAll(fd: fd, w.bytes)
                    shutdown(fd, Int32(SHUT_WR))
                }
            }
        }
    }
}

/// The field a `ConfigurationError` names, nil when `make` succeeded. (At file scope: as a local
/// function inside the test, Swift 6.3.1 rejects the catch as unreachable while emitting the module.)
private func configurationErrorField(_ make: () throws -> StockClient.Configuration) -> String? {
    let error: any Error
    do {
        _ = try make()
        return nil
    } catch let caught {
        error = caught
    }
    guard let error = error as? StockClient.ConfigurationError else {
        Issue.record("not a ConfigurationError: \(error)")
        return "?"
    }
    #expect(!error.description.isEmpty)
    return error.field
}
