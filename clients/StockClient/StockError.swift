import StockProtocol

/// Every way a call can fail. Server rejections (the server answered with a
/// status) are distinct from transport failures (`connectionLost`,
/// `unreachable`, `timeout`), after which the outcome of the request is
/// unknown — retry a RESERVE with the same idempotency key. `cancelled`
/// (the caller's task was cancelled) is a transport outcome too.
public enum StockError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not enough units; `available` is what there is now (`line` for bundles).
    case outOfStock(available: UInt64, line: Int)
    case unknownSKU(line: Int)
    /// Forged token, or its slot has since been reused.
    case tokenUnknown
    case tokenExpired
    case tokenAlreadyConfirmed
    case tokenAlreadyReleased
    /// Compare-and-set lost: on-hand is `current`.
    case stockChanged(current: UInt64)
    /// The customer may take `remaining` more units of the SKU on `line`.
    case customerLimit(remaining: UInt64, line: Int)
    case quantityInvalid
    case ttlTooLong(maxMs: UInt32)
    /// A shrink needs more than the `available` units.
    case insufficientAvailable(available: UInt64)
    case idempotencyConflict
    case invalidSKU
    case invalidArgument
    /// The event feed no longer holds the offsets asked for; `oldest` is the oldest it serves.
    case offsetCompacted(oldest: UInt64)
    /// The server keeps no journal (`--sync none`), so it has no event feed.
    case feedUnavailable
    /// A backup release asked for more than the `backup` units held back.
    case insufficientBackup(backup: UInt64)
    /// A stage was refused whole (nothing applied): each refused line (0-based), why, and its value.
    case stageRefused([StageRefusal])
    /// Any other status the server answered with (protocol or session errors).
    case rejected(Status)
    /// The connection dropped with this request unanswered: its outcome is unknown.
    case connectionLost
    /// No connection could be made (message says why).
    case unreachable(String)
    /// No answer within the call's timeout: its outcome is unknown.
    case timeout
    /// The server sent something that does not follow the protocol.
    case protocolError(String)
    /// The client was closed (`close()`, or `shutdown()` for every later call).
    case closed
    /// The calling task was cancelled: the call returned at once, and its
    /// outcome is unknown (the request may have been sent), as for `timeout`.
    case cancelled

    /// The error for a failure answer.
    init(status: Status, detail: ErrorDetail) {
        switch (status, detail) {
        case (.outOfStock, .outOfStock(let line, let available)): self = .outOfStock(available: available, line: Int(line))
        case (.unknownSKU, .unknownSKU(let line)): self = .unknownSKU(line: Int(line))
        case (.tokenUnknown, _): self = .tokenUnknown
        case (.tokenExpired, _): self = .tokenExpired
        case (.tokenConfirmed, _): self = .tokenAlreadyConfirmed
        case (.tokenReleased, _): self = .tokenAlreadyReleased
        case (.stockChanged, .stockChanged(let current)): self = .stockChanged(current: current)
        case (.customerLimit, .customerLimit(let line, let remaining)): self = .customerLimit(remaining: remaining, line: Int(line))
        case (.quantityInvalid, _): self = .quantityInvalid
        case (.ttlTooLong, .ttlTooLong(let max)): self = .ttlTooLong(maxMs: max)
        case (.insufficientAvailable, .insufficientAvailable(let a)): self = .insufficientAvailable(available: a)
        case (.idempotencyConflict, _): self = .idempotencyConflict
        case (.invalidSKU, _): self = .invalidSKU
        case (.invalidArgument, _): self = .invalidArgument
        case (.offsetCompacted, .offsetCompacted(let oldest)): self = .offsetCompacted(oldest: oldest)
        case (.feedUnavailable, _): self = .feedUnavailable
        case (.insufficientBackup, .insufficientBackup(let backup)): self = .insufficientBackup(backup: backup)
        case (.stageRefused, .stageRefused(let refused)): self = .stageRefused(refused)
        default: self = .rejected(status)
        }
    }

    /// Whether the server made a decision (as opposed to a transport failure
    /// where the request's outcome is unknown).
    public var isServerRejection: Bool {
        switch self {
        case .connectionLost, .unreachable, .timeout, .protocolError, .closed, .cancelled: false
        default: true
        }
    }

    public var description: String {
        switch self {
        case .outOfStock(let available, _): "out of stock (\(available) available)"
        case .unknownSKU: "unknown SKU"
        case .tokenUnknown: "token unknown"
        case .tokenExpired: "token expired"
        case .tokenAlreadyConfirmed: "token already confirmed"
        case .tokenAlreadyReleased: "token already released"
        case .stockChanged(let current): "stock changed (on hand is now \(current))"
        case .customerLimit(let remaining, _): "per-customer limit reached (\(remaining) more allowed)"
        case .quantityInvalid: "invalid quantity"
        case .ttlTooLong(let max): "ttl above the server maximum of \(max) ms"
        case .insufficientAvailable(let available): "not enough available units (\(available) available)"
        case .idempotencyConflict: "idempotency key reused with different parameters"
        case .invalidSKU: "invalid SKU"
        case .invalidArgument: "invalid argument"
        case .offsetCompacted(let oldest): "offset compacted away (the oldest offset held is \(oldest))"
        case .feedUnavailable: "the server keeps no journal (--sync none): no event feed"
        case .insufficientBackup(let backup): "not that many backup units (\(backup) held back)"
        case .stageRefused(let refused): "stage refused, nothing applied (\(refused.count) line(s) refused)"
        case .rejected(.unauthenticated):
            "stockd requires authentication: give a credential (stockctl: --token, --token-file or STOCKD_TOKEN)"
        case .rejected(.authFailed): "authentication failed: stockd refused the credential"
        case .rejected(.forbidden): "forbidden: this credential's role may not do that"
        case .rejected(let status): "server answered \(status.name)"
        case .connectionLost: "connection lost"
        case .unreachable(let why): "server unreachable: \(why)"
        case .timeout: "timed out"
        case .protocolError(let why): "protocol error: \(why)"
        case .closed: "client closed"
        case .cancelled: "cancelled"
        }
    }
}
