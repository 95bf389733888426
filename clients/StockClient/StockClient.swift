@_exported import StockProtocol
import Logging

/// A stockd client for checkout services and tools: async calls with typed
/// errors, pipelined over a small pool of connections.
///
/// Any number of tasks may call concurrently: each call takes the next
/// connection of the pool (round-robin), writes its request and waits for
/// the answer with the same request id, so thousands of calls share a few
/// connections. A dead connection is replaced on the next call that needs
/// it, after a backoff with full jitter (`Configuration.reconnectBackoff`)
/// during which calls fail fast with `unreachable`; each new connection
/// sends HELLO with the credential. A credential the server refuses
/// (`AUTH_FAILED`) or a protocol version it does not speak
/// (`UNSUPPORTED_VERSION`) is a configuration error: every later call fails
/// with it at once, and the client never connects again.
///
/// ```swift
/// let stock = try StockClient(configuration: .init(host: "127.0.0.1", port: 7878, connections: 4))
/// let hold = try await stock.reserve(sku: "JACKET-RED-M", quantity: 1, customer: "c-42",
///                                    idempotencyKey: "checkout-cart-9-1", timeout: .seconds(2))
/// try await stock.confirm(hold.token, orderReference: "ORD-1001")
/// await stock.shutdown()
/// ```
///
/// **Errors every call may throw**, besides those its own documentation names:
/// - the outcome is unknown (the request may have taken effect): `timeout`
///   (its deadline passed), `cancelled` (its task was cancelled),
///   `connectionLost`, `protocolError`;
/// - it was not sent: `unreachable` (no connection, or during a reconnect
///   backoff), `closed` (`close()` or `shutdown()`), `invalidArgument` (a
///   `timeout` not above zero, or a string too long for the wire);
/// - the server refused it, with no effect: `rejected(.authFailed)`,
///   `rejected(.unsupportedVersion)` (configuration errors, not retried),
///   `rejected(.unauthenticated)`, `rejected(.forbidden)`,
///   `rejected(.shuttingDown)`, `rejected(.busy)`, `rejected(.rateLimited)`,
///   `rejected(.storageFailed)` (state changes only), `rejected(.internal)`.
///
/// Cancellation: a cancelled task's call returns at once with `cancelled`;
/// its connection stays usable and a late answer is never given to another call.
public final class StockClient: Sendable {
    public let host: String
    public let port: Int
    /// What the client was made from (the original initialiser fills it in unchecked).
    public let configuration: Configuration
    /// Where connects, reconnects, backoffs and feed resumes are logged.
    public let logger: Logger
    let credential: [UInt8]
    let clientName: [UInt8]
    /// The default call deadline, in nanoseconds.
    let timeoutNs: UInt64
    private let slots: [Slot]
    private let cursor = Counter()
    /// The node calls go to (several with `otherEndpoints`; moved by NOT_PRIMARY answers).
    let route: Locked<Route>
    private let lifecycle = Locked(Lifecycle())
    /// Pool connections and feed sessions with a live I/O thread, for `shutdown()`.
    let connections = ResourceRegistry()
    let feedSessions = ResourceRegistry()

    private struct Lifecycle {
        var shuttingDown = false
        var inFlight = 0
        var drained: [OnceResult<Void>] = []
        /// AUTH_FAILED or UNSUPPORTED_VERSION: the same credential and version never succeed.
        var fatal: StockError?
    }

    /// The label of the default logger, which discards everything.
    public static let loggerLabel = "stockd.client"

    /// A logger that discards everything (the default: a library logs only where it is asked to).
    public static var noOpLogger: Logger { Logger(label: loggerLabel, factory: { _ in SwiftLogNoOpLogHandler() }) }

    /// A client from a checked configuration. Connects lazily, on the first call.
    ///
    /// - Throws: `ConfigurationError` if a field is out of range (the
    ///   configuration is validated again, as its fields are mutable).
    public convenience init(configuration: Configuration, logger: Logger = StockClient.noOpLogger)
        throws(ConfigurationError)
    {
        try configuration.validate()
        self.init(checked: configuration, logger: logger)
    }

