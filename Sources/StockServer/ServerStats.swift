import Atomics
import StockProtocol

/// One worker's request counters: written only by its loop thread (a load
/// and a store, no read-modify-write), read by STATS on any thread. Each
/// block is its own allocation, 128-byte aligned: no false sharing.
final class WorkerCounters: @unchecked Sendable {
    static let opSlots = 256
    static let statusSlots = 64
    enum Field: Int {
        case connectionsAccepted = 0, connectionsClosed, requests, bytesIn, bytesOut, expired, readBursts
    }
    static let fieldSlots = 8
    private let base: UnsafeMutablePointer<Int64.AtomicRepresentation>
    private let count = WorkerCounters.opSlots + WorkerCounters.statusSlots + WorkerCounters.fieldSlots

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
        bump(Int(opcode), 1)
        bump(WorkerCounters.opSlots + Int(status.rawValue), 1)
    }

    @inline(__always) func add(_ f: Field, _ by: Int64 = 1) {
        bump(WorkerCounters.opSlots + WorkerCounters.statusSlots + f.rawValue, by)
    }

    func requests(opcode: UInt8) -> Int64 { read(Int(opcode)) }
    func responses(status: Status) -> Int64 { read(WorkerCounters.opSlots + Int(status.rawValue)) }
    func value(_ f: Field) -> Int64 { read(WorkerCounters.opSlots + WorkerCounters.statusSlots + f.rawValue) }
}
