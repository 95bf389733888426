import Foundation
import Glibc

// A real single-member etcd on loopback for the cluster tests (Debian's etcd-server, 3.4).
// Every wait is bounded; the process is killed and its data directory removed in `deinit`.

/// A running etcd, serving its client URL (and the v3 JSON gateway on it) at `endpoint`.
public final class EtcdProcess {
    public let process: Process
    public let dir: TempDirectory
    public let clientPort: Int
    public let peerPort: Int
    private let stderrPath: String
    private var paused = false

    /// `http://127.0.0.1:<client port>`.
    public var endpoint: String { "http://127.0.0.1:\(clientPort)" }

    /// `ETCD_BINARY` if set, else Debian's /usr/bin/etcd. CI installs etcd-server, so a missing binary
    /// is an error, not a reason to skip.
    public static func binaryPath() throws -> String {
        let path = ProcessInfo.processInfo.environment["ETCD_BINARY"].flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/bin/etcd"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw HarnessError("etcd not found at \(path): install Debian's etcd-server (apt-get install etcd-server) "
                               + "or set ETCD_BINARY; the StockCluster tests need a real etcd")
        }
        return path
    }

    /// Starts etcd on two free ports and returns once `POST /v3/kv/range` answers (at most
    /// `startTimeout` seconds). Ports are picked by binding port 0 and closing, so another process
    /// can take one in between: a start that fails to bind is retried on new ports.
    public init(startTimeout: Double = 10, attempts: Int = 3) throws {
        let binary = try EtcdProcess.binaryPath()
        var lastError = HarnessError("etcd was not started")
        for _ in 0..<attempts {
            let dir = try TempDirectory(prefix: "etcd")
            let (client, peer) = (try unusedPort(), try unusedPort())
            // A Process runs once: each attempt has its own.
            let process = Process()
            do {
                try EtcdProcess.start(process, binary: binary, dir: dir, client: client, peer: peer, timeout: startTimeout)
                (self.process, self.dir, clientPort, peerPort) = (process, dir, client, peer)
                stderrPath = dir.path("stderr.log")
                return
            } catch let error as EtcdStartError {
                dir.remove()
                lastError = error.harnessError
                guard error.portTaken else { throw lastError }
            } catch {
                dir.remove()
                throw error
            }
        }
        throw lastError
    }

    deinit {
        kill()
        dir.remove()
    }

    /// Everything etcd wrote to stderr so far (only errors: it runs with --log-level error).
    public var stderrText: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    public var isRunning: Bool { process.isRunning }

    public var pid: Int32 { process.processIdentifier }

    /// SIGKILL, then a bounded wait.
    public func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        _ = StockdProcess.waitForExit(process, timeout: 5)
    }

    /// SIGTERM (etcd shuts down cleanly), SIGKILL if it has not exited within `timeout`.
    public func stop(timeout: Double = 5) {
        guard process.isRunning else { return }
        resume()
        Glibc.kill(process.processIdentifier, SIGTERM)
        if !StockdProcess.waitForExit(process, timeout: timeout) { kill() }
    }

    /// SIGSTOP: etcd keeps its sockets (connections are accepted by the kernel) but answers nothing,
    /// as a member that lost its quorum or a machine that froze. Returns once every thread is
    /// stopped (the signal is delivered asynchronously: a busy thread could still answer one more
    /// request), at most 2 s.
    public func pause() throws {
        guard process.isRunning, !paused else { return }
        Glibc.kill(process.processIdentifier, SIGSTOP)
        paused = true
        let deadline = monotonicSeconds() + 2
        while !allThreadsStopped() {
            guard monotonicSeconds() < deadline else { throw HarnessError("etcd did not stop within 2 s of SIGSTOP") }
            sleepSeconds(0.005)
        }
    }

    /// Every thread of the process in state T (stopped) per /proc/<pid>/task/<tid>/stat.
    private func allThreadsStopped() -> Bool {
        let tasks = "/proc/\(process.processIdentifier)/task"
        guard let tids = try? FileManager.default.contentsOfDirectory(atPath: tasks), !tids.isEmpty else { return false }
        return tids.allSatisfy { tid in
            guard let stat = try? String(contentsOfFile: "\(tasks)/\(tid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            // "pid (comm) S …": the state follows the command name's closing parenthesis.
            return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first == "T"
        }
    }

    /// SIGCONT after `pause()`.
    public func resume() {
        guard paused else { return }
        Glibc.kill(process.processIdentifier, SIGCONT)
        paused = false
    }

    // MARK: starting

    private struct EtcdStartError: Error {
        let harnessError: HarnessError
        /// Another process bound one of the ports between our pick and etcd's bind.
        let portTaken: Bool
    }

    private static func start(_ process: Process, binary: String, dir: TempDirectory, client: Int, peer: Int,
                              timeout: Double) throws {
        let args = arguments(dir: dir, client: client, peer: peer)
        try launch(process, binary: binary, args: args, stderrPath: dir.path("stderr.log"), stdoutPath: dir.path("stdout.log"))
        let deadline = monotonicSeconds() + timeout
        while !rangeAnswers(port: client) {
            let stderr = (try? String(contentsOfFile: dir.path("stderr.log"), encoding: .utf8)) ?? ""
            if !process.isRunning {
                throw EtcdStartError(harnessError: HarnessError("etcd exited before serving (status \(process.terminationStatus)); "
                                                                + "stderr: \(stderr.suffix(3000))"),
                                     portTaken: stderr.contains("address already in use"))
            }
            if monotonicSeconds() > deadline {
                Glibc.kill(process.processIdentifier, SIGKILL)
                _ = StockdProcess.waitForExit(process, timeout: 5)
                throw EtcdStartError(harnessError: HarnessError("etcd did not answer on port \(client) within \(timeout) s; "
                                                                + "stderr: \(stderr.suffix(3000))"),
                                     portTaken: false)
            }
            sleepSeconds(0.05)
        }
    }

    private static func arguments(dir: TempDirectory, client: Int, peer: Int) -> [String] {
        let clientURL = "http://127.0.0.1:\(client)"
        let peerURL = "http://127.0.0.1:\(peer)"
        return [
            "--name", "test",
            "--data-dir", dir.path("data"),
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", "test=\(peerURL)", "--initial-cluster-state", "new",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "error",
        ]
    }

    /// True when `POST /v3/kv/range` on the port answers 200 within half a second.
    static func rangeAnswers(port: Int) -> Bool {
        let body = #"{"key":"AA=="}"#
        let request = "POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        guard let answer = try? loopbackExchange(port: port, timeout: 0.5, request: request) else { return false }
        return answer.hasPrefix("HTTP/1.1 200")
    }

    /// StockdProcess.launch, with etcd's binary.
    private static func launch(_ process: Process, binary: String, args: [String], stderrPath: String, stdoutPath: String) throws {
        try StockdProcess.launch(process, binary: binary, args: args, stderrPath: stderrPath, stdoutPath: stdoutPath)
    }
}

/// Sends `request` to 127.0.0.1:`port` and returns what came back until the peer closed, with
/// send and receive timeouts of `timeout` seconds each (a blocking socket; for probes, not clients).
func loopbackExchange(port: Int, timeout: Double, request: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket failed") }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw HarnessError("connect failed") }
    let bytes = Array(request.utf8)
    guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw HarnessError("send failed") }
    var answer: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    let deadline = monotonicSeconds() + timeout
    while monotonicSeconds() < deadline {
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 0 else { break }
        answer += buffer[0..<n]
    }
    return String(decoding: answer, as: UTF8.self)
}