    /// The original initialiser, kept as it was: `connections` outside 1...64
    /// stops the process, a credential or client name too long is cut to fit.
    /// Prefer `init(configuration:logger:)`, which throws instead.
    ///
    /// - Parameters:
    ///   - connections: pool size (1...64).
    ///   - credential: sent in HELLO on every (re)connect (`STOCKD_TOKEN`).
    ///   - timeout: per call, connect included.
    public convenience init(host: String = "127.0.0.1", port: Int = 7878, connections: Int = 1,
                            credential: String = "", timeout: Duration = .seconds(5),
                            clientName: String = "stockclient") {
        precondition((1...Configuration.maxConnections).contains(connections), "connections must be 1...64")
        let configuration = Configuration(unchecked: host, port: port, connections: connections,
                                          credential: credential, clientName: clientName, callTimeout: timeout,
                                          connectTimeout: timeout, reconnectBackoff: .init())
        self.init(checked: configuration, logger: Self.noOpLogger)
    }

    private init(checked c: Configuration, logger: Logger) {
        configuration = c
        host = c.host
        port = c.port
        var logger = logger
        logger[metadataKey: "stockd.address"] = "\(c.host):\(c.port)"
        self.logger = logger
        credential = Array(c.credential.utf8.prefix(Limits.maxCredentialLength))
        clientName = Array(c.clientName.utf8.prefix(Limits.maxShortBytes))
        timeoutNs = c.callTimeout.clampedNanoseconds
        slots = (0..<c.connections).map { Slot(index: $0) }
        route = Locked(Route(endpoints: [Route.Endpoint(host: c.host, port: c.port)]
                             + c.otherEndpoints.compactMap { Route.Endpoint($0) }))
    }

    deinit { close() }

    /// Closes every pool connection; calls in flight fail with `closed`.
    /// Not final: a later call connects again. Event feeds are not touched
    /// (close them, or use `shutdown()`, which ends everything).
    public func close() {
        for s in slots { s.close() }
    }

    /// Ends the client for good: new calls and feeds fail with `closed` at
    /// once; every event feed ends (a waiting `next()` returns nil); calls in
    /// flight get up to `gracePeriod` for their answers, then fail with
    /// `closed`. Returns once every connection's I/O thread has ended and its
    /// socket is closed. Calling it again returns at once.
    public func shutdown(gracePeriod: Duration = .seconds(5)) async {
        let drained = OnceResult<Void>()
        let first = lifecycle.with { s -> Bool in
            defer { s.shuttingDown = true }
            if s.inFlight == 0 { drained.resume(.success(())) } else { s.drained.append(drained) }
            return !s.shuttingDown
        }
        if first { logger.debug("stockd.client: shutting down", metadata: ["stockd.grace": "\(gracePeriod)"]) }
        let feeds = feedSessions.closeAll()
        let timer = Task {
            try? await Task.sleep(for: gracePeriod)
            drained.resume(.success(()))
        }
        _ = await drained.wait()
        timer.cancel()
        for s in slots { s.close() }
        let pool = connections.closeAll()
        for r in pool + feeds { await r.exited() }
        if first { logger.debug("stockd.client: shut down") }
    }

    /// Whether `shutdown()` was called.
    var isShutDown: Bool { lifecycle.with { $0.shuttingDown } }

    // MARK: - calls

    /// PING: a round trip. Throws only the errors every call may throw.
    public func ping(timeout: Duration? = nil) async throws(StockError) {
        _ = try await call(.ping, timeout: timeout)
    }

    /// HELLO's answer from the current connection: version, role, limits.
    /// Throws only the errors every call may throw (a connect happens here if needed).
    public func serverInfo(timeout: Duration? = nil) async throws(StockError) -> HelloReply {
        if Task.isCancelled { throw .cancelled }
        let deadline = try deadlineNs(timeout)
        try enter()
        defer { leave() }
        let slot = slots[Int(cursor.next() % UInt64(slots.count))]
        return try await slot.connection(self, deadlineNs: deadline).1
    }

