import Foundation
import Glibc

// A webhook receiver for the stock-hooks tests: plain POSIX sockets on
// 127.0.0.1 port 0, one thread per connection, HTTP/1.1 with keep-alive
// and Content-Length bodies (what AsyncHTTPClient sends). It fails a
// seeded share of requests — 500s, answers slower than the hook's timeout,
// connections dropped without an answer — and answers 400 to chosen event
// ids, recording everything it saw.

/// What the receiver does with one request.
public enum HooksFate: String, Sendable {
    /// 200 at once: accepted.
    case ok
    /// 500 at once: not accepted.
    case fail500
    /// Accepted, but the 200 comes after `slowSeconds` (past the hook's timeout).
    case slow
    /// The connection is closed without an answer: not accepted.
    case drop
    /// 400: a permanent refusal (dead-letter).
    case reject400
    /// 503 every time (to use up `--max-attempts`).
    case fail503
}

/// Fault shares, in percent of requests (the rest are answered 200).
public struct HooksFaults: Sendable {
    public var fail500 = 0
    public var slow = 0
    public var drop = 0
    public static let none = HooksFaults()

    public init(fail500: Int = 0, slow: Int = 0, drop: Int = 0) {
        self.fail500 = fail500
        self.slow = slow
        self.drop = drop
    }
}

public final class HooksReceiver: @unchecked Sendable {
    /// One request as received.
    public struct Request: Sendable {
        public let method: String
        public let path: String
        /// Header names lower-cased.
        public let headers: [String: String]
        public let body: Data
        public let fate: HooksFate
        public var eventID: String { headers["stockd-event-id"] ?? "" }
    }

    public let port: Int
    private let listenFD: Int32
    private let seed: UInt64
    private let faults: HooksFaults
    private let slowSeconds: Double
    private let answerDelaySeconds: Double
    private let lock = NSLock()
    private var stopped = false
    private var connectionFDs: Set<Int32> = []
    private var threadsRunning = 0
    private var _requests: [Request] = []
    private var attemptsByID: [String: Int] = [:]
    private var _rejectIDs: Set<String> = []
    private var _alwaysFailIDs: Set<String> = []
    /// Event ids in the order they were first accepted (`ok` or `slow`), with their bodies.
    private var _firstAccepted: [(id: String, body: Data)] = []
    private var acceptedIDs: Set<String> = []

