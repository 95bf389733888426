import Foundation
import Testing
@testable import StockProtocol

// Support for the vector tests: loading `protocol/vectors/*.json` and mapping
// decoded values to the vectors' field form (`protocol/vectors/README.md`).

/// A JSON value with exact integers (kept as their decimal text, so u64 values
/// above 2^53 survive) and strings compared byte for byte (Swift's `String ==`
/// would equate canonically equivalent but different byte sequences).
enum JSON: Sendable, Equatable, CustomStringConvertible {
    case null
    case number(String)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.number(let x), .number(let y)): x == y
        case (.string(let x), .string(let y)): Array(x.utf8) == Array(y.utf8)
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x == y
        default: false
        }
    }

    /// A JSON value from `JSONSerialization` output.
    init?(foundation value: Any) {
        switch value {
        case is NSNull: self = .null
        case let s as String: self = .string(s)
        case let n as NSNumber: self = .number(n.stringValue)
        case let a as [Any]:
            var out = [JSON]()
            for e in a {
                guard let j = JSON(foundation: e) else { return nil }
                out.append(j)
            }
            self = .array(out)
        case let o as [String: Any]:
            var out = [String: JSON]()
            for (k, e) in o {
                guard let j = JSON(foundation: e) else { return nil }
                out[k] = j
            }
            self = .object(out)
        default: return nil
        }
    }

    static func int<T: BinaryInteger>(_ v: T) -> JSON { .number(String(v)) }

    /// A byte string as the vectors write it: UTF-8 text when well-formed, else `{"hex": ...}`.
    static func bytes(_ b: [UInt8]) -> JSON {
        if let s = String(validating: b, as: UTF8.self) { return .string(s) }
        return .object(["hex": .string(hexString(b))])
    }

    static func bytes(_ b: ShortBytes) -> JSON { bytes(b.bytes) }

    /// Opaque bytes (REPL_ROUND records, REPL_SNAPSHOT chunks): always `{"hex": ...}`.
    static func rawBytes(_ b: [UInt8]) -> JSON { .object(["hex": .string(hexString(b))]) }

    /// A token: 32 hex digits of its 16 wire bytes.
    static func token(_ t: Token) -> JSON {
        var w = ByteWriter(capacity: 16)
        w.writeToken(t)
        return .string(hexString(w.bytes))
    }

    subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var uint64: UInt64? {
        if case .number(let s) = self { return UInt64(s) }
        return nil
    }

    var description: String {
        switch self {
        case .null: "null"
        case .number(let s): s
        case .string(let s): "\"\(s)\""
        case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .object(let o):
            "{" + o.keys.sorted().map { "\"\($0)\": \(o[$0]!)" }.joined(separator: ", ") + "}"
        }
    }
}

/// Lower-case hex, written here rather than taken from `Hex` so that the
/// vector tests do not depend on the code they check.
func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}

func bytes(fromHex hex: String) -> [UInt8]? {
    let u = Array(hex.utf8)
    guard u.count % 2 == 0 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }
    var out = [UInt8]()
    out.reserveCapacity(u.count / 2)
    var i = 0
    while i < u.count {
        guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
        i += 2
    }
    return out
}

/// The vectors' name of an opcode byte: the spec name, or `0x7E` when unassigned.
func opcodeName(_ byte: UInt8) -> String {
    if let op = Opcode(rawValue: byte) { return op.name }
    let digits = Array("0123456789ABCDEF")
    return "0x" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0xF)])
}

/// Opcodes a client sends, so the ones `requests.json` must cover: every
/// opcode but EVENT, which only the server sends (PROTOCOL.md §4, §9; as a
/// request it is answered UNKNOWN_OPCODE, a case `malformed.json` holds).
/// Written as an exclusion so that a new opcode is demanded by default.
let clientOpcodes: [Opcode] = Opcode.allCases.filter { ![.event, .replRound, .replSnapshot].contains($0) }

/// Opcodes with an OK answer, so the ones `responses.json` must cover with
/// status OK: every opcode but CREDIT, which is never answered on a feed
/// connection (PROTOCOL.md §9) — its only possible answer is a failure
/// (INVALID_ARGUMENT on a connection that is not a feed), and the codec
/// refuses an OK frame with its opcode. EVENT is answered: the EVENT frames
/// are OK responses to SUBSCRIBE's request id.
let answeredOpcodes: [Opcode] = Opcode.allCases.filter { $0 != .credit && $0 != .replAck }