    /// RESERVE: holds `quantity` units of `sku` for `ttl` (nil: the server default).
    ///
    /// With an `idempotencyKey`, a retry after an unknown outcome (`timeout`,
    /// `cancelled`, `connectionLost`) answers the same token: retry with the
    /// same key and parameters (protocol/CLIENTS.md §5).
    /// - Throws: `outOfStock`, `unknownSKU`, `customerLimit`, `idempotencyConflict`,
    ///   `invalidSKU`, `quantityInvalid`, `ttlTooLong`, `rejected(.atCapacity)`,
    ///   and the errors every call may throw.
    public func reserve(sku: String, quantity: Int, ttl: Duration? = nil, customer: String? = nil,
                        idempotencyKey: String? = nil, timeout: Duration? = nil)
        async throws(StockError) -> Reservation
    {
        let r = Reserve(sku: try Self.sku(sku), quantity: try Self.quantity(quantity), ttlMs: try Self.ttl(ttl),
                        customer: try Self.short(customer), idempotencyKey: try Self.short(idempotencyKey))
        guard case .reserved(let reservation) = try await call(.reserve(r), timeout: timeout) else {
            throw Self.unexpected
        }
        return reservation
    }

    /// RESERVE_BUNDLE: every line or none, under one token.
    /// - Throws: `outOfStock` and `unknownSKU` and `customerLimit` (with the
    ///   failing line), `idempotencyConflict`, `invalidSKU`, `quantityInvalid`,
    ///   `ttlTooLong`, `invalidArgument` (too many lines), `rejected(.atCapacity)`,
    ///   and the errors every call may throw.
    public func reserveBundle(_ lines: [(sku: String, quantity: Int)], ttl: Duration? = nil, customer: String? = nil,
                              idempotencyKey: String? = nil, timeout: Duration? = nil)
        async throws(StockError) -> BundleReservation
    {
        var bundleLines: [BundleLine] = []
        for line in lines {
            bundleLines.append(BundleLine(sku: try Self.sku(line.sku), quantity: try Self.quantity(line.quantity)))
        }
        let b = ReserveBundle(lines: bundleLines, ttlMs: try Self.ttl(ttl), customer: try Self.short(customer),
                              idempotencyKey: try Self.short(idempotencyKey))
        guard case .bundleReserved(let r) = try await call(.reserveBundle(b), timeout: timeout) else {
            throw Self.unexpected
        }
        return r
    }

    /// CONFIRM: sells the held units (`quantity` 0: all of them; fewer returns the rest).
    /// Safe to retry after an unknown outcome.
    /// - Throws: `tokenUnknown`, `tokenExpired`, `tokenAlreadyConfirmed`,
    ///   `tokenAlreadyReleased`, `quantityInvalid`, and the errors every call may throw.
    @discardableResult
    public func confirm(_ token: Token, quantity: Int = 0, orderReference: String? = nil, timeout: Duration? = nil)
        async throws(StockError) -> ConfirmReply {
        guard quantity >= 0, quantity <= Int(Limits.maxQuantity) else { throw .quantityInvalid }
        let c = Confirm(token: token, quantity: UInt32(quantity), orderReference: try Self.short(orderReference))
        guard case .confirmed(let reply) = try await call(.confirm(c), timeout: timeout) else { throw Self.unexpected }
        return reply
    }

    /// RELEASE: returns the units to sale; answers how many. Safe to retry.
    /// - Throws: `tokenUnknown`, `tokenExpired`, `tokenAlreadyConfirmed`,
    ///   `tokenAlreadyReleased`, and the errors every call may throw.
    @discardableResult
    public func release(_ token: Token, timeout: Duration? = nil) async throws(StockError) -> Int {
        guard case .released(let units) = try await call(.release(token), timeout: timeout) else {
            throw Self.unexpected
        }
        return Int(units)
    }

