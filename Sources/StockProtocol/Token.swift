/// A reservation token: 16 bytes on the wire, opaque to clients.
///
/// Layout (server's business, documented so a test can forge one): slot
/// index u32 LE, generation u32 LE, secret u64 LE. The slot index resolves
/// the token in O(1) — one array access, no hash probe — the generation
/// tells a stale token from the slot's current occupant, and the 64 random
/// bits of the secret make a token unguessable even when slot and
/// generation are known.
public struct Token: Sendable, Hashable, CustomStringConvertible {
    /// Bytes of a token on the wire.
    public static let size = 16

    /// Index of the server's token slot.
    public var slot: UInt32
    /// The slot's generation when the token was issued.
    public var generation: UInt32
    /// Random bits chosen at issue.
    public var secret: UInt64

    /// One word into the hasher, not three: every bit of the token still goes in (equal tokens
    /// hash equal), and a journal's shadow state hashes a token several times per record.
    public func hash(into hasher: inout Hasher) {
        hasher.combine((UInt64(slot) | UInt64(generation) << 32) ^ secret.byteSwapped)
    }

    /// A token from its parts.
    public init(slot: UInt32, generation: UInt32, secret: UInt64) {
        self.slot = slot
        self.generation = generation
        self.secret = secret
    }

    /// 32 lower-case hex digits of the wire bytes, as the CLI prints tokens.
    public var description: String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(Token.size)
        withUnsafeBytes(of: slot.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: generation.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: secret.littleEndian) { bytes.append(contentsOf: $0) }
        return Hex.encode(bytes)
    }

    /// Parses the 32-hex-digit form printed by `description`.
    public init?(hex: String) {
        guard let b = Hex.decode(hex), b.count == Token.size else { return nil }
        self = b.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            return try! r.readToken()  // exactly 16 bytes: cannot fail
        }
    }
}

/// Hex helpers shared by tokens, vectors and the CLI.
public enum Hex {
    /// Lower-case hex of `bytes`.
    public static func encode<S: Sequence<UInt8>>(_ bytes: S) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bytes of a hex string (either case, no separators), or nil.
    public static func decode(_ hex: String) -> [UInt8]? {
        let u = Array(hex.utf8)
        guard u.count % 2 == 0 else { return nil }
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

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
