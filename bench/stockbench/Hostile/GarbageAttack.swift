import StockClient

/// 1. Random bytes: half pure noise, half frames with sane lengths and random
/// opcodes/headers/payloads; each followed by a PING to see whether the
/// connection survived.
func attackGarbage(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("garbage", "random bytes (seeded): noise, or frames with random opcodes/header bits/payloads, "
                        + "then a PING", unit: "connections", planned: count,
                        expected: "error answers (MALFORMED, FRAME_TOO_LARGE, UNKNOWN_OPCODE, ...) and/or close; "
                            + "never a crash", checked: false)
    var rng = BenchRandom(seed: env.setup.seed &+ 1)
    let assigned: [UInt8] = [0x01, 0x02, 0x10, 0x11, 0x12, 0x13, 0x14, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26,
                             0x30, 0x41, 0x42]
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        var bytes: [UInt8]
        if i % 2 == 0 {
            bytes = rng.bytes(64 + rng.below(2048 - 64))
        } else {
            bytes = []
            for _ in 0..<(1 + rng.below(20)) {
                let n = rng.below(49)
                HFrame.appendU32(&bytes, UInt32(8 + n))
                bytes.append(rng.below(2) == 0 ? assigned[rng.below(assigned.count)] : UInt8(truncatingIfNeeded: rng.next()))
                if rng.below(4) == 0 {
                    bytes += rng.bytes(3)
                } else {
                    bytes += [0, 0, 0]
                }
                HFrame.appendU32(&bytes, UInt32(truncatingIfNeeded: rng.next()))
                bytes += rng.bytes(n)
                t.frames += 1
            }
        }
        let pingID = 0xFEED_0000 | UInt32(i & 0xFFFF)
        bytes += HFrame.ping(pingID)
        let c: RawConn
        do { c = try RawConn.open(env.address) } catch {
            t.outcome("connect failed: \(error)")
            continue
        }
        t.connections += 1
        t.sent += 1
        t.bytes += bytes.count
        do { try c.send(bytes) } catch let e as RawError where e.isClose {
            t.closed(e)  // closed while we were still sending
            c.close()
            continue
        } catch {
            t.outcome("send failed: \(error)")
            c.close()
            continue
        }
        let how = readAnswers(c, &t, timeoutMs: 500) { $0.opcode == Opcode.ping.rawValue && $0.id == pingID }
        if how == "stopped" { t.outcome("connection kept: the PING after the garbage was answered") }
        c.close()
    }
    return t
}
