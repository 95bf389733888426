/// Every status a stockd response can carry (`protocol/PROTOCOL.md` §5).
///
/// Codes below 32 are outcomes of a well-formed request (the business said
/// no); codes from 32 up are protocol or session errors. `closesConnection`
/// tells which ones the server follows with a close: after those a client
/// must reconnect, and any request it had in flight is answered by nothing.
public enum Status: UInt8, Sendable, CaseIterable, Error {
    case ok = 0
    /// Not enough units available. Payload: line u8, available u64.
    case outOfStock = 1
    /// The SKU is not in the catalog. Payload: line u8.
    case unknownSKU = 2
    /// No live or remembered token matches (forged, or its slot was reused).
    case tokenUnknown = 3
    /// The token's deadline passed; its units went back to sale.
    case tokenExpired = 4
    /// The token was already confirmed.
    case tokenConfirmed = 5
    /// The token was already released.
    case tokenReleased = 6
    /// Compare-and-set failed: on-hand differs from the expected value. Payload: current on_hand u64.
    case stockChanged = 7
    /// The customer would exceed the per-customer limit. Payload: line u8, remaining u64.
    case customerLimit = 8
    /// Quantity zero, above the maximum, or above what the token holds.
    case quantityInvalid = 9
    /// TTL above the server maximum. Payload: max_ttl_ms u32.
    case ttlTooLong = 10
    /// A shrink would take more than is available. Payload: available u64.
    case insufficientAvailable = 11
    /// An idempotency key was reused with different parameters.
    case idempotencyConflict = 12
    /// A SKU is empty, too long, not UTF-8, or contains control characters.
    case invalidSKU = 13
    /// A field is outside its domain (unknown reason code, flag bit, line count...).
    case invalidArgument = 14
    /// SUBSCRIBE (or a running feed) asked for offsets the journal no longer
    /// holds (compacted away). Payload: oldest u64, the oldest offset still served.
    case offsetCompacted = 15
    /// The server keeps no journal (`--sync none`): there is no event feed.
    case feedUnavailable = 16
    /// BACKUP_RELEASE asked for more units than the SKU holds back. Payload: backup u64.
    case insufficientBackup = 17
    /// STAGE refused: nothing was applied. Payload: count u16, count × (line u16, status u8, value u64).
    case stageRefused = 18
    /// This node does not execute state changes (a standby, a fenced or handing-over primary); no
    /// effect. Payload: epoch u64, primary str8 (PROTOCOL.md §10).
    case notPrimary = 19
    /// The in-sync set is below `--min-insync`: refused before it ran. Payload: in_sync u8, required u8.
    case notEnoughReplicas = 20
    /// Executed and journaled here but not committed before the node was fenced: fate unknown.
    case uncommitted = 21
    /// A replication or cluster request named an epoch below the receiver's. Payload: epoch u64.
    case staleEpoch = 22
    /// REPL_HELLO: cut the journal back to `seq` and hello again. Payload: seq u64. Closes.
    case truncateTo = 23
    /// REPL_HELLO: the standby's last epoch is not in the primary's history. Closes.
    case diverged = 24
    /// A setting differs between the nodes, or the node has no cluster name. Payload: field str8.
    case configMismatch = 25

    /// The payload does not match the opcode's layout (truncated, trailing bytes, bad header bits).
    case malformed = 32
    /// The length prefix exceeds the maximum frame size. Payload: max_frame u32. Closes.
    case frameTooLarge = 33
    /// The opcode is not assigned.
    case unknownOpcode = 34
    /// HELLO asked for a protocol version this server does not speak. Payload: min u16, max u16. Closes.
    case unsupportedVersion = 35
    /// Authentication is required before this request.
    case unauthenticated = 36
    /// The credential in HELLO was wrong. Closes.
    case authFailed = 37
    /// The connection's role may not perform this operation.
    case forbidden = 38
    /// A bounded table is full (live tokens, catalog).
    case atCapacity = 39
    /// The server cannot take this connection or request now. Closes.
    case busy = 40
    /// A rate limit refused the request.
    case rateLimited = 41
    /// HELLO sent twice, or after other requests.
    case helloOutOfOrder = 42
    /// The server is shutting down. Closes.
    case shuttingDown = 43
    /// An unexpected internal failure; the request had no effect.
    case `internal` = 44
    /// The journal cannot write (disk full, I/O error): the server refuses
    /// state changes until restarted; reads are still answered.
    case storageFailed = 45

    /// Whether the server closes the connection after sending this status.
    public var closesConnection: Bool {
        switch self {
        // TRUNCATE_TO and DIVERGED answer only REPL_HELLO, whose failures all close; STALE_EPOCH and
        // CONFIG_MISMATCH close there too (the replication handler closes), but not after ROLE or ISR_SET.
        case .frameTooLarge, .unsupportedVersion, .authFailed, .busy, .shuttingDown, .truncateTo, .diverged: true
        default: false
        }
    }

    /// The spec's upper-case name.
    public var name: String {
        switch self {
        case .ok: "OK"
        case .outOfStock: "OUT_OF_STOCK"
        case .unknownSKU: "UNKNOWN_SKU"
        case .tokenUnknown: "TOKEN_UNKNOWN"
        case .tokenExpired: "TOKEN_EXPIRED"
        case .tokenConfirmed: "TOKEN_CONFIRMED"
        case .tokenReleased: "TOKEN_RELEASED"
        case .stockChanged: "STOCK_CHANGED"
        case .customerLimit: "CUSTOMER_LIMIT"
        case .quantityInvalid: "QUANTITY_INVALID"
        case .ttlTooLong: "TTL_TOO_LONG"
        case .insufficientAvailable: "INSUFFICIENT_AVAILABLE"
        case .idempotencyConflict: "IDEMPOTENCY_CONFLICT"
        case .invalidSKU: "INVALID_SKU"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .offsetCompacted: "OFFSET_COMPACTED"
        case .feedUnavailable: "FEED_UNAVAILABLE"
        case .insufficientBackup: "INSUFFICIENT_BACKUP"
        case .stageRefused: "STAGE_REFUSED"
        case .notPrimary: "NOT_PRIMARY"
        case .notEnoughReplicas: "NOT_ENOUGH_REPLICAS"
        case .uncommitted: "UNCOMMITTED"
        case .staleEpoch: "STALE_EPOCH"
        case .truncateTo: "TRUNCATE_TO"
        case .diverged: "DIVERGED"
        case .configMismatch: "CONFIG_MISMATCH"
        case .malformed: "MALFORMED"
        case .frameTooLarge: "FRAME_TOO_LARGE"
        case .unknownOpcode: "UNKNOWN_OPCODE"
        case .unsupportedVersion: "UNSUPPORTED_VERSION"
        case .unauthenticated: "UNAUTHENTICATED"
        case .authFailed: "AUTH_FAILED"
        case .forbidden: "FORBIDDEN"
        case .atCapacity: "AT_CAPACITY"
        case .busy: "BUSY"
        case .rateLimited: "RATE_LIMITED"
        case .helloOutOfOrder: "HELLO_OUT_OF_ORDER"
        case .shuttingDown: "SHUTTING_DOWN"
        case .internal: "INTERNAL"
        case .storageFailed: "STORAGE_FAILED"
        }
    }

    /// Looks a status up by its spec name (used by vectors and the CLI).
    public init?(name: String) {
        guard let s = Status.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }
}
