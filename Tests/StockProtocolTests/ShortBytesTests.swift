import Testing
import TestSupport
@testable import StockProtocol

@Suite("ShortBytes, UTF-8 validation, tokens", .cpuHeavy)
struct ShortBytesTests {
    static func valid(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { UTF8Validation.isValid($0) }
    }

    static func text(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { ShortBytes.isValidText($0) }
    }

    @Test("well-formed UTF-8 is accepted", arguments: [
        [UInt8](), [0x41], [0x7F],
        [0xC2, 0x80], [0xDF, 0xBF],  // U+0080, U+07FF
        [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF],  // U+0800, U+D7FF, U+E000, U+FFFF
        [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],  // U+10000, U+10FFFF
        [0xF0, 0x9F, 0x98, 0x80],  // 😀, 4-byte emoji
        Array("VESTE-ÉTÉ-M".utf8), Array("CAP-🧢-L".utf8),
    ])
    func accepts(_ bytes: [UInt8]) {
        #expect(Self.valid(bytes), "\(hexString(bytes))")
        #expect(String(validating: bytes, as: UTF8.self) != nil)
    }

    @Test("ill-formed UTF-8 is rejected", arguments: [
        // overlong encodings
        [0xC0, 0x80], [0xC0, 0xAF], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF],
        [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF],
        // surrogates U+D800, U+DBFF, U+DC00, U+DFFF
        [0xED, 0xA0, 0x80], [0xED, 0xAF, 0xBF], [0xED, 0xB0, 0x80], [0xED, 0xBF, 0xBF],
        // above U+10FFFF
        [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xF7, 0xBF, 0xBF, 0xBF], [0xF8], [0xFE], [0xFF],
        // truncated sequences, at the end and in the middle
        [0xC3], [0xE2, 0x82], [0xF0, 0x9F, 0x98], [0x41, 0xE2, 0x82], [0xE2, 0x82, 0x41], [0xF0, 0x9F, 0x41, 0x41],
        [0xC3, 0x28],
        // lone continuation bytes
        [0x80], [0xBF], [0x41, 0x80, 0x41],
    ])
    func rejects(_ bytes: [UInt8]) {
        #expect(!Self.valid(bytes), "\(hexString(bytes))")
        #expect(String(validating: bytes, as: UTF8.self) == nil)
    }

    @Test("the validator agrees with the standard library on 200,000 random byte strings")
    func differential() {
        var gen = Gen(seed: 0x0075_7466_0008)
        // Bytes biased towards lead and continuation bytes, so sequences form.
        let alphabet: [UInt8] = [0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                                 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
        var disagreements = 0
        for _ in 0..<200_000 {
            let bytes = (0..<gen.int(0...8)).map { _ in
                gen.chance(70) ? alphabet[gen.int(0...(alphabet.count - 1))] : gen.u8()
            }
            let expected = String(validating: bytes, as: UTF8.self) != nil
            if Self.valid(bytes) != expected {
                disagreements += 1
                if disagreements <= 5 { Issue.record("\(hexString(bytes)): stdlib says \(expected)") }
            }
        }
        #expect(disagreements == 0)
    }

    @Test("text: control characters are refused, everything else that is UTF-8 is fine")
    func controlCharacters() {
        for b in UInt8(0x00)...0x1F { #expect(!Self.text([0x41, b])) }
        #expect(!Self.text([0x7F]))
        #expect(Self.text([0x20]))
        #expect(Self.text([0x7E]))
        #expect(Self.text([0xC2, 0x80]))  // U+0080 (C1 control): bytes ≥ 0x20, allowed by the spec's byte rule
        #expect(Self.text([]))
    }

    @Test("SKU validity: 1 to 64 bytes of text")
    func skuValidity() throws {
        #expect(!ShortBytes.empty.isValidSKU)
        #expect(try #require(ShortBytes("A")).isValidSKU)
        #expect(try #require(ShortBytes(String(repeating: "S", count: 64))).isValidSKU)
        #expect(try #require(ShortBytes(String(repeating: "É", count: 32))).isValidSKU)
        #expect(ShortBytes(String(repeating: "S", count: 65)) == nil)
        #expect(ShortBytes(bytes: [UInt8](repeating: 0x53, count: 65)) == nil)
        #expect(try #require(ShortBytes("CAP-🧢-L")).isValidSKU)
        #expect(!(try #require(ShortBytes(bytes: [0x41, 0x09]))).isValidSKU)
        #expect(!(try #require(ShortBytes(bytes: [0x41, 0xED, 0xA0, 0x80]))).isValidSKU)
        #expect(!(try #require(ShortBytes(bytes: [0x41, 0xC3]))).isValidSKU)
    }

    @Test("ShortBytes: bytes, equality, hashing and order are by content")
    func shortBytes() throws {
        var gen = Gen(seed: 0x5B)
        for _ in 0..<2000 {
            let a = gen.opaque()
            let x = try #require(ShortBytes(bytes: a))
            let y = try #require(ShortBytes(bytes: a))
            #expect(x.bytes == a)
            #expect(x.count == a.count)
            #expect(x == y)
            #expect(x.hashValue == y.hashValue)
            #expect(x.hash64 == y.hash64)
            let b = gen.opaque()
            let z = try #require(ShortBytes(bytes: b))
            #expect((x == z) == (a == b))
            #expect((x < z) == a.lexicographicallyPrecedes(b))
        }
        // Distinct lengths of zero bytes differ.
        #expect(ShortBytes(bytes: [0])! != ShortBytes(bytes: [0, 0])!)
        #expect(ShortBytes(bytes: [])! == .empty)
        #expect(ShortBytes("VESTE-ÉTÉ-M")!.string == "VESTE-ÉTÉ-M")
    }

    @Test("Token: description is the 32 hex digits of its wire bytes and parses back")
    func tokenHex() throws {
        let t = Token(slot: 1, generation: 1, secret: 0x0123_4567_89AB_CDEF)
        #expect(t.description == "0100000001000000efcdab8967452301")
        #expect(Token(hex: "0100000001000000efcdab8967452301") == t)
        #expect(Token(hex: "0100000001000000EFCDAB8967452301") == t)
        #expect(Token(hex: "") == nil)
        #expect(Token(hex: "0100000001000000efcdab896745230") == nil)  // 31 digits
        #expect(Token(hex: "0100000001000000efcdab896745230100") == nil)  // 34 digits
        #expect(Token(hex: "0100000001000000efcdab896745230g") == nil)
        #expect(Token(hex: "01000000 1000000efcdab8967452301") == nil)

        var gen = Gen(seed: 0x70C3)
        for _ in 0..<5000 {
            let token = gen.token()
            let hex = token.description
            #expect(hex.utf8.count == 32)
            #expect(hex == JSON.token(token).string)  // same as the wire bytes in hex
            #expect(Token(hex: hex) == token)
            #expect(Token(hex: hex.uppercased()) == token)
        }
        #expect(Token(slot: .max, generation: .max, secret: .max).description == String(repeating: "f", count: 32))
    }

    @Test("Hex: round trip of arbitrary bytes")
    func hex() {
        var gen = Gen(seed: 0x4E7)
        for _ in 0..<1000 {
            let b = (0..<gen.int(0...40)).map { _ in gen.u8() }
            #expect(Hex.encode(b) == hexString(b))
            #expect(Hex.decode(Hex.encode(b)) == b)
        }
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}
