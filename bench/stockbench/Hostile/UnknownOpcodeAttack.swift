import StockClient

/// 4. Unassigned opcodes, in pipelined batches on two long-lived connections, each batch followed by a PING.
func attackUnknownOpcodes(_ env: AttackEnv, frames: Int) -> AttackTally {
    let batch = 25
    let batches = (frames + batch - 1) / batch
    var t = AttackTally("unknown_opcode", "unassigned opcodes 0x7E 0x60 0x03 0x0F 0x41 0x80 0xFF, batches of "
                        + "\(batch) + a PING on 2 connections", unit: "frames", planned: batches * batch,
                        expected: "UNKNOWN_OPCODE echoing opcode and id for each, connection kept (PING answered)",
                        checked: true)
    let opcodes: [UInt8] = [0x7E, 0x60, 0x03, 0x0F, 0x41, 0x80, 0xFF]
    var conns: [RawConn?] = [nil, nil]
    var id: UInt32 = 0
    for b in 0..<batches {
        guard env.waitTurn(b, of: batches) else { t.incomplete = true; break }
        let slot = b % 2
        if conns[slot] == nil {
            conns[slot] = try? RawConn.open(env.address)
            if conns[slot] == nil {
                t.outcome("connect failed")
                t.violate("connect failed")
                continue
            }
            t.connections += 1
        }
        let c = conns[slot]!
        var bytes: [UInt8] = []
        var expect: [(UInt8, UInt32)] = []
        for k in 0..<batch {
            id &+= 1
            let op = opcodes[(b * batch + k) % opcodes.count]
            bytes += HFrame.bare(opcode: op, id: id)
            expect.append((op, id))
        }
        id &+= 1
        let pingID = id
        bytes += HFrame.ping(pingID)
        t.sent += batch
        t.frames += batch + 1
        t.bytes += bytes.count
        do {
            c.setTimeouts(ms: 5000)
            try c.send(bytes)
            for (op, rid) in expect {
                let a = try c.next()
                t.answer(a)
                if a.status != Status.unknownOpcode.rawValue || a.opcode != op || a.id != rid {
                    t.violate("opcode 0x\(String(op, radix: 16)) answered \(statusName(a.status)) op \(a.opcode) id \(a.id)")
                }
            }
            let p = try c.next()
            if p.status == 0 && p.id == pingID {
                t.outcome("connection kept: PING after the batch answered")
            } else {
                t.violate("PING after the batch answered \(statusName(p.status)) id \(p.id)")
            }
        } catch let e as RawError {
            if e.isClose { t.closed(e) } else { t.outcome("failed: \(e)") }
            t.violate("connection \(e) during a batch")
            c.close()
            conns[slot] = nil
        } catch {}
    }
    for c in conns { c?.close() }
    return t
}
