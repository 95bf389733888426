import BenchSupport
import StockProtocol

/// stockd's binary protocol for the load engine: every request is a frame
/// encoded once at start (per SKU for RESERVE) and sent as a copy with its
/// request id, quantity, ttl or token patched in; answers are parsed in place
/// by the same `FrameAssembler` the echo and stockbench-lite use.
struct StockdWire: WireFormat {
    /// RESERVE frames, one per SKU, laid out back to back.
    private let reserves: UnsafeMutableRawPointer
    private let reserveOffsets: [Int]
    private let reserveLengths: [Int]
    private var frames: FrameAssembler
    private var nextID: UInt32 = 0

    /// CONFIRM: header, token, quantity 0 (all), empty order reference.
    static let confirmBytes = Limits.headerSize + Token.size + 4 + 1
    /// RELEASE: header, token.
    static let releaseBytes = Limits.headerSize + Token.size

    let maxRequestBytes: Int

    init(skus: [String]) {
        var offsets: [Int] = []
        var lengths: [Int] = []
        var all: [UInt8] = []
        for name in skus {
            guard let sku = SKU(name), sku.isValidSKU else { preconditionFailure("invalid SKU name \(name)") }
            var w = ByteWriter(capacity: 128)
            RequestCodec.encode(.reserve(Reserve(sku: sku, quantity: 1, ttlMs: 0)), requestID: 0, into: &w)
            offsets.append(all.count)
            lengths.append(w.count)
            w.bytes.withUnsafeBytes { all.append(contentsOf: $0.prefix(w.count)) }
        }
        let block = UnsafeMutableRawPointer.allocate(byteCount: max(1, all.count), alignment: 16)
        all.withUnsafeBytes { block.copyMemory(from: $0.baseAddress!, byteCount: all.count) }
        reserves = block
        reserveOffsets = offsets
        reserveLengths = lengths
        frames = FrameAssembler(maxFrame: Limits.defaultMaxFrame)
        maxRequestBytes = max(lengths.max() ?? 0, Self.confirmBytes)
    }

    mutating func encode(_ op: BenchOp, into out: inout OutBuffer) {
        let start = out.count
        switch op {
        case .reserve(let sku, let quantity, let ttlMs, _):
            let i = Int(sku)
            out.append(UnsafeRawBufferPointer(start: reserves + reserveOffsets[i], count: reserveLengths[i]))
            let payload = out.base + start + Limits.headerSize
            payload.storeBytes(of: quantity.littleEndian, toByteOffset: 0, as: UInt32.self)
            payload.storeBytes(of: ttlMs.littleEndian, toByteOffset: 4, as: UInt32.self)
        case .confirm(_, let token):
            appendHeader(.confirm, payloadBytes: Token.size + 5, into: &out)
            appendToken(token, into: &out)
            for _ in 0..<5 { out.append(byte: 0) }  // quantity 0 = all; empty order reference
        case .release(_, let token):
            appendHeader(.release, payloadBytes: Token.size, into: &out)
            appendToken(token, into: &out)
        }
        (out.base + start).storeBytes(of: nextID.littleEndian, toByteOffset: 8, as: UInt32.self)
        nextID &+= 1
    }

    @inline(__always) private func appendHeader(_ op: Opcode, payloadBytes: Int, into out: inout OutBuffer) {
        precondition(out.remaining >= Limits.headerSize + payloadBytes, "OutBuffer overflow")
        let p = out.base + out.count
        // length of what follows the length prefix, opcode, flags, status, reserved, request id
        p.storeBytes(of: UInt32(Limits.headerSize - Limits.lengthPrefixSize + payloadBytes).littleEndian,
                     toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: op.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(0), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt8(0), toByteOffset: 6, as: UInt8.self)
        p.storeBytes(of: UInt8(0), toByteOffset: 7, as: UInt8.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
        out.count += Limits.headerSize
    }

    @inline(__always) private func appendToken(_ t: BenchToken, into out: inout OutBuffer) {
        let p = out.base + out.count
        p.storeBytes(of: t.hi, toByteOffset: 0, as: UInt64.self)
        p.storeBytes(of: t.lo, toByteOffset: 8, as: UInt64.self)
        out.count += Token.size
    }

    mutating func consume(_ input: UnsafeRawBufferPointer, _ onReply: (BenchReply) -> Void) -> Bool {
        var frames = self.frames
        let failure = frames.consume(input) { header, payload in
            onReply(Self.reply(header, payload))
        }
        self.frames = frames
        return failure == nil
    }

    @inline(__always) static func reply(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer) -> BenchReply {
        switch header.status {
        case Status.ok.rawValue:
            switch header.opcode {
            case Opcode.reserve.rawValue:
                guard payload.count >= Token.size + 16 else { return .failed(code: -2) }
                let token = BenchToken(hi: payload.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                                       lo: payload.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                let available = UInt64(littleEndian: payload.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
                return .reserved(token: token, available: Int64(truncatingIfNeeded: available))
            case Opcode.confirm.rawValue: return .confirmed
            case Opcode.release.rawValue: return .released
            default: return .failed(code: -3)
            }
        case Status.outOfStock.rawValue:
            guard payload.count >= 9 else { return .outOfStock(available: -1) }
            let available = UInt64(littleEndian: payload.loadUnaligned(fromByteOffset: 1, as: UInt64.self))
            return .outOfStock(available: Int64(truncatingIfNeeded: available))
        case Status.tokenUnknown.rawValue, Status.tokenExpired.rawValue, Status.tokenConfirmed.rawValue,
             Status.tokenReleased.rawValue:
            return .tokenGone
        default:
            return .failed(code: Int32(header.status))
        }
    }
}
