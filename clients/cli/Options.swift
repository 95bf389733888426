import ArgumentParser
import Foundation
import StockClient

/// The options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Server address (default: $STOCKD_SERVER, else 127.0.0.1:7878).",
                               valueName: "host:port"))
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

    @Option(help: "Per-call timeout, connect included: 500ms, 5s, 1m.")
    var timeout = DurationValue(milliseconds: 5000)

    static let defaultServer = "127.0.0.1:7878"

    func validate() throws {
        _ = try endpoint()
        if credential != nil && credentialFile != nil { throw ValidationError("--token and --token-file: choose one") }
        guard timeout.milliseconds >= 1 else { throw ValidationError("--timeout must be at least 1ms") }
    }

    /// `--server`, else `STOCKD_SERVER`, else the default, split into host and port.
    func endpoint() throws -> (host: String, port: Int) {
        let env = ProcessInfo.processInfo.environment["STOCKD_SERVER"].flatMap { $0.isEmpty ? nil : $0 }
        let text = server ?? env ?? Self.defaultServer
        let source = server != nil ? "--server" : (env != nil ? "STOCKD_SERVER" : "default")
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
        let (host, port) = try endpoint()
        let cred = try credentialValue()
        return StockClient(host: host, port: port, connections: 1, credential: cred,
                           timeout: .milliseconds(Int64(timeout.milliseconds)), clientName: "stockctl")
    }
}

/// A duration value: a whole number with a unit, `ms`, `s`, `m` or `h`
/// (`500ms`, `90s`, `1m`).
struct DurationValue: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let milliseconds: UInt64

    init(milliseconds: UInt64) { self.milliseconds = milliseconds }

    init?(argument: String) {
        let units: [(String, UInt64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, scale) in units where argument.hasSuffix(suffix) {
            let number = argument.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy(\.isASCII), number.allSatisfy(\.isNumber), let n = UInt64(number),
                  n <= UInt64(UInt32.max) else { return nil }
            milliseconds = n * scale
            return
        }
        return nil
    }

    var duration: Duration { .milliseconds(Int64(milliseconds)) }

    var description: String {
        if milliseconds % 3_600_000 == 0 && milliseconds > 0 { return "\(milliseconds / 3_600_000)h" }
        if milliseconds % 60_000 == 0 && milliseconds > 0 { return "\(milliseconds / 60_000)m" }
        if milliseconds % 1000 == 0 && milliseconds > 0 { return "\(milliseconds / 1000)s" }
        return "\(milliseconds)ms"
    }
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
        guard d.milliseconds >= 1, d.milliseconds <= UInt64(Limits.maxTTLCeilingMs) else {
            throw ValidationError("\(name) must be 1ms...1h")
        }
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

/// Every bad line of `file` as `FILE:LINE: reason` on stderr, then exit 2
/// ("nothing `done`"): a file is used whole or not at all.
func rejectBadLines(_ file: String, _ errors: [(line: Int, reason: String)], nothing done: String) throws {
    guard !errors.isEmpty else { return }
    for e in errors { writeStderr("\(file):\(e.line): \(e.reason)\n") }
    throw CLIError("\(file): \(errors.count) bad line\(errors.count == 1 ? "" : "s"), nothing \(done)", code: ExitStatus.usage)
}

/// The data lines of an operator's CSV file, numbered from 1: blank lines
/// and `#` comments skipped, CRLF accepted, fields trimmed, and the first
/// data line skipped when `isHeader` says it is a header.
func csvRecords(_ text: String, isHeader: ([String]) -> Bool) -> [(line: Int, fields: [String])] {
    var records: [(line: Int, fields: [String])] = []
    var sawData = false
    // "\r\n" is one Character in Swift: split on it as well as on "\n".
    let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
    for (i, raw) in lines.enumerated() {
        let line = raw.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
        if line.isEmpty || line.hasPrefix("#") { continue }
        let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        defer { sawData = true }
        if !sawData && isHeader(fields) { continue }
        records.append((i + 1, fields))
    }
    return records
}
