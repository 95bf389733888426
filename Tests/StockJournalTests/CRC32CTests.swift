import StockJournal
import Testing
import TestSupport

@Suite("CRC32C", .cpuHeavy)
struct CRC32CTests {
    static func crc(_ bytes: [UInt8], table: Bool = false) -> UInt32 {
        bytes.withUnsafeBytes { table ? CRC32C.extendWithTable(0, $0) : CRC32C.extend(0, $0) }
    }

    @Test func checkValue() {
        let digits = Array("123456789".utf8)
        #expect(Self.crc(digits) == 0xE306_9283)
        #expect(Self.crc(digits, table: true) == 0xE306_9283)
        #expect(Self.crc([]) == 0)
    }

    /// RFC 3720 (iSCSI) B.4 vectors: 32 zero bytes, 32 0xFF bytes, 0...31 ascending.
    @Test func iscsiVectors() {
        for table in [false, true] {
            #expect(Self.crc([UInt8](repeating: 0, count: 32), table: table) == 0x8A91_36AA)
            #expect(Self.crc([UInt8](repeating: 0xFF, count: 32), table: table) == 0x62A8_AB43)
            #expect(Self.crc((0..<32).map { UInt8($0) }, table: table) == 0x46DD_794E)
        }
    }

    /// Hardware and table agree on random buffers at every alignment, and
    /// extending in two pieces equals one pass.
    @Test func hardwareAndTableAgree() {
        var rng = SplitMix64(seed: 0xC8C3_2C01)
        let big = rng.bytes(4096 + 16)
        print("CRC32C: \(CRC32C.usesHardware ? "SSE4.2 hardware" : "table only (no SSE4.2)")")
        big.withUnsafeBytes { raw in
            for _ in 0..<2000 {
                let start = Int(rng.next(below: 16))
                let len = Int(rng.next(below: 4097))
                let b = UnsafeRawBufferPointer(rebasing: raw[start..<(start + len)])
                let whole = CRC32C.extend(0, b)
                #expect(whole == CRC32C.extendWithTable(0, b))
                let cut = len == 0 ? 0 : Int(rng.next(below: UInt64(len)))
                let head = UnsafeRawBufferPointer(rebasing: b[0..<cut])
                let tail = UnsafeRawBufferPointer(rebasing: b[cut...])
                #expect(CRC32C.extend(CRC32C.extend(0, head), tail) == whole)
                #expect(CRC32C.extendWithTable(CRC32C.extendWithTable(0, head), tail) == whole)
            }
        }
    }
}
