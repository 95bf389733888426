import ArgumentParser
import CommandSupport
import Foundation
import StockClient

/// `stockctl`: the operator CLI for stockd. Every subcommand takes the
/// global options of `GlobalOptions`; errors are one line on stderr and an
/// exit code from `ExitCode` (documented in the discussion below).
@main
struct Stockctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stockctl",
        abstract: "Operator CLI for stockd: reserve, confirm, inspect and load stock.",
        discussion: """
            Global options, before or after the subcommand (stockctl --json reserve X 1 and \
            stockctl reserve X 1 --json are the same): --server host:port (default $STOCKD_SERVER, \
            else 127.0.0.1:7878), --token CREDENTIAL or --token-file FILE (default $STOCKD_TOKEN, then \
            $STOCKD_TOKEN_FILE), --json (one JSON document on stdout; errors as one JSON document on \
            stderr) and --timeout (per call: 500ms, 1.5s, 1m; default 5s).

            Durations everywhere: one or more <number><unit> parts, largest unit first, units h, m, s, \
            ms, decimals allowed (500ms, 1.5s, 1m30s, 2h); 0 alone is zero; a bare number is refused.

            Exit codes:
              0   ok
              1   other server error (unknown SKU, stock changed, rejected, ...)
              2   usage error (bad arguments, bad token hex, bad CSV)
              3   out of stock
              4   token not usable (unknown, expired, already confirmed, already released)
              5   limit exceeded (per-customer limit)
              69  server unreachable (cannot connect, connection lost, timed out)
              77  not permitted (no credential, a wrong one, or a role that may not do this)
            """,
        version: BuildInfo.versionLine(program: "stockctl"),
        subcommands: [
            PingCommand.self, ReserveCommand.self, BundleCommand.self, ConfirmCommand.self,
            ReleaseCommand.self, ExtendCommand.self, StockCommand.self, StatsCommand.self, WatchCommand.self,
            EventsCommand.self, ReportCommand.self, ClusterCommand.self,
        ] + OperationsCommands.all)

    /// Errors are one line on stderr (`stockctl: ...`), or with --json one JSON document on stderr,
    /// with the documented exit code; help, --version and completion scripts print as usual (exit 0).
    /// Global options before the subcommand are moved after it first (`LeadingOptions`).
    static func main() async {
        let arguments = GlobalOptions.leading.hoisted(Array(CommandLine.arguments.dropFirst()))
        let json = wantsJSON(arguments)
        let command: any ParsableCommand
        do {
            command = try await asyncParseAsRoot(arguments)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            fail(message(for: error), code: ExitStatus.usage, json: json)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
        } catch StockError.rejected(.authFailed) where !hasCredential(command) {
            fail("stockd requires a credential: give --token, --token-file or STOCKD_TOKEN",
                 code: ExitStatus.notPermitted, status: Status.authFailed.name, json: json)
        } catch let error as StockError {
            fail(error.description, code: ExitStatus.code(for: error), status: statusName(error), json: json)
        } catch let error as CLIError {
            fail(error.message, code: error.code, lines: error.lines, json: json)
        } catch let error as ValidationError {
            fail(error.message, code: ExitStatus.usage, json: json)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            fail(message(for: error), code: ExitStatus.failure, json: json)
        }
    }

    /// Whether --json is among the options (before a `--`, after which everything is an argument).
    static func wantsJSON(_ arguments: [String]) -> Bool {
        arguments.prefix { $0 != "--" }.contains("--json")
    }

    /// Whether the command was given a credential (else an AUTH_FAILED means "none given").
    static func hasCredential(_ command: any ParsableCommand) -> Bool {
        for child in Mirror(reflecting: command).children {
            if let o = child.value as? OptionGroup<GlobalOptions> {
                return !((try? o.wrappedValue.credentialValue()) ?? "").isEmpty
            }
        }
        return true
    }

    /// Prints `lines` (each `FILE:LINE: reason`) and `stockctl: <first line of message>` on stderr,
    /// or with --json one document `{"error":{"message":…,"status":…,"exit_code":…,"lines":[…]}}`
    /// (status only for a server status, lines only when there are some), and exits.
    static func fail(_ message: String, code: Int32, status: String? = nil, lines: [String] = [],
                     json: Bool) -> Never {
        let line = message.split(separator: "\n").first.map(String.init) ?? "error"
        let text: String
        if json {
            var fields: [(String, JSON)] = [("message", .string(line))]
            if let status { fields.append(("status", .string(status))) }
            fields.append(("exit_code", .int(Int64(code))))
            if !lines.isEmpty { fields.append(("lines", .array(lines.map { .string($0) }))) }
            text = JSON.object([("error", .object(fields))]).rendered
        } else {
            text = (lines + ["stockctl: \(line)"]).joined(separator: "\n")
        }
        FileHandle.standardError.write(Data((text + "\n").utf8))
        Foundation.exit(code)
    }

    /// The protocol status a server rejection carries (`OUT_OF_STOCK`); nil for transport failures.
    static func statusName(_ error: StockError) -> String? {
        let status: Status? = switch error {
        case .outOfStock: .outOfStock
        case .unknownSKU: .unknownSKU
        case .tokenUnknown: .tokenUnknown
        case .tokenExpired: .tokenExpired
        case .tokenAlreadyConfirmed: .tokenConfirmed
        case .tokenAlreadyReleased: .tokenReleased
        case .stockChanged: .stockChanged
        case .customerLimit: .customerLimit
        case .quantityInvalid: .quantityInvalid
        case .ttlTooLong: .ttlTooLong
        case .insufficientAvailable: .insufficientAvailable
        case .idempotencyConflict: .idempotencyConflict
        case .invalidSKU: .invalidSKU
        case .invalidArgument: .invalidArgument
        case .offsetCompacted: .offsetCompacted
        case .feedUnavailable: .feedUnavailable
        case .insufficientBackup: .insufficientBackup
        case .stageRefused: .stageRefused
        case .rejected(let s): s
        // Transport failures (and any case added later) have no status: the server did not answer one.
        default: nil
        }
        return status?.name
    }
}

/// The process exit codes.
enum ExitStatus {
    static let ok: Int32 = 0
    static let failure: Int32 = 1
    static let usage: Int32 = 2
    static let outOfStock: Int32 = 3
    static let tokenNotUsable: Int32 = 4
    static let limitExceeded: Int32 = 5
    static let unreachable: Int32 = 69
    /// Not authenticated, wrong credential, or a role that may not do this (EX_NOPERM).
    static let notPermitted: Int32 = 77

    static func code(for error: StockError) -> Int32 {
        switch error {
        case .outOfStock: outOfStock
        case .tokenUnknown, .tokenExpired, .tokenAlreadyConfirmed, .tokenAlreadyReleased: tokenNotUsable
        case .customerLimit: limitExceeded
        case .unreachable, .connectionLost, .timeout: unreachable
        case .rejected(.unauthenticated), .rejected(.authFailed), .rejected(.forbidden): notPermitted
        case .invalidSKU, .quantityInvalid: usage
        default: failure
        }
    }
}

/// A failure found by stockctl itself, with its exit code, and the `FILE:LINE: reason` lines
/// behind it (a file's bad lines) that are printed before it.
struct CLIError: Error, CustomStringConvertible {
    let message: String
    let code: Int32
    let lines: [String]
    init(_ message: String, code: Int32, lines: [String] = []) {
        self.message = message
        self.code = code
        self.lines = lines
    }
    var description: String { message }
}
