@_exported import StockProtocol

/// A stockd client for checkout services and tools: async calls with typed
/// errors, pipelined over a small pool of connections.
///
/// Any number of tasks may call concurrently: each call takes the next
/// connection of the pool (round-robin), writes its request and waits for
/// the answer with the same request id, so thousands of calls share a few
/// connections. A dead connection is replaced on the next call that needs
/// it, after a backoff (50 ms doubling to 5 s) during which calls fail fast
/// with `unreachable`; each new connection sends HELLO with the credential.
///
/// ```swift
/// let stock = StockClient(host: "127.0.0.1", port: 7878, connections: 4)
/// let hold = try await stock.reserve(sku: "JACKET-RED-M", quantity: 1, customer: "c-42")
/// try await stock.confirm(hold.token, orderReference: "ORD-1001")
/// ```
public final class StockClient: Sendable {
    public let host: String
    public let port: Int
    let credential: [UInt8]
    let clientName: [UInt8]
    let timeoutNs: UInt64
    private let slots: [Slot]
    private let cursor = Counter()

    /// - Parameters:
    ///   - connections: pool size (1...64).
    ///   - credential: sent in HELLO on every (re)connect (`STOCKD_TOKEN`).
    ///   - timeout: per call, connect included.
    public init(host: String = "127.0.0.1", port: Int = 7878, connections: Int = 1, credential: String = "",
                timeout: Duration = .seconds(5), clientName: String = "stockclient") {
        precondition(connections >= 1 && connections <= 64, "connections must be 1...64")
        self.host = host
        self.port = port
        self.credential = Array(credential.utf8.prefix(Limits.maxCredentialLength))
        self.clientName = Array(clientName.utf8.prefix(Limits.maxShortBytes))
        let c = timeout.components
        timeoutNs = UInt64(max(0, c.seconds)) * 1_000_000_000 + UInt64(max(0, c.attoseconds) / 1_000_000_000)
        slots = (0..<connections).map { _ in Slot() }
    }

    deinit { close() }

    /// Closes every connection; calls in flight fail with `closed`.
    public func close() {
        for s in slots { s.close() }
    }

    // MARK: - calls

    /// PING: a round trip.
    public func ping() async throws(StockError) {
        _ = try await call(.ping)
    }

    /// HELLO's answer from the current connection: version, role, limits.
    public func serverInfo() async throws(StockError) -> HelloReply {
        let slot = slots[Int(cursor.next() % UInt64(slots.count))]
        return try await slot.connection(self).1
    }

    /// RESERVE: holds `quantity` units of `sku` for `ttl` (nil: the server default).
    public func reserve(sku: String, quantity: Int, ttl: Duration? = nil, customer: String? = nil,
                        idempotencyKey: String? = nil) async throws(StockError) -> Reservation {
        let r = Reserve(sku: try Self.sku(sku), quantity: try Self.quantity(quantity), ttlMs: try Self.ttl(ttl),
                        customer: try Self.short(customer), idempotencyKey: try Self.short(idempotencyKey))
        guard case .reserved(let reservation) = try await call(.reserve(r)) else { throw Self.unexpected }
        return reservation
    }

    /// RESERVE_BUNDLE: every line or none, under one token.
    public func reserveBundle(_ lines: [(sku: String, quantity: Int)], ttl: Duration? = nil, customer: String? = nil,
                              idempotencyKey: String? = nil) async throws(StockError) -> BundleReservation {
        var bundleLines: [BundleLine] = []
        for line in lines {
            bundleLines.append(BundleLine(sku: try Self.sku(line.sku), quantity: try Self.quantity(line.quantity)))
        }
        let b = ReserveBundle(lines: bundleLines, ttlMs: try Self.ttl(ttl), customer: try Self.short(customer),
                              idempotencyKey: try Self.short(idempotencyKey))
        guard case .bundleReserved(let r) = try await call(.reserveBundle(b)) else { throw Self.unexpected }
        return r
    }

