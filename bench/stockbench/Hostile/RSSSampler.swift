import Foundation

/// VmRSS of `pid` in KiB (nil: no such process or unreadable).
func rssKiB(_ pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
    }
    return nil
}

final class RSSSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private var peak = 0
    private var samples = 0
    private let done = DispatchSemaphore(value: 0)

    init(pid: Int32) {
        let t = Thread { [self] in
            while lock.withLock({ running }) {
                if let kib = rssKiB(pid) {
                    lock.withLock {
                        peak = max(peak, kib)
                        samples += 1
                    }
                }
                usleep(100_000)
            }
            done.signal()
        }
        t.name = "rss"
        t.start()
    }

    func stop() -> (peakKiB: Int, samples: Int) {
        lock.withLock { running = false }
        done.wait()
        return lock.withLock { (peak, samples) }
    }
}
