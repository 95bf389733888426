import Foundation
import StockClient
#if canImport(Glibc)
import Glibc
#endif

/// 8. Pipelines STOCK_LIST / STOCK_GET and never reads (small receive buffer), held until the phase ends.
/// Every connection is fed a block of 64 requests every 50 ms (1,280/s each), up to `blocks` blocks,
/// as long as the server keeps reading it; what it could not write is counted as backpressure.
func attackNeverRead(_ env: AttackEnv, count: Int, blocks: Int) -> AttackTally {
    var t = AttackTally("never_read", "pipeline 64 STOCK_LIST (limit 1000) / STOCK_GET every 50 ms per connection "
                        + "(up to \(blocks * 64) each), never read (SO_RCVBUF 4 KiB); held until the phase ends",
                        unit: "connections", planned: count,
                        expected: "answers pile up server-side up to --max-output, then it stops reading them "
                            + "(backpressure); others unaffected", checked: false)
    var block: [UInt8] = []
    var ends: [Int] = []  // where each of the 64 frames of a block ends
    let sku = SKU(env.setup.sku)!
    for k in 0..<64 {
        block += k % 2 == 0 ? HFrame.encode(.stockList(StockList(cursor: 0, limit: 1000)), id: UInt32(k))
            : HFrame.encode(.stockGet(sku), id: UInt32(k))
        ends.append(block.count)
    }
    let limit = blocks * block.count
    struct Deaf {
        let conn: RawConn
        var written = 0
        var blocked = false
        var failed = false
    }
    var held: [Deaf] = []
    let openSpan = AttackEnv(setup: env.setup, control: env.control, startNs: env.startNs, spanNs: env.spanNs / 10)
    for i in 0..<count {
        guard openSpan.waitTurn(i, of: count) else { t.incomplete = true; break }
        guard let c = try? RawConn.open(env.address, receiveBuffer: 4096, nonBlocking: true) else {
            t.outcome("connect failed")
            continue
        }
        t.connections += 1
        t.sent += 1
        held.append(Deaf(conn: c))
    }
    // Feed every 50 ms until the phase ends (or every connection is done).
    var round = 0
    let feedStart = monoNs()
    while !env.control.phaseOver {
        var active = false
        for k in held.indices where !held[k].blocked && !held[k].failed && held[k].written < limit {
            active = true
            var target = min(limit, (held[k].written / block.count + 1) * block.count)
            while held[k].written < target {
                let offset = held[k].written % block.count
                let n = block.withUnsafeBytes {
                    Glibc.send(held[k].conn.fd, $0.baseAddress! + offset, target - held[k].written, Int32(MSG_NOSIGNAL))
                }
                if n > 0 {
                    held[k].written += n
                } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    held[k].blocked = true  // the kernel buffers are full: the server stopped reading it
                    target = held[k].written
                } else {
                    held[k].failed = true
                    t.outcome("send failed: \(String(cString: strerror(errno)))")
                    target = held[k].written
                }
            }
        }
        if !active { break }
        round += 1
        let due = feedStart + UInt64(round) * 50_000_000
        while !env.control.phaseOver && monoNs() < due { usleep(5_000) }
    }
    env.holdUntilPhaseEnd()
    for d in held {
        t.bytes += d.written
        t.frames += (d.written / block.count) * 64 + ends.filter { $0 <= d.written % block.count }.count
        t.outcome(d.blocked ? "server stopped reading it (send would block)"
                  : d.written >= limit ? "all \(blocks * 64) requests written" : "server still reading at the phase end")
        let closed = d.conn.peerClosed()
        t.outcome(closed ? "closed by the server before the phase ended" : "still open at the phase end")
        if closed { t.closesSeen += 1 }
        d.conn.close()
    }
    return t
}