/// One vector of `protocol/vectors/*.json`.
struct Vector: Sendable, CustomTestStringConvertible {
    let file: String
    let name: String
    let bytes: [UInt8]
    let json: JSON

    var requestID: UInt32? { json["request_id"]?.uint64.flatMap { UInt32(exactly: $0) } }
    var opcode: String? { json["opcode"]?.string }
    var status: String? { json["status"]?.string }
    var error: String? { json["error"]?.string }
    var fields: JSON? { json["fields"] }

    var testDescription: String { "\(file): \(name)" }
}

/// Loads the vector files, found from this source file's path
/// (`Tests/StockProtocolTests/X.swift` → `protocol/vectors/`).
enum Vectors {
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // StockProtocolTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // package root
        .appendingPathComponent("protocol")
        .appendingPathComponent("vectors")

    static let requests = load("requests.json")
    static let responses = load("responses.json")
    static let malformed = load("malformed.json")

    /// The vectors of `file`, or an empty list when it cannot be read (the
    /// coverage test then fails and says why).
    static func load(_ file: String) -> [Vector] {
        (try? loadThrowing(file)) ?? []
    }

    struct LoadError: Error, CustomStringConvertible {
        let description: String
    }

    static func loadThrowing(_ file: String) throws -> [Vector] {
        let url = directory.appendingPathComponent(file)
        let data = try Data(contentsOf: url)
        guard let top = JSON(foundation: try JSONSerialization.jsonObject(with: data)) else {
            throw LoadError(description: "\(file): not JSON")
        }
        guard top["version"] == .number("1") else { throw LoadError(description: "\(file): version is not 1") }
        guard case .array(let list)? = top["vectors"] else { throw LoadError(description: "\(file): no vectors") }
        return try list.map { v in
            guard let name = v["name"]?.string, let hex = v["hex"]?.string, let b = bytes(fromHex: hex)
            else { throw LoadError(description: "\(file): vector without name or hex: \(v)") }
            return Vector(file: file, name: name, bytes: b, json: v)
        }
    }
}

// MARK: - Decoded values → vector fields

/// The fields of a request, as the vectors write them.
func vectorFields(_ request: Request) -> JSON {
    switch request {
    case .hello(let h):
        return .object(["version": .int(h.version), "client_name": .bytes(h.clientName),
                        "credential": .bytes(h.credential)])
    case .ping, .stats:
        return .object([:])
    case .reserve(let r):
        return .object(["quantity": .int(r.quantity), "ttl_ms": .int(r.ttlMs), "sku": .bytes(r.sku),
                        "customer": .bytes(r.customer), "idempotency_key": .bytes(r.idempotencyKey)])
    case .reserveBundle(let b):
        return .object([
            "ttl_ms": .int(b.ttlMs), "customer": .bytes(b.customer), "idempotency_key": .bytes(b.idempotencyKey),
            "line_count": .int(b.lines.count),
            "lines": .array(b.lines.map { .object(["quantity": .int($0.quantity), "sku": .bytes($0.sku)]) }),
        ])
    case .confirm(let c):
        return .object(["token": .token(c.token), "quantity": .int(c.quantity),
                        "order_reference": .bytes(c.orderReference)])
    case .release(let t):
        return .object(["token": .token(t)])
    case .extend(let e):
        return .object(["token": .token(e.token), "ttl_ms": .int(e.ttlMs)])
    case .stockSet(let s):
        var flags = 0
        if s.expectedOnHand != nil { flags |= 1 }
        if s.lowStockThreshold != nil { flags |= 2 }
        if s.perCustomerLimit != nil { flags |= 4 }
        return .object([
            "flags": .int(flags), "on_hand": .int(s.onHand),
            "expected_on_hand": s.expectedOnHand.map { .int($0) } ?? .null,
            "low_stock_threshold": s.lowStockThreshold.map { .int($0) } ?? .null,
            "per_customer_limit": s.perCustomerLimit.map { .int($0) } ?? .null,
            "sku": .bytes(s.sku),
        ])
    case .stockAdjust(let a):
        return .object(["delta": .int(a.delta), "reason": .int(a.reason.rawValue), "sku": .bytes(a.sku)])
    case .stockGet(let sku):
        return .object(["sku": .bytes(sku)])
    case .stockList(let l):
        return .object(["cursor": .int(l.cursor), "limit": .int(l.limit)])
    case .backupRelease(let m), .backupHold(let m):
        return .object(["quantity": .int(m.quantity), "sku": .bytes(m.sku)])
    case .stage(let s):
        return .object([
            "line_count": .int(s.lines.count),
            "lines": .array(s.lines.map {
                .object(["on_hand": .int($0.onHand), "backup": .int($0.backup),
                         "low_stock_threshold": .int($0.lowStockThreshold),
                         "per_customer_limit": .int($0.perCustomerLimit), "sku": .bytes($0.sku)])
            }),
        ])
    case .subscribe(let s):
        return .object(["from": .int(s.from), "credit": .int(s.credit), "kinds": .int(s.kinds),
                        "sku_prefix": .bytes(s.skuPrefix)])
    case .credit(let n):
        return .object(["credit": .int(n)])
    case .replHello(let h):
        return .object(["fingerprint": .int(h.fingerprint), "highest_epoch": .int(h.highestEpoch),
                        "last_epoch": .int(h.lastEpoch), "last_seq": .int(h.lastSeq), "node": .bytes(h.node),
                        "cluster": .bytes(h.cluster)])
    case .replAck(let a):
        return .object(["epoch": .int(a.epoch), "durable": .int(a.durable)])
    case .role(let c):
        return .object(["role": .int(c.role.rawValue), "epoch": .int(c.epoch), "primary": .bytes(c.primary)])
    case .fence(let until):
        return .object(["until_ns": .int(until)])
    case .isrSet(let set):
        return .object(["epoch": .int(set.epoch), "count": .int(set.nodes.count),
                        "entries": .array(set.nodes.map { .object(["node": .bytes($0)]) })])
    case .clusterStatus:
        return .object([:])
    }
}