    /// CONFIRM: sells the held units (`quantity` 0: all of them; fewer returns the rest).
    @discardableResult
    public func confirm(_ token: Token, quantity: Int = 0, orderReference: String? = nil)
        async throws(StockError) -> ConfirmReply {
        guard quantity >= 0, quantity <= Int(Limits.maxQuantity) else { throw .quantityInvalid }
        let c = Confirm(token: token, quantity: UInt32(quantity), orderReference: try Self.short(orderReference))
        guard case .confirmed(let reply) = try await call(.confirm(c)) else { throw Self.unexpected }
        return reply
    }

    /// RELEASE: returns the units to sale; answers how many.
    @discardableResult
    public func release(_ token: Token) async throws(StockError) -> Int {
        guard case .released(let units) = try await call(.release(token)) else { throw Self.unexpected }
        return Int(units)
    }

    /// EXTEND: moves the deadline to now + `ttl` (never earlier); answers the deadline (Unix ms).
    @discardableResult
    public func extend(_ token: Token, ttl: Duration) async throws(StockError) -> UInt64 {
        guard case .extended(let at) = try await call(.extend(Extend(token: token, ttlMs: try Self.ttl(ttl))))
        else { throw Self.unexpected }
        return at
    }

    /// STOCK_GET.
    public func stock(_ sku: String) async throws(StockError) -> StockInfo {
        guard case .stock(let info) = try await call(.stockGet(try Self.sku(sku))) else { throw Self.unexpected }
        return info
    }

    /// STOCK_SET (creates the SKU if new); with `expected` it is a compare-and-set.
    @discardableResult
    public func setStock(_ sku: String, onHand: UInt64, expected: UInt64? = nil, lowStockThreshold: UInt32? = nil,
                         perCustomerLimit: UInt32? = nil) async throws(StockError) -> StockInfo {
        let s = StockSet(sku: try Self.sku(sku), onHand: onHand, expectedOnHand: expected,
                         lowStockThreshold: lowStockThreshold, perCustomerLimit: perCustomerLimit)
        guard case .stock(let info) = try await call(.stockSet(s)) else { throw Self.unexpected }
        return info
    }

    /// STOCK_ADJUST: restock (positive) or shrink (negative, available units only).
    @discardableResult
    public func adjustStock(_ sku: String, delta: Int64, reason: AdjustReason = .unspecified)
        async throws(StockError) -> StockInfo {
        let a = StockAdjust(sku: try Self.sku(sku), delta: delta, reason: reason)
        guard case .stock(let info) = try await call(.stockAdjust(a)) else { throw Self.unexpected }
        return info
    }

    /// BACKUP_RELEASE: puts `quantity` backup units of `sku` on sale (nil: all of them).
    @discardableResult
    public func releaseBackup(_ sku: String, quantity: UInt64? = nil) async throws(StockError) -> StockInfo {
        if let quantity, quantity == 0 { throw .quantityInvalid }  // 0 on the wire means "all"
        let m = BackupMove(sku: try Self.sku(sku), quantity: quantity ?? 0)
        guard case .stock(let info) = try await call(.backupRelease(m)) else { throw Self.unexpected }
        return info
    }

    /// BACKUP_HOLD: takes `quantity` available units of `sku` off sale as backup.
    @discardableResult
    public func holdBackup(_ sku: String, quantity: UInt64) async throws(StockError) -> StockInfo {
        let m = BackupMove(sku: try Self.sku(sku), quantity: quantity)
        guard case .stock(let info) = try await call(.backupHold(m)) else { throw Self.unexpected }
        return info
    }

    /// STAGE: a show's catalog, every line applied or none (`stageRefused`
    /// lists the lines the server refused). The whole stage must fit one
    /// frame: `stageFrameBytes` tells how large it is.
    @discardableResult
    public func stage(_ lines: [StageLine]) async throws(StockError) -> StageReply {
        guard !lines.isEmpty, lines.count <= Limits.maxStageLines else { throw .invalidArgument }
        guard case .staged(let reply) = try await call(.stage(Stage(lines: lines))) else { throw Self.unexpected }
        return reply
    }

