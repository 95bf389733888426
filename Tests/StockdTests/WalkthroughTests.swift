import Foundation
import Glibc
import Testing
import TestSupport

/// README.md "A show, end to end", run as written against a real stockd started with the demo
/// catalog (as `make run` starts it), so the walkthrough cannot drift from the tools.
///
/// The commands are read from the README's second `sh` block of that section and run one by one
/// with bash, in order, in a scratch directory that holds a link to `demo/` (a reader runs them from
/// the repository's top directory). The only changes: STOCKD_SERVER names the test's stockd, PATH
/// starts with the directory of the built tools (what `make tools` and the README's `export PATH`
/// do), and the demo receiver's port 9099 is replaced by a free one. A line ending in `&` runs in
/// the background, as it would in the reader's shell; a line marked `(second terminal)` too (a
/// reader starts it in another terminal). Background commands are stopped with SIGINT at the end.
@Suite(.ownThread) struct WalkthroughTests {
    /// The README's commands, continuation lines joined.
    static func showCommands(readme: String) throws -> (setup: String, commands: [String]) {
        guard let section = readme.range(of: "## A show, end to end") else {
            throw HarnessError("README.md has no section 'A show, end to end'")
        }
        let rest = readme[section.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        let blocks = rest[..<end].components(separatedBy: "```sh\n").dropFirst()
            .map { $0.components(separatedBy: "```")[0] }
        guard blocks.count >= 2 else { throw HarnessError("expected a setup and a show block in the walkthrough") }
        var commands: [String] = []
        var pending = ""
        for line in blocks[1].split(separator: "\n", omittingEmptySubsequences: true) {
            let text = String(line)
            if text.hasSuffix("\\") {
                pending += text.dropLast() + " "
                continue
            }
            commands.append(pending + text)
            pending = ""
        }
        return (blocks[0], commands)
    }

    /// The directory that holds the built stockctl, stock-hooks and stockbench.
    static func toolDirectory() throws -> String {
        let fm = FileManager.default
        let exe = try fm.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        for d in [dir, dir.deletingLastPathComponent()]
        where ["stockctl", "stock-hooks", "stockbench"].allSatisfy({ fm.isExecutableFile(atPath: d.appendingPathComponent($0).path) }) {
            return d.path
        }
        throw HarnessError("built tools not found next to \(exe)")
    }

    /// What a walkthrough line is expected to exit with: the README says the audit before
    /// `--apply` exits 1 (SHOW-BEANIE-GREY differs); everything else succeeds.
    static func expectedExit(_ command: String) -> Int32 {
        command.hasPrefix("stockctl audit") && !command.contains("--apply") ? 1 : 0
    }

    @Test("README 'A show, end to end' runs as written, in order, with the shipped demo files")
    func showWalkthrough() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let (setup, commands) = try Self.showCommands(readme: readme)
        // The setup block is what this test does itself: the tools on PATH, the server's address.
        #expect(setup.contains("make tools") && setup.contains(".build/release") && setup.contains("STOCKD_SERVER="),
                "setup block: \(setup)")
        let makefile = try String(contentsOf: root.appendingPathComponent("Makefile"), encoding: .utf8)
        let tools = try #require(makefile.split(separator: "\n").first { $0.hasPrefix("TOOLS :=") })
        for command in commands {
            let program = String(command.split(separator: " ")[0])
            #expect(["stockctl", "stock-hooks", "stockbench", "python3", "printf"].contains(program), "\(command)")
            if program.hasPrefix("stock") { #expect(tools.contains(program), "make tools does not build \(program)") }
        }

        let catalog = try String(contentsOf: root.appendingPathComponent("demo/catalog.csv"), encoding: .utf8)
        let server = try StockdProcess(catalog: catalog)
        let work = try TempDirectory(prefix: "walkthrough")
        defer { work.remove() }
        try FileManager.default.createSymbolicLink(atPath: work.path("demo"),
                                                   withDestinationPath: root.appendingPathComponent("demo").path)
        let hookPort = try unusedPort()
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = try Self.toolDirectory() + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["STOCKD_SERVER"] = "127.0.0.1:\(server.port)"
        environment["STOCKD_TOKEN"] = nil
        environment["NO_COLOR"] = "1"

        var background: [(command: String, process: Process)] = []
        defer {
            for b in background where b.process.isRunning { Glibc.kill(b.process.processIdentifier, SIGKILL) }
        }
        var outputs: [String: String] = [:]
        for (index, raw) in commands.enumerated() {
            var command = raw.replacingOccurrences(of: "9099", with: String(hookPort))
            let inBackground = command.contains("(second terminal)") || command.hasSuffix("&")
                || command.range(of: #"&\s+#"#, options: .regularExpression) != nil
            if let hash = command.range(of: " #") { command = String(command[..<hash.lowerBound]) }
            command = command.trimmingCharacters(in: .whitespaces)
            if command.hasSuffix("&") { command = String(command.dropLast()).trimmingCharacters(in: .whitespaces) }
            let log = work.path("out-\(index).log")
            let process = try Self.bash(command, in: work.path(""), environment: environment, log: log)
            if inBackground {
                background.append((command, process))
                sleepSeconds(1.0)   // the receiver binds, stock-hooks and watch subscribe before the sale
                #expect(process.isRunning, "\(command) ended at once: \(Self.read(log))")
                continue
            }
            let finished = StockdProcess.waitForExit(process, timeout: 120)
            if !finished { Glibc.kill(process.processIdentifier, SIGKILL) }
            let output = Self.read(log)
            outputs[command] = output
            try #require(finished, "\(command) did not finish within 120 s: \(output)")
            #expect(process.terminationStatus == Self.expectedExit(command),
                    "\(command): exit \(process.terminationStatus), expected \(Self.expectedExit(command)): \(output)")
        }
        sleepSeconds(2.0)   // the last events reach the receiver and watch
        for b in background { Glibc.kill(b.process.processIdentifier, SIGINT) }
        for b in background { _ = StockdProcess.waitForExit(b.process, timeout: 10) }

        try checkResults(outputs: outputs, work: work, server: server)
    }

