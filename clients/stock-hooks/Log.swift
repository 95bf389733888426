import Glibc
import Synchronization

/// One line to stderr, prefixed `stock-hooks: ` (one `write`, so lines
/// from different tasks do not interleave).
func logLine(_ message: String) {
    let bytes = Array("stock-hooks: \(message)\n".utf8)
    bytes.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let n = write(2, raw.baseAddress! + done, raw.count - done)
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return
            }
            done += n
        }
    }
}

/// Monotonic nanoseconds.
func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Unix epoch seconds and milliseconds now.
func unixSeconds() -> UInt64 { UInt64(max(0, time(nil))) }
func unixMs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
}

/// Retry logging, one line per burst: the first retry after a quiet second
/// is logged at once; retries within the following second are counted and
/// summed into the next line. An outage of the receiver therefore logs
/// about one line per second, not one per request.
final class RetryLog: Sendable {
    private struct State {
        var lastLineNs: UInt64 = 0
        var suppressed = 0
    }

    private let state = Mutex(State())
    private let quietNs: UInt64 = 1_000_000_000

    func note(offset: UInt64, lane: String, attempt: Int, reason: String, delayMs: Int) {
        let line: String? = state.withLock { s in
            let now = monotonicNs()
            guard s.lastLineNs == 0 || now - s.lastLineNs >= quietNs else {
                s.suppressed += 1
                return nil
            }
            var text = "retrying event \(offset) (sku \(lane.isEmpty ? "-" : lane)): \(reason); "
                + "attempt \(attempt) failed, next in \(delayMs)ms"
            if s.suppressed > 0 { text += " (+\(s.suppressed) more retries since the last line)" }
            s.lastLineNs = now
            s.suppressed = 0
            return text
        }
        if let line { logLine(line) }
    }
}
