import ArgumentParser
import CommandSupport
import Foundation
import StockClient

/// The options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Server address (default: $STOCKD_SERVER, else 127.0.0.1:7878); the nodes of a "
                               + "replicated cluster comma-separated (the primary is found and followed).",
                               valueName: "host:port[,host:port...]"))
    var server: String?

    @Option(name: .customLong("token"),
            help: ArgumentHelp("Credential sent in HELLO (default: $STOCKD_TOKEN; --token-file keeps it off the "
                               + "command line).", valueName: "credential"))
    var credential: String?

    @Option(name: .customLong("token-file"),
            help: ArgumentHelp("Read the credential from this file's first line (default: $STOCKD_TOKEN_FILE).",
                               valueName: "file"))
    var credentialFile: String?

    @Flag(help: "Machine output: one JSON document on stdout.")
    var json = false

    @Option(help: ArgumentHelp("Per-call timeout, connect included: 500ms, 1.5s, 1m (default: 5s).",
                                 valueName: "duration"),
            transform: DurationValue.parse)
    var timeout = DurationValue(milliseconds: 5000)

    static let defaultServer = "127.0.0.1:7878"
    /// Longest --timeout: an hour; a call that needs longer is stuck, not slow.
    static let maxTimeoutMs: UInt64 = 3_600_000

    /// The options above as `LeadingOptions` knows them, so they may come before the subcommand.
    static let leading = LeadingOptions(valued: ["--server", "--token", "--token-file", "--timeout"],
                                        flags: ["--json"])

    func validate() throws {
        _ = try endpoint()
        if credential != nil && credentialFile != nil { throw ValidationError("--token and --token-file: choose one") }
        try DurationParser.require(timeout.milliseconds, flag: "--timeout", in: 1...Self.maxTimeoutMs)
    }

    /// `--server`, else `STOCKD_SERVER`, else the default: its first address split into host and port.
    func endpoint() throws -> (host: String, port: Int) {
        try endpoints()[0]
    }

    /// Every address of `--server` (comma-separated: the nodes of a cluster), each checked.
    func endpoints() throws -> [(host: String, port: Int)] {
        let env = ProcessInfo.processInfo.environment["STOCKD_SERVER"].flatMap { $0.isEmpty ? nil : $0 }
        let all = server ?? env ?? Self.defaultServer
        let source = server != nil ? "--server" : (env != nil ? "STOCKD_SERVER" : "default")
        return try all.split(separator: ",", omittingEmptySubsequences: false).map { part in
            try Self.endpoint(String(part), source: source)
        }
    }

    static func endpoint(_ text: String, source: String) throws -> (host: String, port: Int) {
        let host: Substring
        var port = 7878
        if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            guard let p = Int(text[text.index(after: colon)...]), (1...65535).contains(p) else {
                throw ValidationError("\(source) '\(text)': port must be 1...65535")
            }
            port = p
        } else {
            host = Substring(text)
        }
        guard !host.isEmpty else { throw ValidationError("\(source) '\(text)': expected host:port") }
        return (String(host), port)
    }

    /// --token, else --token-file, else STOCKD_TOKEN, else STOCKD_TOKEN_FILE, else none.
    func credentialValue() throws -> String {
        let env = ProcessInfo.processInfo.environment
        if let credential { return credential }
        if let path = credentialFile ?? env["STOCKD_TOKEN_FILE"].flatMap({ $0.isEmpty ? nil : $0 }),
           credentialFile != nil || env["STOCKD_TOKEN"] == nil {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
            else { throw CLIError("\(path): cannot read the credential file", code: ExitStatus.usage) }
            let line = text.split(separator: "\n", omittingEmptySubsequences: false).first ?? ""
            return line.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return env["STOCKD_TOKEN"] ?? ""
    }

    var address: String {
        guard let e = try? endpoint() else { return "?" }
        return "\(e.host):\(e.port)"
    }

    func makeClient() throws -> StockClient {
        let all = try endpoints()
        let cred = try credentialValue()
        guard all.count > 1 else {
            return StockClient(host: all[0].host, port: all[0].port, connections: 1, credential: cred,
                               timeout: .milliseconds(Int64(timeout.milliseconds)), clientName: "stockctl")
        }
        let t = Duration.milliseconds(Int64(max(1, timeout.milliseconds)))
        var c = try StockClient.Configuration(host: all[0].host, port: all[0].port, credential: cred, clientName: "stockctl",
                                              callTimeout: t, connectTimeout: t)
        c.otherEndpoints = all.dropFirst().map { $0.host.contains(":") ? "[\($0.host)]:\($0.port)" : "\($0.host):\($0.port)" }
        return try StockClient(configuration: c)
    }
}