    /// EXTEND: moves the deadline to now + `ttl` (never earlier); answers the
    /// deadline (Unix ms; `StockClient.date(unixMs:)` makes it a `Date`). Safe to retry.
    /// - Throws: `tokenUnknown`, `tokenExpired`, `tokenAlreadyConfirmed`,
    ///   `tokenAlreadyReleased`, `ttlTooLong`, and the errors every call may throw.
    @discardableResult
    public func extend(_ token: Token, ttl: Duration, timeout: Duration? = nil) async throws(StockError) -> UInt64 {
        let e = Extend(token: token, ttlMs: try Self.ttl(ttl))
        guard case .extended(let at) = try await call(.extend(e), timeout: timeout) else { throw Self.unexpected }
        return at
    }

    /// STOCK_GET.
    /// - Throws: `unknownSKU`, `invalidSKU`, and the errors every call may throw.
    public func stock(_ sku: String, timeout: Duration? = nil) async throws(StockError) -> StockInfo {
        guard case .stock(let info) = try await call(.stockGet(try Self.sku(sku)), timeout: timeout) else {
            throw Self.unexpected
        }
        return info
    }

    /// STOCK_SET (creates the SKU if new); with `expected` it is a compare-and-set.
    /// - Throws: `stockChanged` (compare-and-set lost), `invalidSKU`,
    ///   `invalidArgument`, `rejected(.atCapacity)` (catalog full), and the errors every call may throw.
    @discardableResult
    public func setStock(_ sku: String, onHand: UInt64, expected: UInt64? = nil, lowStockThreshold: UInt32? = nil,
                         perCustomerLimit: UInt32? = nil, timeout: Duration? = nil) async throws(StockError)
        -> StockInfo
    {
        let s = StockSet(sku: try Self.sku(sku), onHand: onHand, expectedOnHand: expected,
                         lowStockThreshold: lowStockThreshold, perCustomerLimit: perCustomerLimit)
        guard case .stock(let info) = try await call(.stockSet(s), timeout: timeout) else { throw Self.unexpected }
        return info
    }

    /// STOCK_ADJUST: restock (positive) or shrink (negative, available units only).
    /// Not idempotent: never resend it blindly after an unknown outcome.
    /// - Throws: `insufficientAvailable`, `unknownSKU`, `invalidSKU`,
    ///   `invalidArgument`, and the errors every call may throw.
    @discardableResult
    public func adjustStock(_ sku: String, delta: Int64, reason: AdjustReason = .unspecified, timeout: Duration? = nil)
        async throws(StockError) -> StockInfo {
        let a = StockAdjust(sku: try Self.sku(sku), delta: delta, reason: reason)
        guard case .stock(let info) = try await call(.stockAdjust(a), timeout: timeout) else { throw Self.unexpected }
        return info
    }

    /// BACKUP_RELEASE: puts `quantity` backup units of `sku` on sale (nil: all of them).
    /// - Throws: `insufficientBackup`, `unknownSKU`, `invalidSKU`,
    ///   `quantityInvalid` (0), and the errors every call may throw.
    @discardableResult
    public func releaseBackup(_ sku: String, quantity: UInt64? = nil, timeout: Duration? = nil)
        async throws(StockError) -> StockInfo {
        if let quantity, quantity == 0 { throw .quantityInvalid }  // 0 on the wire means "all"
        let m = BackupMove(sku: try Self.sku(sku), quantity: quantity ?? 0)
        guard case .stock(let info) = try await call(.backupRelease(m), timeout: timeout) else { throw Self.unexpected }
        return info
    }

    /// BACKUP_HOLD: takes `quantity` available units of `sku` off sale as backup.
    /// - Throws: `insufficientAvailable`, `unknownSKU`, `invalidSKU`,
    ///   `quantityInvalid`, and the errors every call may throw.
    @discardableResult
    public func holdBackup(_ sku: String, quantity: UInt64, timeout: Duration? = nil)
        async throws(StockError) -> StockInfo {
        let m = BackupMove(sku: try Self.sku(sku), quantity: quantity)
        guard case .stock(let info) = try await call(.backupHold(m), timeout: timeout) else { throw Self.unexpected }
        return info
    }

