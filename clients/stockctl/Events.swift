import ArgumentParser
import Foundation
import StockClient

/// `stockctl events`: the event feed, one line per event.
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Print the event feed: confirmed orders, releases, expiries, stock changes, alerts.",
        discussion: """
            One line per event (with --json: one JSON object per line: offset, kind, time, time_ms, sku, \
            quantity, token, order, customer, line, lines, aux). Without --follow, prints the events up to \
            the feed's end when it starts, then exits 0; with --follow, keeps printing (and resumes after a \
            dropped connection or a server restart without missing any) until interrupted. Kinds: \
            \(EventKind.allCases.dropFirst().map(\.name).joined(separator: ", ")).
            """)

    @OptionGroup var options: GlobalOptions
    @Option(help: "First offset: a number, 'oldest', or 'now' (default: oldest without --follow, now with it).")
    var from: String?
    @Option(help: "Only this kind (repeatable).") var kind: [String] = []
    @Option(help: "Only SKUs starting with this.") var sku: String = ""
    @Flag(help: "Keep printing new events as they happen.") var follow = false

    func parsedKinds() throws -> Set<EventKind> {
        var kinds = Set<EventKind>()
        for k in kind {
            guard let e = EventKind(name: k), e != .progress else {
                throw ValidationError("--kind \(k): not one of \(EventKind.allCases.dropFirst().map(\.name).joined(separator: ", "))")
            }
            kinds.insert(e)
        }
        return kinds
    }

    func position() throws -> FeedPosition {
        switch from {
        case nil: return follow ? .now : .oldest
        case "oldest": return .oldest
        case "now": return .now
        case let s?:
            guard let n = UInt64(s), n >= 1 else { throw ValidationError("--from \(s): expected an offset >= 1, oldest or now") }
            return .offset(n)
        }
    }

    func validate() throws {
        _ = try parsedKinds()
        _ = try position()
        if !sku.isEmpty { try Check.sku(sku) }
    }

    func run() async throws {
        let client = try options.makeClient()
        defer { client.close() }
        let filter = EventFilter(kinds: try parsedKinds(), skuPrefix: sku, includeProgress: true)
        let feed = try await client.events(from: try position(), filter: filter, resume: follow)
        defer { feed.close() }
        let end = feed.end
        if !follow && feed.start > end { return }  // nothing up to the end
        for try await e in feed {
            if e.kind != .progress {
                print(options.json ? Self.json(e).rendered : Self.human(e))
                if follow { fflush(nil) }  // a pipe reader sees each event as it happens
            }
            if !follow && e.offset >= end { break }
        }
        fflush(nil)
    }

    static func json(_ e: FeedEvent) -> JSON {
        let token = e.token == Token(slot: 0, generation: 0, secret: 0) ? JSON.null : .string(e.token.description)
        return .object([
            ("offset", .uint(e.offset)), ("kind", .string(e.kind.name)), ("time", .string(isoTime(e.timeMs))),
            ("time_ms", .uint(e.timeMs)), ("sku", e.sku.isEmpty ? .null : .string(e.sku.string)),
            ("quantity", .int(e.quantity)), ("token", token),
            ("order", e.order.isEmpty ? .null : .string(e.order.string)),
            ("customer", e.customer.isEmpty ? .null : .string(e.customer.string)),
            ("line", .uint(UInt64(e.line))), ("lines", .uint(UInt64(e.lines))), ("aux", .uint(e.aux)),
        ])
    }

    static func human(_ e: FeedEvent) -> String {
        var parts = ["#\(e.offset)", isoTime(e.timeMs), e.kind.name]
        if !e.sku.isEmpty { parts.append(e.sku.string) }
        switch e.kind {
        case .stockSet: parts.append("on_hand=\(e.quantity)")
        case .stockAdjusted: parts.append("delta=\(e.quantity > 0 ? "+" : "")\(e.quantity) reason=\(e.aux)")
        case .reserved, .released, .expired: parts.append("qty=\(e.quantity)")
        case .confirmed: parts.append("qty=\(e.quantity)" + (e.aux > 0 ? " returned=\(e.aux)" : ""))
        case .extended: parts.append("until=\(isoTime(e.aux))")
        case .lowStock, .backInStock: parts.append("available=\(e.quantity)")
        case .backupChanged: parts.append("backup=\(e.aux) change=\(e.quantity > 0 ? "+" : "")\(e.quantity)")
        // The node id rides in `order` (FeedEvent): named for what it is, not printed as an order.
        case .termStarted: return parts.joined(separator: " ") + " epoch=\(e.quantity) node=\(e.order.string)"
        case .soldOut, .progress: break
        }
        if e.kind.rawValue >= EventKind.reserved.rawValue && e.kind.rawValue <= EventKind.extended.rawValue {
            parts.append("token=\(e.token.description)")
            if e.lines > 1 { parts.append("line=\(Int(e.line) + 1)/\(e.lines)") }
        }
        if !e.order.isEmpty { parts.append("order=\(e.order.string)") }
        if !e.customer.isEmpty { parts.append("customer=\(e.customer.string)") }
        return parts.joined(separator: " ")
    }
}

/// ISO-8601 UTC with milliseconds, e.g. 2026-11-27T05:12:03.042Z.
func isoTime(_ ms: UInt64) -> String {
    var t = time_t(ms / 1000)
    var tm = tm()
    gmtime_r(&t, &tm)
    return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, Int32(ms % 1000))
}
