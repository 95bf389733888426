import Foundation
import Testing
import TestSupport

/// stockctl's command-line conventions (issue 17, item 3) against a real stockd: global options
/// before the subcommand, `--version` with the commit, errors as JSON on stderr with --json, the
/// shared duration grammar, and RFC 4180 CSV in `stage`, `stock import`, `audit` and `--catalog`.
@Suite(.ownThread, .serialized) struct CLIConventionTests {
    /// The `error` object of the one JSON document on stderr, nil when stderr is not that.
    static func errorDocument(_ run: ToolRun) -> [String: Any]? {
        let doc = try? JSONSerialization.jsonObject(with: Data(run.stderr.utf8)) as? [String: Any]
        return doc?["error"] as? [String: Any]
    }

    static func stock(_ f: CtlFixture, _ sku: String) throws -> [String: Int]? {
        let run = try f.run(["stock", "get", sku, "--json"])
        guard run.code == 0 else { return nil }
        return (run.object ?? [:]).compactMapValues { ($0 as? NSNumber)?.intValue }
    }

    @Test func globalOptionsWorkBeforeTheSubcommand() throws {
        let f = try CtlFixture()
        let reserve = try stockctl(["--json", "--server", f.address, "reserve", "SCARF", "1"])
        #expect(reserve.code == 0, "\(reserve)")
        #expect((reserve.object?["token"] as? String)?.count == 32, "\(reserve)")
        // A nested subcommand (stock get), and the --opt=value form.
        let get = try stockctl(["--server", f.address, "stock", "get", "SCARF"])
        #expect(get.code == 0 && get.stdout.contains("SCARF"), "\(get)")
        let mixed = try stockctl(["--server=\(f.address)", "--timeout", "2s", "stock", "get", "SCARF", "--json"])
        #expect(mixed.code == 0 && (mixed.object?["reserved"] as? NSNumber)?.intValue == 1, "\(mixed)")
        // After the subcommand, as before; the environment is still the default.
        let after = try stockctl(["ping", "--json", "--server", f.address])
        #expect(after.code == 0 && after.object?["rtt_ms"] is NSNumber, "\(after)")
        let env = try stockctl(["--json", "ping"], env: ["STOCKD_SERVER": f.address])
        #expect(env.code == 0 && env.object?["rtt_ms"] is NSNumber, "\(env)")
        // A leading option nobody declares is still a usage error, one line.
        let unknown = try stockctl(["--frobnicate", "ping", "--server", f.address])
        #expect(unknown.code == 2 && unknown.stderrLines.count == 1, "\(unknown)")
    }

