import Foundation
import Glibc
import TestSupport

/// A one-connection HTTP server on 127.0.0.1 for HTTPConnection's tests: accepts once, reads the
/// request (head and Content-Length body), then plays a script of writes, pauses and a close.
/// Everything it does is bounded; `stop()` (also in deinit) closes its sockets and joins its thread.
final class ScriptedHTTPServer: @unchecked Sendable {
    enum Step: Sendable {
        case write([UInt8])
        case sleep(Double)
        /// Keep the connection open, answering nothing more, until stop() (at most 30 s).
        case hold
    }

    let port: Int
    var url: String { "http://127.0.0.1:\(port)/v3/test" }
    private let listenFD: Int32
    private let lock = NSLock()
    private var request: [UInt8] = []
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    /// With `accept: false` the server listens but never accepts: the kernel completes the connect
    /// and holds what the client sends, and nothing ever answers.
    init(_ script: [Step], accept: Bool = true) throws {
        (listenFD, port) = try loopbackSocket(listening: 8, reuseAddress: true)
        let thread = Thread { [self] in
            if accept { serve(script) }
            done.signal()
        }
        thread.start()
    }

    convenience init(answer text: String) throws {
        try self.init([.write(Array(text.utf8))])
    }

    deinit { stop() }

    /// The bytes of the request the server read.
    var received: String {
        lock.withLock { String(decoding: request, as: UTF8.self) }
    }

    func stop() {
        let first = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        // Closing the listening socket wakes a poll on it; the thread notices `stopped`.
        shutdown(listenFD, Int32(SHUT_RDWR))
        _ = done.wait(timeout: .now() + 10)
        close(listenFD)
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    private func serve(_ script: [Step]) {
        guard waitReadable(listenFD, seconds: 10), !isStopped else { return }
        let fd = Glibc.accept(listenFD, nil, nil)
        guard fd >= 0 else { return }
        defer { close(fd) }
        readRequest(fd)
        for step in script {
            switch step {
            case .write(let bytes): _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            case .sleep(let s): sleepSeconds(s)
            case .hold:
                let end = monotonicSeconds() + 30
                while !isStopped && monotonicSeconds() < end { sleepSeconds(0.01) }
            }
        }
    }

    /// Reads until the head's end and the Content-Length body have arrived (at most 5 s).
    private func readRequest(_ fd: Int32) {
        let deadline = monotonicSeconds() + 5
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while monotonicSeconds() < deadline, !ScriptedHTTPServer.complete(bytes) {
            guard waitReadable(fd, seconds: 0.1) else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { break }
            bytes += buffer[0..<n]
        }
        lock.withLock { request = bytes }
    }

    private static func complete(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { return false }
        let length = text[..<end.lowerBound].split(separator: "\r\n")
            .first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        return text.utf8.count - text.utf8.distance(from: text.startIndex, to: end.upperBound) >= length
    }

    private func waitReadable(_ fd: Int32, seconds: Double) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, Int32(seconds * 1000)) > 0
    }
}
