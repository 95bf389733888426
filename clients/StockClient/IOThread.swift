import Glibc

/// The thread that does one connection's I/O, and a way to await its end.
///
/// Why a thread of its own per connection, not the cooperative pool nor a
/// DispatchQueue: name resolution (`getaddrinfo`) and a connect to a silent
/// address block for seconds and cannot be made asynchronous with the C
/// library alone, and a blocked write under server backpressure must not
/// stall unrelated tasks. The pool holds 1–64 connections, so one thread each
/// costs little, and each thread `poll`s just its socket and its `Wakeup`:
/// no shared event loop whose one slow connection delays the others. The thread ends when its connection ends; `shutdown()`
/// awaits `exited` so no thread outlives the client.
final class IOThread: @unchecked Sendable {
    private let lock = Mutex()
    private var done = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    /// Runs `body` on a new detached thread; false if no thread could be made.
    func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        let job = Unmanaged.passRetained(Job(thread: self, body: body)).toOpaque()
        var handle = pthread_t()
        guard pthread_create(&handle, nil, { arg in
            let job = Unmanaged<Job>.fromOpaque(arg!).takeRetainedValue()
            job.body()
            job.thread.finish()
            return nil
        }, job) == 0 else {
            Unmanaged<Job>.fromOpaque(job).release()
            finish()
            return false
        }
        pthread_detach(handle)
        return true
    }

    /// Returns once the thread's body has returned (its descriptors closed).
    func exited() async {
        await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in
            let finished = lock.with { () -> Bool in
                if !done { waiting.append(k) }
                return done
            }
            if finished { k.resume() }
        }
    }

    private func finish() {
        let ks = lock.with { () -> [CheckedContinuation<Void, Never>] in
            done = true
            defer { waiting.removeAll() }
            return waiting
        }
        for k in ks { k.resume() }
    }

    private final class Job: @unchecked Sendable {
        let thread: IOThread
        let body: @Sendable () -> Void
        init(thread: IOThread, body: @escaping @Sendable () -> Void) {
            self.thread = thread
            self.body = body
        }
    }
}

/// A pthread mutex (visible to ThreadSanitizer, unlike a futex-based lock).
final class Mutex: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        m = .allocate(capacity: 1)
        pthread_mutex_init(m, nil)
    }

    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }

    func with<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return try body()
    }
}

/// Resumes a continuation exactly once, whichever of several racers (the
/// I/O thread's result, a cancellation, a deadline) comes first.
final class OnceResult<Value: Sendable>: @unchecked Sendable {
    private let lock = Mutex()
    private var continuation: CheckedContinuation<Result<Value, StockError>, Never>?
    private var early: Result<Value, StockError>?

    /// Awaits the first `resume`; one that came before this is taken at once.
    func wait() async -> Result<Value, StockError> {
        await withCheckedContinuation { k in
            let ready = lock.with { () -> Result<Value, StockError>? in
                if early == nil { continuation = k }
                return early
            }
            if let ready { k.resume(returning: ready) }
        }
    }

    /// Delivers `result` if nothing was delivered yet; true if this one won.
    @discardableResult
    func resume(_ result: Result<Value, StockError>) -> Bool {
        let (k, won) = lock.with { () -> (CheckedContinuation<Result<Value, StockError>, Never>?, Bool) in
            guard early == nil else { return (nil, false) }
            early = result
            defer { continuation = nil }
            return (continuation, true)
        }
        k?.resume(returning: result)
        return won
    }

    /// Awaits the first result, racing it against `deadlineNs` (then `onDeadline`) and the calling
    /// task's cancellation (then `.cancelled`). The deadline is kept here, on the caller's side,
    /// because the I/O thread may sit in getaddrinfo, which cannot be interrupted.
    func wait(deadlineNs: UInt64, onDeadline: StockError) async -> Result<Value, StockError> {
        let timer = Task { [self] in
            let now = Socket.nowNs()
            try? await Task.sleep(for: .nanoseconds(Int64(clamping: deadlineNs > now ? deadlineNs - now : 0)))
            guard !Task.isCancelled else { return }
            resume(.failure(onDeadline))
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await wait()
        } onCancel: {
            resume(.failure(.cancelled))
        }
    }
}
