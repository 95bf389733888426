import Foundation
import Glibc
import StockClient
import Testing
import TestSupport

/// `stockctl watch` on a terminal (a pseudo-terminal of a chosen size, so the
/// real binary takes its terminal branch and reads the size with TIOCGWINSZ):
/// the frame fits, attention first, the rest counted, NO_COLOR, the
/// alternate screen left on exit and on SIGINT; and the drill prefix kept out
/// of `stock list`, `watch` and `report`, and `report --since-stage`.
@Suite(.ownThread, .serialized) struct WatchScreenTests {
    /// 40 quiet SKUs, one sold out, one low, one the test keeps busy, and a drill SKU.
    static let catalog = (0..<40).map { String(format: "W-%03d,50", $0) }.joined(separator: "\n")
        + "\nW-SOLD,0\nW-LOW,3,5\nW-BUSY,100\nDRILL-1,0\n"
    static let skusShown = 43  // the drill SKU is left out

    /// What a run on a terminal wrote, and how it ended.
    struct TerminalRun {
        let output: String
        let status: Int32
        let signaled: Bool

        /// The last frame drawn (after the last cursor-home), as plain lines: escape sequences removed.
        var lastFrame: [String] {
            guard let home = output.range(of: "\u{1B}[H", options: .backwards) else { return [] }
            // The terminal turns each "\n" into "\r\n"; in Swift "\r\n" is one Character, so the
            // carriage returns go first (Foundation replaces by UTF-16 unit), then lines split.
            let frame = Self.plain(String(output[home.upperBound...])).replacingOccurrences(of: "\r", with: "")
            return frame.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        }

        /// The last frame with its escape sequences.
        var lastFrameRaw: String {
            guard let home = output.range(of: "\u{1B}[H", options: .backwards) else { return "" }
            return String(output[home.upperBound...])
        }

        static func plain(_ s: String) -> String {
            s.replacingOccurrences(of: "\u{1B}\\[[0-9;?]*[A-Za-z]", with: "", options: .regularExpression)
        }
    }

    /// Runs stockctl with stdout (and stdin) on a new pseudo-terminal of `rows` × `columns`,
    /// reading what it draws on a thread of its own. `whileRunning` gets the output so far;
    /// `interrupt` sends SIGINT once it returned. Every wait is bounded by `timeout`.
    static func onTerminal(_ args: [String], rows: UInt16 = 20, columns: UInt16 = 100, env: [String: String] = [:],
                           timeout: Double = 15, interrupt: Bool = false,
                           whileRunning: ((_ outputSoFar: () -> String) throws -> Void)? = nil) throws -> TerminalRun {
        var master: Int32 = -1, slave: Int32 = -1
        var size = winsize(ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        guard openpty(&master, &slave, nil, nil, &size) == 0 else { throw HarnessError("openpty failed: errno \(errno)") }
        defer { close(master) }
        let exe = URL(fileURLWithPath: try StockdBinary.path()).deletingLastPathComponent().appendingPathComponent("stockctl")
        let p = Process()
        p.executableURL = exe
        p.arguments = args
        var environment = ProcessInfo.processInfo.environment
        for k in ["STOCKD_SERVER", "STOCKD_TOKEN", "NO_COLOR", "LINES", "COLUMNS"] { environment[k] = nil }
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        let terminal = FileHandle(fileDescriptor: slave, closeOnDealloc: false)
        p.standardOutput = terminal
        p.standardInput = terminal
        p.standardError = FileHandle.nullDevice
        try p.run()
        close(slave)  // the child holds it; the master sees EIO once the child is gone
        let output = Locked("")
        let fd = master
        let reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            var bytes: [UInt8] = []
            while true {
                let n = read(fd, &buffer, buffer.count)
                if n > 0 {
                    bytes += buffer[0..<n]
                    output.set(String(decoding: bytes, as: UTF8.self))
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return  // EIO: the terminal's last holder closed it
                }
            }
        }
        reader.start()
        try superviseTool(p, "stockctl \(args.joined(separator: " "))", timeout: timeout, interrupt: interrupt,
                          whileRunning: whileRunning.map { body in { try body { output.get() } } })
        sleepSeconds(0.2)  // the reader drains what is left in the terminal
        return TerminalRun(output: output.get(), status: p.terminationStatus,
                           signaled: p.terminationReason == .uncaughtSignal)
    }

