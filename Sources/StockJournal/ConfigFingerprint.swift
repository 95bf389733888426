/// The `fingerprint` of REPL_HELLO (PROTOCOL.md §10; docs/replication.md §3,
/// "Configuration mismatch"): one number for the settings a journal's
/// meaning depends on, so a standby whose journal would not replay the same
/// on the primary is refused (CONFIG_MISMATCH, field `fingerprint`) instead
/// of being replicated into.
///
/// FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over,
/// in this order, all little-endian:
///
/// | field         | size | why it matters                                        |
/// |---------------|-----:|-------------------------------------------------------|
/// | tag           |    1 | this layout (`tag`, 1); another layout is another tag |
/// | tokenCapacity |    8 | token slots: a restored core puts tokens in their slots |
/// | maxTTLMs      |    4 | `--max-ttl`: the deadlines the journal may hold        |
/// | fateLimit     |    8 | decided tokens remembered (FateMemory), in the state   |
/// | journalFormat |    1 | the record format (RecordCodec.formatVersion)          |
///
/// Stable across releases: nodes of different builds must get the same value
/// from the same settings (ConfigFingerprintTests pins one). FNV-1a rather
/// than Swift's `Hasher`, which is seeded per process.
public enum ConfigFingerprint {
    /// The layout above.
    static let tag: UInt8 = 1

    /// The fingerprint of these settings (table above).
    public static func compute(tokenCapacity: Int, maxTTLMs: UInt32, fateLimit: Int,
                               journalFormat: UInt8 = RecordCodec.formatVersion) -> UInt64 {
        precondition(tokenCapacity >= 0 && fateLimit >= 0, "capacities are counts")
        var h = FNV1a64()
        h.add(tag)
        h.add(UInt64(tokenCapacity), size: 8)
        h.add(UInt64(maxTTLMs), size: 4)
        h.add(UInt64(fateLimit), size: 8)
        h.add(journalFormat)
        return h.value
    }
}

/// FNV-1a, 64 bits (Fowler–Noll–Vo; the IETF draft's parameters).
struct FNV1a64 {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    /// One byte.
    mutating func add(_ byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }

    /// The low `size` bytes of `v`, least significant first (little-endian).
    mutating func add(_ v: UInt64, size: Int) {
        precondition(size >= 1 && size <= 8 && (size == 8 || v >> (8 * size) == 0), "\(v) fits in \(size) bytes")
        for i in 0..<size { add(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }
}
