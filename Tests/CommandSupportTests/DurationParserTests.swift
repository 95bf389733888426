import CommandSupport
import Testing
import TestSupport

/// The one duration grammar of every binary: each accepted form, each refused one, and the words.
@Suite(.ownThread) struct DurationParserTests {
    @Test(arguments: [
        ("0", 0), ("1ms", 1), ("500ms", 500), ("1s", 1000), ("90s", 90_000), ("1.5s", 1500), ("0.25s", 250),
        ("1m", 60_000), ("1m30s", 90_000), ("2h", 7_200_000), ("1h30m", 5_400_000), ("1.5h", 5_400_000),
        ("1h2m3s4ms", 3_723_004), ("0s", 0), ("0ms", 0), ("1s500ms", 1500), ("0.001s", 1), ("2400h", 8_640_000_000),
    ] as [(String, UInt64)])
    func accepts(_ text: String, _ ms: UInt64) throws {
        #expect(try DurationParser.milliseconds(text) == ms)
    }

    @Test(arguments: [
        "", "90", "1.5", "00", "h", "ms", "s", "-1s", "+1s", " 1s", "1s ", "1 s", "1S", "1sec", "1d", "1.s", ".5s",
        "1.5ms", "0.0001s", "1s1m", "1s1s", "30m1h", "1m30", "1ms5", "1,5s", "1e3ms", "١s", "2401h",
        "9999999999999h", "1.1234567s",
    ])
    func refuses(_ text: String) {
        #expect(throws: DurationParser.Failure.self) { try DurationParser.milliseconds(text) }
    }

    @Test func errorNamesTheAcceptedFormat() {
        #expect(DurationParser.expected == "expected a duration like 500ms, 1.5s, 1m30s or 2h")
        do {
            _ = try DurationParser.milliseconds("90")
            Issue.record("a bare number must be refused")
        } catch {
            #expect(error.description
                == "a number without a unit is ambiguous (90s or 90ms?); expected a duration like 500ms, 1.5s, 1m30s or 2h")
        }
        do {
            _ = try DurationParser.milliseconds("5x")
            Issue.record("an unknown unit must be refused")
        } catch {
            #expect(error.text == "5x")
            #expect(error.description.hasPrefix("unknown or missing unit"))
            #expect(error.description.hasSuffix(DurationParser.expected))
        }
    }

    @Test(arguments: [0, 1, 999, 1000, 1500, 60_000, 90_000, 3_600_000, 3_723_004, 86_400_000] as [UInt64])
    func formatRoundTrips(_ ms: UInt64) throws {
        #expect(try DurationParser.milliseconds(DurationParser.format(ms)) == ms)
    }

    @Test func formatIsShort() {
        #expect(DurationParser.format(0) == "0")
        #expect(DurationParser.format(250) == "250ms")
        #expect(DurationParser.format(90_000) == "1m30s")
        #expect(DurationParser.format(7_200_000) == "2h")
    }

    @Test func boundsNameTheFlag() {
        #expect(DurationParser.outOfBounds(500, flag: "--ttl", range: 1...3_600_000) == nil)
        #expect(DurationParser.outOfBounds(1, flag: "--ttl", range: 1...3_600_000) == nil)
        #expect(DurationParser.outOfBounds(0, flag: "--ttl", range: 1...3_600_000) == "--ttl must be 1ms...1h, got 0")
        #expect(DurationParser.outOfBounds(7_200_000, flag: "--timeout", range: 1...3_600_000)
            == "--timeout must be 1ms...1h, got 2h")
    }
}