    /// Bytes of the STAGE frame for `lines`, length prefix and header included
    /// (header included; compare with `serverInfo().maxFrame`).
    public static func stageFrameBytes(_ lines: [StageLine]) -> Int {
        Limits.headerSize + 2 + lines.reduce(0) { $0 + $1.encodedSize }
    }

    /// STOCK_LIST: one page; pass `nextCursor` back until it is `Limits.listEnd`.
    public func listStock(cursor: UInt32 = 0, limit: Int = 0) async throws(StockError) -> StockPage {
        guard limit >= 0, limit <= Int(Limits.maxListPage) else { throw .invalidArgument }
        guard case .stockPage(let page) = try await call(.stockList(StockList(cursor: cursor, limit: UInt16(limit))))
        else { throw Self.unexpected }
        return page
    }

    /// Every SKU, page after page.
    public func listAllStock() async throws(StockError) -> [StockEntry] {
        var all: [StockEntry] = []
        var cursor: UInt32 = 0
        repeat {
            let page = try await listStock(cursor: cursor, limit: Int(Limits.maxListPage))
            all += page.entries
            cursor = page.nextCursor
        } while cursor != Limits.listEnd
        return all
    }

    /// STATS: the server's named counters.
    public func stats() async throws(StockError) -> [(name: String, value: UInt64)] {
        guard case .stats(let entries) = try await call(.stats) else { throw Self.unexpected }
        return entries.map { ($0.name.string, $0.value) }
    }

    // MARK: - plumbing

    private static let unexpected = StockError.protocolError("answer does not match the request")

    /// Sends one request on the next connection; maps failures to `StockError`.
    func call(_ request: Request) async throws(StockError) -> ResponseBody {
        let slot = slots[Int(cursor.next() % UInt64(slots.count))]
        let (connection, _) = try await slot.connection(self)
        let response = try await connection.call(request, timeoutNs: timeoutNs)
        if case .failure(let status, let detail) = response.body {
            if status.closesConnection { slot.discard(connection) }
            throw StockError(status: status, detail: detail)
        }
        return response.body
    }

    /// Opens a connection and says HELLO.
    fileprivate func connect() async throws(StockError) -> (ClientConnection, HelloReply) {
        let c = try ClientConnection.open(host: host, port: port, timeoutMs: Int(timeoutNs / 1_000_000))
        let hello = Hello(clientName: clientName, credential: credential)
        let response: Response
        do { response = try await c.call(.hello(hello), timeoutNs: timeoutNs) } catch {
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
        var backoffNs: UInt64 = 0
        var retryAtNs: UInt64 = 0
        var lastError: StockError?
    }

    private let state = Locked(State())
    static let minBackoffNs: UInt64 = 50_000_000
    static let maxBackoffNs: UInt64 = 5_000_000_000

    func connection(_ client: StockClient) async throws(StockError) -> (ClientConnection, HelloReply) {
        let now = Socket.nowNs()
        let current = state.with { s -> Result<(ClientConnection, HelloReply)?, StockError> in
            if let c = s.connection, let h = s.hello, c.isAlive { return .success((c, h)) }
            s.connection = nil
            if now < s.retryAtNs, let e = s.lastError { return .failure(e) }
            return .success(nil)
        }
        switch current {
        case .failure(let e): throw e
        case .success(let c?): return c
        case .success(nil): break
        }
        do {
            let (c, hello) = try await client.connect()
            // Concurrent callers may have connected this slot meanwhile: keep
            // the first live connection (others may already be using it).
            let winner = state.with { s -> (ClientConnection, HelloReply) in
                if let existing = s.connection, let h = s.hello, existing.isAlive { return (existing, h) }
                s.connection = c
                s.hello = hello
                s.backoffNs = 0
                s.lastError = nil
                return (c, hello)
            }
            if winner.0 !== c { c.close() }
            return winner
        } catch {
            state.with { s in
                s.backoffNs = s.backoffNs == 0 ? Slot.minBackoffNs : min(s.backoffNs * 2, Slot.maxBackoffNs)
                s.retryAtNs = Socket.nowNs() + s.backoffNs
                s.lastError = error.isServerRejection ? error : .unreachable("\(error) (retrying after backoff)")
            }
            throw error
        }
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
