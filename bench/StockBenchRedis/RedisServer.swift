import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Why a `redis-server` could not be started.
public enum RedisServerError: Error, Equatable, CustomStringConvertible {
    /// No redis-server executable on PATH or in /usr/bin.
    case notInstalled
    /// The data directory could not be created.
    case dataDir(path: String, message: String)
    /// The process could not be launched.
    case launch(executable: String, message: String)
    /// The process exited during start-up.
    case exited(status: Int32, log: String)
    /// The server did not answer PING in time.
    case notReady(port: Int, waitedMs: Int, log: String)
    /// Every port tried was taken by the time redis-server bound it.
    case noFreePort(attempts: Int)

    public var description: String {
        switch self {
        case .notInstalled:
            return "redis-server not found on PATH or in /usr/bin; install it with: apt-get install redis-server"
        case let .dataDir(path, message):
            return "redis-server: cannot create data directory \(path): \(message)"
        case let .launch(executable, message):
            return "redis-server: cannot launch \(executable): \(message)"
        case let .exited(status, log):
            return "redis-server exited during start-up (status \(status))" + (log.isEmpty ? "" : ":\n\(log)")
        case let .notReady(port, ms, log):
            return "redis-server on port \(port) did not answer PING within \(ms) ms" + (log.isEmpty ? "" : ":\n\(log)")
        case let .noFreePort(attempts):
            return "redis-server: no free port after \(attempts) attempts"
        }
    }
}

/// A real `redis-server` on 127.0.0.1 and a free port, for tests and
/// stockbench. Stopped by `stop()` or, at the latest, when released.
public final class RedisServer: @unchecked Sendable {
    public enum Persistence: Sendable {
        /// No RDB snapshots, no AOF: memory only.
        case off
        /// AOF on, fsync once a second (Redis' recommended durable setting).
        case appendfsyncEverysec
        /// AOF on, fsync before every write is acknowledged (Redis' strongest setting).
        case appendfsyncAlways
    }

    public let host = "127.0.0.1"
    public let port: Int
    public let dataDir: String
    public let executable: String
    public let persistence: Persistence
    /// Redis' own log (`--logfile`), inside `dataDir`.
    public let logPath: String
    /// The redis-server process id.
    public let pid: pid_t

    private let lock = NSLock()
    private var stopped = false

    /// Starts redis-server and waits until it answers PING (at most
    /// `startTimeoutMs` per attempt); if the chosen port was taken meanwhile,
    /// tries another one (up to 5 ports).
    public init(persistence: Persistence = .off, dataDir: String, executable: String? = nil,
                startTimeoutMs: Int = 5000) throws {
        guard let exe = executable ?? Self.locate() else { throw RedisServerError.notInstalled }
        do {
            try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        } catch {
            throw RedisServerError.dataDir(path: dataDir, message: "\(error)")
        }
        self.executable = exe
        self.dataDir = dataDir
        self.persistence = persistence
        logPath = (dataDir as NSString).appendingPathComponent("redis.log")

        let attempts = 5
        for _ in 0..<attempts {
            let candidate = try Self.freePort()
            let child = try Self.launch(executable: exe, port: candidate, persistence: persistence,
                                        dataDir: dataDir, logPath: logPath)
            switch Self.waitReady(child, port: candidate, timeoutMs: startTimeoutMs, logPath: logPath) {
            case .ready:
                port = candidate
                pid = child
                return
            case .portTaken:
                continue
            case .failed(let error):
                Self.terminate(child)
                throw error
            }
        }
        throw RedisServerError.noFreePort(attempts: attempts)
    }

    deinit { stop() }