    /// STAGE: a show's catalog, every line applied or none (`stageRefused`
    /// lists the lines the server refused). The whole stage must fit one
    /// frame: `stageFrameBytes` tells how large it is.
    /// - Throws: `stageRefused`, `invalidArgument` (no lines, or too many),
    ///   `rejected(.frameTooLarge)`, and the errors every call may throw.
    @discardableResult
    public func stage(_ lines: [StageLine], timeout: Duration? = nil) async throws(StockError) -> StageReply {
        guard !lines.isEmpty, lines.count <= Limits.maxStageLines else { throw .invalidArgument }
        guard case .staged(let reply) = try await call(.stage(Stage(lines: lines)), timeout: timeout) else {
            throw Self.unexpected
        }
        return reply
    }

    /// Bytes of the STAGE frame for `lines`, length prefix and header included
    /// (header included; compare with `serverInfo().maxFrame`). Throws nothing.
    public static func stageFrameBytes(_ lines: [StageLine]) -> Int {
        Limits.headerSize + 2 + lines.reduce(0) { $0 + $1.encodedSize }
    }

    /// STOCK_LIST: one page; pass `nextCursor` back until it is `Limits.listEnd`.
    /// - Throws: `invalidArgument` (a `limit` above `Limits.maxListPage`), and the errors every call may throw.
    public func listStock(cursor: UInt32 = 0, limit: Int = 0, timeout: Duration? = nil)
        async throws(StockError) -> StockPage {
        guard limit >= 0, limit <= Int(Limits.maxListPage) else { throw .invalidArgument }
        let list = StockList(cursor: cursor, limit: UInt16(limit))
        guard case .stockPage(let page) = try await call(.stockList(list), timeout: timeout) else {
            throw Self.unexpected
        }
        return page
    }

    /// Every SKU, page after page (`timeout` applies to each page).
    /// Throws only the errors every call may throw.
    public func listAllStock(timeout: Duration? = nil) async throws(StockError) -> [StockEntry] {
        var all: [StockEntry] = []
        var cursor: UInt32 = 0
        repeat {
            let page = try await listStock(cursor: cursor, limit: Int(Limits.maxListPage), timeout: timeout)
            all += page.entries
            cursor = page.nextCursor
        } while cursor != Limits.listEnd
        return all
    }

    /// STATS: the server's named counters.
    /// Throws only the errors every call may throw (`rejected(.forbidden)` without admin rights).
    public func stats(timeout: Duration? = nil) async throws(StockError) -> [(name: String, value: UInt64)] {
        guard case .stats(let entries) = try await call(.stats, timeout: timeout) else { throw Self.unexpected }
        return entries.map { ($0.name.string, $0.value) }
    }

    /// CLUSTER_STATUS: this node's role, epoch, durable end and commit point, and — on a primary —
    /// each standby's ack and lag (docs/replication.md). A node without a cluster name answers
    /// role `.standalone`. Needs the viewer role.
    public func clusterStatus(timeout: Duration? = nil) async throws(StockError) -> ClusterStatus {
        guard case .clusterStatus(let s) = try await call(.clusterStatus, timeout: timeout) else { throw Self.unexpected }
        return s
    }

    // MARK: - plumbing

    private static let unexpected = StockError.protocolError("answer does not match the request")

