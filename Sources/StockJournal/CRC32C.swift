import CCRC32C

/// CRC32C (Castagnoli) of records and snapshots, from the `CCRC32C` C target.
public enum CRC32C {
    /// Extends `crc` (0 to start) over `bytes`: `extend(extend(0, a), b) == extend(0, a + b)`.
    @inline(__always)
    public static func extend(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let p = bytes.baseAddress else { return crc }
        return ccrc32c_extend(crc, p, bytes.count)
    }

    /// The same through the slice-by-8 table whatever the CPU (tests compare the two).
    public static func extendWithTable(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let p = bytes.baseAddress else { return crc }
        return ccrc32c_extend_table(crc, p, bytes.count)
    }

    /// Whether `extend` uses the SSE4.2 instruction.
    public static var usesHardware: Bool { ccrc32c_hardware() != 0 }
}
