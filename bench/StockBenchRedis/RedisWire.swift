import BenchSupport

#if canImport(Glibc)
import Glibc
#endif

// The Redis baseline's wire format for stockbench: each `BenchOp` becomes one
// EVALSHA of reserve.lua / confirm.lua / release.lua in RESP, and each
// top-level RESP reply becomes one `BenchReply`.
//
// Reply scheme (see bench/StockBenchRedis/README.md): the scripts answer an array of
// integers whose first element is a status that is unique per outcome across
// all three scripts, so the status and the array length alone say what a
// reply is — the parser never needs to know which op it answers:
//
//   status  length  script            meaning                     BenchReply
//   0       3       reserve           {0, available_after, dl}    .reserved(token: .zero, available:)
//   1       2       reserve           {1, available}              .outOfStock(available:)
//   2       1       reserve           unknown SKU                 .failed(code: 2)
//   3       1       reserve           token id exists             .failed(code: 3)
//   4..7    1       confirm/release   unknown / confirmed /       .tokenGone
//                                     released / expired
//   8       1       confirm/release   KEYS of another SKU         .failed(code: 8)
//   9       2       confirm           {9, qty}                    .confirmed
//   10      2       release           {10, qty}                   .released
//   -ERR (e.g. NOSCRIPT, a script error)                          .failed(code: -1)
//   any other well-formed RESP reply                              .failed(code: -2)

/// The status integers the scripts answer with (first element of the reply array).
public enum RedisStatus {
    public static let reserved: Int64 = 0
    public static let outOfStock: Int64 = 1
    public static let unknownSKU: Int64 = 2
    public static let tokenExists: Int64 = 3
    public static let tokenUnknown: Int64 = 4
    public static let alreadyConfirmed: Int64 = 5
    public static let alreadyReleased: Int64 = 6
    public static let expired: Int64 = 7
    public static let wrongSKU: Int64 = 8
    public static let confirmed: Int64 = 9
    public static let released: Int64 = 10

    /// `.failed(code:)` for an error reply (`-ERR ...`, `-NOSCRIPT ...`).
    public static let errorReplyCode: Int32 = -1
    /// `.failed(code:)` for a well-formed reply none of the scripts gives.
    public static let unexpectedReplyCode: Int32 = -2
}

/// The Redis key names of the design (the braces are Redis hash tags: a
/// SKU's three counters share one cluster slot).
public enum RedisKeys {
    public static let deadlines = "deadlines"
    public static func avail(_ sku: String) -> String { "avail:{\(sku)}" }
    public static func held(_ sku: String) -> String { "held:{\(sku)}" }
    public static func sold(_ sku: String) -> String { "sold:{\(sku)}" }
    public static func token(_ hex: String) -> String { "tok:{\(hex)}" }

    /// The token as the scripts name it: 32 lowercase hex digits, `hi` then
    /// `lo`, each big-endian.
    public static func hex(_ token: BenchToken) -> String {
        var s = ""
        s.reserveCapacity(32)
        for word in [token.hi, token.lo] {
            for shift in stride(from: 60, through: 0, by: -4) {
                let nibble = UInt8((word >> UInt64(shift)) & 0xF)
                s.unicodeScalars.append(Unicode.Scalar(nibble < 10 ? 48 + nibble : 87 + nibble))
            }
        }
        return s
    }
}

/// RESP + EVALSHA for stockbench's Redis baseline. One value per connection:
/// the request templates are shared (immutable), the carry buffer for a reply
/// split across reads is copied on write, so a copied value never shares it.
public struct RedisWire: WireFormat, Sendable {
    /// Largest reply accepted, and the carry buffer's size.
    public static let maxReplyBytes = 64 * 1024

    private let templates: Templates
    private var carry: Carry
    public let maxRequestBytes: Int

    /// - Parameters:
    ///   - skus: SKU names by index (`BenchOp`'s `sku` indexes this).
    ///   - reserveSHA, confirmSHA, releaseSHA: the SHA1s `SCRIPT LOAD`
    ///     answered (40 hex digits; see `RedisAdmin.loadScripts()`).
    public init(skus: [String], reserveSHA: String, confirmSHA: String, releaseSHA: String) {
        templates = Templates(skus: skus, reserveSHA: reserveSHA, confirmSHA: confirmSHA, releaseSHA: releaseSHA)
        carry = Carry(capacity: Self.maxReplyBytes)
        maxRequestBytes = templates.maxRequestBytes
    }

