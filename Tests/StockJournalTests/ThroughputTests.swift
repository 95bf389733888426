import StockJournal
import StockProtocol
import Testing
import TestSupport

/// Prints throughput figures (asserts only correctness: speed is for the
/// report, not a pass/fail criterion). Build with `-c release` for real numbers.
/// The pure speed measurements (the encode hot path, append + fdatasync
/// latency) are `make bench-journal` (bench/stockjournal-bench).
/// 100,000 records, not more: in a debug build a million took 16 s of one
/// core, which is a benchmark's cost, not a test's.
@Suite("Throughput", .cpuHeavy)
struct ThroughputTests {
    static let count = 100_000

    /// `count` records of a realistic mix: 100 SKUs; each token reserved (some
    /// with a customer), a third extended, then confirmed, released or expired
    /// about 50 tokens later, so ~50 are live at any time.
    static func records() -> [SequencedRecord] {
        var out: [SequencedRecord] = []
        out.reserveCapacity(count + 8)
        let skus = (0..<100).map { SKU("aurora-jacket-\($0)")! }
        let customer = ShortBytes("viewer-000123")!
        func add(_ r: JournalRecord) { out.append(SequencedRecord(seq: UInt64(out.count + 1), timeMs: 1_700_000_000_000 + UInt64(out.count), record: r)) }
        for s in skus { add(.stockSet(sku: s, onHand: 1 << 30, lowStockThreshold: 5, perCustomerLimit: 0)) }
        var i: UInt32 = 0
        func token(_ n: UInt32) -> Token { Token(slot: n, generation: 1, secret: UInt64(n) &* 0x9E37_79B9_7F4A_7C15) }
        while out.count < count {
            i += 1
            add(.reserved(token: token(i), sku: skus[Int(i % 100)], quantity: 1, deadlineWallMs: 1_800_000_000_000,
                          customer: i % 4 == 0 ? customer : .empty, idempotencyKey: .empty, bundle: false))
            guard i > 50 else { continue }
            let old = i - 50, sku = skus[Int(old % 100)]
            if old % 3 == 0 { add(.extended(token: token(old), deadlineWallMs: 1_800_000_100_000)) }
            switch old % 5 {
            case 0, 1, 2: add(.confirmed(token: token(old), sku: sku, quantity: 1, returned: 0, orderReference: .empty))
            case 3: add(.released(token: token(old), sku: sku, quantity: 1))
            default: add(.expired(token: token(old), sku: sku, quantity: 1))
            }
        }
        return out
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    static func rate(_ n: Int, _ d: Duration) -> String {
        let s = seconds(d)
        return "\(Int(Double(n) / s / 1000)) k records/s (\(Int(s * 1000)) ms, \(Int(s * 1e9 / Double(n))) ns/record)"
    }

    @Test func decodeAndReplayAHundredThousand() throws {
        let records = Self.records()
        let clock = ContinuousClock()
        let buffer = RecordBuffer(capacity: 1 << 20)
        var t = clock.now
        for r in records { RecordCodec.encode(r, into: buffer) }
        let encode = clock.now - t
        let bytes = buffer.count

        var state = JournalState()
        var decoded = 0
        t = clock.now
        try buffer.withUnsafeBytes { raw in
            var at = 0
            while at < raw.count {
                guard case .record(let r, let n) = RecordCodec.decode(UnsafeRawBufferPointer(rebasing: raw[at...])) else {
                    Issue.record("decode failed at \(at)")
                    return
                }
                try state.apply(r)
                decoded += 1
                at += n
            }
        }
        let decodeReplay = clock.now - t
        #expect(decoded == records.count && state.lastSeq == UInt64(records.count))
        try state.checkInvariants()

        // End to end: the same records in 64 MiB segments, then Recovery.run.
        let dir = TempDirectory("bench")
        defer { dir.remove() }
        let writer = try JournalWriter(directory: dir.path)
        t = clock.now
        try writer.append(buffer)
        try writer.sync()
        try writer.close()
        let write = clock.now - t
        t = clock.now
        let result = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0)
        let recovery = clock.now - t
        #expect(result.state == state && result.recordsReplayed == records.count)

        print("""
            journal throughput, \(records.count) records, \(bytes / records.count) bytes/record avg, \(bytes >> 20) MiB:
              encode:                \(Self.rate(records.count, encode))
              decode + replay:       \(Self.rate(records.count, decodeReplay))
              write + fdatasync:     \(Int(Self.seconds(write) * 1000)) ms
              Recovery.run (files):  \(Self.rate(records.count, recovery))
            """)
    }
}