    /// Sends one request on the next connection; maps failures to `StockError`.
    ///
    /// In a replicated cluster (docs/replication.md §7) it follows the primary within the call's
    /// deadline: a `NOT_PRIMARY` answer (no effect, safe to resend) moves the client to the node it
    /// names; a node that cannot be reached, when there are other endpoints, to the next one; and a
    /// connection lost under a request that is safe to send again (a RESERVE with an idempotency
    /// key, a read) sends it again; `NOT_ENOUGH_REPLICAS` (refused before execution) is tried again
    /// after a pause. Between rounds it waits a little (`followPause`), so a failover
    /// in progress — the old primary gone, no new one yet — is waited out, not hammered.
    func call(_ request: Request, timeout: Duration? = nil) async throws(StockError) -> ResponseBody {
        if Task.isCancelled { throw .cancelled }
        let deadline = try deadlineNs(timeout)
        try enter()
        defer { leave() }
        var moves = 0
        while true {
            let slot = slots[Int(cursor.next() % UInt64(slots.count))]
            let connection: ClientConnection
            do { (connection, _) = try await slot.connection(self, deadlineNs: deadline) } catch {
                guard case .unreachable = error, route.with({ $0.endpoints.count > 1 }),
                      await pauseBeforeMove(&moves, deadlineNs: deadline) else { throw error }
                continue
            }
            let response: Response
            do { response = try await connection.call(request, deadlineNs: deadline) } catch {
                guard error == .connectionLost, Self.safeToResend(request),
                      await pauseBeforeMove(&moves, deadlineNs: deadline) else { throw error }
                slot.discard(connection)
                continue
            }
            if case .failure(let status, let detail) = response.body {
                if status == .notPrimary, case .notPrimary(let epoch, let primary) = detail,
                   await pauseBeforeMove(&moves, deadlineNs: deadline) {
                    let to = route.with { $0.notPrimary(epoch: epoch, primary: primary) }
                    logger.info("stockd.client: not the primary; following", metadata: [
                        "stockd.epoch": "\(epoch)", "stockd.primary": "\(primary.string)", "stockd.next": "\(to)"])
                    continue
                }
                // Refused before it was executed (too few standbys in sync: a failover under way, or a
                // standby rejoining): safe to send again, after the same pauses, within the deadline.
                if status == .notEnoughReplicas, await pauseBeforeMove(&moves, deadlineNs: deadline) {
                    logger.debug("stockd.client: not enough replicas in sync; trying again")
                    continue
                }
                if status.closesConnection { slot.discard(connection) }
                throw StockError(status: status, detail: detail)
            }
            return response.body
        }
    }

    /// Whether a request whose connection was lost may be sent again: it changes nothing, or the
    /// server recognises the second one (a RESERVE's idempotency key). CONFIRM and RELEASE are not:
    /// the second would answer the fate the first decided as an error.
    static func safeToResend(_ r: Request) -> Bool {
        switch r {
        case .reserve(let x): !x.idempotencyKey.isEmpty
        case .reserveBundle(let x): !x.idempotencyKey.isEmpty
        case .ping, .stockGet, .stockList, .stats, .clusterStatus: true
        default: false
        }
    }

    /// The first move is at once, then 10 ms doubling to 200 ms; false when the deadline would pass
    /// (or after `maxMoves`).
    private func pauseBeforeMove(_ moves: inout Int, deadlineNs: UInt64) async -> Bool {
        moves += 1
        guard moves <= Self.maxMoves else { return false }
        let pauseNs: UInt64 = moves == 1 ? 0 : min(Self.followPauseCapNs, 10_000_000 << UInt64(min(moves - 2, 5)))
        guard Socket.nowNs() &+ pauseNs < deadlineNs else { return false }
        if pauseNs > 0 { try? await Task.sleep(nanoseconds: pauseNs) }
        return !Task.isCancelled
    }

    /// Moves one call makes at most (a bound besides its deadline), and the longest pause between two.
    static let maxMoves = 64
    static let followPauseCapNs: UInt64 = 200_000_000

    /// The monotonic deadline of a call given `timeout` (nil: the configured default).
    private func deadlineNs(_ timeout: Duration?) throws(StockError) -> UInt64 {
        let ns: UInt64
        if let timeout {
            guard timeout > .zero else { throw .invalidArgument }
            ns = timeout.clampedNanoseconds
        } else {
            ns = timeoutNs
        }
        let now = Socket.nowNs()
        return ns > UInt64.max - now ? UInt64.max : now + ns
    }

    /// Counts a call in flight, or refuses it once shut down or after a configuration error.
    private func enter() throws(StockError) {
        let refusal: StockError? = lifecycle.with { s in
            if s.shuttingDown { return .closed }
            if let fatal = s.fatal { return fatal }
            s.inFlight += 1
            return nil
        }
        if let refusal { throw refusal }
    }

    private func leave() {
        let drained = lifecycle.with { s -> [OnceResult<Void>] in
            s.inFlight -= 1
            guard s.inFlight == 0 else { return [] }
            defer { s.drained.removeAll() }
            return s.drained
        }
        for d in drained { d.resume(.success(())) }
    }

