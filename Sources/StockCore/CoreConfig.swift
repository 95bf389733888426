import StockProtocol

/// Sizes and policies of a `StockCore`. Every table is preallocated from
/// these numbers at start (memory is committed by the OS as it is touched),
/// so nothing on the request path grows.
public struct CoreConfig: Sendable {
    /// Counter shards (one per worker) at most: each SKU keeps one padded cache line per shard.
    public static let maxShards = 64

    /// Maximum SKUs in the catalog (SKUs are never deleted).
    public var skuCapacity: Int = 1 << 20
    /// Maximum live tokens (plus the recently-decided ones remembered for answers).
    public var tokenCapacity: Int = 1 << 20
    /// Counter shards: one per worker thread.
    public var shardCount: Int = 2
    /// TTL used when a request says 0.
    public var defaultTTLMs: UInt32 = 90_000
    /// Largest TTL accepted.
    public var maxTTLMs: UInt32 = Limits.maxTTLCeilingMs
    /// Maximum (customer, SKU) pairs tracked for per-customer limits.
    public var customerCapacity: Int = 1 << 20
    /// Maximum idempotency keys remembered at once (one per live keyed token).
    public var idempotencyCapacity: Int = 1 << 20
    /// Decided tokens each worker remembers before their slot is reused, so a
    /// second CONFIRM answers TOKEN_CONFIRMED rather than TOKEN_UNKNOWN.
    public var fateMemoryPerWorker: Int = 1 << 16

    public init() {}

    /// Decided tokens each worker actually remembers: fate memory may use at
    /// most a quarter of the slots across workers (one worker per shard), so
    /// remembered fates can never starve allocation elsewhere.
    public var fateRingSize: Int { min(fateMemoryPerWorker, tokenCapacity / (4 * shardCount)) }

    /// Decided tokens remembered in all: the bound PROTOCOL.md states, and
    /// what the journal keeps across restarts.
    public var fateMemoryTotal: Int { fateRingSize * shardCount }

    /// Checks the values; the message names the offending field.
    public func validate() throws(ConfigError) {
        guard skuCapacity >= 1, skuCapacity <= 1 << 26 else { throw ConfigError("skuCapacity must be 1...67108864") }
        guard tokenCapacity >= 16, tokenCapacity <= TokenState.maxSlots else {
            throw ConfigError("tokenCapacity must be 16...\(TokenState.maxSlots)")
        }
        guard (1...Self.maxShards).contains(shardCount) else { throw ConfigError("shardCount must be 1...\(Self.maxShards)") }
        guard maxTTLMs >= 1, maxTTLMs <= Limits.maxTTLCeilingMs else {
            throw ConfigError("maxTTLMs must be 1...\(Limits.maxTTLCeilingMs)")
        }
        guard defaultTTLMs >= 1, defaultTTLMs <= maxTTLMs else { throw ConfigError("defaultTTLMs must be 1...maxTTLMs") }
        guard customerCapacity >= 1, idempotencyCapacity >= 1 else { throw ConfigError("capacities must be positive") }
        guard fateMemoryPerWorker >= 0 else { throw ConfigError("fateMemoryPerWorker must be >= 0") }
    }
}

/// A configuration value out of range.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// Why an operation was refused: the wire status and its detail.
/// Thrown with typed throws, so failing costs no allocation.
public struct Failure: Error, Sendable, Equatable {
    public var status: Status
    public var detail: ErrorDetail
    public init(_ status: Status, _ detail: ErrorDetail = .none) {
        self.status = status
        self.detail = detail
    }
}
