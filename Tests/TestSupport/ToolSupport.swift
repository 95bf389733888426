import Foundation
import Glibc

// Running the built tools (stockctl, stockbench, stock-hooks, stockd verify) with bounded waits.

/// What one run of a built tool (`stockctl`, `stockbench`) produced.
public struct ToolRun: CustomStringConvertible {
    public let code: Int32
    public let stdout: String
    public let stderr: String

    public init(code: Int32, stdout: String, stderr: String) {
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
    }

    public var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    public var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }

    /// stdout parsed as one JSON document.
    public var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8), options: [.fragmentsAllowed]) }
    public var object: [String: Any]? { json as? [String: Any] }
    public var keys: Set<String> { Set(object?.keys.map { $0 } ?? []) }

    public var description: String { "exit \(code); stdout: \(stdout); stderr: \(stderr)" }
}

/// Runs the built `stockctl` binary (found next to the test runner, like
/// `stockd`) with a bounded wait; STOCKD_SERVER / STOCKD_TOKEN come only from `env`.
/// `whileRunning`, if given, runs once the process started, with a reader of
/// the stdout written so far.
/// `interrupt`: send SIGINT once `whileRunning` returned (a command that runs until interrupted).
public func stockctl(_ args: [String], env: [String: String] = [:], timeout: Double = 15, interrupt: Bool = false,
              whileRunning: ((_ stdoutSoFar: () -> String) throws -> Void)? = nil) throws -> ToolRun {
    try runTool("stockctl", args, env: env, timeout: timeout, interrupt: interrupt, whileRunning: whileRunning)
}

/// Runs the built executable `name` with a bounded wait.
public func runTool(_ name: String, _ args: [String], env: [String: String] = [:], timeout: Double = 15,
             interrupt: Bool = false, whileRunning: ((_ stdoutSoFar: () -> String) throws -> Void)? = nil) throws -> ToolRun {
    let fm = FileManager.default
    var candidates: [String] = []
    if let exe = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        let dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        candidates += [dir, dir.deletingLastPathComponent()].map { $0.appendingPathComponent(name).path }
    }
    guard let path = candidates.first(where: { fm.isExecutableFile(atPath: $0) }) else {
        throw HarnessError("\(name) executable not found; tried \(candidates.joined(separator: ", "))")
    }
    let dir = try TempDirectory(prefix: "\(name)-run")
    defer { dir.remove() }
    let outPath = dir.path("stdout"), errPath = dir.path("stderr")
    _ = fm.createFile(atPath: outPath, contents: nil)
    _ = fm.createFile(atPath: errPath, contents: nil)
    guard let out = FileHandle(forWritingAtPath: outPath), let err = FileHandle(forWritingAtPath: errPath) else {
        throw HarnessError("cannot open output files")
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    var environment = ProcessInfo.processInfo.environment
    environment["STOCKD_SERVER"] = nil
    environment["STOCKD_TOKEN"] = nil
    for (k, v) in env { environment[k] = v }
    p.environment = environment
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    try superviseTool(p, "\(name) \(args.joined(separator: " "))", timeout: timeout, interrupt: interrupt,
                      whileRunning: whileRunning.map { body in { try body { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" } } })
    try? out.close()
    try? err.close()
    return ToolRun(code: p.terminationStatus,
                       stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
}

/// Runs `whileRunning` (if any) beside the started process `p`, sends SIGINT after it when
/// `interrupt`, then waits at most `timeout` for `p` to exit; on a failure or the timeout the process
/// is killed (and reaped) and the error thrown names `what`.
public func superviseTool(_ p: Process, _ what: String, timeout: Double, interrupt: Bool,
                   whileRunning: (() throws -> Void)?) throws {
    if let whileRunning {
        do {
            try whileRunning()
        } catch {
            Glibc.kill(p.processIdentifier, SIGKILL)
            _ = StockdProcess.waitForExit(p, timeout: 5)
            throw error
        }
        if interrupt { Glibc.kill(p.processIdentifier, SIGINT) }
    }
    guard StockdProcess.waitForExit(p, timeout: timeout) else {
        Glibc.kill(p.processIdentifier, SIGKILL)
        _ = StockdProcess.waitForExit(p, timeout: 5)
        throw HarnessError("\(what) did not exit within \(timeout) s")
    }
}

/// A stockd with a small catalog, and `run` pointing stockctl at it.
public struct CtlFixture {
    public let server: StockdProcess
    public var address: String { "127.0.0.1:\(server.port)" }

    public init(catalog: String = "JACKET,10,3,2\nSCARF,5\nHAT,1\n") throws {
        server = try StockdProcess(["--workers", "1"], catalog: catalog)
    }

    /// A fixture on a server the test started itself.
    public init(server: StockdProcess) { self.server = server }

    public func run(_ args: [String], env: [String: String] = [:],
             whileRunning: ((_ stdoutSoFar: () -> String) throws -> Void)? = nil) throws -> ToolRun {
        try stockctl(args + ["--server", address], env: env, whileRunning: whileRunning)
    }
}