    /// Remembers a refusal that no reconnect can cure (AUTH_FAILED, UNSUPPORTED_VERSION).
    fileprivate func fail(permanently error: StockError) {
        let first = lifecycle.with { s -> Bool in
            defer { if s.fatal == nil { s.fatal = error } }
            return s.fatal == nil
        }
        if first {
            logger.error("stockd.client: the server refused this client's HELLO; not retrying",
                         metadata: ["stockd.error": "\(error)"])
        }
    }

    /// Opens a connection and says HELLO, both before `deadlineNs`.
    fileprivate func connect(to target: Route.Endpoint, deadlineNs: UInt64) async throws(StockError)
        -> (ClientConnection, HelloReply)
    {
        let connectBy = min(deadlineNs, Socket.nowNs() &+ configuration.connectTimeout.clampedNanoseconds)
        let c = try await ClientConnection.open(host: target.host, port: target.port, deadlineNs: connectBy,
                                                logger: logger, registry: connections)
        let hello = Hello(clientName: clientName, credential: credential)
        let response: Response
        do { response = try await c.call(.hello(hello), deadlineNs: deadlineNs) } catch {
            c.close()
            throw error
        }
        switch response.body {
        case .hello(let reply): return (c, reply)
        case .failure(let status, let detail):
            c.close()
            throw StockError(status: status, detail: detail)
        default:
            c.close()
            throw Self.unexpected
        }
    }

    static func sku(_ s: String) throws(StockError) -> SKU {
        guard let sku = SKU(s), sku.isValidSKU else { throw .invalidSKU }
        return sku
    }

    static func short(_ s: String?) throws(StockError) -> ShortBytes {
        guard let s else { return .empty }
        guard let b = ShortBytes(s) else { throw .invalidArgument }
        return b
    }

    static func quantity(_ q: Int) throws(StockError) -> UInt32 {
        guard q >= 1, q <= Int(Limits.maxQuantity) else { throw .quantityInvalid }
        return UInt32(q)
    }

    static func ttl(_ d: Duration?) throws(StockError) -> UInt32 {
        guard let d else { return 0 }
        let c = d.components
        let ms = c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
        guard ms >= 1, ms <= Int64(Limits.maxTTLCeilingMs) else { throw .ttlTooLong(maxMs: Limits.maxTTLCeilingMs) }
        return UInt32(ms)
    }
}

/// One pool position: its live connection, or when it may try again.
private final class Slot: Sendable {
    private struct State {
        var connection: ClientConnection?
        var hello: HelloReply?
        /// The route generation `connection` was made for (an older one is replaced).
        var generation: UInt64 = 0
        /// Connects that failed in a row (the backoff's exponent).
        var failures = 0
        var retryAtNs: UInt64 = 0
        var lastError: StockError?
        /// Whether this slot was connected before (a connect is then a reconnect, logged at info).
        var everConnected = false
    }

    let index: Int
    private let state = Locked(State())

    init(index: Int) { self.index = index }

    func connection(_ client: StockClient, deadlineNs: UInt64) async throws(StockError)
        -> (ClientConnection, HelloReply)
    {
        let now = Socket.nowNs()
        let (target, generation) = client.route.with { ($0.current, $0.generation) }
        var stale: ClientConnection?
        let current = state.with { s -> Result<(ClientConnection, HelloReply)?, StockError> in
            if let c = s.connection, let h = s.hello, c.isAlive, s.generation == generation { return .success((c, h)) }
            stale = s.connection
            s.connection = nil
            // A backoff belongs to the node that failed: a move to another one starts afresh.
            if now < s.retryAtNs, let e = s.lastError, s.generation == generation { return .failure(e) }
            return .success(nil)
        }
        stale?.retire()  // not close(): other callers may be waiting on it for answers
        switch current {
        case .failure(let e): throw e
        case .success(let c?): return c
        case .success(nil): break
        }
        do {
            let (c, hello) = try await client.connect(to: target, deadlineNs: deadlineNs)
            return adopt(c, hello, generation, client)
        } catch {
            record(error, generation, client)
            if case .unreachable = error { client.route.with { r in if r.generation == generation { r.rotate() } } }
            throw error
        }
    }

