import Foundation
import Glibc

// Starting and stopping a real `stockd` process for the integration tests.
// Every wait here is bounded; a server left running is killed in `deinit`.

/// A failure of the harness itself (not an assertion about the server).
public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Seconds on a monotonic clock, for deadlines and elapsed times.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Unix epoch milliseconds (the clock `expires_at_ms` is given in).
public func wallClockMs() -> UInt64 {
    UInt64(Date().timeIntervalSince1970 * 1000)
}

/// Sleeps the calling thread.
public func sleepSeconds(_ s: Double) {
    guard s > 0 else { return }
    usleep(useconds_t(s * 1_000_000))
}

/// Locating the `stockd` executable.
public enum StockdBinary {
    /// `STOCKD_BINARY` if set; else `stockd` next to the running test
    /// executable (SwiftPM puts the xctest bundle and the products it depends
    /// on in one directory); else `.build/debug/stockd` found by walking up
    /// from this source file.
    public static func path() throws -> String {
        let fm = FileManager.default
        if let env = ProcessInfo.processInfo.environment["STOCKD_BINARY"], !env.isEmpty {
            guard fm.isExecutableFile(atPath: env) else { throw HarnessError("STOCKD_BINARY=\(env) is not executable") }
            return env
        }
        var tried: [String] = []
        if let exe = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
            // The runner may be `X.xctest` itself or live inside it.
            for d in [dir, dir.deletingLastPathComponent()] {
                let candidate = d.appendingPathComponent("stockd").path
                tried.append(candidate)
                if fm.isExecutableFile(atPath: candidate) { return candidate }
            }
        }
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = dir.appendingPathComponent(".build/debug/stockd").path
            tried.append(candidate)
            if fm.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        throw HarnessError("stockd executable not found; tried \(tried.joined(separator: ", "))")
    }
}

/// How a process ended.
public struct ExitResult: CustomStringConvertible {
    /// Exit code, or the signal number when `signaled`.
    public let code: Int32
    public let signaled: Bool
    public let stderr: String
    public let elapsedSeconds: Double

    /// Non-empty lines of stderr.
    public var stderrLines: [String] {
        stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    public var description: String {
        "\(signaled ? "signal" : "exit") \(code) after \(String(format: "%.2f", elapsedSeconds)) s; stderr: \(stderr)"
    }
}

/// A running `stockd`, listening on 127.0.0.1 on a port it picked.
///
/// `init` returns once the port file is written (at most `startTimeout`);
/// the process is always killed and its temporary directory removed in
/// `deinit`, whatever the test did.
public final class StockdProcess {
    public let process = Process()
    public let dir: TempDirectory
    public let arguments: [String]
    /// The port stockd bound.
    public private(set) var port = 0
    private let stderrPath: String
    private var exitResult: ExitResult?
    private let started = monotonicSeconds()