    /// Bytes of a reply split across reads, kept for the next `consume`.
    public var carriedBytes: Int { carry.count }

    // MARK: Encoding

    public mutating func encode(_ op: BenchOp, into out: inout OutBuffer) {
        let t = templates
        switch op {
        case let .reserve(sku, quantity, ttlMs, token):
            let s = t.index(sku)
            let prefix = t.segment(s, Templates.reservePrefix)
            let middle = t.segment(s, Templates.reserveMiddle)
            let need = prefix.count + 32 + middle.count + Self.bulkDecimalBytes(quantity)
                + Self.bulkDecimalBytes(ttlMs) + 5 + 32 + 2
            precondition(out.remaining >= need, "OutBuffer overflow: size it for the pipeline depth")
            var p = out.base + out.count
            p = Self.copy(prefix, to: p)
            p = Self.writeHex(token, to: p)
            p = Self.copy(middle, to: p)
            p = Self.writeBulkDecimal(quantity, to: p)
            p = Self.writeBulkDecimal(ttlMs, to: p)
            p = Self.writeTokenArg(token, to: p)
            assert(p - (out.base + out.count) == need)
            out.count += need
        case let .confirm(sku, token):
            encodeDecision(t.confirmPrefix, sku: sku, token: token, into: &out)
        case let .release(sku, token):
            encodeDecision(t.releasePrefix, sku: sku, token: token, into: &out)
        }
    }

    @inline(__always)
    private func encodeDecision(_ prefix: UnsafeRawBufferPointer, sku: Int32, token: BenchToken,
                                into out: inout OutBuffer) {
        let t = templates
        let middle = t.segment(t.index(sku), Templates.decisionMiddle)
        let need = prefix.count + 32 + middle.count + 32 + 2
        precondition(out.remaining >= need, "OutBuffer overflow: size it for the pipeline depth")
        var p = out.base + out.count
        p = Self.copy(prefix, to: p)
        p = Self.writeHex(token, to: p)
        p = Self.copy(middle, to: p)
        p = Self.writeHex(token, to: p)
        p.storeBytes(of: UInt8(ascii: "\r"), toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: 1, as: UInt8.self)
        out.count += need
    }

    @inline(__always)
    private static func copy(_ bytes: UnsafeRawBufferPointer, to p: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        p.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        return p + bytes.count
    }

    /// 32 lowercase hex digits: `hi` then `lo`, most significant nibble first.
    @inline(__always)
    private static func writeHex(_ token: BenchToken, to p: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        writeHex64(token.hi, to: p)
        writeHex64(token.lo, to: p + 16)
        return p + 32
    }

