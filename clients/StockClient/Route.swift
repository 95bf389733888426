import StockProtocol

/// Which node of a replicated cluster a client talks to (docs/replication.md §7).
///
/// The configured endpoints are tried in order; a `NOT_PRIMARY` answer
/// names the primary (and its epoch), and the client moves there — unless
/// the epoch is below the highest it has seen: a node that stale cannot
/// redirect it backwards, so the client tries its next endpoint instead.
/// Each move bumps `generation`; a pool connection made for an older
/// generation is replaced on its next call.
struct Route: Sendable {
    /// Every configured node, the first one `Configuration.host:port`.
    let endpoints: [Endpoint]
    /// Where connections go now.
    private(set) var current: Endpoint
    /// The configured endpoint tried last (the next rotation starts after it).
    private var index = 0
    private(set) var generation: UInt64 = 0
    /// The highest epoch a NOT_PRIMARY told this client of.
    private(set) var highestEpoch: UInt64 = 0

    struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        var host: String
        var port: Int
        var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

        /// `host:port` (or `[v6]:port`); nil if it is not one.
        init?(_ text: String) {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
                  (1...65_535).contains(port) else { return nil }
            var host = String(text[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else { return nil }
            self.host = host
            self.port = port
        }

        init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    init(endpoints: [Endpoint]) {
        precondition(!endpoints.isEmpty, "a client has at least one endpoint")
        self.endpoints = endpoints
        current = endpoints[0]
    }

    /// The node in use could not be reached: the next configured one.
    mutating func rotate() {
        guard endpoints.count > 1 else { return }
        index = (index + 1) % endpoints.count
        current = endpoints[index]
        generation &+= 1
    }

    /// A NOT_PRIMARY answer: follow it, or rotate if it is stale or names no primary.
    /// Returns where the next attempt goes.
    @discardableResult
    mutating func notPrimary(epoch: UInt64, primary: ShortBytes) -> Endpoint {
        guard epoch >= highestEpoch, let target = Endpoint(primary.string) else {
            rotate()
            return current
        }
        highestEpoch = epoch
        if target != current {
            current = target
            generation &+= 1
        }
        return current
    }
}
