import Dispatch
import Glibc
import Synchronization

/// How a run stops: the first `stop` wins and fixes the exit code; the
/// actions registered with `onStop` run once, at that moment (close the
/// feed, stop handing out jobs). Tasks poll `isStopping` or sleep through
/// `sleep`, which ends early on a stop.
final class Control: Sendable {
    private struct State {
        var stopping = false
        var exitCode: Int32 = 0
        var actions: [@Sendable () -> Void] = []
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var isStopping: Bool { state.withLock { $0.stopping } }
    var exitCode: Int32 { state.withLock { $0.exitCode } }

    /// Runs `action` on stop (at once if already stopping).
    func onStop(_ action: @escaping @Sendable () -> Void) {
        let now: Bool = state.withLock { s in
            if s.stopping { return true }
            s.actions.append(action)
            return false
        }
        if now { action() }
    }

    /// Begins the stop; `exitCode` and `reason` count only for the first call.
    func stop(exitCode: Int32, reason: String) {
        let run: ([@Sendable () -> Void], [CheckedContinuation<Void, Never>])? = state.withLock { s in
            if s.stopping { return nil }
            s.stopping = true
            s.exitCode = exitCode
            defer {
                s.actions = []
                s.waiters = []
            }
            return (s.actions, s.waiters)
        }
        guard let (actions, waiters) = run else { return }
        logLine(reason)
        for a in actions { a() }
        for w in waiters { w.resume() }
    }

    /// Returns once `stop` was called.
    func waitUntilStopping() async {
        await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
            let now: Bool = state.withLock { s in
                if s.stopping { return true }
                s.waiters.append(k)
                return false
            }
            if now { k.resume() }
        }
    }

    /// Sleeps `ms` in slices of at most 50 ms; false if a stop came first.
    func sleep(ms: Int) async -> Bool {
        let deadline = monotonicNs() + UInt64(max(0, ms)) * 1_000_000
        while true {
            if isStopping { return false }
            let now = monotonicNs()
            if now >= deadline { return true }
            let slice = min(deadline - now, 50_000_000)
            try? await Task.sleep(for: .nanoseconds(Int64(slice)))
        }
    }
}

/// SIGINT and SIGTERM: the first asks for a graceful stop, a second one
/// for an immediate one (`onSecond`). SIGPIPE is ignored.
final class SignalWatcher {
    private let sources: [any DispatchSourceSignal]

    init(onFirst: @escaping @Sendable (Int32) -> Void, onSecond: @escaping @Sendable () -> Void) {
        signal(SIGPIPE, SIG_IGN)
        let count = Mutex(0)
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                let n = count.withLock { c in
                    c += 1
                    return c
                }
                if n == 1 { onFirst(sig) } else { onSecond() }
            }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    func cancel() {
        for s in sources { s.cancel() }
    }
}
