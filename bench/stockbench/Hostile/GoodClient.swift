import Foundation
import Histogram
import StockClient

/// What the good client saw in one phase.
struct GoodPhase: Sendable {
    var histogram = Histogram<UInt64>(lowestDiscernibleValue: 100, highestTrackableValue: 200_000_000_000,
                                      numberOfSignificantValueDigits: .three)
    var requests: UInt64 = 0
    var reserves: UInt64 = 0
    var confirms: UInt64 = 0
    var errors: [String: Int] = [:]
    var seconds = 0.0

    var errorCount: Int { errors.values.reduce(0, +) }

    mutating func add(_ o: GoodPhase) {
        histogram.add(o.histogram)
        requests += o.requests
        reserves += o.reserves
        confirms += o.confirms
        for (k, v) in o.errors { errors[k, default: 0] += v }
        seconds = max(seconds, o.seconds)
    }
}

/// `connections` closed loops of RESERVE 1 + CONFIRM, one thread each, for `durationNs`.
func runGoodClient(_ s: HostileSetup) throws -> GoodPhase {
    var conns: [RawConn] = []
    for _ in 0..<s.connections {
        let c: RawConn
        do { c = try RawConn.open(s.address) } catch { throw BenchError("good client: cannot connect: \(error)") }
        if !s.credential.isEmpty {
            do {
                try c.send(HFrame.hello(1, credential: s.credential, name: "stockbench-hostile-good"))
                let r = try c.next()
                guard r.status == 0 else { throw BenchError("good client: HELLO answered \(statusName(r.status))") }
            } catch let e as BenchError {
                throw e
            } catch {
                throw BenchError("good client: HELLO: \(error)")
            }
        }
        conns.append(c)
    }
    let reserveTemplate = HFrame.encode(.reserve(Reserve(sku: SKU(s.sku)!, quantity: 1, ttlMs: 60_000)), id: 0)
    let confirmTemplate = HFrame.encode(.confirm(Confirm(token: Token(slot: 0, generation: 0, secret: 0))), id: 0)
    let results = Collector<GoodPhase>()
    let threads = ThreadGroup()
    let start = monoNs()
    let end = start + s.durationNs
    for (i, c) in conns.enumerated() {
        threads.spawn("good-\(i)") {
            var phase = GoodPhase()
            var reserve = reserveTemplate
            var confirm = confirmTemplate
            var id: UInt32 = 1
            do {
                while true {
                    let t0 = monoNs()
                    if t0 >= end { break }
                    id &+= 1
                    reserve.withUnsafeMutableBytes { $0.storeBytes(of: id.littleEndian, toByteOffset: 8, as: UInt32.self) }
                    try c.send(reserve)
                    let r = try c.next()
                    let t1 = monoNs()
                    _ = phase.histogram.record(t1 &- t0)
                    phase.requests += 1
                    guard r.opcode == Opcode.reserve.rawValue, r.id == id else {
                        throw RawError.protocolError("RESERVE answered by opcode \(r.opcode) id \(r.id)")
                    }
                    guard r.status == 0, r.payloadCount >= 32 else {
                        phase.errors["RESERVE \(statusName(r.status))", default: 0] += 1
                        continue
                    }
                    phase.reserves += 1
                    id &+= 1
                    confirm.withUnsafeMutableBytes {
                        $0.storeBytes(of: id.littleEndian, toByteOffset: 8, as: UInt32.self)
                        $0.storeBytes(of: r.head0, toByteOffset: 12, as: UInt64.self)
                        $0.storeBytes(of: r.head1, toByteOffset: 20, as: UInt64.self)
                    }
                    try c.send(confirm)
                    let a = try c.next()
                    _ = phase.histogram.record(monoNs() &- t1)
                    phase.requests += 1
                    guard a.opcode == Opcode.confirm.rawValue, a.id == id else {
                        throw RawError.protocolError("CONFIRM answered by opcode \(a.opcode) id \(a.id)")
                    }
                    if a.status == 0 {
                        phase.confirms += 1
                    } else {
                        phase.errors["CONFIRM \(statusName(a.status))", default: 0] += 1
                    }
                }
            } catch {
                phase.errors["connection: \(error)", default: 0] += 1
            }
            phase.seconds = Double(monoNs() - start) / 1e9
            c.close()
            results.add(phase)
        }
    }
    threads.wait()
    var total = GoodPhase()
    for p in results.all { total.add(p) }
    return total
}
