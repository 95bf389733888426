import StockJournal
import StockProtocol
import Testing
import TestSupport

@Suite("Record codec", .cpuHeavy)
struct RecordCodecTests {
    @Test func roundTripEveryKind() {
        var gen = RandomRecords(seed: 0x5EC0_0001)
        let buffer = RecordBuffer(capacity: 512)
        for _ in 0..<2000 {
            for kind in RecordKind.allCases {
                let r = gen.sequenced(kind)
                let bytes = RecordCodec.encode(r)
                #expect(bytes.count <= RecordCodec.maxRecordBytes)
                bytes.withUnsafeBytes { #expect(RecordCodec.decode($0) == .record(r, bytes: bytes.count)) }
                buffer.reset()
                RecordCodec.encode(r, into: buffer)
                #expect(buffer.bytes == bytes)
                #expect(buffer.firstSeq == r.seq && buffer.maxSeq == r.seq && buffer.recordCount == 1)
            }
        }
    }

    /// The largest possible record (three 64-byte strings) stays within the stated bound.
    @Test func largestRecordFits() {
        let s = ShortBytes(bytes: [UInt8](repeating: 0x41, count: 64))!
        let t = Token(slot: .max, generation: .max, secret: .max)
        let r = SequencedRecord(seq: .max, timeMs: .max, record: .reserved(
            token: t, sku: s, quantity: .max, deadlineWallMs: .max, customer: s, idempotencyKey: s, bundle: true))
        #expect(RecordCodec.encode(r).count == 251)
        #expect(249 <= RecordCodec.maxRecordBytes)
    }

    /// A buffer of many records decodes back record by record; the buffer
    /// grows past its initial capacity and `reset` keeps it.
    @Test func bufferOfManyRecords() {
        var gen = RandomRecords(seed: 0x5EC0_0002)
        let buffer = RecordBuffer(capacity: 600)
        var records: [SequencedRecord] = []
        for i in 0..<500 {
            var r = gen.sequenced(RecordKind.allCases[i % 7])
            r.seq = UInt64(1000 - i)
            records.append(r)
            RecordCodec.encode(r, into: buffer)
        }
        #expect(buffer.recordCount == 500 && buffer.firstSeq == 1000 && buffer.maxSeq == 1000)
        buffer.withUnsafeBytes { raw in
            var at = 0
            for r in records {
                guard case .record(let got, let n) = RecordCodec.decode(UnsafeRawBufferPointer(rebasing: raw[at...])) else {
                    Issue.record("no record at \(at)")
                    return
                }
                #expect(got == r)
                at += n
            }
            #expect(at == raw.count)
        }
        buffer.reset()
        #expect(buffer.isEmpty && buffer.recordCount == 0)
    }

    /// Every byte changed to every other value: never decodes as a record.
    @Test func everySingleByteCorruptionIsDetected() {
        var gen = RandomRecords(seed: 0x5EC0_0003)
        var tally: [String: Int] = [:]
        for kind in RecordKind.allCases {
            let original = RecordCodec.encode(gen.sequenced(kind))
            for i in original.indices {
                for x in 1...255 {
                    var bytes = original
                    bytes[i] ^= UInt8(x)
                    let result = bytes.withUnsafeBytes { RecordCodec.decode($0) }
                    switch result {
                    case .record: Issue.record("\(kind): byte \(i) ^ \(x) decoded as a record")
                    case .needMore: tally["needMore", default: 0] += 1
                    case .corrupt(.badLength): tally["badLength", default: 0] += 1
                    case .corrupt(.badChecksum): tally["badChecksum", default: 0] += 1
                    case .corrupt(let other): Issue.record("checksum passed a damaged record: \(other)")
                    }
                }
            }
        }
        print("single-byte corruption outcomes: \(tally.sorted { $0.key < $1.key })")
    }

    @Test func truncatedRecordNeedsMore() {
        var gen = RandomRecords(seed: 0x5EC0_0004)
        for kind in RecordKind.allCases {
            let bytes = RecordCodec.encode(gen.sequenced(kind))
            for n in 0..<bytes.count {
                bytes.withUnsafeBytes { #expect(RecordCodec.decode(UnsafeRawBufferPointer(rebasing: $0[0..<n])) == .needMore) }
            }
        }
    }

    /// Checksum-valid records with bad contents are `.corrupt` with the right reason.
    @Test func badFieldsBehindAGoodChecksum() {
        func reseal(_ b: inout [UInt8]) {
            let crc = b.withUnsafeBytes { CRC32C.extend(0, UnsafeRawBufferPointer(rebasing: $0[8...])) }
            withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { b[4 + i] = $0[i] } }
        }
        let t = Token(slot: 1, generation: 2, secret: 3)
        var unknown = RecordCodec.encode(SequencedRecord(seq: 1, timeMs: 2, record: .extended(token: t, deadlineWallMs: 9)))
        unknown[8] = 99
        reseal(&unknown)
        #expect(unknown.withUnsafeBytes { RecordCodec.decode($0) } == .corrupt(.unknownKind(99)))

        var flags = RecordCodec.encode(SequencedRecord(seq: 1, timeMs: 2, record: .reserved(
            token: t, sku: SKU("A")!, quantity: 1, deadlineWallMs: 5, customer: .empty, idempotencyKey: .empty, bundle: false)))
        flags[flags.count - 3] = 2  // the flags byte (line and lines follow)
        reseal(&flags)
        guard case .corrupt(.badField) = flags.withUnsafeBytes({ RecordCodec.decode($0) }) else {
            Issue.record("flags 2 accepted")
            return
        }

        var emptySKU = RecordCodec.encode(SequencedRecord(seq: 1, timeMs: 2, record: .released(token: t, sku: SKU("A")!, quantity: 1)))
        emptySKU.remove(at: 25 + 16 + 1)  // drop the SKU's byte, fix length and kind layout
        emptySKU[25 + 16] = 0
        emptySKU[0] -= 1
        reseal(&emptySKU)
        guard case .corrupt(.badField) = emptySKU.withUnsafeBytes({ RecordCodec.decode($0) }) else {
            Issue.record("empty SKU accepted")
            return
        }

        var long = [UInt8](repeating: 0, count: 4)
        withUnsafeBytes(of: UInt32(600).littleEndian) { for i in 0..<4 { long[i] = $0[i] } }
        #expect(long.withUnsafeBytes { RecordCodec.decode($0) } == .corrupt(.badLength(600)))
    }
}
