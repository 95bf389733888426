import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// 7. Half a frame header, then silence (3 in 4) or shutdown(SHUT_WR) (1 in 4), held until the phase ends.
func attackHalfOpen(_ env: AttackEnv, count: Int) -> AttackTally {
    var t = AttackTally("half_open", "half a frame header then silence (3 in 4), or 7 bytes then shutdown(SHUT_WR); "
                        + "held until the phase ends", unit: "connections", planned: count,
                        expected: "shut-down ones closed by the server; silent ones closed by --frame-timeout "
                            + "(10 s by default) or left open", checked: true)
    var held: [(RawConn, Bool)] = []
    let openSpan = AttackEnv(setup: env.setup, control: env.control, startNs: env.startNs, spanNs: env.spanNs / 10)
    let ping = HFrame.ping(0xAAAA)
    for i in 0..<count {
        guard openSpan.waitTurn(i, of: count) else { t.incomplete = true; break }
        guard let c = try? RawConn.open(env.address) else {
            t.outcome("connect failed")
            continue
        }
        t.connections += 1
        let shut = i % 4 == 3
        let part = Array(ping.prefix(shut ? 7 : 5))
        do {
            try c.send(part)
            if shut { shutdown(c.fd, Int32(SHUT_WR)) }
            t.sent += 1
            t.bytes += part.count
            held.append((c, shut))
        } catch {
            t.outcome("send failed: \(error)")
            c.close()
        }
    }
    env.holdUntilPhaseEnd()
    for (c, shut) in held {
        let closed = c.peerClosed()
        let kind = shut ? "shutdown(SHUT_WR) mid-frame" : "half a header, then silence"
        t.outcome("\(kind): " + (closed ? "closed by the server before the phase ended" : "still open at the phase end"))
        if closed { t.closesSeen += 1 }
        if shut && !closed { t.violate("a connection shut down mid-frame was still open at the phase end") }
        c.close()
    }
    return t
}
