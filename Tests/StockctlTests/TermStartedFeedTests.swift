import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

/// A `term_started` event on the feed of a real stockd (docs/replication.md §1).
/// stockd does not journal term starts yet, so the test writes the data
/// directory itself: stock set, term start, stock set. stockctl events names
/// the epoch and node; stock-hooks posts the two stock events and none for
/// the term start, yet its stored offset passes it.
@Suite(.ownThread) struct TermStartedFeedTests {
    static func dataDirectory() throws -> TempDirectory {
        let dir = try TempDirectory(prefix: "term-feed")
        let t: UInt64 = 1_732_665_600_000
        let records = [
            SequencedRecord(seq: 1, timeMs: t, record: .stockSet(sku: SKU("TERM-A")!, onHand: 10, lowStockThreshold: 0,
                                                                perCustomerLimit: 0)),
            SequencedRecord(seq: 2, timeMs: t + 1, record: .termStarted(epoch: 4711, node: ShortBytes("stockd-b")!)),
            SequencedRecord(seq: 3, timeMs: t + 2, record: .stockSet(sku: SKU("TERM-A")!, onHand: 12, lowStockThreshold: 0,
                                                                    perCustomerLimit: 0)),
        ]
        try FileManager.default.createDirectory(atPath: dir.path("data"), withIntermediateDirectories: true)
        let writer = try JournalWriter(directory: dir.path("data"), preallocate: false)
        let buffer = RecordBuffer(capacity: 1024)
        for r in records { RecordCodec.encode(r, into: buffer) }
        try writer.append(buffer)
        try writer.sync()
        try writer.close()
        return dir
    }

    @Test func eventsPrintsItAndHooksSkipsIt() throws {
        let data = try Self.dataDirectory()
        defer { data.remove() }
        let f = CtlFixture(server: try StockdProcess(["--data-dir", data.path("data"), "--workers", "1"]))

        let human = try f.run(["events", "--from", "oldest"])
        #expect(human.code == 0, "\(human)")
        #expect(human.stdoutLines.count == 3, "\(human)")
        #expect(human.stdoutLines.dropFirst().first?.hasPrefix("#2 ") == true, "\(human)")
        #expect(human.stdoutLines.dropFirst().first?.hasSuffix(" term_started epoch=4711 node=stockd-b") == true,
                "\(human)")
        let json = OperationsTests.jsonLines(try f.run(["events", "--from", "oldest", "--kind", "term_started", "--json"]))
        #expect(json.count == 1 && json.first?["kind"] as? String == "term_started", "\(json)")
        #expect((json.first?["quantity"] as? NSNumber)?.int64Value == 4711 && json.first?["order"] as? String == "stockd-b"
                && json.first?["sku"] is NSNull, "\(json)")

        let receiver = try HooksReceiver(seed: 1)
        let hooksDir = try TempDirectory(prefix: "term-hooks")
        defer { hooksDir.remove() }
        let secret = try hooksDir.write("secret", "whsec-term\n")
        let common = ["--server", f.address, "--url", receiver.url, "--secret-file", secret,
                      "--state-dir", hooksDir.path("state")]
        let refused = try runTool("stock-hooks", common + ["--kind", "term_started"])
        #expect(refused.code == 2 && refused.stderr.contains("not sent as a webhook"), "\(refused)")
        // Every kind but the term start: it is not asked for, so the server's progress markers pass it.
        let all = try runTool("stock-hooks", common + ["--kind", "all", "--from", "oldest", "--until-caught-up"],
                              timeout: 20)
        #expect(all.code == 0, "\(all)")
        let kinds = receiver.requests.compactMap {
            (try? JSONSerialization.jsonObject(with: $0.body) as? [String: Any])?["kind"] as? String
        }
        #expect(kinds == ["stock_set", "stock_set"], "\(kinds); \(all)")
        #expect(Set(receiver.requests.map(\.eventID)) == ["1", "3"])
        let offset = try String(contentsOfFile: hooksDir.path("state/offset"), encoding: .utf8)
        #expect(offset.trimmingCharacters(in: .whitespacesAndNewlines) == "3", "stored offset \(offset)")
    }
}
