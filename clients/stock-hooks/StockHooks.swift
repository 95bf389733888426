import ArgumentParser
import CommandSupport
import Glibc
import StockClient

/// The command line. Every option also reads `STOCK_HOOKS_<NAME>` from the
/// environment (flags win); see `resolve()`.
struct StockHooks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stock-hooks",
        abstract: "Posts stockd's events (confirmed orders by default) to a webhook URL, signed, at least once.",
        discussion: """
            Each option can also be set with an environment variable STOCK_HOOKS_<NAME> \
            (STOCK_HOOKS_URL, STOCK_HOOKS_STATE_DIR, STOCK_HOOKS_KIND=confirmed,released, …); a flag wins \
            over its variable. The signing secret is read from --secret-file or STOCK_HOOKS_SECRET, never \
            from the command line. The stockd credential: STOCKD_TOKEN (recommended) or --token-file.

            Exit status: 0 stopped by SIGINT/SIGTERM or caught up (--until-caught-up); 1 runtime failure \
            (the feed was refused, the state dir cannot be written); 2 usage or configuration error.
            """,
        version: BuildInfo.versionLine(program: "stock-hooks")
    )

    @Option(help: ArgumentHelp("stockd address (default: $STOCK_HOOKS_SERVER, $STOCKD_SERVER, else 127.0.0.1:7878); "
                               + "a replicated cluster's nodes comma-separated (the feed follows the primary).",
                               valueName: "host:port[,host:port...]"))
    var server: String?

    @Option(name: .customLong("token"),
            help: ArgumentHelp("stockd credential; visible to other users in ps: prefer $STOCKD_TOKEN or --token-file.",
                               valueName: "credential"))
    var credential: String?

    @Option(help: ArgumentHelp("File holding the stockd credential (one trailing newline ignored).", valueName: "path"))
    var tokenFile: String?

    @Option(help: ArgumentHelp("Webhook endpoint events are POSTed to (required).", valueName: "url"))
    var url: String?

    @Option(help: ArgumentHelp("File holding the HMAC signing secret (required unless $STOCK_HOOKS_SECRET is set).",
                               valueName: "path"))
    var secretFile: String?

    @Option(help: ArgumentHelp("Directory for the offset, the dead-letter file and a lock (required; created if missing).",
                               valueName: "dir"))
    var stateDir: String?

    @Option(name: .customLong("kind"),
            help: ArgumentHelp("Event kind to send; repeatable or comma-separated; 'all' for every kind (default: confirmed).",
                               valueName: "kind"))
    var kinds: [String] = []

    @Option(help: ArgumentHelp("Only SKUs starting with this (excludes 'extended', which has no SKU).", valueName: "prefix"))
    var skuPrefix: String?

    @Option(help: ArgumentHelp("SKUs with a request in flight at once (default: 8).", valueName: "n"))
    var concurrency: String?

    @Option(help: ArgumentHelp("Per request, connect to end of answer (default: 10s).", valueName: "duration"))
    var timeout: String?

    @Option(help: ArgumentHelp("Attempts per event before it is dead-lettered; 0 = retry forever (default: 0).",
                               valueName: "n"))
    var maxAttempts: String?

    @Option(help: ArgumentHelp("First retry delay ceiling (default: 200ms).", valueName: "duration"))
    var backoffInitial: String?

    @Option(help: ArgumentHelp("Largest retry delay ceiling (default: 30s).", valueName: "duration"))
    var backoffMax: String?

    @Option(help: ArgumentHelp("Where to start when the state dir has no offset yet: oldest, now or an offset (default: oldest).",
                               valueName: "oldest|now|offset"))
    var from: String?

    @Option(help: ArgumentHelp("Events buffered at most, queued or in flight (default: 10000).", valueName: "n"))
    var maxBuffered: String?

    @Flag(help: "Exit 0 once every event that existed at start is delivered or dead-lettered.")
    var untilCaughtUp = false

    /// Flags, then `STOCK_HOOKS_*`, then defaults.
    func resolve() throws(HooksError) -> Config {
        func pick(_ flag: String?, _ name: String) -> (String, String)? {
            if let flag { return (flag, "--" + name) }
            let variable = "STOCK_HOOKS_" + name.uppercased().replacing("-", with: "_")
            if let v = environment(variable) { return (v, variable) }
            return nil
        }

        let (host, port): (String, Int)
        var others: [String] = []
        if let (text, source) = pick(server, "server") ?? environment("STOCKD_SERVER").map({ ($0, "STOCKD_SERVER") }) {
            var all: [(String, Int)] = []
            for part in text.split(separator: ",", omittingEmptySubsequences: false) {
                all.append(try Parse.endpoint(String(part), source))
            }
            (host, port) = all[0]
            others = all.dropFirst().map { $0.0.contains(":") ? "[\($0.0)]:\($0.1)" : "\($0.0):\($0.1)" }
        } else {
            (host, port) = try Parse.endpoint(Config.defaultServer, "default")
        }

        var credential = ""
        if let c = self.credential {
            credential = c
        } else if let (path, source) = pick(tokenFile, "token-file") {
            credential = String(decoding: try Parse.secretFile(path, source), as: UTF8.self)
        } else if let c = environment("STOCK_HOOKS_TOKEN") ?? environment("STOCKD_TOKEN") {
            credential = c
        }

        guard let (urlText, urlSource) = pick(url, "url") else {
            throw HooksError("--url is required (or STOCK_HOOKS_URL): the webhook endpoint to POST events to")
        }
        let url = try Parse.url(urlText, urlSource)

        let secret: [UInt8]
        if let (path, source) = pick(secretFile, "secret-file") {
            secret = try Parse.secretFile(path, source)
        } else if let s = environment("STOCK_HOOKS_SECRET") {
            secret = Array(s.utf8)
        } else {
            throw HooksError("--secret-file is required (or STOCK_HOOKS_SECRET): the HMAC key for Stockd-Signature")
        }

        guard let (stateDir, _) = pick(stateDir, "state-dir") else {
            throw HooksError("--state-dir is required (or STOCK_HOOKS_STATE_DIR): where the offset and dead letters are kept")
        }

        var kinds = Config.defaultKinds
        if !self.kinds.isEmpty {
            kinds = try Parse.kinds(self.kinds, "--kind")
        } else if let v = environment("STOCK_HOOKS_KIND") {
            kinds = try Parse.kinds([v], "STOCK_HOOKS_KIND")
        }
        guard !kinds.isEmpty else { throw HooksError("--kind: no event kind given") }

        let skuPrefix = pick(skuPrefix, "sku-prefix")?.0 ?? ""
        guard let prefix = ShortBytes(skuPrefix), prefix.withUnsafeBytes({ ShortBytes.isValidText($0) }) else {
            throw HooksError("--sku-prefix '\(skuPrefix)': at most 64 bytes of text")
        }

        func parsed<T>(_ value: (String, String)?, _ parse: (String, String) throws(HooksError) -> T)
            throws(HooksError) -> T? {
            guard let (text, source) = value else { return nil }
            return try parse(text, source)
        }
        let concurrency = try parsed(pick(concurrency, "concurrency")) { t, s throws(HooksError) in
            try Parse.integer(t, s, 1...256)
        } ?? 8
        let timeoutMs = try parsed(pick(timeout, "timeout"), Parse.durationMs) ?? 10_000
        if let problem = DurationParser.outOfBounds(UInt64(timeoutMs), flag: "--timeout", range: 1...86_400_000) {
            throw HooksError(problem)
        }
        let maxAttempts = try parsed(pick(maxAttempts, "max-attempts")) { t, s throws(HooksError) in
            try Parse.integer(t, s, 0...1_000_000)
        } ?? 0
        let initial = try parsed(pick(backoffInitial, "backoff-initial"), Parse.durationMs) ?? 200
        let maximum = try parsed(pick(backoffMax, "backoff-max"), Parse.durationMs) ?? 30_000
        guard initial >= 1, maximum >= initial else {
            throw HooksError("--backoff-initial must be at least 1ms and at most --backoff-max")
        }
        let from = try parsed(pick(from, "from"), Parse.from) ?? .oldest
        let maxBuffered = try parsed(pick(maxBuffered, "max-buffered")) { t, s throws(HooksError) in
            try Parse.integer(t, s, 1...1_000_000)
        } ?? 10_000
        let untilVariable = environment("STOCK_HOOKS_UNTIL_CAUGHT_UP").map { ($0, "STOCK_HOOKS_UNTIL_CAUGHT_UP") }
        var until = untilCaughtUp
        if !until, let fromVariable = try parsed(untilVariable, Parse.bool) { until = fromVariable }

        var config = Config(host: host, port: port, credential: credential, url: url, secret: secret, stateDir: stateDir,
                            kinds: kinds, skuPrefix: skuPrefix, concurrency: concurrency, timeoutMs: timeoutMs,
                            retry: RetryPolicy(maxAttempts: maxAttempts, initialMs: initial, maxMs: maximum), from: from,
                            maxBuffered: maxBuffered, untilCaughtUp: until)
        config.otherEndpoints = others
        return config
    }
}

@main
enum Main {
    static func main() async {
        let command: StockHooks
        do {
            command = try StockHooks.parse(Array(CommandLine.arguments.dropFirst()))
        } catch {
            // --help and --version print as ArgumentParser does; errors are one line.
            if StockHooks.exitCode(for: error) == .success { StockHooks.exit(withError: error) }
            let message = StockHooks.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            logLine("error: \(message) (see stock-hooks --help)")
            exit(2)
        }
        let config: Config
        do throws(HooksError) {
            config = try command.resolve()
        } catch {
            logLine("error: \(error)")
            exit(2)
        }
        let code = await Runner(config: config).run()
        exit(code)
    }
}
