import Atomics
import StockProtocol

/// One worker's request counters: written only by its loop thread (a load
/// and a store, no read-modify-write), read by STATS on any thread. Each
/// block is its own allocation, 128-byte aligned: no false sharing.
final class WorkerCounters: @unchecked Sendable {
    static let statusSlots = 64
    enum Field: Int, CaseIterable {
        case connectionsAccepted = 0, connectionsClosed, requests, bytesIn, bytesOut, expired, readBursts
        /// Closed for a frame arriving too slowly or answers not taken (`--frame-timeout`, `--write-timeout`).
        case slowClientsClosed
    }
    static let fieldSlots = 8
    /// Answers by (operation, status): assigned opcodes in `Opcode.allCases`
    /// order, then one row for unassigned ones; a column per status code.
    /// Counts by operation and by status are sums over it (one store per answer).
    static let matrixRows = Opcode.allCases.count + 1
    static let matrixSlots = matrixRows * statusSlots
    /// Server-side request latency (read → handed to the kernel), one
    /// histogram per matrix row (operation): bucket i counts answers under
    /// 2^i µs, the last the rest; then one sum in ns per row.
    static let latencyBuckets = 24
    private static let matrixBase = fieldSlots
    private static let latencyBase = matrixBase + matrixSlots
    private static let latencySumBase = latencyBase + matrixRows * latencyBuckets
    /// Opcode byte → matrix row.
    private static let rowOf: [Int] = (0..<256).map { op in
        Opcode.allCases.firstIndex { $0.rawValue == UInt8(op) } ?? Opcode.allCases.count
    }
    private let base: UnsafeMutablePointer<Int64.AtomicRepresentation>
    private let count = WorkerCounters.latencySumBase + WorkerCounters.matrixRows

    init() {
        precondition(WorkerCounters.matrixRows <= AnswerTally.capacity, "AnswerTally has fewer rows than the matrix")
        // The layout: fields, then the matrix (a column per status code), then the histograms.
        precondition(Field.allCases.allSatisfy { $0.rawValue < WorkerCounters.fieldSlots }, "a field past fieldSlots")
        precondition(Status.allCases.allSatisfy { Int($0.rawValue) < WorkerCounters.statusSlots },
                     "a status code past statusSlots")
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 8, alignment: 128)
        base = raw.bindMemory(to: Int64.AtomicRepresentation.self, capacity: count)
        base.initialize(repeating: .init(0), count: count)
    }

    deinit { UnsafeMutableRawPointer(base).deallocate() }

    @inline(__always) private func bump(_ i: Int, _ by: Int64) {
        assert(i >= 0 && i < count, "counter slot \(i) outside 0..<\(count)")  // unchecked pointer arithmetic
        let a = UnsafeAtomic<Int64>(at: base + i)
        a.store(a.load(ordering: .relaxed) &+ by, ordering: .relaxed)
    }

    @inline(__always) private func read(_ i: Int) -> Int64 {
        assert(i >= 0 && i < count, "counter slot \(i) outside 0..<\(count)")
        return UnsafeAtomic<Int64>(at: base + i).load(ordering: .relaxed)
    }

    /// One answer to `opcode` with `status`, counted now; `tally` (the
    /// connection's) remembers its operation until the answer is written.
    @inline(__always) func request(opcode: UInt8, status: Status, tally: inout AnswerTally) {
        let row = WorkerCounters.rowOf[Int(opcode)]
        bump(WorkerCounters.matrixBase + row * WorkerCounters.statusSlots + Int(status.rawValue), 1)
        tally.add(row: row)
    }

    /// The answers in `tally` were handed to the kernel `nanos` after the
    /// oldest of them was read: each counts in its operation's histogram
    /// with that latency (answers written together share it). Empties `tally`.
    @inline(__always) func latency(nanos: UInt64, tally: inout AnswerTally) {
        let micros = nanos / 1000
        let bucket = micros == 0 ? 0 : min(WorkerCounters.latencyBuckets - 1, 64 - micros.leadingZeroBitCount)
        var rows = tally.rows
        while rows != 0 {
            let row = rows.trailingZeroBitCount
            rows &= rows &- 1
            let n = Int64(tally.take(row: row))
            bump(WorkerCounters.latencyBase + row * WorkerCounters.latencyBuckets + bucket, n)
            bump(WorkerCounters.latencySumBase + row, Int64(truncatingIfNeeded: nanos) &* n)
        }
        tally.rows = 0
    }

    /// Answers of matrix row `row` (see `matrixRows`) with `status`.
    func answers(row: Int, status: Status) -> Int64 {
        read(WorkerCounters.matrixBase + row * WorkerCounters.statusSlots + Int(status.rawValue))
    }

    /// Latency bucket `i` of matrix row `row` (not cumulative).
    func latencyBucket(row: Int, _ i: Int) -> Int64 {
        read(WorkerCounters.latencyBase + row * WorkerCounters.latencyBuckets + i)
    }

    /// The latencies of matrix row `row`, summed, in ns.
    func latencySumNanos(row: Int) -> Int64 { read(WorkerCounters.latencySumBase + row) }

    @inline(__always) func add(_ f: Field, _ by: Int64 = 1) {
        bump(f.rawValue, by)
    }

    /// Answers to `opcode` (an unassigned one: to every unassigned one).
    func requests(opcode: UInt8) -> Int64 {
        Status.allCases.reduce(0) { $0 + answers(row: WorkerCounters.rowOf[Int(opcode)], status: $1) }
    }

    /// Answers with `status`, whatever the operation.
    func responses(status: Status) -> Int64 {
        (0..<WorkerCounters.matrixRows).reduce(0) { $0 + answers(row: $1, status: status) }
    }

    /// Every answer.
    var answersTotal: Int64 { Status.allCases.reduce(0) { $0 + responses(status: $1) } }

    func value(_ f: Field) -> Int64 { read(f.rawValue) }
}

/// A connection's answers not yet handed to the kernel, by matrix row
/// (`WorkerCounters.matrixRows`): a write carries answers to several
/// operations, and each goes into its own operation's latency histogram.
/// Inline storage, written by the connection's loop thread only: nothing
/// is allocated, locked or dispatched per request.
struct AnswerTally {
    /// Rows at most (one bit of `rows` each); `WorkerCounters.init` checks the matrix fits.
    static let capacity = 32
    /// Bit r: row r has answers counted in `counts`.
    var rows: UInt32 = 0
    private var counts = InlineArray<32, UInt32>(repeating: 0)

    init() {
        assert(counts.count == AnswerTally.capacity, "the inline storage holds `capacity` rows")
    }

    @inline(__always) mutating func add(row: Int) {
        assert(row >= 0 && row < AnswerTally.capacity, "tally row \(row)")  // `rows` has one bit per row
        counts[row] &+= 1
        rows |= 1 << UInt32(row)
    }

    /// The count of `row`, reset to 0.
    @inline(__always) mutating func take(row: Int) -> UInt32 {
        let n = counts[row]
        counts[row] = 0
        return n
    }
}