    /// Waits (bounded) until `count` frames were drawn.
    static func waitForFrames(_ count: Int, _ outputSoFar: () -> String, within seconds: Double = 10) throws {
        let deadline = monotonicSeconds() + seconds
        while outputSoFar().components(separatedBy: "\u{1B}[H").count - 1 < count {
            guard monotonicSeconds() < deadline else { throw HarnessError("fewer than \(count) frames within \(seconds) s") }
            usleep(10_000)
        }
    }

    /// The SKU of a table row (its first column), for rows of the frame between the column names and TOTAL.
    static func tableSKUs(_ frame: [String]) -> [String] {
        guard let header = frame.firstIndex(where: { $0.hasPrefix("SKU ") }),
              let total = frame.firstIndex(where: { $0.hasPrefix("TOTAL ") }) else { return [] }
        return frame[(header + 1)..<total].compactMap { line in
            line.hasPrefix("…") ? nil : line.split(separator: " ").first.map(String.init)
        }
    }

    @Test func frameFitsTheTerminalAttentionFirstAndCountsTheRest() throws {
        let f = try CtlFixture(catalog: Self.catalog)
        let c = try f.server.connect()
        let run = try Self.onTerminal(["watch", "--count", "2", "--interval", "1500ms", "--server", f.address]) { soFar in
            try Self.waitForFrames(1, soFar)
            sleepSeconds(0.3)  // the feed subscription is up by now
            for _ in 0..<5 { _ = try c.reserveOK("W-BUSY", 1) }  // reservations/s > 0 in the second frame
        }
        #expect(run.status == 0 && !run.signaled, "\(run.output)")
        // The alternate screen: entered first, left last (the shell's screen comes back).
        #expect(run.output.hasPrefix("\u{1B}[?1049h"), "\(run.output.prefix(40))")
        #expect(run.output.hasSuffix("\u{1B}[?25h\u{1B}[?1049l"), "\(run.output.suffix(40))")

        let frame = run.lastFrame
        #expect(frame.count <= 20, "\(frame.count) lines: \(frame)")
        #expect(frame.allSatisfy { $0.count <= 100 }, "\(frame)")
        #expect(frame.first?.hasPrefix("stockd \(f.address)") == true, "\(frame)")
        #expect(frame.first?.contains("\(Self.skusShown) SKUs, 1 sold out, 1 low") == true, "\(frame)")
        #expect(frame.contains { $0.hasPrefix("show: 5 reserved") }, "\(frame)")
        let header = try #require(frame.first { $0.hasPrefix("SKU ") })
        #expect(header.split(separator: " ") == ["SKU", "STATUS", "ON_HAND", "AVAILABLE", "RESERVED", "SOLD", "BACKUP",
                                                 "RES/S"], "\(header)")
        // Attention first: sold out, low, the busy one, then the rest by name.
        let skus = Self.tableSKUs(frame)
        #expect(Array(skus.prefix(4)) == ["W-SOLD", "W-LOW", "W-BUSY", "W-000"], "\(skus)")
        #expect(!skus.contains { $0.hasPrefix("DRILL-") }, "\(skus)")
        // The rest: one line with the count; shown + counted = every SKU.
        let more = try #require(frame.first { $0.hasPrefix("… ") }, "\(frame)")
        let hidden = Int(more.split(separator: " ")[1]) ?? -1
        #expect(more.contains("more SKUs") && skus.count + hidden == Self.skusShown, "\(skus.count) + \(more)")
        let total = try #require(frame.first { $0.hasPrefix("TOTAL ") })
        // on hand: 40 × 50 + 0 + 3 + 100; reserved: the 5 units held
        #expect(total.split(separator: " ").prefix(4) == ["TOTAL", "2103", "2098", "5"], "\(total)")
        // Colour on by default: sold out in red, low in yellow.
        #expect(run.lastFrameRaw.contains("\u{1B}[1;31mW-SOLD") && run.lastFrameRaw.contains("\u{1B}[33mW-LOW"),
                "\(run.lastFrameRaw.debugDescription)")
    }

    @Test func noColorAndANarrowTerminal() throws {
        let f = try CtlFixture(catalog: Self.catalog + "W-A-VERY-LONG-SKU-NAME-THAT-DOES-NOT-FIT-A-NARROW-TERMINAL,5\n")
        let run = try Self.onTerminal(["watch", "--count", "1", "--server", f.address], rows: 12, columns: 60,
                                      env: ["NO_COLOR": "1"])
        #expect(run.status == 0, "\(run.output)")
        // No SGR (colour, bold, reverse) sequence at all; cursor and screen control stay.
        #expect(run.output.range(of: "\u{1B}\\[[0-9;]*m", options: .regularExpression) == nil,
                "\(run.output.debugDescription)")
        let frame = run.lastFrame
        #expect(frame.count <= 12 && frame.allSatisfy { $0.count <= 60 }, "\(frame)")
        #expect(frame.contains { $0.hasPrefix("TOTAL ") } && frame.contains { $0.hasPrefix("… ") }, "\(frame)")
        // The status survives the cut: it comes right after the SKU.
        #expect(frame.contains { $0.hasPrefix("W-SOLD") && $0.contains("SOLD OUT") }, "\(frame)")
        #expect(Self.tableSKUs(frame).first == "W-SOLD", "\(frame)")
        // NO_COLOR set but empty: colour stays on (no-color.org).
        let empty = try Self.onTerminal(["watch", "--count", "1", "--server", f.address], env: ["NO_COLOR": ""])
        #expect(empty.lastFrameRaw.contains("\u{1B}[1;31m"), "\(empty.output.debugDescription)")
    }

    @Test func sigintLeavesTheAlternateScreen() throws {
        let f = try CtlFixture(catalog: Self.catalog)
        let run = try Self.onTerminal(["watch", "--server", f.address], interrupt: true) { soFar in
            try Self.waitForFrames(1, soFar)
        }
        #expect(run.signaled && run.status == SIGINT, "status \(run.status) signaled \(run.signaled)")
        #expect(run.output.hasSuffix("\u{1B}[?25h\u{1B}[?1049l"), "\(run.output.suffix(60).debugDescription)")
    }

    @Test func filtersOnTheTerminal() throws {
        let f = try CtlFixture(catalog: Self.catalog)
        let low = try Self.onTerminal(["watch", "--count", "1", "--low-only", "--server", f.address])
        #expect(Self.tableSKUs(low.lastFrame) == ["W-SOLD", "W-LOW"], "\(low.lastFrame)")
        #expect(!low.lastFrame.contains { $0.hasPrefix("… ") }, "\(low.lastFrame)")
        let prefix = try Self.onTerminal(["watch", "--count", "1", "--sku", "W-00", "--server", f.address])
        #expect(Self.tableSKUs(prefix.lastFrame) == (0..<10).map { String(format: "W-%03d", $0) }, "\(prefix.lastFrame)")
        let drill = try Self.onTerminal(["watch", "--count", "1", "--include-drill", "--low-only", "--server", f.address])
        #expect(Self.tableSKUs(drill.lastFrame) == ["DRILL-1", "W-SOLD", "W-LOW"], "\(drill.lastFrame)")
    }

    /// Piped (not a terminal): the plain line as before, with the filters and the drill rule applied.
    @Test func filtersOnThePlainLine() throws {
        let f = try CtlFixture(catalog: Self.catalog)
        func skus(_ args: [String]) throws -> String? {
            let run = try f.run(["watch", "--count", "1"] + args)
            #expect(run.code == 0 && !run.stdout.contains("\u{1B}"), "\(run)")
            return run.stdoutLines.last?.split(separator: " ").first { $0.hasPrefix("skus=") }.map(String.init)
        }
        #expect(try skus([]) == "skus=\(Self.skusShown)")
        #expect(try skus(["--include-drill"]) == "skus=\(Self.skusShown + 1)")
        #expect(try skus(["--sku", "W-0"]) == "skus=40")
        #expect(try skus(["--low-only"]) == "skus=2")
        let bad = try f.run(["watch", "--count", "1", "--sku", ""])
        #expect(bad.code == 2 && bad.stderrLines.count == 1, "\(bad)")
    }

    @Test func drillRefusesASKUWithoutThePrefix() throws {
        let f = try CtlFixture()
        let run = try f.run(["drill", "--sku", "JACKET"])
        #expect(run.code == 2 && run.stdout.isEmpty, "\(run)")
        #expect(run.stderrLines.count == 1 && run.stderrLines.first?.contains("must start with DRILL-") == true, "\(run)")
        #expect(try f.server.connect().info("JACKET").onHand == 10, "nothing was touched")
    }

    /// A real drill leaves DRILL-<ms> behind: stock list and report leave it out unless --include-drill.
    @Test func drillSKUsAreHiddenFromStockListAndReport() throws {
        let f = try CtlFixture(catalog: "SHOW-A,10\nSHOW-B,5\n")
        let drill = try f.run(["drill", "--timeout", OperationsTests.drillWait])
        #expect(drill.code == 0, "\(drill)")
        let c = try f.server.connect()
        #expect(try c.confirm(try c.reserveOK("SHOW-A", 2).token).status == .ok)

        func listed(_ extra: [String]) throws -> [String] {
            let run = try f.run(["stock", "list", "--json"] + extra)
            #expect(run.code == 0, "\(run)")
            return ((run.json as? [[String: Any]]) ?? []).compactMap { $0["sku"] as? String }
        }
        #expect(Set(try listed([])) == ["SHOW-A", "SHOW-B"])
        let all = try listed(["--include-drill"])
        #expect(all.count == 3 && all.contains { $0.hasPrefix("DRILL-") }, "\(all)")

        func reported(_ extra: [String]) throws -> (skus: [String], suggested: [String]) {
            let run = try f.run(["report", "--json"] + extra)
            #expect(run.code == 0, "\(run)")
            let skus = (run.object?["skus"] as? [[String: Any]] ?? []).compactMap { $0["sku"] as? String }
            let suggested = (run.object?["suggestion"] as? [[String: Any]] ?? []).compactMap { $0["sku"] as? String }
            return (skus, suggested)
        }
        let hidden = try reported([])
        #expect(hidden.skus == ["SHOW-A", "SHOW-B"] && hidden.suggested == ["SHOW-A", "SHOW-B"], "\(hidden)")
        let shown = try reported(["--include-drill"])
        #expect(shown.skus.count == 3 && shown.skus.contains { $0.hasPrefix("DRILL-") }, "\(shown)")
    }

    /// Two shows on one server: --since-stage reports only the second, whatever came between
    /// (a drill, a lone STOCK_SET); an unsold SKU's suggestion keeps its staged on-hand, with a note.
    @Test func sinceStageCountsOnlyTheLastShow() async throws {
        let f = try CtlFixture(catalog: "SHOW-A,1\n")  // one SKU: the start-up catalog is no stage
        let client = StockClient(port: f.server.port, timeout: testCallTimeout)
        defer { client.close() }
        let dir = try TempDirectory(prefix: "since-stage")
        defer { dir.remove() }
        let header = "sku,on_hand,backup,low_stock_threshold,per_customer_limit\n"

        let none = try await ReportTests.ctl(f, ["report", "--since-stage"])
        #expect(none.code == 1 && none.stderrLines.count == 1 && none.stderr.contains("no STAGE"), "\(none)")

        let first = try dir.write("show1.csv", header + "SHOW-A,10,0,0,0\nSHOW-B,10,2,0,0\n")
        #expect(try await ReportTests.ctl(f, ["stage", first]).code == 0)
        for _ in 0..<3 { try await client.confirm(try await client.reserve(sku: "SHOW-A", quantity: 1).token) }
        try await Task.sleep(for: .milliseconds(20))  // the next stage at a later millisecond
        let second = try dir.write("show2.csv", header + "SHOW-A,13,0,0,0\nSHOW-B,10,1,0,0\nSHOW-C,6,0,0,0\n")
        #expect(try await ReportTests.ctl(f, ["stage", second]).code == 0)
        #expect(try await ReportTests.ctl(f, ["drill", "--timeout", OperationsTests.drillWait]).code == 0)
        try await client.setStock("SHOW-D", onHand: 4)  // a lone STOCK_SET: not a stage
        try await client.confirm(try await client.reserve(sku: "SHOW-A", quantity: 2).token)
        try await client.confirm(try await client.reserve(sku: "SHOW-D", quantity: 1).token)

        let run = try await ReportTests.ctl(f, ["report", "--since-stage", "--json"])
        #expect(run.code == 0, "\(run)")
        let report = try #require(run.object, "\(run)")
        let rows = ReportTests.skus(report)
        #expect(Set(rows.keys) == ["SHOW-A", "SHOW-B", "SHOW-C", "SHOW-D"], "\(run)")
        #expect(ReportTests.int(rows["SHOW-A"]?["sold"]) == 2, "only the second show's sales: \(run)")
        #expect(ReportTests.int(rows["SHOW-A"]?["staged"]) == 10, "13 on hand, 3 of them sold before: \(run)")
        #expect(ReportTests.int(rows["SHOW-D"]?["sold"]) == 1, "\(run)")
        // The window opens at the second stage's first event.
        let events = try await ReportTests.events(f)
        // (its first line, SHOW-A, at the time SHOW-C — new in the second stage — was staged)
        let showC = try #require(events.first { $0["kind"] as? String == "stock_set" && $0["sku"] as? String == "SHOW-C" })
        let stageTime = try #require(ReportTests.int(showC["time_ms"]))
        let firstLine = events.first { e in
            e["kind"] as? String == "stock_set" && e["sku"] as? String == "SHOW-A" && ReportTests.int(e["time_ms"]) == stageTime
        }
        let stageOffset = try #require(ReportTests.int(firstLine?["offset"]), "\(events)")
        let from = ReportTests.int((report["window"] as? [String: Any])?["from_offset"]) ?? -1
        #expect(from == stageOffset, "window from \(from), the second stage starts at \(stageOffset)")
        // SHOW-B and SHOW-C sold nothing: their suggestion keeps the staged units, basis "unsold".
        let suggestion = ReportTests.suggestion(report)
        // (staged = sellable at the start = on-hand − confirmed, backup included: README-report.md)
        #expect(suggestion["SHOW-B"] == 10 && suggestion["SHOW-C"] == 6 && suggestion["SHOW-A"] == 3, "\(run)")
        let basis = (report["suggestion"] as? [[String: Any]] ?? []).compactMap { o in
            (o["sku"] as? String).map { ($0, o["basis"] as? String ?? "?") }
        }
        #expect(Dictionary(uniqueKeysWithValues: basis)["SHOW-C"] == "unsold", "\(run)")
        // In human output the note names them on stderr (one line).
        let human = try await ReportTests.ctl(f, ["report", "--since-stage"])
        #expect(human.code == 0 && human.stderrLines.count == 1, "\(human)")
        #expect(human.stderr.contains("sold nothing") && human.stderr.contains("SHOW-B, SHOW-C"), "\(human)")

        // All of it without --since-stage: both shows' sales of SHOW-A.
        let whole = try await ReportTests.ctl(f, ["report", "--json"])
        #expect(ReportTests.int(ReportTests.skus(whole.object ?? [:])["SHOW-A"]?["sold"]) == 5, "\(whole)")
        let both = try await ReportTests.ctl(f, ["report", "--since-stage", "--since", "1"])
        #expect(both.code == 2 && both.stderrLines.count == 1, "\(both)")
    }
}
