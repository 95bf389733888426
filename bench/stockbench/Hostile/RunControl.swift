import Foundation

/// Stop flags shared by the attack threads.
final class RunControl: @unchecked Sendable {
    private let lock = NSLock()
    private var _phaseOver = false
    private var _aborted = false

    var phaseOver: Bool { lock.withLock { _phaseOver } }
    var aborted: Bool { lock.withLock { _aborted } }
    func endPhase() { lock.withLock { _phaseOver = true } }
    func abort() { lock.withLock { _aborted = true; _phaseOver = true } }
}
