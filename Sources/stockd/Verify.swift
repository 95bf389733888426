import ArgumentParser
import Foundation
import StockJournal

/// `stockd verify --data-dir DIR`: checks a data directory offline, read-only.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a data directory offline (snapshots, journal checksums, sequence, replay); changes nothing.",
        discussion: "Exit 0 when it is sound, 1 when anything is wrong (each finding on its own line), 2 on usage errors.")

    @Option(name: .customLong("data-dir"), help: "The data directory to check.")
    var dataDir = "./stockd-data"

    func run() throws {
        guard FileManager.default.fileExists(atPath: dataDir) else {
            throw ValidationError("--data-dir \(dataDir): no such directory")
        }
        let report = JournalVerifier.verify(dataDirectory: dataDir)
        print(report.description)
        if !report.ok { throw VerifyFailed(description: "verify: \(dataDir) has errors") }
    }
}

struct VerifyFailed: Error, CustomStringConvertible {
    let description: String
}
