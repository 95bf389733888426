import Foundation
import Testing
import TestSupport

/// `stockd --help` documents every flag stockd has, and nothing else: the list below is written
/// out, and held both to what `--help` prints and to ArgumentParser's own description of the
/// command's arguments (`--experimental-dump-help`), so a flag added to Sources/stockd/Stockd.swift
/// without updating the list fails, and so does one removed.
@Suite(.ownThread) struct StockdHelpTests {
    static var stockdPath: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("stockd").path
    }

    /// Every option and flag of `stockd` (the root command, not `stockd verify`), by long name.
    static let flags: Set<String> = [
        "--host", "--port", "--port-file", "--workers", "--accept", "--catalog", "--default-ttl", "--max-ttl",
        "--max-connections", "--max-frame", "--max-tokens", "--max-skus", "--max-inflight", "--max-output",
        "--idle-timeout", "--frame-timeout", "--write-timeout", "--reserve-rate", "--reserve-burst",
        "--log-level", "--log-format", "--data-dir", "--sync", "--segment-size", "--snapshot-every",
        "--feed-retention", "--max-subscribers", "--metrics-port", "--metrics-port-file", "--metrics-max-skus",
        "--auth-file", "--insecure",
        // Replication (docs/replication.md §8).
        "--cluster", "--node-id", "--advertise", "--min-insync", "--max-standbys", "--repl-queue", "--repl-timeout",
        "--repl-backoff", "--repl-credential-file",
    ]
    /// What ArgumentParser adds to every command.
    static let builtIn: Set<String> = ["--help", "--version"]

    /// stdout of `stockd args` (exit status 0 required).
    static func stockd(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.stockdPath)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "stockd \(args.joined(separator: " ")): exit \(p.terminationStatus)")
        return text
    }

    @Test func helpDocumentsEveryFlag() throws {
        let text = try Self.stockd(["--help"])
        let mentioned = Set(text.matches(of: #/--[a-z][a-z0-9-]*/#).map { String($0.output) })
        for flag in Self.flags.union(Self.builtIn).sorted() {
            #expect(mentioned.contains(flag), "--help does not mention \(flag)")
        }
        #expect(mentioned.subtracting(Self.flags.union(Self.builtIn)).isEmpty,
                "--help mentions flags the list lacks: \(mentioned.subtracting(Self.flags.union(Self.builtIn)).sorted())")
    }

    /// The list is stockd's argument definitions: ArgumentParser's dump of the root command's arguments.
    @Test func flagListIsTheArgumentDefinitions() throws {
        let dump = try Self.stockd(["--experimental-dump-help"])
        let top = try #require(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let command = try #require(top["command"] as? [String: Any], "\(dump.prefix(200))")
        let arguments = try #require(command["arguments"] as? [[String: Any]])
        var defined: Set<String> = []
        for argument in arguments {
            for name in argument["names"] as? [[String: Any]] ?? [] where name["kind"] as? String == "long" {
                defined.insert("--" + (name["name"] as? String ?? ""))
            }
        }
        let listed = Self.flags.union(Self.builtIn)
        #expect(defined == listed, """
            defined, not listed: \(defined.subtracting(listed).sorted()); \
            listed, not defined: \(listed.subtracting(defined).sorted())
            """)
    }
}