    /// What the README says the show produces.
    private func checkResults(outputs: [String: String], work: TempDirectory, server: StockdProcess) throws {
        func output(_ prefix: String) -> String { outputs.first { $0.key.hasPrefix(prefix) }?.value ?? "" }
        #expect(output("stockctl audit demo/wms-counts.csv --apply").contains("SHOW-BEANIE-GREY"))
        let bench = output("stockbench flash-sale")
        #expect(bench.contains("oversold") && !bench.contains("FAIL"), "stockbench: \(bench)")
        let report = output("stockctl report")
        #expect(report.contains("TOTAL"), "report: \(report)")
        #expect(!report.contains("DRILL-"), "the drill's SKU is in the report: \(report)")
        let suggestion = try String(contentsOfFile: work.path("next-show.csv"), encoding: .utf8)
        #expect(suggestion.contains("SHOW-JACKET-RED-M") && !suggestion.contains("DRILL-"), "\(suggestion)")
        // The suggestion is a file `stockctl stage` takes.
        let dryRun = try stockctl(["stage", work.path("next-show.csv"), "--dry-run", "--server", "127.0.0.1:\(server.port)"])
        #expect(dryRun.code == 0, "\(dryRun)")
        // Every confirmed sale reached the demo OMS receiver, signature verified.
        let received = (try? String(contentsOfFile: work.path("hooks-received.jsonl"), encoding: .utf8)) ?? ""
        let confirmed = received.split(separator: "\n").filter { $0.contains(#""kind":"confirmed""#) }.count
        #expect(confirmed > 0, "no confirmed event reached the receiver")
        let sold = try stockctl(["stock", "list", "--json", "--server", "127.0.0.1:\(server.port)"])
        #expect(sold.code == 0, "\(sold)")
    }

    private static func bash(_ command: String, in directory: String, environment: [String: String],
                             log: String) throws -> Process {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: log) else { throw HarnessError("cannot open \(log)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-o", "pipefail", "-c", command]
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        p.environment = environment
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return p
    }

    private static func read(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }
}
