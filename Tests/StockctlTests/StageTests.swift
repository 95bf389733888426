import Foundation
import Testing
import TestSupport

/// `stockctl stage` and `stockctl backup` (issue 9) against a real stockd:
/// a show's catalog goes in whole or not at all, and backup units are never
/// sold until an operator releases them — across restarts too.
@Suite(.ownThread) struct StageTests {
    static let show = """
        sku,on_hand,backup,low_stock_threshold,per_customer_limit,name
        # hero product: 4 units held back for the second half
        HERO-JACKET,10,4,2,2,Aurora jacket, red (hero)
        SCARF,6,0,1,0
        BEANIE,3,1,0,1,Beanie
        """

    static func info(_ f: CtlFixture, _ sku: String) throws -> [String: Int] {
        let run = try f.run(["stock", "get", sku, "--json"])
        return (run.object ?? [:]).compactMapValues { ($0 as? NSNumber)?.intValue }
    }

    static func reserve(_ f: CtlFixture, _ sku: String) throws -> ToolRun {
        try f.run(["reserve", sku, "1", "--json"])
    }

    @Test func aBadFileAppliesNothingAndNamesEveryBadLine() throws {
        let f = try CtlFixture(catalog: "SCARF,5\n")
        let dir = try TempDirectory(prefix: "stage")
        defer { dir.remove() }
        let file = try dir.write("bad.csv", """
            sku,on_hand,backup,low_stock_threshold,per_customer_limit
            NEW-ONE,10,2,1,1
            SCARF,3,4,0,0
            ,5,0,0,0
            NEW-TWO,ten,0,0,0
            NEW-ONE,1,0,0,0
            NEW-THREE,1,0
            NEW-FOUR,1,0,x,0
            """)
        let run = try f.run(["stage", file])
        #expect(run.code == 2, "\(run)")
        let lines = run.stderrLines
        #expect(lines.contains("\(file):3: backup 4 is more than on_hand 3"), "\(run)")
        #expect(lines.contains { $0.hasPrefix("\(file):4: SKU ''") }, "\(run)")
        #expect(lines.contains { $0.hasPrefix("\(file):5: on_hand 'ten'") }, "\(run)")
        #expect(lines.contains("\(file):6: SKU 'NEW-ONE' already on line 2"), "\(run)")
        #expect(lines.contains { $0.hasPrefix("\(file):7: expected sku,on_hand,backup") && $0.hasSuffix("got 3 fields") },
                "\(run)")
        #expect(lines.contains { $0.hasPrefix("\(file):8: low_stock_threshold 'x'") }, "\(run)")
        #expect(lines.last == "stockctl: \(file): 6 bad lines, nothing staged", "\(run)")
        // Nothing applied: the good line's SKU does not exist, SCARF is as it was.
        #expect(try f.run(["stock", "get", "NEW-ONE"]).code == 1)
        #expect(try Self.info(f, "SCARF")["on_hand"] == 5)
    }

    @Test func stockdRefusesAStageWholeWhenALineWouldTakeHeldUnits() throws {
        let f = try CtlFixture(catalog: "SCARF,5\nHAT,2\n")
        let dir = try TempDirectory(prefix: "stage")
        defer { dir.remove() }
        for _ in 0..<4 { #expect(try Self.reserve(f, "SCARF").code == 0) }
        // SCARF: 4 held, the file leaves room for 3 on sale (5 - 2 backup); HAT and NEW would be fine.
        let file = try dir.write("show.csv", "HAT,9,0,0,0\nSCARF,5,2,0,0\nNEW,4,0,0,0\n")
        let run = try f.run(["stage", file])
        #expect(run.code == 1, "\(run)")
        #expect(run.stderrLines.first == "\(file):2: SCARF: on_hand 5 with backup 2 would take units off sale that are "
                + "reserved or sold (only 1 available now)", "\(run)")
        #expect(run.stderrLines.last == "stockctl: \(file): stockd refused 1 line, nothing staged", "\(run)")
        #expect(try Self.info(f, "HAT")["on_hand"] == 2 && Self.info(f, "SCARF")["backup"] == 0)
        #expect(try f.run(["stock", "get", "NEW"]).code == 1)

        // --dry-run shows the refusal without sending the stage.
        let dry = try f.run(["stage", file, "--dry-run"])
        #expect(dry.code == 0 && dry.stdout.contains("REFUSED: 4 reserved or sold")
                && dry.stdout.contains("dry run: nothing staged"), "\(dry)")
        #expect(try Self.info(f, "HAT")["on_hand"] == 2)
    }

    @Test func backupUnitsAreNeverSoldUntilReleased() throws {
        let f = try CtlFixture(catalog: "SCARF,1\n")
        let dir = try TempDirectory(prefix: "stage")
        defer { dir.remove() }
        let file = try dir.write("show.csv", Self.show)
        let run = try f.run(["stage", file, "--json"])
        #expect(run.code == 0, "\(run)")
        #expect(run.object?["staged"] as? Int == 3 && run.object?["created"] as? Int == 2
                && run.object?["backup"] as? Int == 5, "\(run)")
        #expect(try Self.info(f, "HERO-JACKET") == ["on_hand": 10, "available": 6, "reserved": 0, "confirmed": 0,
                                                    "backup": 4, "low_stock_threshold": 2, "per_customer_limit": 2])
        // Six buyers (one unit each: limit 2 per customer, no customer given) take what is on sale.
        for _ in 0..<6 { #expect(try Self.reserve(f, "HERO-JACKET").code == 0) }
        let out = try Self.reserve(f, "HERO-JACKET")
        #expect(out.code == 3, "4 units on hand are not for sale: \(out)")

        let released = try f.run(["backup", "release", "HERO-JACKET", "3", "--json"])
        #expect(released.code == 0 && released.object?["available"] as? Int == 3
                && released.object?["backup"] as? Int == 1, "\(released)")
        for _ in 0..<3 { #expect(try Self.reserve(f, "HERO-JACKET").code == 0) }
        #expect(try Self.reserve(f, "HERO-JACKET").code == 3)

        let tooMany = try f.run(["backup", "release", "HERO-JACKET", "2"])
        #expect(tooMany.code == 1 && tooMany.stderr.contains("1 held back"), "\(tooMany)")
        let all = try f.run(["backup", "release", "HERO-JACKET", "--json"])
        #expect(all.code == 0 && all.object?["backup"] as? Int == 0 && all.object?["available"] as? Int == 1, "\(all)")
        let hold = try f.run(["backup", "hold", "SCARF", "7"])
        #expect(hold.code == 1 && hold.stderr.contains("6 available"), "\(hold)")
        #expect(try f.run(["backup", "hold", "SCARF", "2"]).code == 0)
        #expect(try Self.info(f, "SCARF")["available"] == 4)
        #expect(try f.run(["backup", "release", "NOPE"]).stderr.contains("unknown SKU 'NOPE'"))

        // The feed shows each backup change.
        let events = OperationsTests.jsonLines(try f.run(["events", "--kind", "backup_changed", "--json"]))
        #expect(events.map { $0["sku"] as? String ?? "" } == ["HERO-JACKET", "BEANIE", "HERO-JACKET", "HERO-JACKET",
                                                              "SCARF"], "\(events)")
        #expect(events.map { $0["quantity"] as? Int ?? 0 } == [4, 1, -3, -1, 2], "\(events)")
        #expect(events.map { $0["aux"] as? Int ?? -1 } == [4, 1, 1, 0, 2], "\(events)")
    }

    /// Backup survives a kill -9 (journal replay) and a clean restart (snapshot).
    @Test func backupSurvivesRestarts() throws {
        let data = try TempDirectory(prefix: "stage-data")
        defer { data.remove() }
        let dir = try TempDirectory(prefix: "stage")
        defer { dir.remove() }
        let file = try dir.write("show.csv", Self.show)
        var server = try StockdProcess(["--data-dir", data.path("d")])
        var f = CtlFixture(server: server)
        #expect(try f.run(["stage", file]).code == 0)
        #expect(try f.run(["backup", "release", "HERO-JACKET", "1"]).code == 0)
        #expect(try Self.reserve(f, "HERO-JACKET").code == 0)
        server.kill()
        server = try StockdProcess(["--data-dir", data.path("d")])
        f = CtlFixture(server: server)
        #expect(try Self.info(f, "HERO-JACKET")["backup"] == 3 && Self.info(f, "HERO-JACKET")["available"] == 6)
        #expect(try Self.info(f, "BEANIE")["backup"] == 1)
        #expect(server.terminate()?.code == 0)
        server = try StockdProcess(["--data-dir", data.path("d")])
        f = CtlFixture(server: server)
        #expect(try Self.info(f, "HERO-JACKET") == ["on_hand": 10, "available": 6, "reserved": 1, "confirmed": 0,
                                                    "backup": 3, "low_stock_threshold": 2, "per_customer_limit": 2])
    }

    /// A stage too large for the server's frame is refused by stockctl before sending.
    @Test func aStageLargerThanTheFrameIsRefusedBeforeSending() throws {
        let server = try StockdProcess(["--max-frame", "1024"])
        let f = CtlFixture(server: server)
        let dir = try TempDirectory(prefix: "stage")
        defer { dir.remove() }
        let rows = (0..<40).map { "SKU-WITH-A-LONGISH-NAME-\($0),5,0,0,0" }.joined(separator: "\n")
        let run = try f.run(["stage", try dir.write("big.csv", rows)])
        #expect(run.code == 1 && run.stderr.contains("above this stockd's maximum frame of 1024 bytes"), "\(run)")
        #expect(try f.run(["stock", "get", "SKU-WITH-A-LONGISH-NAME-0"]).code == 1)
    }
}
