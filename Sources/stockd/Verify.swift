import ArgumentParser
import Foundation
import StockJournal

/// `stockd verify --data-dir DIR`: checks a data directory offline, read-only.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a data directory offline (snapshots, journal checksums, sequence, replay); changes nothing.",
        discussion: "Exit 0 when it is sound, 1 when anything is wrong (each finding on its own line), 2 on usage errors.")

    // `--data-dir` belongs to `stockd` itself (both spellings, `stockd verify
    // --data-dir D` and `stockd --data-dir D verify`, reach it there): a
    // second option of the same name here would never receive the value.
    @ParentCommand var stockd: Stockd

    func run() throws {
        let dataDir = stockd.dataDir
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