    /// `<tool> 0.2.0 (commit <12 hex digits>)`, or `(commit unknown)` for a build without git.
    @Test(arguments: ["stockctl", "stock-hooks", "stockbench"])
    func versionNamesTheReleaseAndTheCommit(_ tool: String) throws {
        let run = try runTool(tool, ["--version"])
        #expect(run.code == 0, "\(run)")
        let words = run.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(String.init)
        #expect(words.count == 4 && words[0] == tool && words[2] == "(commit", "\(run)")
        guard words.count == 4 else { return }
        let release = words[1].split(separator: ".", omittingEmptySubsequences: false)
        #expect(release.count == 3 && release.allSatisfy { UInt($0) != nil }, "\(run)")
        let commit = words[3].hasSuffix(")") ? String(words[3].dropLast()) : ""
        #expect(commit == "unknown" || (commit.count == 12 && commit.allSatisfy { "0123456789abcdef".contains($0) }),
                "\(run)")
    }

    @Test func errorsWithJSONAreOneJSONDocumentOnStderr() throws {
        let f = try CtlFixture()
        let oos = try f.run(["--json", "reserve", "SCARF", "50"])
        #expect(oos.code == 3 && oos.stdout.isEmpty && oos.stderrLines.count == 1, "\(oos)")
        let error = try #require(Self.errorDocument(oos), "\(oos)")
        #expect(error["status"] as? String == "OUT_OF_STOCK", "\(oos)")
        #expect((error["exit_code"] as? NSNumber)?.intValue == 3, "\(oos)")
        #expect((error["message"] as? String)?.hasPrefix("out of stock") == true, "\(oos)")
        // Without --json: one readable line, as before.
        let human = try f.run(["reserve", "SCARF", "50"])
        #expect(human.code == 3 && human.stderrLines.count == 1
                && human.stderr.hasPrefix("stockctl: out of stock"), "\(human)")

        // A usage error has no status; its message names the duration format.
        let usage = try f.run(["ping", "--json", "--timeout", "90"])
        #expect(usage.code == 2 && usage.stdout.isEmpty, "\(usage)")
        let usageError = try #require(Self.errorDocument(usage), "\(usage)")
        #expect(usageError["status"] == nil && (usageError["exit_code"] as? NSNumber)?.intValue == 2, "\(usage)")
        #expect((usageError["message"] as? String)?.contains("expected a duration like 500ms, 1.5s, 1m30s or 2h") == true,
                "\(usage)")

        // Unreachable: exit 69, no status (the server never answered).
        let port = try unusedPort()
        let down = try stockctl(["--json", "--server", "127.0.0.1:\(port)", "--timeout", "2s", "ping"])
        #expect(down.code == 69, "\(down)")
        let downError = try #require(Self.errorDocument(down), "\(down)")
        #expect(downError["status"] == nil && (downError["exit_code"] as? NSNumber)?.intValue == 69, "\(down)")

        // A bad file: its FILE:LINE: reason lines inside the one document.
        let dir = try TempDirectory(prefix: "conventions")
        defer { dir.remove() }
        let file = try dir.write("bad.csv", "SCARF,5,0,0,0\nHAT,x,0,0,0\n")
        let bad = try f.run(["--json", "stage", file])
        #expect(bad.code == 2 && bad.stderrLines.count == 1, "\(bad)")
        let badError = try #require(Self.errorDocument(bad), "\(bad)")
        #expect((badError["lines"] as? [String])?.first?.hasPrefix("\(file):2: on_hand 'x'") == true, "\(bad)")
    }

    @Test func durationsFollowTheSharedGrammar() throws {
        let f = try CtlFixture()
        let compound = try f.run(["reserve", "SCARF", "1", "--ttl", "1m30s", "--json"])
        #expect(compound.code == 0, "\(compound)")
        let ms = (compound.object?["expires_in_ms"] as? NSNumber)?.intValue ?? -1
        #expect(ms > 80_000 && ms <= 90_000, "\(compound)")
        let decimal = try f.run(["reserve", "SCARF", "1", "--ttl", "1.5s", "--json"])
        let decimalMs = (decimal.object?["expires_in_ms"] as? NSNumber)?.intValue ?? -1
        #expect(decimal.code == 0 && decimalMs >= 0 && decimalMs <= 1500, "\(decimal)")
        // A bare number is ambiguous; 0 parses but is below the flag's bound, which names the flag.
        let bare = try f.run(["reserve", "SCARF", "1", "--ttl", "90"])
        #expect(bare.code == 2 && bare.stderr.contains("expected a duration like 500ms, 1.5s, 1m30s or 2h"), "\(bare)")
        let zero = try f.run(["reserve", "SCARF", "1", "--ttl", "0"])
        #expect(zero.code == 2 && zero.stderrLines == ["stockctl: --ttl must be 1ms...1h, got 0"], "\(zero)")
    }

    /// `"CSV-Q-1"` is the SKU CSV-Q-1, in stage and in stockd's own --catalog; a BOM, CRLF, a quoted
    /// name holding a comma and a line break, and a doubled quote are read as RFC 4180 says.
    @Test func quotedFieldsAreStagedWithoutTheirQuotes() throws {
        let f = try CtlFixture(catalog: "sku,on_hand\n\"CSV-Q-0\",2\n")
        #expect(try Self.stock(f, "CSV-Q-0")?["on_hand"] == 2)
        let dir = try TempDirectory(prefix: "conventions")
        defer { dir.remove() }
        let file = try dir.write("show.csv", "\u{FEFF}sku,on_hand,backup,low_stock_threshold,per_customer_limit,name\r\n"
                                 + "\"CSV-Q-1\",5,1,0,0,\"Aurora, blue\r\n(second line)\"\r\n"
                                 + "# a comment\r\n"
                                 + "  \"CSV-Q-2\" , 3 ,0,0,0,\"12\"\" print\"\r\n")
        let run = try f.run(["stage", file])
        #expect(run.code == 0, "\(run)")
        #expect(try Self.stock(f, "CSV-Q-1")?["on_hand"] == 5 && Self.stock(f, "CSV-Q-1")?["backup"] == 1)
        #expect(try Self.stock(f, "CSV-Q-2")?["on_hand"] == 3)
        // No SKU was created with the quotes in its name.
        #expect(try f.run(["stock", "get", "\"CSV-Q-1\""]).code == 1)
    }

    /// A record's line number is the line it starts on, counting the lines inside quoted fields;
    /// an unclosed quote is reported on its line instead of swallowing the rest of the file.
    @Test func lineNumbersCountTheLinesInsideQuotedFields() throws {
        let f = try CtlFixture()
        let dir = try TempDirectory(prefix: "conventions")
        defer { dir.remove() }
        let file = try dir.write("bad.csv", """
            sku,on_hand,backup,low_stock_threshold,per_customer_limit,name
            A-1,1,0,0,0,"a name
            over three
            lines"
            B-1,x,0,0,0,"B, the second"
            C-1,1,0,0,0,"never closed
            D-1,2,0,0,0

            """)
        let run = try f.run(["stage", file])
        #expect(run.code == 2, "\(run)")
        #expect(run.stderrLines.contains { $0.hasPrefix("\(file):5: on_hand 'x'") }, "\(run)")
        #expect(run.stderrLines.contains { $0.hasPrefix("\(file):6: unbalanced double quote") }, "\(run)")
        #expect(run.stderrLines.last == "stockctl: \(file): 2 bad lines, nothing staged", "\(run)")
        #expect(try f.run(["stock", "get", "A-1"]).code == 1)
    }

    @Test func importAndAuditReadQuotedFields() throws {
        let f = try CtlFixture(catalog: "SCARF,5\n")
        let dir = try TempDirectory(prefix: "conventions")
        defer { dir.remove() }
        let imported = try dir.write("import.csv", "sku,on_hand\n\"CSV-Q-3\",4\n\"CSV, Q-4\",2,1\n")
        let run = try f.run(["stock", "import", imported])
        #expect(run.code == 0, "\(run)")
        #expect(try Self.stock(f, "CSV-Q-3")?["on_hand"] == 4)
        #expect(try Self.stock(f, "CSV, Q-4")?["low_stock_threshold"] == 1)

        // The warehouse count matches once its quotes are read as quoting.
        let same = try dir.write("same.csv", "sku,counted\r\n\"SCARF\",5\r\n\"CSV-Q-3\",4\r\n\"CSV, Q-4\",2\r\n")
        let clean = try f.run(["audit", same, "--json"])
        #expect(clean.code == 0 && (clean.object?["discrepancies"] as? [Any])?.isEmpty == true, "\(clean)")
        let differs = try dir.write("differs.csv", "sku,counted\nSCARF,5\n\"CSV-Q-3\",6\n\"CSV, Q-4\",2\n")
        let found = try f.run(["audit", differs, "--json"])
        #expect(found.code == 1, "\(found)")
        let items = (found.object?["discrepancies"] as? [[String: Any]]) ?? []
        #expect(items.count == 1 && items.first?["sku"] as? String == "CSV-Q-3"
                && items.first?["status"] as? String == "differs", "\(found)")
    }
}
