import StockProtocol

extension StockClient {
    /// Everything a `StockClient` is made from, checked before it is used:
    /// `init` and `validate()` throw `ConfigurationError` for a value the
    /// client could not work with, instead of stopping the process.
    ///
    /// The fields are `var`s, so a value changed after `init` is checked
    /// again by `StockClient(configuration:logger:)`.
    public struct Configuration: Sendable, Equatable, CustomStringConvertible {
        /// Most connections one client pools (each has its own I/O thread).
        public static let maxConnections = 64
        /// Longest call timeout, connect timeout or backoff accepted: beyond a
        /// day a value is a unit mistake, not a wish.
        public static let maxTimeout: Duration = .seconds(86_400)

        /// Host name or IP address of stockd (IPv6 with or without brackets).
        public var host: String
        /// TCP port, 1...65535.
        public var port: Int
        /// Connections in the pool, 1...`maxConnections`; calls go round-robin.
        public var connections: Int
        /// Sent in HELLO on every (re)connect (`STOCKD_TOKEN`); at most `Limits.maxCredentialLength` bytes.
        public var credential: String
        /// Sent in HELLO (the server logs it); at most `Limits.maxShortBytes` bytes.
        public var clientName: String
        /// A call's deadline when it is given none: from the call's start to its
        /// answer, a (re)connect and HELLO included. Above zero.
        public var callTimeout: Duration
        /// Longest a (re)connect may take (name resolution, TCP connect), within
        /// the call's deadline. Above zero.
        public var connectTimeout: Duration
        /// Waits between failed connects of one pool connection.
        public var reconnectBackoff: Backoff
        /// The other nodes of a replicated cluster, `host:port` each (docs/replication.md §7): tried in
        /// order after `host:port` when the node in use cannot be reached or names no primary. A
        /// `NOT_PRIMARY` answer is followed to the primary it names. Empty: a single server.
        public var otherEndpoints: [String] = []

        /// Exponential backoff with full jitter: after the n-th failure in a
        /// row the wait is drawn at random from 0 up to min(`cap`, `base` × 2ⁿ⁻¹),
        /// so clients that lost the same server do not come back in step.
        public struct Backoff: Sendable, Equatable {
            public var base: Duration
            public var cap: Duration

            public init(base: Duration = .milliseconds(50), cap: Duration = .seconds(5)) {
                self.base = base
                self.cap = cap
            }

            /// The wait after `failures` (1 or more) failures in a row, in nanoseconds.
            func waitNs(afterFailures failures: Int) -> UInt64 {
                let capNs = cap.clampedNanoseconds
                var ceiling = min(base.clampedNanoseconds, capNs)
                var n = 1
                while n < failures && ceiling < capNs {
                    ceiling = ceiling > capNs / 2 ? capNs : ceiling * 2
                    n += 1
                }
                return UInt64.random(in: 0...ceiling)
            }
        }

        /// A checked configuration; throws `ConfigurationError` naming the first bad field.
        public init(host: String = "127.0.0.1", port: Int = 7878, connections: Int = 1, credential: String = "",
                    clientName: String = "stockclient", callTimeout: Duration = .seconds(5),
                    connectTimeout: Duration = .seconds(5), reconnectBackoff: Backoff = Backoff())
            throws(ConfigurationError)
        {
            self.init(unchecked: host, port: port, connections: connections, credential: credential,
                      clientName: clientName, callTimeout: callTimeout, connectTimeout: connectTimeout,
                      reconnectBackoff: reconnectBackoff)
            try validate()
        }

        /// For the original non-throwing `StockClient.init`, which keeps its own rules.
        init(unchecked host: String, port: Int, connections: Int, credential: String, clientName: String,
             callTimeout: Duration, connectTimeout: Duration, reconnectBackoff: Backoff) {
            self.host = host
            self.port = port
            self.connections = connections
            self.credential = credential
            self.clientName = clientName
            self.callTimeout = callTimeout
            self.connectTimeout = connectTimeout
            self.reconnectBackoff = reconnectBackoff
        }

        /// Throws `ConfigurationError` for the first field out of its range.
        public func validate() throws(ConfigurationError) {
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            guard !bare.isEmpty, bare.utf8.count <= 255, !bare.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F })
            else { throw ConfigurationError("host", "\"\(host)\" is not a host name or address") }
            guard (1...65_535).contains(port) else { throw ConfigurationError("port", "\(port) is outside 1...65535") }
            guard (1...Self.maxConnections).contains(connections) else {
                throw ConfigurationError("connections", "\(connections) is outside 1...\(Self.maxConnections)")
            }
            guard credential.utf8.count <= Limits.maxCredentialLength else {
                throw ConfigurationError("credential", "longer than \(Limits.maxCredentialLength) bytes")
            }
            guard clientName.utf8.count <= Limits.maxShortBytes else {
                throw ConfigurationError("clientName", "longer than \(Limits.maxShortBytes) bytes")
            }
            try Self.check("callTimeout", callTimeout)
            try Self.check("connectTimeout", connectTimeout)
            try Self.check("reconnectBackoff.base", reconnectBackoff.base)
            try Self.check("reconnectBackoff.cap", reconnectBackoff.cap)
            guard reconnectBackoff.cap >= reconnectBackoff.base else {
                throw ConfigurationError("reconnectBackoff", "cap \(reconnectBackoff.cap) is below base \(reconnectBackoff.base)")
            }
            guard otherEndpoints.count <= Self.maxConnections else {
                throw ConfigurationError("otherEndpoints", "more than \(Self.maxConnections)")
            }
            for e in otherEndpoints where Route.Endpoint(e) == nil {
                throw ConfigurationError("otherEndpoints", "\"\(e)\" is not host:port")
            }
        }

        /// Every field but the credential, which is never printed (a configuration may be logged).
        public var description: String {
            "\(host):\(port) connections=\(connections) client=\(clientName) credential="
                + (credential.isEmpty ? "none" : "(\(credential.utf8.count) bytes)")
                + " callTimeout=\(callTimeout) connectTimeout=\(connectTimeout)"
                + " backoff=\(reconnectBackoff.base)...\(reconnectBackoff.cap)"
                + (otherEndpoints.isEmpty ? "" : " others=\(otherEndpoints.joined(separator: ","))")
        }

        static func check(_ field: String, _ d: Duration) throws(ConfigurationError) {
            guard d > .zero, d <= maxTimeout else {
                throw ConfigurationError(field, "\(d) is not above zero and at most \(maxTimeout)")
            }
        }
    }

    /// A `Configuration` field out of range: which one, and why.
    public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
        /// The field's name, e.g. `port` or `reconnectBackoff.cap`.
        public let field: String
        public let reason: String

        init(_ field: String, _ reason: String) {
            self.field = field
            self.reason = reason
        }

        public var description: String { "StockClient configuration: \(field): \(reason)" }
    }
}

extension Duration {
    /// Whole nanoseconds, 0 for a negative duration, clamped to UInt64.
    var clampedNanoseconds: UInt64 {
        let c = components
        guard c.seconds >= 0, c.attoseconds >= 0 else { return 0 }
        let (s, overflow) = UInt64(c.seconds).multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? UInt64.max : s &+ UInt64(c.attoseconds / 1_000_000_000)
    }
}
