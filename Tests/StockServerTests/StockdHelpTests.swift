import Foundation
import Testing

/// `stockd --help` documents every flag the README promises.
@Suite struct StockdHelpTests {
    static var stockdPath: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("stockd").path
    }

    /// Every option stockd has (Sources/stockd/Stockd.swift). Adding or removing one means changing this list:
    /// the test holds `--help` to exactly these, both ways.
    static let flags: Set<String> = [
        "--accept", "--auth-file", "--catalog", "--data-dir", "--default-ttl", "--feed-retention", "--frame-timeout",
        "--host", "--idle-timeout", "--insecure", "--log-format", "--log-level", "--max-connections", "--max-frame",
        "--max-inflight", "--max-output", "--max-skus", "--max-subscribers", "--max-tokens", "--max-ttl",
        "--metrics-max-skus", "--metrics-port", "--metrics-port-file", "--port", "--port-file", "--reserve-burst",
        "--reserve-rate", "--segment-size", "--snapshot-every", "--sync", "--workers", "--write-timeout",
    ]

    @Test func helpDocumentsEveryFlag() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.stockdPath)
        p.arguments = ["--help"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let mentioned = Self.flagTokens(in: text).subtracting(["--help", "--version"])
        for flag in Self.flags.subtracting(mentioned).sorted() {
            Issue.record("--help does not mention \(flag)")
        }
        for flag in mentioned.subtracting(Self.flags).sorted() {
            Issue.record("--help mentions \(flag), which this test does not know: add it to StockdHelpTests.flags")
        }
    }

    /// Every `--name` token in `text` (a word starting with two dashes and a letter).
    static func flagTokens(in text: String) -> Set<String> {
        let regex = try! NSRegularExpression(pattern: "(?<![A-Za-z0-9-])--[a-z][a-z0-9-]*")
        let range = NSRange(text.startIndex..., in: text)
        return Set(regex.matches(in: text, range: range).map { String(text[Range($0.range, in: text)!]) })
    }
}
