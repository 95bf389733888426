import CommandSupport
import Testing
import TestSupport

/// `--version` on every binary: the release and the commit the build recorded.
@Suite(.ownThread) struct BuildInfoTests {
    @Test func versionLineNamesProgramVersionAndCommit() {
        #expect(BuildInfo.versionLine(program: "stockctl") == "stockctl \(BuildInfo.version) (commit \(BuildInfo.commit))")
        #expect(BuildInfo.version.split(separator: ".").count == 3)
        #expect(BuildInfo.version.split(separator: ".").allSatisfy { UInt($0) != nil })
    }

    /// Written by Plugins/BuildInfoPlugin: 12 hex digits of `git rev-parse`, or `unknown` without git.
    @Test func commitIsTwelveHexDigitsOrUnknown() {
        let commit = BuildInfo.commit
        #expect(commit == "unknown" || (commit.count == 12 && commit.allSatisfy { "0123456789abcdef".contains($0) }),
                "\(commit)")
    }
}

/// Global options written before the subcommand move after it; everything else stays put.
@Suite(.ownThread) struct LeadingOptionsTests {
    let leading = LeadingOptions(valued: ["--server", "--token", "--token-file", "--timeout"], flags: ["--json"])

    @Test func leadingGlobalOptionsMoveAfterTheSubcommand() {
        #expect(leading.hoisted(["--json", "reserve", "X", "1"]) == ["reserve", "X", "1", "--json"])
        #expect(leading.hoisted(["--server", "h:1", "stock", "get", "X"]) == ["stock", "get", "X", "--server", "h:1"])
        #expect(leading.hoisted(["--server=h:1", "--json", "--timeout", "2s", "ping"])
            == ["ping", "--server=h:1", "--json", "--timeout", "2s"])
    }

    @Test func theyStayBeforeADoubleDash() {
        #expect(leading.hoisted(["--json", "reserve", "--", "-X", "1"]) == ["reserve", "--json", "--", "-X", "1"])
    }

    @Test func everythingElseIsLeftAlone() {
        #expect(leading.hoisted(["reserve", "X", "1", "--json"]) == ["reserve", "X", "1", "--json"])
        #expect(leading.hoisted(["--help"]) == ["--help"])
        #expect(leading.hoisted(["--version"]) == ["--version"])
        // Scanning stops at the first argument it does not know: an unknown option is the parser's to report.
        #expect(leading.hoisted(["--frob", "--json", "ping"]) == ["--frob", "--json", "ping"])
        // A value-taking option with no value left is not moved (the parser says it lacks a value).
        #expect(leading.hoisted(["--server"]) == ["--server"])
        #expect(leading.hoisted([]) == [])
    }
}