    @inline(__always)
    private static func writeHex64(_ v: UInt64, to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: hex8(UInt32(truncatingIfNeeded: v >> 32)), toByteOffset: 0, as: UInt64.self)
        p.storeBytes(of: hex8(UInt32(truncatingIfNeeded: v)), toByteOffset: 8, as: UInt64.self)
    }

    /// The 8 lowercase hex digits of `x`, most significant first, as the
    /// bytes of a little-endian UInt64 (branchless: one nibble per byte,
    /// then '0' + n, plus 39 more where n > 9 to land on 'a'...'f').
    @inline(__always)
    static func hex8(_ x: UInt32) -> UInt64 {
        var v = UInt64(x)
        v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF
        v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF
        v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F  // byte k = nibble k (k = 0: least significant)
        let letters = ((v &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101  // 1 where nibble > 9
        v = v &+ 0x3030_3030_3030_3030 &+ letters &* 39
        return v.byteSwapped.littleEndian  // most significant digit at the lowest address
    }

    /// "$32\r\n" + hex + "\r\n": the token as ARGV.
    @inline(__always)
    private static func writeTokenArg(_ token: BenchToken, to p: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        p.storeBytes(of: UInt8(ascii: "$"), toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: UInt8(ascii: "3"), toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt8(ascii: "2"), toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: UInt8(ascii: "\r"), toByteOffset: 3, as: UInt8.self)
        p.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: 4, as: UInt8.self)
        var q = writeHex(token, to: p + 5)
        q.storeBytes(of: UInt8(ascii: "\r"), toByteOffset: 0, as: UInt8.self)
        q.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: 1, as: UInt8.self)
        q += 2
        return q
    }

    @inline(__always)
    private static func decimalDigits(_ v: UInt32) -> Int {
        var n = 1
        var x = v
        while x >= 10 {
            x /= 10
            n += 1
        }
        return n
    }

    /// Bytes of "$<d>\r\n<digits>\r\n" for `v`.
    @inline(__always)
    static func bulkDecimalBytes(_ v: UInt32) -> Int {
        let d = decimalDigits(v)
        return 1 + (d >= 10 ? 2 : 1) + 2 + d + 2
    }

    @inline(__always)
    private static func writeBulkDecimal(_ v: UInt32, to p: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        let d = decimalDigits(v)
        var q = p
        q.storeBytes(of: UInt8(ascii: "$"), as: UInt8.self)
        q += 1
        if d >= 10 {
            q.storeBytes(of: UInt8(ascii: "1"), toByteOffset: 0, as: UInt8.self)
            q.storeBytes(of: UInt8(48 + d - 10), toByteOffset: 1, as: UInt8.self)
            q += 2
        } else {
            q.storeBytes(of: UInt8(48 + d), as: UInt8.self)
            q += 1
        }
        q.storeBytes(of: UInt8(ascii: "\r"), toByteOffset: 0, as: UInt8.self)
        q.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: 1, as: UInt8.self)
        q += 2
        var x = v
        var i = d - 1
        while i >= 0 {
            q.storeBytes(of: UInt8(48 + x % 10), toByteOffset: i, as: UInt8.self)
            x /= 10
            i -= 1
        }
        q += d
        q.storeBytes(of: UInt8(ascii: "\r"), toByteOffset: 0, as: UInt8.self)
        q.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: 1, as: UInt8.self)
        return q + 2
    }

    // MARK: Decoding

    public mutating func consume(_ input: UnsafeRawBufferPointer, _ onReply: (BenchReply) -> Void) -> Bool {
        let n = input.count
        guard n > 0, let base = input.baseAddress else { return true }
        let cap = Self.maxReplyBytes
        var offset = 0
        // 1. Complete a reply split across reads: append this read to the
        // carried bytes a step at a time until the reply parses.
        if carry.count > 0 {
            if !isKnownUniquelyReferenced(&carry) { carry = carry.clone() }
            let c = carry
            let pre = c.count
            var taken = 0
            completing: while true {
                let room = cap - c.count
                let left = n - taken
                if left == 0 { return true }  // all of it carried, still incomplete
                if room == 0 { return false }  // a reply larger than the carry buffer
                // Small steps first: a reply is usually a few dozen bytes.
                let step = min(left, room, max(256, c.count))
                (c.base + c.count).copyMemory(from: base + taken, byteCount: step)
                c.count += step
                taken += step
                switch RESPScanner.scan(UnsafeRawPointer(c.base), c.count, maxReply: cap) {
                case .needMore:
                    continue completing
                case .malformed:
                    return false
                case let .reply(reply, length):
                    assert(length > pre, "the carried bytes were an incomplete reply")
                    onReply(reply)
                    offset = length - pre  // the rest of this read is parsed in place
                    c.count = 0
                    break completing
                }
            }
        }
        // 2. Replies wholly inside this read, parsed where they lie (never
        // looking more than `cap` bytes ahead: a longer reply is an error
        // however the reads split it).
        while offset < n {
            switch RESPScanner.scan(base + offset, min(n - offset, cap), maxReply: cap) {
            case let .reply(reply, length):
                onReply(reply)
                offset += length
            case .needMore:
                let rest = n - offset
                if rest >= cap { return false }
                if !isKnownUniquelyReferenced(&carry) { carry = carry.clone() }
                carry.base.copyMemory(from: base + offset, byteCount: rest)
                carry.count = rest
                return true
            case .malformed:
                return false
            }
        }
        return true
    }
}

