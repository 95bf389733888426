import Atomics
import StockProtocol

/// One worker's request counters: written only by its loop thread (a load
/// and a store, no read-modify-write), read by STATS on any thread. Each
/// block is its own allocation, 128-byte aligned: no false sharing.
final class WorkerCounters: @unchecked Sendable {
    static let statusSlots = 64
    enum Field: Int {
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
    /// Server-side request latency (read → handed to the kernel): bucket i
    /// counts answers under 2^i µs, the last the rest; then the sum in ns.
    static let latencyBuckets = 24
    private static let matrixBase = fieldSlots
    private static let latencyBase = matrixBase + matrixSlots
    private static let latencySumSlot = latencyBase + latencyBuckets
    /// Opcode byte → matrix row.
    private static let rowOf: [Int] = (0..<256).map { op in
        Opcode.allCases.firstIndex { $0.rawValue == UInt8(op) } ?? Opcode.allCases.count
    }
    private let base: UnsafeMutablePointer<Int64.AtomicRepresentation>
    private let count = WorkerCounters.latencySumSlot + 1

    init() {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 8, alignment: 128)
        base = raw.bindMemory(to: Int64.AtomicRepresentation.self, capacity: count)
        base.initialize(repeating: .init(0), count: count)
    }

    deinit { UnsafeMutableRawPointer(base).deallocate() }

    @inline(__always) private func bump(_ i: Int, _ by: Int64) {
        let a = UnsafeAtomic<Int64>(at: base + i)
        a.store(a.load(ordering: .relaxed) &+ by, ordering: .relaxed)
    }

    @inline(__always) private func read(_ i: Int) -> Int64 { UnsafeAtomic<Int64>(at: base + i).load(ordering: .relaxed) }

    @inline(__always) func request(opcode: UInt8, status: Status) {
        bump(WorkerCounters.matrixBase + WorkerCounters.rowOf[Int(opcode)] * WorkerCounters.statusSlots
             + Int(status.rawValue), 1)
    }

    /// `answers` answers that waited `nanos` each.
    @inline(__always) func latency(nanos: UInt64, answers: Int) {
        let micros = nanos / 1000
        let bucket = micros == 0 ? 0 : min(WorkerCounters.latencyBuckets - 1, 64 - micros.leadingZeroBitCount)
        bump(WorkerCounters.latencyBase + bucket, Int64(answers))
        bump(WorkerCounters.latencySumSlot, Int64(truncatingIfNeeded: nanos) &* Int64(answers))
    }

    /// Answers of matrix row `row` (see `matrixRows`) with `status`.
    func answers(row: Int, status: Status) -> Int64 {
        read(WorkerCounters.matrixBase + row * WorkerCounters.statusSlots + Int(status.rawValue))
    }

    func latencyBucket(_ i: Int) -> Int64 { read(WorkerCounters.latencyBase + i) }
    var latencySumNanos: Int64 { read(WorkerCounters.latencySumSlot) }

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
