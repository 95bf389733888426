/// 6. Connect, then disconnect at once (alternately FIN and RST).
func attackCycles(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("connect_cycles", "connect, then close at once (alternately FIN and RST)",
                        unit: "connections", planned: count, expected: "every connect accepted", checked: true)
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        do {
            let c = try RawConn.open(env.address)
            t.connections += 1
            t.sent += 1
            if i % 2 == 0 { c.close() } else { c.abort() }
        } catch {
            t.outcome("connect failed: \(error)")
            t.violate("connect failed: \(error)")
        }
    }
    t.outcome("connected and closed", t.sent)
    return t
}