// MARK: - RESP scanning

/// Finds the end of one top-level RESP2 reply in a byte range and maps it to
/// a `BenchReply`; never allocates, never looks past `count`.
enum RESPScanner {
    enum Scan {
        case reply(BenchReply, length: Int)
        case needMore
        case malformed
    }

    enum Step {
        case ok
        case needMore
        case malformed
    }

    static let cr = UInt8(ascii: "\r")
    static let lf = UInt8(ascii: "\n")

    @inline(__always)
    static func byte(_ p: UnsafeRawPointer, _ i: Int) -> UInt8 { p.load(fromByteOffset: i, as: UInt8.self) }

    /// Reads "<int>\r\n" at `pos` (the type byte already consumed).
    @inline(__always)
    static func readInteger(_ p: UnsafeRawPointer, _ n: Int, _ pos: inout Int, _ value: inout Int64) -> Step {
        var i = pos
        guard i < n else { return .needMore }
        var negative = false
        if byte(p, i) == UInt8(ascii: "-") {
            negative = true
            i += 1
        }
        var v: Int64 = 0
        var digits = 0
        while true {
            guard i < n else { return .needMore }
            let c = byte(p, i)
            if c == cr { break }
            let d = c &- 48
            guard d < 10 else { return .malformed }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int64(d))
            guard !o1, !o2 else { return .malformed }
            v = s
            digits += 1
            i += 1
        }
        guard digits > 0 else { return .malformed }
        guard i + 1 < n else { return .needMore }
        guard byte(p, i + 1) == lf else { return .malformed }
        pos = i + 2
        value = negative ? -v : v
        return .ok
    }

    /// Skips "<text>\r\n" at `pos` (a simple string or an error).
    @inline(__always)
    static func skipLine(_ p: UnsafeRawPointer, _ n: Int, _ pos: inout Int) -> Step {
        guard pos < n else { return .needMore }
        guard let hit = memchr(p + pos, Int32(cr), n - pos) else { return .needMore }
        let i = UnsafeRawPointer(hit) - p
        guard i + 1 < n else { return .needMore }
        guard byte(p, i + 1) == lf else { return .malformed }
        pos = i + 2
        return .ok
    }

    /// Skips one complete value of any type at `pos`, nested arrays included
    /// (a count of values still owed replaces a stack).
    static func skipValue(_ p: UnsafeRawPointer, _ n: Int, _ pos: inout Int, maxReply: Int) -> Step {
        var owed = 1
        var i = pos
        var v: Int64 = 0
        while owed > 0 {
            guard i < n else { return .needMore }
            let type = byte(p, i)
            i += 1
            owed -= 1
            let step: Step
            switch type {
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                step = skipLine(p, n, &i)
            case UInt8(ascii: ":"):
                step = readInteger(p, n, &i, &v)
            case UInt8(ascii: "$"):
                step = readInteger(p, n, &i, &v)
                guard case .ok = step else { break }
                if v == -1 { continue }  // null bulk string
                guard v >= 0, v <= maxReply else { return .malformed }
                let len = Int(v)
                guard i + len + 2 <= n else { return .needMore }
                guard byte(p, i + len) == cr, byte(p, i + len + 1) == lf else { return .malformed }
                i += len + 2
            case UInt8(ascii: "*"):
                step = readInteger(p, n, &i, &v)
                guard case .ok = step else { break }
                if v == -1 { continue }  // null array
                // Every element takes at least 3 bytes ("+\r\n").
                guard v >= 0, v <= maxReply / 3 else { return .malformed }
                owed += Int(v)
            default:
                return .malformed
            }
            switch step {
            case .ok: continue
            case .needMore: return .needMore
            case .malformed: return .malformed
            }
        }
        pos = i
        return .ok
    }

    /// One top-level reply at the start of `p[0..<n]`.
    static func scan(_ p: UnsafeRawPointer, _ n: Int, maxReply: Int) -> Scan {
        guard n > 0 else { return .needMore }
        var pos = 1
        switch byte(p, 0) {
        case UInt8(ascii: "-"):
            switch skipLine(p, n, &pos) {
            case .ok: return .reply(.failed(code: RedisStatus.errorReplyCode), length: pos)
            case .needMore: return .needMore
            case .malformed: return .malformed
            }
        case UInt8(ascii: "*"):
            var count: Int64 = 0
            switch readInteger(p, n, &pos, &count) {
            case .ok: break
            case .needMore: return .needMore
            case .malformed: return .malformed
            }
            if count == -1 { return .reply(.failed(code: RedisStatus.unexpectedReplyCode), length: pos) }
            guard count >= 0, count <= maxReply / 3 else { return .malformed }
            // The first three elements, when they are integers.
            var e0: Int64 = 0, e1: Int64 = 0
            var allInts = true
            var index: Int64 = 0
            while index < count {
                guard pos < n else { return .needMore }
                var step: Step
                if byte(p, pos) == UInt8(ascii: ":") {
                    pos += 1
                    var v: Int64 = 0
                    step = readInteger(p, n, &pos, &v)
                    if index == 0 { e0 = v } else if index == 1 { e1 = v }
                } else {
                    allInts = false
                    step = skipValue(p, n, &pos, maxReply: maxReply)
                }
                switch step {
                case .ok: break
                case .needMore: return .needMore
                case .malformed: return .malformed
                }
                index += 1
            }
            return .reply(allInts ? map(status: e0, second: e1, count: count)
                                  : .failed(code: RedisStatus.unexpectedReplyCode),
                          length: pos)
        case UInt8(ascii: "+"), UInt8(ascii: ":"), UInt8(ascii: "$"):
            pos = 0
            switch skipValue(p, n, &pos, maxReply: maxReply) {
            case .ok: return .reply(.failed(code: RedisStatus.unexpectedReplyCode), length: pos)
            case .needMore: return .needMore
            case .malformed: return .malformed
            }
        default:
            return .malformed
        }
    }

    /// An all-integer array by its status (first element) and length.
    @inline(__always)
    static func map(status: Int64, second: Int64, count: Int64) -> BenchReply {
        switch (status, count) {
        case (RedisStatus.reserved, 3): return .reserved(token: .zero, available: second)
        case (RedisStatus.outOfStock, 2): return .outOfStock(available: second)
        case (RedisStatus.confirmed, 2): return .confirmed
        case (RedisStatus.released, 2): return .released
        case (RedisStatus.tokenUnknown...RedisStatus.expired, 1): return .tokenGone
        case (RedisStatus.unknownSKU, 1), (RedisStatus.tokenExists, 1), (RedisStatus.wrongSKU, 1):
            return .failed(code: Int32(status))
        default:
            return .failed(code: RedisStatus.unexpectedReplyCode)
        }
    }
}