    /// SIGTERM, then SIGKILL if the server is still running after 3 s; waits
    /// for the exit. Idempotent.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        Self.terminate(pid)
    }

    /// The redis-server executable: the first on PATH, else /usr/bin,
    /// /usr/local/bin or /usr/sbin; nil if there is none
    /// (`apt-get install redis-server`).
    public static func locate() -> String? {
        let fm = FileManager.default
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin", "/usr/sbin"]
        for dir in dirs where !dir.isEmpty {
            let candidate = (dir as NSString).appendingPathComponent("redis-server")
            if fm.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// The last lines of Redis' log, for error messages.
    public func logTail(lines: Int = 20) -> String { Self.tail(logPath, lines: lines) }

    // MARK: Start-up

    private enum Start {
        case ready
        case portTaken
        case failed(RedisServerError)
    }

    /// Starts redis-server with posix_spawn rather than Foundation's
    /// `Process`: the child gets an empty signal mask and default signal
    /// dispositions. The calling thread may block nearly every signal (a
    /// Dispatch or Swift concurrency worker does; so do test runners) and a
    /// child inherits the mask, so a redis-server started through `Process`
    /// from such a thread never receives SIGTERM.
    private static func launch(executable: String, port: Int, persistence: Persistence, dataDir: String,
                               logPath: String) throws -> pid_t {
        let arguments = [
            executable,
            "--port", String(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", persistence == .off ? "no" : "yes",
            "--appendfsync", persistence == .appendfsyncAlways ? "always" : "everysec",
            "--dir", dataDir,
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", logPath,
        ]
        // Errors before the log file opens (a bad argument) go to stderr.
        let stderrPath = (dataDir as NSString).appendingPathComponent("redis.stderr")

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in 1..<32 where sig != SIGKILL && sig != SIGSTOP { sigaddset(&defaults, Int32(sig)) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attr, argv, envp)
        guard rc == 0 else {
            throw RedisServerError.launch(executable: executable, message: RedisAdmin.describe(rc))
        }
        return pid
    }

    /// Nil while `pid` runs; its wait status once it has exited (reaped here).
    private static func exitStatus(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == 0 { return nil }
            if r == pid { return status }
            if errno == EINTR { continue }
            return -1  // ECHILD: already reaped elsewhere
        }
    }

    private static func waitReady(_ pid: pid_t, port: Int, timeoutMs: Int, logPath: String) -> Start {
        let deadline = monotonicMs() + timeoutMs
        while true {
            if let status = exitStatus(pid) {
                let stderrPath = ((logPath as NSString).deletingLastPathComponent as NSString)
                    .appendingPathComponent("redis.stderr")
                let log = [tail(logPath, lines: 20), tail(stderrPath, lines: 20)].filter { !$0.isEmpty }
                    .joined(separator: "\n")
                if log.contains("Address already in use") { return .portTaken }
                return .failed(.exited(status: status, log: log))
            }
            if let admin = try? RedisAdmin(host: "127.0.0.1", port: port, timeoutMs: 250) {
                defer { admin.close() }
                // Ours, not another server that took the port first.
                if (try? admin.ping()) == true,
                   let info = try? admin.info(section: "server"),
                   info.contains("process_id:\(pid)\r\n") {
                    return .ready
                }
            }
            if monotonicMs() >= deadline {
                return .failed(.notReady(port: port, waitedMs: timeoutMs, log: tail(logPath, lines: 20)))
            }
            usleep(20_000)
        }
    }

    /// A port that was free a moment ago: bind 127.0.0.1:0, read it, close.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RedisServerError.launch(executable: "redis-server", message: "socket: errno \(errno)") }
        defer { Glibc.close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else {
            throw RedisServerError.launch(executable: "redis-server", message: "no free port: \(RedisAdmin.describe(errno))")
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// SIGTERM; SIGKILL if still running after 3 s; reaps the process.
    private static func terminate(_ pid: pid_t) {
        guard exitStatus(pid) == nil else { return }
        kill(pid, SIGTERM)
        let deadline = monotonicMs() + 3000
        while monotonicMs() < deadline {
            if exitStatus(pid) != nil { return }
            usleep(5_000)
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    private static func monotonicMs() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }

    private static func tail(_ path: String, lines: Int) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        return text.split(separator: "\n", omittingEmptySubsequences: true).suffix(lines).joined(separator: "\n")
    }
}
