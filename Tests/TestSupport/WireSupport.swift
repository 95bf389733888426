import Foundation
import StockProtocol

/// Building request bytes, well-formed or deliberately not.
public enum Wire {
    /// The frame of `request` with request id `id`.
    public static func frame(_ request: Request, id: UInt32) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        RequestCodec.encode(request, requestID: id, into: &w)
        return w.bytes
    }

    /// Any frame: header fields as given, `length` defaulting to the true one.
    public static func rawFrame(opcode: UInt8, id: UInt32, payload: [UInt8] = [], flags: UInt8 = 0, status: UInt8 = 0,
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
    public static func str8(_ bytes: [UInt8]) -> [UInt8] {
        precondition(bytes.count <= 255)
        return [UInt8(bytes.count)] + bytes
    }

    public static func str8(_ text: String) -> [UInt8] { str8(Array(text.utf8)) }

    public static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    public static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    public static func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

/// Shorthand: a SKU from a string that is known to fit.
public func sku(_ s: String) -> SKU { SKU(s)! }

extension Response {
    public var stockInfo: StockInfo? {
        if case .stock(let i) = body { return i }
        return nil
    }

    public var reservation: Reservation? {
        if case .reserved(let r) = body { return r }
        return nil
    }

    public var bundle: BundleReservation? {
        if case .bundleReserved(let b) = body { return b }
        return nil
    }

    public var confirmReply: ConfirmReply? {
        if case .confirmed(let c) = body { return c }
        return nil
    }

    public var releasedUnits: UInt32? {
        if case .released(let n) = body { return n }
        return nil
    }

    public var extendedTo: UInt64? {
        if case .extended(let at) = body { return at }
        return nil
    }

    public var helloReply: HelloReply? {
        if case .hello(let h) = body { return h }
        return nil
    }

    public var page: StockPage? {
        if case .stockPage(let p) = body { return p }
        return nil
    }

    /// The failure detail, or nil for an OK answer.
    public var detail: ErrorDetail? {
        if case .failure(_, let d) = body { return d }
        return nil
    }
}

extension StockInfo {
    /// `on_hand = available + reserved + confirmed`.
    public var balances: Bool { onHand == available &+ reserved &+ confirmed }
}
