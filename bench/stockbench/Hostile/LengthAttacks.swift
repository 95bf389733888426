import StockClient

/// 2. A 0xFFFFFFFF length prefix (4 GiB) on a PING header.
func attackHugeLength(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("huge_length", "length prefix 0xFFFFFFFF (4 GiB) on a PING header", unit: "connections",
                        planned: count, expected: "FRAME_TOO_LARGE echoing the request id, then close", checked: true)
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        let id = 0xB16_0000 | UInt32(i & 0xFFFF)
        var bytes: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, Opcode.ping.rawValue, 0, 0, 0]
        HFrame.appendU32(&bytes, id)
        oneFrameThenClose(env, &t, bytes) { $0.status == Status.frameTooLarge.rawValue && $0.id == id }
    }
    return t
}

/// 3. A zero length field.
func attackZeroLength(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("zero_length", "length field 0 (below the 8-byte minimum)", unit: "connections",
                        planned: count, expected: "MALFORMED (opcode 0, request id 0), then close", checked: true)
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        var bytes: [UInt8] = [0, 0, 0, 0, Opcode.ping.rawValue, 0, 0, 0]
        HFrame.appendU32(&bytes, UInt32(i + 1))
        oneFrameThenClose(env, &t, bytes) { $0.status == Status.malformed.rawValue && $0.id == 0 && $0.opcode == 0 }
    }
    return t
}

/// Sends `bytes` on a fresh connection; the server must answer exactly once
/// (`expected`) and close.
func oneFrameThenClose(_ env: AttackEnv, _ t: inout AttackTally, _ bytes: [UInt8], expected: (Answer) -> Bool) {
    guard let c = try? RawConn.open(env.address) else {
        t.outcome("connect failed")
        t.violate("connect failed")
        return
    }
    t.connections += 1
    t.sent += 1
    t.frames += 1
    t.bytes += bytes.count
    var got: [Answer] = []
    do { try c.send(bytes) } catch { t.outcome("send failed: \(error)") }
    let how = readAnswers(c, &t, timeoutMs: 3000) { a in
        got.append(a)
        return false
    }
    if got.count != 1 || !expected(got[0]) || how != "closed" {
        t.violate("answers \(got.map { statusName($0.status) + " op \($0.opcode) id \($0.id)" }), then \(how)")
    }
    c.close()
}
