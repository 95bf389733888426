import StockClient

/// PING on a fresh connection, answered within 2 s.
func pingOnce(_ a: LoopbackAddress) -> Bool {
    guard let c = try? RawConn.open(a) else { return false }
    defer { c.close() }
    c.setTimeouts(ms: 2000)
    guard (try? c.send(HFrame.ping(77))) != nil, let r = try? c.next() else { return false }
    return r.status == 0 && r.opcode == Opcode.ping.rawValue && r.id == 77
}

/// True when the server wants HELLO with a credential before anything else.
func probeAuth(_ a: LoopbackAddress) throws -> Bool {
    let c: RawConn
    do { c = try RawConn.open(a) } catch { throw BenchError("cannot connect to stockd at \(a): \(error)") }
    defer { c.close() }
    c.setTimeouts(ms: 3000)
    do {
        try c.send(HFrame.ping(1) + HFrame.encode(.stockGet(SKU("hostile-probe")!), id: 2))
        let p = try c.next()
        guard p.status == 0, p.id == 1 else { throw BenchError("PING answered \(statusName(p.status))") }
        let g = try c.next()
        return g.status == Status.unauthenticated.rawValue
    } catch let e as BenchError {
        throw e
    } catch {
        throw BenchError("stockd at \(a) did not answer PING: \(error)")
    }
}
