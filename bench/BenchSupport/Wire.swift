// The contract between stockbench's load engine and a backend's wire format
// (stockd's binary protocol, or RESP + Lua for the Redis baseline). The
// engine is generic over `WireFormat`, so the per-request path is specialised
// code with no existentials and no allocation; both servers answer a
// connection's requests in order, so the engine matches answers to requests
// with a FIFO of its own and a backend never needs request ids.

/// A reservation token as the generator tracks it: 16 opaque bytes. stockd
/// hands out its own (the reply carries them); for Redis the generator makes
/// one per reserve (a checkout service would, since a Lua script has no good
/// randomness) and the backend sends it as 32 hex digits.
public struct BenchToken: Equatable, Sendable {
    public var hi: UInt64
    public var lo: UInt64
    public init(hi: UInt64, lo: UInt64) {
        self.hi = hi
        self.lo = lo
    }
    public static let zero = BenchToken(hi: 0, lo: 0)
}

/// What the engine asks a backend to send.
public enum BenchOp: Sendable {
    /// Hold `quantity` units of SKU number `sku` for `ttlMs` (0: server
    /// default). `token` is a fresh generator-made token the backend may use
    /// (Redis) or ignore (stockd).
    case reserve(sku: Int32, quantity: UInt32, ttlMs: UInt32, token: BenchToken)
    case confirm(sku: Int32, token: BenchToken)
    case release(sku: Int32, token: BenchToken)
}

/// What a backend made of one answer.
public enum BenchReply: Sendable, Equatable {
    /// A hold was granted; `token` is the server's (stockd) or zero (Redis:
    /// the engine keeps the token it sent).
    case reserved(token: BenchToken, available: Int64)
    case outOfStock(available: Int64)
    /// The sale is final.
    case confirmed
    /// The units went back on sale.
    case released
    /// The token was already decided: expired, released, confirmed or unknown.
    case tokenGone
    /// Any other refusal or error reply; `code` is backend-specific.
    case failed(code: Int32)
}

/// A byte buffer the engine owns and a backend appends one request to.
/// Capacity is fixed up front; a backend checks `remaining` before writing.
public struct OutBuffer {
    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    public var count = 0

    public init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    public var remaining: Int { capacity - count }

    @inline(__always) public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= remaining, "OutBuffer overflow: size it for the pipeline depth")
        (base + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    @inline(__always) public mutating func append(byte: UInt8) {
        precondition(remaining >= 1, "OutBuffer overflow: size it for the pipeline depth")
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    public func deallocate() { base.deallocate() }
}

/// One backend's wire format. A value lives per connection (it may keep a
/// carry buffer for a reply split across reads).
public protocol WireFormat {
    /// Bytes the largest request may take (the engine sizes buffers with it).
    var maxRequestBytes: Int { get }

    /// Appends the request for `op`.
    mutating func encode(_ op: BenchOp, into out: inout OutBuffer)

    /// Decodes every complete reply in `input` (preceded by whatever was
    /// carried over from earlier reads), calling `onReply` once per reply, in
    /// order, and keeps an incomplete tail for the next call. Returns false on
    /// a protocol error (the connection is then closed and counted).
    mutating func consume(_ input: UnsafeRawBufferPointer, _ onReply: (BenchReply) -> Void) -> Bool
}