    /// - Parameters:
    ///   - seed: the fault draw for request n of event id X is a function of (seed, X, n) only.
    ///   - answerDelaySeconds: added before every answer (to keep a run going long enough to kill it).
    public init(seed: UInt64, faults: HooksFaults = .none, slowSeconds: Double = 0.8,
         answerDelaySeconds: Double = 0) throws {
        self.seed = seed
        self.faults = faults
        self.slowSeconds = slowSeconds
        self.answerDelaySeconds = answerDelaySeconds
        (listenFD, port) = try loopbackSocket(listening: 128, reuseAddress: true)
        threadsRunning = 1
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    deinit { stop() }

    public var url: String { "http://127.0.0.1:\(port)/hooks/stock" }

    /// Event ids answered 400 (every time).
    public func reject(_ ids: Set<String>) { lock.withLock { _rejectIDs.formUnion(ids) } }
    /// Event ids answered 503 (every time).
    public func alwaysFail(_ ids: Set<String>) { lock.withLock { _alwaysFailIDs.formUnion(ids) } }

    public var requests: [Request] { lock.withLock { _requests } }
    public var firstAccepted: [(id: String, body: Data)] { lock.withLock { _firstAccepted } }
    public var acceptedCount: Int { lock.withLock { acceptedIDs.count } }

    /// Stops accepting, closes every connection, waits (bounded) for the threads.
    public func stop() {
        // Under the lock `serve` closes under: a closed number may already be another test's socket.
        lock.withLock {
            guard !stopped else { return }
            stopped = true
            for fd in connectionFDs { shutdown(fd, Int32(SHUT_RDWR)) }
        }
        let deadline = monotonicSeconds() + 3
        while lock.withLock({ threadsRunning }) > 0 && monotonicSeconds() < deadline { sleepSeconds(0.01) }
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    private func acceptLoop() {
        defer {
            close(listenFD)
            lock.withLock { threadsRunning -= 1 }
        }
        while !isStopped {
            var p = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0 else { continue }
            let fd = accept(listenFD, nil, nil)
            guard fd >= 0 else { continue }
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let admitted: Bool = lock.withLock {
                if stopped { return false }
                connectionFDs.insert(fd)
                threadsRunning += 1
                return true
            }
            guard admitted else {
                close(fd)
                return
            }
            Thread.detachNewThread { [self] in serve(fd) }
        }
    }

    /// Requests on one connection, one after the other (keep-alive).
    private func serve(_ fd: Int32) {
        defer {
            lock.withLock {
                connectionFDs.remove(fd)
                close(fd)
                threadsRunning -= 1
            }
        }
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while !isStopped {
            // Head: up to the blank line.
            guard let headEnd = readUntil(fd, &buffer, &chunk, { Self.find([13, 10, 13, 10], in: $0) }) else { return }
            let head = String(decoding: buffer[..<headEnd], as: UTF8.self)
            buffer.removeFirst(headEnd + 4)
            let lines = head.components(separatedBy: "\r\n")
            let requestLine = lines.first?.split(separator: " ").map(String.init) ?? []
            guard requestLine.count >= 2 else { return }
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...]
                    .trimmingCharacters(in: .whitespaces)
            }
            let length = Int(headers["content-length"] ?? "0") ?? 0
            guard readUntil(fd, &buffer, &chunk, { $0.count >= length ? length : nil }) != nil else { return }
            let body = Data(buffer[..<length])
            buffer.removeFirst(length)

            let fate = decide(headers["stockd-event-id"] ?? "")
            lock.withLock {
                let r = Request(method: requestLine[0], path: requestLine[1], headers: headers, body: body, fate: fate)
                _requests.append(r)
                if fate == .ok || fate == .slow, !acceptedIDs.contains(r.eventID) {
                    acceptedIDs.insert(r.eventID)
                    _firstAccepted.append((r.eventID, body))
                }
            }
            if answerDelaySeconds > 0 { sleepSeconds(answerDelaySeconds) }
            switch fate {
            case .ok: guard answer(fd, 200, "ok") else { return }
            case .slow:
                sleepSeconds(slowSeconds)
                guard answer(fd, 200, "ok (late)") else { return }
            case .fail500: guard answer(fd, 500, "receiver failure (test)") else { return }
            case .fail503: guard answer(fd, 503, "unavailable (test)") else { return }
            case .reject400: guard answer(fd, 400, "{\"error\":\"event refused by the test\"}") else { return }
            case .drop: return  // closed without an answer
            }
        }
    }

    /// The fate of the next request for event `id`: a function of (seed, id, attempt).
    private func decide(_ id: String) -> HooksFate {
        lock.withLock {
            let n = attemptsByID[id, default: 0]
            attemptsByID[id] = n + 1
            if _rejectIDs.contains(id) { return .reject400 }
            if _alwaysFailIDs.contains(id) { return .fail503 }
            var h: UInt64 = seed
            for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
            var rng = SplitMix64(seed: h ^ (UInt64(n) &* 0x9E37_79B9_7F4A_7C15))
            let roll = Int(rng.next(below: 100))
            if roll < faults.fail500 { return .fail500 }
            if roll < faults.fail500 + faults.slow { return .slow }
            if roll < faults.fail500 + faults.slow + faults.drop { return .drop }
            return .ok
        }
    }

    /// Reads into `buffer` until `complete` returns an index; nil on EOF, error or stop.
    private func readUntil(_ fd: Int32, _ buffer: inout [UInt8], _ chunk: inout [UInt8],
                           _ complete: ([UInt8]) -> Int?) -> Int? {
        while true {
            if let i = complete(buffer) { return i }
            if isStopped { return nil }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer += chunk[..<n]
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                continue
            } else {
                return nil
            }
        }
    }

    private func answer(_ fd: Int32, _ status: Int, _ body: String) -> Bool {
        let reason = [200: "OK", 400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"][status] ?? "X"
        let text = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return false
            }
            done += n
        }
        return true
    }

    private static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
            if Array(hay[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }
}
