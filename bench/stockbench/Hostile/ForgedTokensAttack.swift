import StockClient

/// 9. Forged tokens at CONFIRM and RELEASE, pipelined 32 at a time; every answer read.
func attackForgedTokens(_ env: AttackEnv, index: Int, of lanes: Int, total: Int) -> AttackTally {
    let auth = env.setup.authOn
    let mine = total / lanes + (index < total % lanes ? 1 : 0)
    var t = AttackTally("forged_tokens", "random tokens (half fully random, half with a live-looking slot and "
                        + "generation) at CONFIRM and RELEASE, \(lanes) connections, 32 pipelined",
                        unit: "tokens", planned: mine,
                        expected: auth ? "UNAUTHENTICATED for every one (attackers have no credential)"
                            : "TOKEN_UNKNOWN for every one", checked: true)
    let want = auth ? Status.unauthenticated.rawValue : Status.tokenUnknown.rawValue
    var rng = BenchRandom(seed: env.setup.seed &+ 100 &+ UInt64(index))
    let batch = 32
    let batches = (mine + batch - 1) / batch
    var conn: RawConn?
    var id: UInt32 = 0
    var done = 0
    for b in 0..<batches {
        guard env.waitTurn(b, of: batches) else { t.incomplete = true; break }
        if conn == nil {
            conn = try? RawConn.open(env.address)
            guard conn != nil else {
                t.outcome("connect failed")
                t.violate("connect failed")
                continue
            }
            t.connections += 1
        }
        let c = conn!
        let n = min(batch, mine - done)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(n * 33)
        let firstID = id &+ 1
        for k in 0..<n {
            id &+= 1
            let token = (done + k) % 2 == 0
                ? Token(slot: UInt32(truncatingIfNeeded: rng.next()), generation: UInt32(truncatingIfNeeded: rng.next()),
                        secret: rng.next())
                : Token(slot: UInt32(rng.below(1 << 16)), generation: UInt32(rng.below(4)), secret: rng.next())
            bytes += HFrame.encode(k % 2 == 0 ? .confirm(Confirm(token: token)) : .release(token), id: id)
        }
        t.sent += n
        t.frames += n
        t.bytes += bytes.count
        done += n
        do {
            try c.send(bytes)
            for k in 0..<n {
                let a = try c.next()
                t.answer(a)
                let op = k % 2 == 0 ? Opcode.confirm.rawValue : Opcode.release.rawValue
                if a.status != want || a.id != firstID &+ UInt32(k) || a.opcode != op {
                    t.violate("forged token answered \(statusName(a.status)) op \(a.opcode) id \(a.id)")
                }
            }
        } catch let e as RawError {
            if e.isClose { t.closed(e) } else { t.outcome("failed: \(e)") }
            t.violate("connection \(e) with answers outstanding")
            c.close()
            conn = nil
        } catch {}
    }
    conn?.close()
    return t
}