// MARK: - Storage

/// The carry buffer of one connection (copied on write by `RedisWire`).
final class Carry: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    func clone() -> Carry {
        let c = Carry(capacity: capacity)
        c.base.copyMemory(from: base, byteCount: count)
        c.count = count
        return c
    }

    deinit { base.deallocate() }
}

/// The request bytes that do not change per request, built once: per SKU
/// everything of a reserve up to the token key, the part between the token
/// key and the quantity, and the part of a confirm/release between the
/// token key and the token argument. Immutable after init.
final class Templates: @unchecked Sendable {
    static let reservePrefix = 0
    static let reserveMiddle = 1
    static let decisionMiddle = 2
    static let segmentsPerSKU = 3

    let skuCount: Int
    let maxRequestBytes: Int
    /// All bytes; `offsets[i * 3 + k]` / `lengths[...]` locate SKU i's segment k.
    private let bytes: UnsafeMutableRawPointer
    private let offsets: UnsafeMutablePointer<Int>
    private let lengths: UnsafeMutablePointer<Int>
    /// "*9\r\n$7\r\nEVALSHA\r\n$40\r\n<sha>\r\n$1\r\n5\r\n$38\r\ntok:{" for confirm / release.
    let confirmPrefix: UnsafeRawBufferPointer
    let releasePrefix: UnsafeRawBufferPointer

