import ArgumentParser
import Foundation
import StockClient

struct PingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping", abstract: "Check the server answers; prints the round-trip time.")

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let hello = try await client.serverInfo()  // connects and says HELLO first
        let clock = ContinuousClock()
        let start = clock.now
        try await client.ping()
        let elapsed = clock.now - start
        let c = elapsed.components
        let ms = Double(c.seconds) * 1000 + Double(c.attoseconds) / 1e15
        let name = String(decoding: hello.serverName, as: UTF8.self)
        emit(options,
             json: .object([("server", .string(options.address)), ("server_name", .string(name)),
                            ("rtt_ms", .double(ms))]),
             human: String(format: "pong from %@ (%@): %.3f ms", options.address, name, ms))
    }
}

struct ReserveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reserve", abstract: "Hold QTY units of SKU; prints the token.")

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The SKU.") var sku: String
    @Argument(help: "Units to hold (1...1000000).") var quantity: Int
    @Option(help: ArgumentHelp("Hold time (default: the server's, usually 90s).", valueName: "duration"),
            transform: DurationValue.parse) var ttl: DurationValue?
    @Option(help: "Customer id, for per-customer limits.") var customer: String?
    @Option(name: .customLong("key"), help: "Idempotency key: a retry with the same key gets the same hold.")
    var idempotencyKey: String?

    func validate() throws {
        try Check.sku(sku)
        try Check.quantity(quantity)
        try Check.ttl(ttl)
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let r = try await namingSKU(sku) { () async throws(StockError) in
            try await client.reserve(sku: sku, quantity: quantity, ttl: ttl?.duration, customer: customer,
                                     idempotencyKey: idempotencyKey)
        }
        let left = expiresIn(r.expiresAtMs)
        emit(options,
             json: .object([("token", .string(r.token.description)), ("sku", .string(sku)),
                            ("quantity", .int(Int64(quantity))), ("expires_in_ms", .uint(left)),
                            ("available", .uint(r.available))]),
             human: formatPairs([("token", r.token.description), ("sku", sku), ("quantity", "\(quantity)"),
                                 ("expires in", seconds(left)), ("available", "\(r.available)")]))
    }
}

struct BundleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle", abstract: "Hold several SKU:QTY lines all-or-nothing under one token.")

    @OptionGroup var options: GlobalOptions
    @Argument(help: ArgumentHelp("Lines to hold, e.g. JACKET-RED-M:1 SCARF:2.", valueName: "sku:qty"))
    var lines: [String]
    @Option(help: ArgumentHelp("Hold time (default: the server's).", valueName: "duration"),
            transform: DurationValue.parse) var ttl: DurationValue?
    @Option(help: "Customer id, for per-customer limits.") var customer: String?
    @Option(name: .customLong("key"), help: "Idempotency key.") var idempotencyKey: String?

    static func parse(_ line: String) throws -> (sku: String, quantity: Int) {
        guard let colon = line.lastIndex(of: ":"), let q = Int(line[line.index(after: colon)...]) else {
            throw ValidationError("bundle line '\(line)': expected SKU:QTY")
        }
        let sku = String(line[..<colon])
        try Check.sku(sku)
        try Check.quantity(q, name: "bundle line '\(line)': quantity")
        return (sku, q)
    }

    func validate() throws {
        guard !lines.isEmpty else { throw ValidationError("bundle needs at least one SKU:QTY line") }
        guard lines.count <= Limits.maxBundleLines else {
            throw ValidationError("bundle takes at most \(Limits.maxBundleLines) lines")
        }
        for line in lines { _ = try Self.parse(line) }
        try Check.ttl(ttl)
    }

    func run() async throws {
        let parsed = try lines.map(Self.parse)
        let client = try options.makeClient()
        defer { client.close() }
        let r: BundleReservation
        do {
            r = try await client.reserveBundle(parsed, ttl: ttl?.duration, customer: customer,
                                               idempotencyKey: idempotencyKey)
        } catch {
            // Name the line the server refused.
            switch error {
            case .outOfStock(let available, let line) where line < parsed.count:
                throw CLIError("out of stock on \(parsed[line].sku) (\(available) available)",
                               code: ExitStatus.outOfStock)
            case .unknownSKU(let line) where line < parsed.count:
                throw CLIError("unknown SKU \(parsed[line].sku)", code: ExitStatus.failure)
            case .customerLimit(let remaining, let line) where line < parsed.count:
                throw CLIError("per-customer limit reached on \(parsed[line].sku) (\(remaining) more allowed)",
                               code: ExitStatus.limitExceeded)
            default: throw error
            }
        }
        let left = expiresIn(r.expiresAtMs)
        emit(options,
             json: .object([("token", .string(r.token.description)),
                            ("lines", .array(parsed.map { .object([("sku", .string($0.sku)),
                                                                   ("quantity", .int(Int64($0.quantity)))]) })),
                            ("expires_in_ms", .uint(left))]),
             human: formatPairs([("token", r.token.description),
                                 ("lines", parsed.map { "\($0.sku):\($0.quantity)" }.joined(separator: " ")),
                                 ("expires in", seconds(left))]))
    }
}

struct ConfirmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "confirm", abstract: "Sell the units held by TOKEN (all, or --quantity of them).")

    @OptionGroup var options: GlobalOptions
    @Argument(help: ArgumentHelp("The reservation token (32 hex digits).", valueName: "token")) var reservation: String
    @Option(name: .customLong("order"), help: "Order reference passed on with the sale.") var orderReference: String?
    @Option(help: "Units to sell; the rest return to sale (default: all).") var quantity: Int?

    func validate() throws {
        _ = try Check.token(reservation)
        if let quantity { try Check.quantity(quantity, name: "--quantity") }
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let r = try await client.confirm(try Check.token(reservation), quantity: quantity ?? 0,
                                         orderReference: orderReference)
        emit(options,
             json: .object([("confirmed", .uint(UInt64(r.confirmed))), ("returned", .uint(UInt64(r.returned)))]),
             human: "confirmed \(r.confirmed) units, returned \(r.returned) to sale")
    }
}

struct ReleaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release", abstract: "Return the units held by TOKEN to sale.")

    @OptionGroup var options: GlobalOptions
    @Argument(help: ArgumentHelp("The reservation token (32 hex digits).", valueName: "token")) var reservation: String

    func validate() throws { _ = try Check.token(reservation) }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let units = try await client.release(try Check.token(reservation))
        emit(options, json: .object([("released", .int(Int64(units)))]),
             human: "released \(units) units")
    }
}

struct ExtendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extend", abstract: "Move TOKEN's deadline to now + --ttl (never earlier).")

    @OptionGroup var options: GlobalOptions
    @Argument(help: ArgumentHelp("The reservation token (32 hex digits).", valueName: "token")) var reservation: String
    @Option(help: ArgumentHelp("New hold time from now.", valueName: "duration"),
            transform: DurationValue.parse) var ttl: DurationValue

    func validate() throws {
        _ = try Check.token(reservation)
        try Check.ttl(ttl)
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let token = try Check.token(reservation)
        let at = try await client.extend(token, ttl: ttl.duration)
        let left = expiresIn(at)
        emit(options,
             json: .object([("token", .string(token.description)), ("expires_at_ms", .uint(at)),
                            ("expires_in_ms", .uint(left))]),
             human: "extended: expires in \(seconds(left))")
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "The server's counters.")

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let stats = try await client.stats()
        emit(options, json: .object(stats.map { ($0.name, .uint($0.value)) }),
             human: formatTable(["NAME", "VALUE"], stats.map { [$0.name, "\($0.value)"] }).joined(separator: "\n"))
    }
}
