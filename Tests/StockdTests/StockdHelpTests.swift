import Foundation
import Testing

/// `stockd --help` documents every flag the README promises.
@Suite struct StockdHelpTests {
    static var stockdPath: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("stockd").path
    }

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
        for flag in ["--host", "--port", "--port-file", "--workers", "--catalog", "--default-ttl", "--max-ttl",
                     "--max-connections", "--max-frame", "--max-tokens", "--idle-timeout", "--log-level", "--log-format"] {
            #expect(text.contains(flag), "--help does not mention \(flag)")
        }
    }
}