/// A duration flag value in the grammar every binary shares (`DurationParser`: `500ms`, `1.5s`,
/// `1m30s`, `2h`, `0`). Options declared with `transform: DurationValue.parse` report a bad value
/// with the accepted format; the `ExpressibleByArgument` conformance serves options without one.
struct DurationValue: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let milliseconds: UInt64

    init(milliseconds: UInt64) { self.milliseconds = milliseconds }

    init?(argument: String) {
        guard let ms = try? DurationParser.milliseconds(argument) else { return nil }
        milliseconds = ms
    }

    /// For `@Option(transform:)`: a bad value's error names the accepted format.
    static func parse(_ text: String) throws -> DurationValue {
        DurationValue(milliseconds: try DurationParser.milliseconds(text))
    }

    var duration: Duration { .milliseconds(Int64(milliseconds)) }

    var description: String { DurationParser.format(milliseconds) }
}

/// Argument checks shared by the commands (usage errors, exit 2).
enum Check {
    static func sku(_ s: String) throws {
        guard let sku = SKU(s), sku.isValidSKU else {
            throw ValidationError("invalid SKU '\(s)': 1-64 bytes of UTF-8 without control characters")
        }
    }

    static func quantity(_ q: Int, name: String = "quantity") throws {
        guard q >= 1, q <= Int(Limits.maxQuantity) else {
            throw ValidationError("\(name) must be 1...\(Limits.maxQuantity), got \(q)")
        }
    }

    static func token(_ s: String) throws -> Token {
        guard let t = Token(hex: s) else { throw ValidationError("invalid token '\(s)': expected 32 hex digits") }
        return t
    }

    static func ttl(_ d: DurationValue?, name: String = "--ttl") throws {
        guard let d else { return }
        try DurationParser.require(d.milliseconds, flag: name, in: 1...UInt64(Limits.maxTTLCeilingMs))
    }

    static func stock(_ n: UInt64, name: String) throws {
        guard n <= Limits.maxStock else { throw ValidationError("\(name) must be 0...\(Limits.maxStock)") }
    }
}

/// Unix epoch milliseconds now.
func wallClockMs() -> UInt64 {
    UInt64(max(0, Date().timeIntervalSince1970 * 1000))
}

/// Milliseconds from now until `deadlineMs`, never negative.
func expiresIn(_ deadlineMs: UInt64) -> UInt64 {
    let now = wallClockMs()
    return deadlineMs > now ? deadlineMs - now : 0
}

func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

func writeStderr(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

/// The text of a file the operator named; exit 2 when unreadable or not UTF-8.
func readOperatorFile(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CLIError("\(path): cannot read the file", code: ExitStatus.usage)
    }
    guard let text = String(data: data, encoding: .utf8) else {
        throw CLIError("\(path): not UTF-8 text", code: ExitStatus.usage)
    }
    return text
}

/// Every bad line of `file` as `FILE:LINE: reason` (printed by `Stockctl.fail`), then exit 2
/// ("nothing `done`"): a file is used whole or not at all.
func rejectBadLines(_ file: String, _ errors: [(line: Int, reason: String)], nothing done: String) throws {
    guard !errors.isEmpty else { return }
    // In file order: unreadable records are found before the per-field checks run.
    let ordered = errors.enumerated().sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }
    throw CLIError("\(file): \(errors.count) bad line\(errors.count == 1 ? "" : "s"), nothing \(done)",
                   code: ExitStatus.usage, lines: ordered.map { "\(file):\($0.element.line): \($0.element.reason)" })
}
