import ArgumentParser
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
            Every subcommand takes --server host:port (default $STOCKD_SERVER, else 127.0.0.1:7878), \
            --token CREDENTIAL (default $STOCKD_TOKEN), --json (one JSON document on stdout) and \
            --timeout (per call: 500ms, 5s; default 5s).

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
        subcommands: [
            PingCommand.self, ReserveCommand.self, BundleCommand.self, ConfirmCommand.self,
            ReleaseCommand.self, ExtendCommand.self, StockCommand.self, StatsCommand.self, WatchCommand.self,
            EventsCommand.self, ReportCommand.self,
        ] + OperationsCommands.all)

    /// Errors are one line on stderr (`stockctl: ...`) with the documented
    /// exit code; help prints as usual with exit 0.
    static func main() async {
        let command: any ParsableCommand
        do {
            command = try await asyncParseAsRoot()
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            fail(message(for: error), code: ExitStatus.usage)
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
                 code: ExitStatus.notPermitted)
        } catch let error as StockError {
            fail(error.description, code: ExitStatus.code(for: error))
        } catch let error as CLIError {
            fail(error.message, code: error.code)
        } catch let error as ValidationError {
            fail(error.message, code: ExitStatus.usage)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            fail(message(for: error), code: ExitStatus.failure)
        }
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

    /// Prints `stockctl: <first line of message>` on stderr and exits.
    static func fail(_ message: String, code: Int32) -> Never {
        let line = message.split(separator: "\n").first.map(String.init) ?? "error"
        FileHandle.standardError.write(Data("stockctl: \(line)\n".utf8))
        Foundation.exit(code)
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

/// A failure found by stockctl itself, with its exit code.
struct CLIError: Error, CustomStringConvertible {
    let message: String
    let code: Int32
    init(_ message: String, code: Int32) {
        self.message = message
        self.code = code
    }
    var description: String { message }
}
