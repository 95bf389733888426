import StockClient

/// 5a. Many HELLOs pipelined on one connection.
func attackHelloPipelined(_ env: AttackEnv, connections count: Int, hellos: Int) -> AttackTally {
    let auth = env.setup.authOn
    var t = AttackTally("hello_pipelined", "\(hellos) HELLOs pipelined per connection"
                        + (auth ? " (wrong credential)" : " (no credential)"), unit: "HELLO frames",
                        planned: count * hellos,
                        expected: auth ? "AUTH_FAILED, then close (the rest unanswered)"
                            : "OK for the first, HELLO_OUT_OF_ORDER for every other, connection kept",
                        checked: true)
    var burst: [UInt8] = []
    for k in 0..<hellos { burst += HFrame.hello(UInt32(k + 1), credential: env.wrongCredential, name: "hostile-flood") }
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        guard let c = try? RawConn.open(env.address) else {
            t.outcome("connect failed")
            t.violate("connect failed")
            continue
        }
        t.connections += 1
        t.sent += hellos
        t.frames += hellos
        t.bytes += burst.count
        do { try c.send(burst) } catch let e as RawError where e.isClose {
            _ = e  // the server may close (AUTH_FAILED) before the whole burst is written
        } catch {
            t.outcome("send failed: \(error)")
        }
        var got: [Answer] = []
        let how = readAnswers(c, &t, timeoutMs: 2000) { a in
            got.append(a)
            return !auth && got.count == hellos
        }
        if how == "stopped", let last = got.last { t.answer(last) }
        if auth {
            if got.count != 1 || got[0].status != Status.authFailed.rawValue || how != "closed" {
                t.violate("\(got.count) answers, first \(got.first.map { statusName($0.status) } ?? "-"), then \(how)")
            }
        } else {
            let ok = got.count == hellos && got[0].status == 0
                && got.dropFirst().allSatisfy { $0.status == Status.helloOutOfOrder.rawValue }
            if ok {
                t.outcome("connection kept after \(hellos) HELLOs")
            } else {
                t.violate("\(got.count) answers, first \(got.first.map { statusName($0.status) } ?? "-"), then \(how)")
            }
        }
        c.close()
    }
    return t
}

/// 5b. Many connections each sending one HELLO.
func attackHelloSingle(_ env: AttackEnv, count: Int) -> AttackTally {
    let auth = env.setup.authOn
    var t = AttackTally("hello_connections", "connections each sending one HELLO"
                        + (auth ? " with a wrong credential" : " (no credential)"), unit: "connections",
                        planned: count, expected: auth ? "AUTH_FAILED, then close" : "OK (the client then closes)",
                        checked: true)
    for i in 0..<count {
        guard env.waitTurn(i, of: count) else { t.incomplete = true; break }
        guard let c = try? RawConn.open(env.address) else {
            t.outcome("connect failed")
            t.violate("connect failed")
            continue
        }
        t.connections += 1
        t.sent += 1
        t.frames += 1
        let hello = HFrame.hello(UInt32(i + 1), credential: env.wrongCredential, name: "hostile-hello")
        t.bytes += hello.count
        var got: [Answer] = []
        do { try c.send(hello) } catch { t.outcome("send failed: \(error)") }
        let how = readAnswers(c, &t, timeoutMs: 2000) { a in
            got.append(a)
            return !auth
        }
        if how == "stopped", let last = got.last { t.answer(last) }
        if auth {
            if got.count != 1 || got[0].status != Status.authFailed.rawValue || how != "closed" {
                t.violate("answers \(got.map { statusName($0.status) }), then \(how)")
            }
        } else if got.count != 1 || got[0].status != 0 {
            t.violate("answers \(got.map { statusName($0.status) }), then \(how)")
        }
        if i % 2 == 0 { c.close() } else { c.abort() }
    }
    return t
}
