import TestSupport
import Foundation
import StockProtocol

/// Building request bytes, well-formed or deliberately not.
enum Wire {
    /// The frame of `request` with request id `id`.
    static func frame(_ request: Request, id: UInt32) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        RequestCodec.encode(request, requestID: id, into: &w)
        return w.bytes
    }

    /// Any frame: header fields as given, `length` defaulting to the true one.
    static func rawFrame(opcode: UInt8, id: UInt32, payload: [UInt8] = [], flags: UInt8 = 0, status: UInt8 = 0,
                         reserved: UInt8 = 0, length: UInt32? = nil) -> [UInt8] {
        var w = ByteWriter(capacity: 12 + payload.count)
        w.writeU32(length ?? UInt32(8 + payload.count))
        w.writeU8(opcode)
        w.writeU8(flags)
        w.writeU8(status)
        w.writeU8(reserved)
        w.writeU32(id)
        payload.withUnsafeBytes { w.writeBytes($0) }
        return w.bytes
    }

    /// A `str8` field from raw bytes (up to 255).
    static func str8(_ bytes: [UInt8]) -> [UInt8] {
        precondition(bytes.count <= 255)
        return [UInt8(bytes.count)] + bytes
    }

    static func str8(_ text: String) -> [UInt8] { str8(Array(text.utf8)) }

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

/// Shorthand: a SKU from a string that is known to fit.
func sku(_ s: String) -> SKU { SKU(s)! }

extension Response {
    var stockInfo: StockInfo? {
        if case .stock(let i) = body { return i }
        return nil
    }

    var reservation: Reservation? {
        if case .reserved(let r) = body { return r }
        return nil
    }

    var bundle: BundleReservation? {
        if case .bundleReserved(let b) = body { return b }
        return nil
    }

    var confirmReply: ConfirmReply? {
        if case .confirmed(let c) = body { return c }
        return nil
    }

    var releasedUnits: UInt32? {
        if case .released(let n) = body { return n }
        return nil
    }

    var extendedTo: UInt64? {
        if case .extended(let at) = body { return at }
        return nil
    }

    var helloReply: HelloReply? {
        if case .hello(let h) = body { return h }
        return nil
    }

    var page: StockPage? {
        if case .stockPage(let p) = body { return p }
        return nil
    }

    /// The failure detail, or nil for an OK answer.
    var detail: ErrorDetail? {
        if case .failure(_, let d) = body { return d }
        return nil
    }
}

extension StockInfo {
    /// `on_hand = available + reserved + confirmed`.
    var balances: Bool { onHand == available &+ reserved &+ confirmed }
}


/// One vector of `protocol/vectors/malformed.json` (see its README).
struct MalformedVector: Sendable, CustomStringConvertible {
    let name: String
    let bytes: [UInt8]
    /// `need_more`, `length_too_small`, `too_large`, or a status name.
    let error: String
    let requestID: UInt32?

    var description: String { name }

    /// The status the server answers with, when `error` names one.
    var status: Status? { Status(name: error) }

    /// The vectors, read from `protocol/vectors/malformed.json` found from this file's path.
    static func load() throws -> [MalformedVector] {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // StockServerTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // package root
            .appendingPathComponent("protocol/vectors/malformed.json")
        let data = try Data(contentsOf: url)
        guard let top = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let list = top["vectors"] as? [[String: Any]]
        else { throw HarnessError("\(url.path): not a vector file") }
        return try list.map { v in
            guard let name = v["name"] as? String, let hex = v["hex"] as? String, let error = v["error"] as? String,
                  let bytes = Hex.decode(hex)
            else { throw HarnessError("\(url.path): bad vector \(v)") }
            let id = (v["request_id"] as? NSNumber).map { UInt32(truncating: $0) }
            return MalformedVector(name: name, bytes: bytes, error: error, requestID: id)
        }
    }
}
