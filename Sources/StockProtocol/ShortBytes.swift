/// Up to 64 bytes stored inline — a SKU, a customer id, an idempotency key or
/// an order reference — so that a decoded request holds them without a heap
/// allocation and without building a `String`.
///
/// Bytes beyond `count` are always zero, which makes equality and hashing a
/// comparison of eight words.
public struct ShortBytes: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The capacity in bytes.
    public static let capacity = 64

    @usableFromInline var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    /// Number of bytes held (0...64).
    public private(set) var count: Int

    /// The empty value (used for "absent" optional fields on the wire).
    public static let empty = ShortBytes()

    /// An empty value.
    public init() {
        words = (0, 0, 0, 0, 0, 0, 0, 0)
        count = 0
    }

    /// Copies `bytes` (at most 64 of them).
    public init(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= ShortBytes.capacity, "ShortBytes holds at most 64 bytes")
        self.init()
        count = bytes.count
        withUnsafeMutableBytes(of: &words) { dst in
            if let base = bytes.baseAddress, bytes.count > 0 {
                dst.baseAddress!.copyMemory(from: base, byteCount: bytes.count)
            }
        }
    }

    /// The UTF-8 bytes of `string`, or nil if it is longer than 64 bytes.
    public init?(_ string: String) {
        var s = string
        let made: ShortBytes? = s.withUTF8 { utf8 in
            guard utf8.count <= ShortBytes.capacity else { return nil }
            return ShortBytes(UnsafeRawBufferPointer(utf8))
        }
        guard let made else { return nil }
        self = made
    }

    /// Copies an array of bytes (at most 64).
    public init?(bytes: [UInt8]) {
        guard bytes.count <= ShortBytes.capacity else { return nil }
        self = bytes.withUnsafeBytes { ShortBytes($0) }
    }

    /// Whether no bytes are held.
    public var isEmpty: Bool { count == 0 }

    /// Calls `body` with a view of the held bytes.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: words) { all in
            try body(UnsafeRawBufferPointer(rebasing: all[0..<count]))
        }
    }

    /// Whether the held bytes start with `prefix`'s.
    public func hasPrefix(_ prefix: ShortBytes) -> Bool {
        guard prefix.count <= count else { return false }
        return withUnsafeBytes { mine in
            prefix.withUnsafeBytes { p in
                for i in 0..<p.count where mine[i] != p[i] { return false }
                return true
            }
        }
    }

    /// The held bytes as an array.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The bytes decoded as UTF-8 (invalid sequences repaired).
    public var string: String { withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }

    public var description: String { string }

    /// A 64-bit hash of the bytes (FNV-1a over words, then a finaliser):
    /// cheap, stable across runs, good enough to spread an open-addressing table.
    @inlinable
    public var hash64: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(truncatingIfNeeded: count)
        let n = (count + 7) / 8
        Swift.withUnsafeBytes(of: words) { raw in
            for i in 0..<n {
                let w = raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                h = (h ^ w) &* 0x0000_0100_0000_01b3
                h ^= h >> 29
            }
        }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }

    public static func == (a: ShortBytes, b: ShortBytes) -> Bool {
        a.count == b.count && a.words.0 == b.words.0 && a.words.1 == b.words.1
            && a.words.2 == b.words.2 && a.words.3 == b.words.3 && a.words.4 == b.words.4
            && a.words.5 == b.words.5 && a.words.6 == b.words.6 && a.words.7 == b.words.7
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(hash64)
    }

    /// Byte-wise lexicographic order (as `STOCK_LIST` would sort, were it sorted).
    public static func < (a: ShortBytes, b: ShortBytes) -> Bool {
        a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.lexicographicallyPrecedes(y) } }
    }
}

/// A SKU: 1...64 bytes of UTF-8 without control characters (`SKU.validate`).
public typealias SKU = ShortBytes

extension ShortBytes {
    /// Whether these bytes are a valid SKU: not empty, at most
    /// `Limits.maxSKULength` bytes, well-formed UTF-8, no C0/DEL control characters.
    public var isValidSKU: Bool {
        count > 0 && count <= Limits.maxSKULength && withUnsafeBytes { ShortBytes.isValidText($0) }
    }

    /// Well-formed UTF-8 without control characters (bytes 0x00–0x1F and 0x7F).
    public static func isValidText(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for b in bytes where b < 0x20 || b == 0x7F { return false }
        return UTF8Validation.isValid(bytes)
    }
}

/// Strict UTF-8 validation (no overlongs, no surrogates, nothing above U+10FFFF)
/// without creating a `String`.
enum UTF8Validation {
    static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            let b0 = bytes[i]
            if b0 < 0x80 { i += 1; continue }
            let need: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch b0 {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default: return false
            }
            // The sequence's continuation bytes are at i+1 ... i+need.
            guard i + need < n else { return false }
            let b1 = bytes[i + 1]
            guard b1 >= lo && b1 <= hi else { return false }
            var k = 2
            while k <= need {
                let b = bytes[i + k]
                guard b >= 0x80 && b <= 0xBF else { return false }
                k += 1
            }
            i += need + 1
        }
        return true
    }
}