    init(skus: [String], reserveSHA: String, confirmSHA: String, releaseSHA: String) {
        precondition(!skus.isEmpty, "RedisWire: no SKUs")
        for sha in [reserveSHA, confirmSHA, releaseSHA] {
            precondition(sha.utf8.count == 40 && sha.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) },
                         "RedisWire: a script SHA1 must be 40 lowercase hex digits, got \(sha)")
        }
        func bulk(_ s: String) -> String { "$\(s.utf8.count)\r\n\(s)\r\n" }
        var all: [UInt8] = []
        var offs: [Int] = []
        var lens: [Int] = []
        var maxReq = 0
        let tokenArg = 5 + 32 + 2
        let maxDecimal = RedisWire.bulkDecimalBytes(UInt32.max)
        func add(_ s: String) {
            offs.append(all.count)
            lens.append(s.utf8.count)
            all.append(contentsOf: s.utf8)
        }
        let tokenKeyOpen = "$38\r\ntok:{"
        for sku in skus {
            precondition(!sku.isEmpty, "RedisWire: empty SKU name")
            // reserve: EVALSHA sha 4 avail held tok deadlines | sku qty ttl token
            let reservePrefix = "*11\r\n" + bulk("EVALSHA") + bulk(reserveSHA) + bulk("4")
                + bulk(RedisKeys.avail(sku)) + bulk(RedisKeys.held(sku)) + tokenKeyOpen
            let reserveMiddle = "}\r\n" + bulk(RedisKeys.deadlines) + bulk(sku)
            // confirm/release: EVALSHA sha 5 tok avail held sold deadlines | token
            let decisionMiddle = "}\r\n" + bulk(RedisKeys.avail(sku)) + bulk(RedisKeys.held(sku))
                + bulk(RedisKeys.sold(sku)) + bulk(RedisKeys.deadlines) + "$32\r\n"
            add(reservePrefix)
            add(reserveMiddle)
            add(decisionMiddle)
            maxReq = max(maxReq, reservePrefix.utf8.count + 32 + reserveMiddle.utf8.count + 2 * maxDecimal + tokenArg)
        }
        let decisionPrefixC = "*9\r\n" + bulk("EVALSHA") + bulk(confirmSHA) + bulk("5") + tokenKeyOpen
        let decisionPrefixR = "*9\r\n" + bulk("EVALSHA") + bulk(releaseSHA) + bulk("5") + tokenKeyOpen
        let confirmAt = all.count
        all.append(contentsOf: decisionPrefixC.utf8)
        let releaseAt = all.count
        all.append(contentsOf: decisionPrefixR.utf8)
        // A decision's largest request: its prefix plus the longest middle.
        var maxDecisionMiddle = 0
        for i in 0..<skus.count { maxDecisionMiddle = max(maxDecisionMiddle, lens[i * Self.segmentsPerSKU + Self.decisionMiddle]) }
        maxReq = max(maxReq, decisionPrefixC.utf8.count + 32 + maxDecisionMiddle + 32 + 2)

        skuCount = skus.count
        maxRequestBytes = maxReq
        let b = UnsafeMutableRawPointer.allocate(byteCount: all.count, alignment: 16)
        all.withUnsafeBytes { b.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let o = UnsafeMutablePointer<Int>.allocate(capacity: offs.count)
        o.initialize(from: offs, count: offs.count)
        let l = UnsafeMutablePointer<Int>.allocate(capacity: lens.count)
        l.initialize(from: lens, count: lens.count)
        bytes = b
        offsets = o
        lengths = l
        confirmPrefix = UnsafeRawBufferPointer(start: b + confirmAt, count: decisionPrefixC.utf8.count)
        releasePrefix = UnsafeRawBufferPointer(start: b + releaseAt, count: decisionPrefixR.utf8.count)
    }

    deinit {
        bytes.deallocate()
        offsets.deallocate()
        lengths.deallocate()
    }

    @inline(__always)
    func index(_ sku: Int32) -> Int {
        let i = Int(sku)
        precondition(i >= 0 && i < skuCount, "RedisWire: SKU index \(sku) out of range 0..<\(skuCount)")
        return i
    }

    @inline(__always)
    func segment(_ sku: Int, _ kind: Int) -> UnsafeRawBufferPointer {
        let k = sku * Self.segmentsPerSKU + kind
        return UnsafeRawBufferPointer(start: bytes + offsets[k], count: lengths[k])
    }
}