    /// Starts `stockd --host 127.0.0.1 --port 0 --port-file … --log-level info`
    /// plus `extra`; with `catalog`, that text is written to a CSV file and
    /// passed as `--catalog`. Flags in `extra` come after the defaults, so
    /// they win where ArgumentParser keeps the last value.
    public init(_ extra: [String] = [], catalog: String? = nil, startTimeout: Double = 10) throws {
        dir = try TempDirectory()
        let portFile = dir.path("port")
        stderrPath = dir.path("stderr.log")
        var args = ["--host", "127.0.0.1", "--port", "0", "--port-file", portFile, "--log-level", "info"]
        // Each server journals into its own temporary directory (removed with it).
        if !extra.contains("--data-dir") { args += ["--data-dir", dir.path("data")] }
        // Small segments: each is preallocated (zero-filled) with the next one prepared in the background.
        if !extra.contains("--segment-size") { args += ["--segment-size", "4"] }
        if let catalog { args += ["--catalog", try dir.write("catalog.csv", catalog)] }
        args += extra
        arguments = args
        do {
            try StockdProcess.launch(process, args: args, stderrPath: stderrPath, stdoutPath: dir.path("stdout.log"))
        } catch {
            dir.remove()
            throw error
        }
        let deadline = monotonicSeconds() + startTimeout
        while true {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), text.hasSuffix("\n"),
               let p = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), p > 0 {
                port = p
                break
            }
            if !process.isRunning {
                throw HarnessError("stockd \(args.joined(separator: " ")) exited before listening: "
                                   + "status \(process.terminationStatus); stderr: \(stderrText)")
            }
            if monotonicSeconds() > deadline {
                kill()
                throw HarnessError("stockd did not write its port file within \(startTimeout) s; stderr: \(stderrText)")
            }
            sleepSeconds(0.01)
        }
    }

    deinit {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = StockdProcess.waitForExit(process, timeout: 5)
        }
        dir.remove()
    }

    public static func launch(_ process: Process, args: [String], stderrPath: String, stdoutPath: String) throws {
        try launch(process, binary: try StockdBinary.path(), args: args, stderrPath: stderrPath, stdoutPath: stdoutPath)
    }

    /// Runs `binary args` with stdout and stderr into files and stdin closed (stockd, and EtcdProcess's etcd).
    public static func launch(_ process: Process, binary: String, args: [String], stderrPath: String,
                              stdoutPath: String) throws {
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = args
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        guard let err = FileHandle(forWritingAtPath: stderrPath), let out = FileHandle(forWritingAtPath: stdoutPath)
        else { throw HarnessError("cannot open log files in \(stderrPath)") }
        process.standardError = err
        process.standardOutput = out
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// Polls until `process` ended; false on timeout.
    public static func waitForExit(_ process: Process, timeout: Double) -> Bool {
        let deadline = monotonicSeconds() + timeout
        while process.isRunning {
            if monotonicSeconds() > deadline { return false }
            sleepSeconds(0.005)
        }
        return true
    }

    /// Everything stockd wrote to stderr so far.
    public var stderrText: String {
        (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
    }

    /// The last part of stderr, for failure messages.
    public var diagnostics: String {
        let text = stderrText
        return text.count > 3000 ? "…" + String(text.suffix(3000)) : text
    }

    public var isRunning: Bool { process.isRunning }

    public var pid: Int32 { process.processIdentifier }

    /// Sends `signal` (SIGTERM by default) and waits up to `timeout` for the
    /// exit. Returns how it ended, or nil if it is still running (then it is
    /// killed, so nothing outlives the test).
    @discardableResult
    public func terminate(signal: Int32 = SIGTERM, timeout: Double = 5) -> ExitResult? {
        if let exitResult { return exitResult }
        let t0 = monotonicSeconds()
        if process.isRunning { Glibc.kill(process.processIdentifier, signal) }
        guard StockdProcess.waitForExit(process, timeout: timeout) else {
            kill()
            return nil
        }
        let r = ExitResult(code: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                           stderr: stderrText, elapsedSeconds: monotonicSeconds() - t0)
        exitResult = r
        return r
    }

    /// SIGKILL, then a bounded wait.
    public func kill() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = StockdProcess.waitForExit(process, timeout: 5)
        }
    }

    /// A new connection to this server.
    public func connect(timeout: Double = 5) throws -> RawClient {
        try RawClient(port: port, timeout: timeout)
    }

    /// Runs `stockd` with exactly `args` (no defaults added) until it exits,
    /// at most `timeout` seconds (then it is killed and nil is returned).
    public static func runToExit(_ args: [String], timeout: Double = 5) throws -> ExitResult? {
        let dir = try TempDirectory(prefix: "stockd-flags")
        defer { dir.remove() }
        let process = Process()
        let errPath = dir.path("stderr.log")
        let t0 = monotonicSeconds()
        try launch(process, args: args, stderrPath: errPath, stdoutPath: dir.path("stdout.log"))
        guard waitForExit(process, timeout: timeout) else {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = waitForExit(process, timeout: 5)
            return nil
        }
        return ExitResult(code: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                          stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
                          elapsedSeconds: monotonicSeconds() - t0)
    }
}
