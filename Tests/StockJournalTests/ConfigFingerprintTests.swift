import StockJournal
import Testing
import TestSupport

/// REPL_HELLO's config fingerprint (ConfigFingerprint.swift): FNV-1a 64 over
/// a tag and the fields, little-endian, in the documented order — pinned, so
/// a change that would make two releases disagree fails here.
@Suite("Config fingerprint", .cpuHeavy)
struct ConfigFingerprintTests {
    /// FNV-1a 64, written out again from its definition.
    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 14_695_981_039_346_656_037
        for b in bytes { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
        return h
    }

    static func littleEndian<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
    }

    /// The documented layout: tag 1, tokenCapacity u64, maxTTLMs u32, fateLimit u64, journalFormat u8.
    static func layout(_ tokens: Int, _ ttl: UInt32, _ fates: Int, _ format: UInt8) -> [UInt8] {
        [1] + littleEndian(UInt64(tokens)) + littleEndian(ttl) + littleEndian(UInt64(fates)) + [format]
    }

    /// Values computed outside Swift (Python, the same layout): they must never change.
    @Test func pinned() {
        #expect(ConfigFingerprint.compute(tokenCapacity: 1 << 20, maxTTLMs: 3_600_000, fateLimit: 131_072,
                                          journalFormat: 1) == 0xFF40_CDA3_48AA_A8F1)
        #expect(ConfigFingerprint.compute(tokenCapacity: 16, maxTTLMs: 1, fateLimit: 0, journalFormat: 1)
                == 0x3FDC_8834_4281_D144)
        #expect(ConfigFingerprint.compute(tokenCapacity: 0, maxTTLMs: 0, fateLimit: 0, journalFormat: 0)
                == 0x182A_0A14_91F2_CC04)
    }

    /// The reference FNV-1a against published vectors, then the fingerprint against it on random settings.
    @Test func matchesTheLayout() {
        #expect(Self.fnv1a([]) == 0xCBF2_9CE4_8422_2325)
        #expect(Self.fnv1a(Array("a".utf8)) == 0xAF63_DC4C_8601_EC8C)
        #expect(Self.fnv1a(Array("foobar".utf8)) == 0x8594_4171_F739_67E8)
        var rng = SplitMix64(seed: 0xF1_9E)
        for _ in 0..<200 {
            let tokens = Int(rng.next() >> 1), ttl = UInt32(truncatingIfNeeded: rng.next())
            let fates = Int(rng.next() >> 1), format = UInt8(truncatingIfNeeded: rng.next())
            #expect(ConfigFingerprint.compute(tokenCapacity: tokens, maxTTLMs: ttl, fateLimit: fates,
                                              journalFormat: format)
                    == Self.fnv1a(Self.layout(tokens, ttl, fates, format)))
        }
    }

    /// Every field counts, and so does its place: swapped values differ.
    @Test func everyFieldCounts() {
        func fp(_ tokens: Int, _ ttl: UInt32, _ fates: Int, _ format: UInt8) -> UInt64 {
            ConfigFingerprint.compute(tokenCapacity: tokens, maxTTLMs: ttl, fateLimit: fates, journalFormat: format)
        }
        let base = fp(1 << 20, 60_000, 1 << 17, 1)
        let changed = [fp((1 << 20) + 1, 60_000, 1 << 17, 1), fp(1 << 20, 60_001, 1 << 17, 1),
                       fp(1 << 20, 60_000, (1 << 17) - 1, 1), fp(1 << 20, 60_000, 1 << 17, 2),
                       fp(1 << 17, 60_000, 1 << 20, 1)]
        #expect(Set(changed + [base]).count == changed.count + 1)
    }

    /// The default journal format is the record format's version.
    @Test func defaultFormat() {
        #expect(RecordCodec.formatVersion == 1)
        #expect(ConfigFingerprint.compute(tokenCapacity: 1 << 20, maxTTLMs: 3_600_000, fateLimit: 131_072)
                == 0xFF40_CDA3_48AA_A8F1)
    }
}
