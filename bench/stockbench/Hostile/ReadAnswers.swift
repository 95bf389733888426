/// Reads answers until the server closes, `stop` says so, or a read times out;
/// every answer `stop` does not stop at is counted. Returns how it ended.
@discardableResult
func readAnswers(_ c: RawConn, _ t: inout AttackTally, timeoutMs: Int, stop: (Answer) -> Bool = { _ in false })
    -> String {
    c.setTimeouts(ms: timeoutMs)
    while true {
        do {
            let a = try c.next()
            if stop(a) { return "stopped" }
            t.answer(a)
        } catch let e as RawError {
            if e.isClose {
                t.closed(e)
                return "closed"
            }
            if e == .timeout {
                t.outcome("no further answer within \(timeoutMs) ms, left open")
                return "timeout"
            }
            t.outcome("read failed: \(e)")
            return "failed"
        } catch {
            return "failed"
        }
    }
}
