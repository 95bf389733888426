import Foundation

/// Threads started together and waited for together.
final class ThreadGroup: @unchecked Sendable {
    private let group = DispatchGroup()

    func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        group.enter()
        let t = Thread { [group] in
            body()
            group.leave()
        }
        t.name = name
        t.stackSize = 1 << 20
        t.start()
    }

    func wait() { group.wait() }

    /// False when the threads are still running after `seconds`.
    func wait(seconds: Double) -> Bool { group.wait(timeout: .now() + seconds) == .success }
}