func vectorFields(_ info: StockInfo) -> JSON {
    .object([
        "on_hand": .int(info.onHand), "available": .int(info.available), "reserved": .int(info.reserved),
        "confirmed": .int(info.confirmed), "low_stock_threshold": .int(info.lowStockThreshold),
        "per_customer_limit": .int(info.perCustomerLimit), "reservations": .int(info.reservations),
        "backup": .int(info.backup),
    ])
}

/// The fields of a response body, as the vectors write them.
func vectorFields(_ body: ResponseBody) -> JSON {
    switch body {
    case .hello(let h):
        return .object([
            "version": .int(h.version), "role": .int(h.role.rawValue), "max_frame": .int(h.maxFrame),
            "max_ttl_ms": .int(h.maxTTLMs), "default_ttl_ms": .int(h.defaultTTLMs),
            "max_bundle_lines": .int(h.maxBundleLines), "max_sku_length": .int(h.maxSKULength),
            "max_inflight": .int(h.maxInflight), "server_name": .bytes(h.serverName),
        ])
    case .pong:
        return .object([:])
    case .reserved(let r):
        return .object(["token": .token(r.token), "expires_at_ms": .int(r.expiresAtMs),
                        "available": .int(r.available)])
    case .bundleReserved(let b):
        return .object(["token": .token(b.token), "expires_at_ms": .int(b.expiresAtMs)])
    case .confirmed(let c):
        return .object(["confirmed": .int(c.confirmed), "returned": .int(c.returned)])
    case .released(let units):
        return .object(["released": .int(units)])
    case .extended(let at):
        return .object(["expires_at_ms": .int(at)])
    case .stock(let info):
        return .object(["stock_info": vectorFields(info)])
    case .staged(let s):
        return .object(["lines": .int(s.lines), "created": .int(s.created)])
    case .stockPage(let page):
        return .object([
            "next_cursor": .int(page.nextCursor), "count": .int(page.entries.count),
            "entries": .array(page.entries.map { .object(["sku": .bytes($0.sku), "stock_info": vectorFields($0.info)]) }),
        ])
    case .stats(let entries):
        return .object([
            "count": .int(entries.count),
            "entries": .array(entries.map { .object(["name": .bytes($0.name), "value": .int($0.value)]) }),
        ])
    case .subscribed(let f):
        return .object(["start": .int(f.start), "end": .int(f.end)])
    case .event(let e):
        return .object([
            "offset": .int(e.offset), "time_ms": .int(e.timeMs), "kind": .int(e.kind.rawValue),
            "line": .int(e.line), "lines": .int(e.lines), "quantity": .int(e.quantity), "aux": .int(e.aux),
            "token": .token(e.token), "sku": .bytes(e.sku), "order_reference": .bytes(e.order),
            "customer": .bytes(e.customer),
        ])
    case .replStarted(let r):
        return .object(["epoch": .int(r.epoch), "start": .int(r.start), "committed": .int(r.committed)])
    case .replRound(let r):
        return .object(["epoch": .int(r.epoch), "end": .int(r.end), "count": .int(r.count),
                        "records": .rawBytes(r.records)])
    case .replSnapshot(let c):
        return .object(["epoch": .int(c.epoch), "snapshot_seq": .int(c.snapshotSeq), "offset": .int(c.offset),
                        "total": .int(c.total), "chunk": .rawBytes(c.chunk)])
    case .role(let r):
        return .object(["role": .int(r.role.rawValue), "epoch": .int(r.epoch), "last_seq": .int(r.lastSeq)])
    case .committed(let seq):
        return .object(["committed": .int(seq)])
    case .clusterStatus(let c):
        return .object([
            "role": .int(c.role.rawValue), "epoch": .int(c.epoch), "durable": .int(c.durable),
            "committed": .int(c.committed), "node": .bytes(c.node), "primary": .bytes(c.primary),
            "count": .int(c.standbys.count),
            "entries": .array(c.standbys.map {
                .object(["node": .bytes($0.node), "acked": .int($0.acked), "lag_ms": .int($0.lagMs),
                         "flags": .int($0.inWaitSet ? 1 : 0)])
            }),
        ])
    case .failure(_, let detail):
        switch detail {
        case .none: return .object([:])
        case .notPrimary(let epoch, let primary): return .object(["epoch": .int(epoch), "primary": .bytes(primary)])
        case .notEnoughReplicas(let inSync, let required):
            return .object(["in_sync": .int(inSync), "required": .int(required)])
        case .staleEpoch(let epoch): return .object(["epoch": .int(epoch)])
        case .truncateTo(let seq): return .object(["seq": .int(seq)])
        case .configMismatch(let field): return .object(["field": .bytes(field)])
        case .outOfStock(let line, let available):
            return .object(["line": .int(line), "available": .int(available)])
        case .unknownSKU(let line): return .object(["line": .int(line)])
        case .customerLimit(let line, let remaining):
            return .object(["line": .int(line), "remaining": .int(remaining)])
        case .stockChanged(let current): return .object(["current_on_hand": .int(current)])
        case .insufficientAvailable(let available): return .object(["available": .int(available)])
        case .ttlTooLong(let max): return .object(["max_ttl_ms": .int(max)])
        case .frameTooLarge(let max): return .object(["max_frame": .int(max)])
        case .unsupportedVersion(let lo, let hi): return .object(["min": .int(lo), "max": .int(hi)])
        case .offsetCompacted(let oldest): return .object(["oldest": .int(oldest)])
        case .insufficientBackup(let backup): return .object(["backup": .int(backup)])
        case .stageRefused(let refused):
            // An entry's `status` is its §5 code, a plain number.
            return .object([
                "count": .int(refused.count),
                "entries": .array(refused.map {
                    .object(["line": .int($0.line), "status": .int($0.status.rawValue), "value": .int($0.value)])
                }),
            ])
        }
    }
}

// MARK: - Decoding helpers shared by the tests

/// Decodes a request, turning the typed throw into a value.
func decodeRequest(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer) -> Result<Request, Status> {
    do { return .success(try RequestCodec.decode(header: header, payload: payload)) } catch { return .failure(error) }
}

/// Decodes a response, turning the typed throw into a value.
func decodeResponse(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer) -> Result<Response, Status> {
    do { return .success(try ResponseCodec.decode(header: header, payload: payload)) } catch { return .failure(error) }
}

/// Parses `bytes` with `FrameParser`.
func parseFrame(_ bytes: [UInt8], maxFrame: Int = Limits.defaultMaxFrame) -> FrameParse {
    bytes.withUnsafeBytes { FrameParser.parse($0, maxFrame: maxFrame) }
}
