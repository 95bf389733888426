// bench-journal: the journal alone, release build. Prints figures; not a test.
//   make bench-journal     (swift run -c release stockjournal-bench)
// Moved out of StockJournalTests (ThroughputTests.encodeHotPath, SyncLatencyTests.appendAndSyncLatency):
// speed is for the report, never a pass/fail criterion.
//
// 1. The server's hot path: one RESERVE record encoded into a reused buffer, 1M times, with the heap
//    allocations it made (CMallocCounter).
// 2. append + fdatasync latency of ~3 KB batches with and without preallocated segments. Rotations
//    happen during the run, so the background preparation of the next segment runs alongside the
//    measured syncs. Scale with STOCKJOURNAL_LATENCY_BATCHES (default 4000) and
//    STOCKJOURNAL_LATENCY_SEGMENT_MIB (default 4). The temp directory must be on the disk of
//    interest (TMPDIR).
// 3. A JournalState fed reserve/confirm records (the flash-sale mix: 512 holds open, slots reused),
//    with the allocations per record: the work behind a standby's shadow state (ShadowApplier), the
//    primary's background snapshots and recovery.
import CMallocCounter
import Foundation
import StockJournal
import StockProtocol

@main
struct JournalBench {
    static func env(_ name: String, _ fallback: Int) -> Int {
        ProcessInfo.processInfo.environment[name].flatMap(Int.init) ?? fallback
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    static func rate(_ n: Int, _ d: Duration) -> String {
        let s = seconds(d)
        return "\(Int(Double(n) / s / 1000)) k records/s (\(Int(s * 1000)) ms, \(Int(s * 1e9 / Double(n))) ns/record)"
    }

    // MARK: 1. encode hot path

    /// One record encoded into a reused buffer (reset every 256 records), `n` times.
    static func encodeHotPath(n: Int = 1_000_000) -> String {
        let r = SequencedRecord(seq: 1, timeMs: 2, record: .reserved(
            token: Token(slot: 1, generation: 2, secret: 3), sku: SKU("aurora-jacket-red-M")!, quantity: 1,
            deadlineWallMs: 4, customer: ShortBytes("viewer-000123")!, idempotencyKey: .empty, bundle: false))
        let buffer = RecordBuffer(capacity: 1 << 16)
        // Warm up: the buffer's storage exists before the count starts.
        for _ in 0..<256 { RecordCodec.encode(r, into: buffer) }
        buffer.reset()
        let clock = ContinuousClock()
        let allocsBefore = malloc_counter_allocations()
        let t = clock.now
        for i in 0..<n {
            if i & 255 == 0 { buffer.reset() }
            RecordCodec.encode(r, into: buffer)
        }
        let d = clock.now - t
        let allocs = malloc_counter_allocations() - allocsBefore
        precondition(buffer.recordCount > 0, "nothing encoded")
        return "encode into a reused buffer: \(rate(n, d)); "
            + "\(String(format: "%.3f", Double(allocs) / Double(n))) allocations/record"
    }

    // MARK: 3. shadow state apply

    /// `pairs` reserve/confirm pairs on 4 SKUs, a hold confirmed 512 reservations after it was made,
    /// slots reused every 4,096 reservations; applied in seq order through a `Replayer`.
    static func shadowApply(pairs: Int = 200_000) throws -> String {
        let skus = (0..<4).map { SKU("aurora-jacket-\($0)")! }
        let customer = ShortBytes("viewer-000123")!
        var records: [SequencedRecord] = []
        records.reserveCapacity(2 * pairs + skus.count)
        var seq: UInt64 = 0
        func add(_ r: JournalRecord) {
            seq += 1
            records.append(SequencedRecord(seq: seq, timeMs: 1_700_000_000_000 + seq, record: r))
        }
        for sku in skus { add(.stockSet(sku: sku, onHand: Limits.maxStock, lowStockThreshold: 0, perCustomerLimit: 0)) }
        func token(_ i: Int) -> Token {
            Token(slot: UInt32(i % 4096), generation: UInt32(i / 4096 + 1), secret: UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
        }
        let window = 512
        for i in 0..<(pairs + window) {
            if i < pairs {
                add(.reserved(token: token(i), sku: skus[i % 4], quantity: 1, deadlineWallMs: 1_800_000_000_000,
                              customer: customer, idempotencyKey: .empty, bundle: false))
            }
            if i >= window {
                let j = i - window
                add(.confirmed(token: token(j), sku: skus[j % 4], quantity: 1, returned: 0, orderReference: .empty,
                               customer: customer))
            }
        }
        var replayer = Replayer(state: JournalState(), fateLimit: FateMemory.defaultLimit)
        let clock = ContinuousClock()
        let allocsBefore = malloc_counter_allocations()
        let t = clock.now
        for r in records { try replayer.offer(r, path: "bench", offset: 0) }
        let d = clock.now - t
        let allocs = malloc_counter_allocations() - allocsBefore
        precondition(replayer.state.lastSeq == seq && replayer.state.tokenCount == 0, "not every record applied")
        try replayer.state.checkInvariants()
        return "shadow state apply (reserve/confirm, 512 holds open): \(rate(records.count, d)); "
            + "\(String(format: "%.2f", Double(allocs) / Double(records.count))) allocations/record"
    }

    // MARK: 2. append + fdatasync latency

    struct Figures: CustomStringConvertible {
        let label: String
        let micros: [Double]
        let writer: JournalWriter
        /// Batch index → batches since the last segment was opened (0: it opened one).
        let sinceOpen: [Int]

        func percentile(_ p: Double) -> Double {
            let sorted = micros.sorted()
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
        }

        var description: String {
            func f(_ v: Double) -> String { String(Int(v.rounded())) }
            return "\(label): p50 \(f(percentile(0.5))) µs, p90 \(f(percentile(0.9))) µs, p99 \(f(percentile(0.99))) µs, "
                + "p99.9 \(f(percentile(0.999))) µs, max \(f(micros.max() ?? 0)) µs; \(micros.count) batches, "
                + "\(writer.segmentsCreated) segments (prepared in background and ready: \(writer.preparedSegmentsUsed), "
                + "waited for: \(writer.preparationsWaitedFor), \(writer.preparationWaitNanos / 1000) µs; inline: \(writer.segmentsPreparedInline); "
                + "last preparation took \(writer.lastPreparationNanos / 1_000_000) ms)"
                + "\n      slowest (µs @ batches after a segment opened): "
                + micros.indices.sorted { micros[$0] > micros[$1] }.prefix(8).map { "\(f(micros[$0]))@\(sinceOpen[$0])" }
                    .joined(separator: " ")
                + "; opening batches max \(f(micros.indices.filter { sinceOpen[$0] == 0 }.map { micros[$0] }.max() ?? 0)) µs"
        }
    }

    static func syncLatency(preallocate: Bool, batches: Int, segmentBytes: Int64) throws -> Figures {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("stockjournal-\(preallocate ? "lat-prealloc" : "lat-append")-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writer = try JournalWriter(directory: dir, segmentBytes: segmentBytes, preallocate: preallocate)
        // Let init's background preparation finish (stockd's startup takes longer than that, too).
        while preallocate && !writer.nextSegmentReady { usleep(1000) }
        let buffer = RecordBuffer(capacity: 8192)
        let customer = ShortBytes("viewer-000123")!
        var seq: UInt64 = 0
        var micros: [Double] = []
        micros.reserveCapacity(batches)
        var sinceOpen: [Int] = []
        var lastOpen = 0
        var created = 0
        let clock = ContinuousClock()
        for b in 0..<batches {
            buffer.reset()
            while buffer.count < 3000 {
                seq += 1
                RecordCodec.encode(SequencedRecord(seq: seq, timeMs: 1_700_000_000_000 + seq, record: .reserved(
                    token: Token(slot: UInt32(seq), generation: 1, secret: seq &* 0x9E37_79B9_7F4A_7C15),
                    sku: SKU("aurora-jacket-\(b % 100)")!, quantity: 1, deadlineWallMs: 1_800_000_000_000,
                    customer: customer, idempotencyKey: .empty, bundle: false)), into: buffer)
            }
            let t0 = clock.now
            try writer.append(buffer)
            try writer.sync()
            let d = clock.now - t0
            micros.append(Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) * 1e-12)
            if writer.segmentsCreated != created {
                created = writer.segmentsCreated
                lastOpen = b
            }
            sinceOpen.append(b - lastOpen)
        }
        try writer.close()
        var read: UInt64 = 0
        _ = try JournalReader.readAll(directory: dir, repairTornTail: false) { _, _, _ in read += 1 }
        precondition(read == seq, "\(read) of \(seq) records read back")
        return Figures(label: preallocate ? "preallocated" : "append     ", micros: micros, writer: writer,
                       sinceOpen: sinceOpen)
    }

    static func main() throws {
        print(encodeHotPath())
        print(try shadowApply())
        if env("STOCKJOURNAL_APPLY_ONLY", 0) != 0 { return }
        let batches = env("STOCKJOURNAL_LATENCY_BATCHES", 4000)
        let segmentBytes = Int64(env("STOCKJOURNAL_LATENCY_SEGMENT_MIB", 4)) << 20
        // Alternate to spread any drift of the disk over both.
        var lines: [String] = []
        for round in 0..<2 {
            for preallocate in round == 0 ? [false, true] : [true, false] {
                lines.append("  round \(round + 1) " + (try syncLatency(preallocate: preallocate, batches: batches / 2,
                                                                       segmentBytes: segmentBytes)).description)
            }
        }
        print("append + fdatasync of ~3 KB batches, \(segmentBytes >> 20) MiB segments:\n" + lines.joined(separator: "\n"))
    }
}
