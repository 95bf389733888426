import StockJournal
import Testing
import TestSupport

/// A node's highest epoch seen only goes up, durably, and a damaged file is an error, never a 0.
@Suite("Node epoch", .cpuHeavy)
struct NodeEpochTests {
    @Test func onlyGoesUp() throws {
        let dir = TempDirectory("epoch")
        defer { dir.remove() }
        #expect(try NodeEpoch.read(directory: dir.path) == 0)
        #expect(try NodeEpoch.raise(directory: dir.path, to: 7) == 7)
        #expect(try NodeEpoch.raise(directory: dir.path, to: 5) == 7, "a lower epoch is stale: the stored one stays")
        #expect(try NodeEpoch.read(directory: dir.path) == 7)
        #expect(try NodeEpoch.raise(directory: dir.path, to: 12) == 12)
        #expect(dir.names() == [NodeEpoch.fileName] && dir.read(NodeEpoch.fileName) == Array("12\n".utf8))
    }

    @Test func damagedFileIsAnError() throws {
        let dir = TempDirectory("epoch-bad")
        defer { dir.remove() }
        for text in ["", "0\n", "x12\n", "-3\n"] {
            dir.write(NodeEpoch.fileName, Array(text.utf8))
            #expect(throws: JournalError.self, "epoch file holding \(text.debugDescription)") {
                try NodeEpoch.read(directory: dir.path)
            }
        }
    }
}