    /// Keeps the first live connection: concurrent callers may have connected
    /// this slot meanwhile, and others may already be using theirs.
    private func adopt(_ c: ClientConnection, _ hello: HelloReply, _ generation: UInt64, _ client: StockClient)
        -> (ClientConnection, HelloReply)
    {
        let (winner, reconnect) = state.with { s -> ((ClientConnection, HelloReply), Bool) in
            if let existing = s.connection, let h = s.hello, existing.isAlive, s.generation == generation {
                return ((existing, h), false)
            }
            defer { s.everConnected = true }
            s.connection = c
            s.hello = hello
            s.generation = generation
            s.failures = 0
            s.lastError = nil
            return ((c, hello), s.everConnected)
        }
        if winner.0 !== c {
            c.close()
        } else {
            let metadata: Logger.Metadata = ["stockd.slot": "\(index)", "stockd.role": "\(hello.role)"]
            if reconnect {
                client.logger.info("stockd.client: reconnected", metadata: metadata)
            } else {
                client.logger.debug("stockd.client: connected", metadata: metadata)
            }
        }
        return winner
    }

    /// After a failed connect: no backoff for the caller's own cancellation
    /// or a shut-down client; none either for a refusal no retry cures (the
    /// client remembers it); otherwise the next wait, with full jitter.
    private func record(_ error: StockError, _ generation: UInt64, _ client: StockClient) {
        if error == .cancelled || error == .closed { return }
        if error == .rejected(.authFailed) || error == .rejected(.unsupportedVersion) {
            client.fail(permanently: error)
            return
        }
        let backoff = client.configuration.reconnectBackoff
        let (waitNs, failures) = state.with { s -> (UInt64, Int) in
            if s.generation != generation { s.failures = 0 }
            s.generation = generation
            s.failures += 1
            let wait = backoff.waitNs(afterFailures: s.failures)
            s.retryAtNs = Socket.nowNs() &+ wait
            s.lastError = error.isServerRejection ? error : .unreachable("\(error) (retrying after backoff)")
            return (wait, s.failures)
        }
        client.logger.info("stockd.client: connect failed; backing off", metadata: [
            "stockd.slot": "\(index)", "stockd.error": "\(error)", "stockd.failures": "\(failures)",
            "stockd.backoff_ms": "\(waitNs / 1_000_000)",
        ])
    }

    func discard(_ c: ClientConnection) {
        state.with { s in if s.connection === c { s.connection = nil } }
        c.close()
    }

    func close() {
        state.with { s in
            s.connection?.close()
            s.connection = nil
        }
    }
}

/// A value behind a pthread mutex.
final class Locked<Value>: @unchecked Sendable {
    private let mutex = Mutex()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func with<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try mutex.with { try body(&value) }
    }
}

/// A thread-safe round-robin counter.
final class Counter: Sendable {
    private let value = Locked<UInt64>(0)
    func next() -> UInt64 { value.with { v in v &+= 1; return v } }
}

/// Something with an I/O thread: a pool connection or a feed session.
protocol IOResource: AnyObject, Sendable {
    func close()
    func exited() async
}

/// The I/O resources alive now, so that `shutdown()` can end them all and
/// wait for their threads. Each adds itself before its thread starts and
/// removes itself when the thread ends.
final class ResourceRegistry: Sendable {
    private struct State {
        var open = true
        var items: [ObjectIdentifier: any IOResource] = [:]
    }

    private let state = Locked(State())

    /// False once `closeAll()` ran: the resource must not start.
    func add(_ r: any IOResource) -> Bool {
        state.with { s in
            guard s.open else { return false }
            s.items[ObjectIdentifier(r)] = r
            return true
        }
    }

    func remove(_ r: any IOResource) {
        _ = state.with { s in s.items.removeValue(forKey: ObjectIdentifier(r)) }
    }

    /// Refuses new resources, closes every one alive, and returns them (to await their `exited()`).
    func closeAll() -> [any IOResource] {
        let all = state.with { s -> [any IOResource] in
            s.open = false
            return Array(s.items.values)
        }
        for r in all { r.close() }
        return all
    }
}
