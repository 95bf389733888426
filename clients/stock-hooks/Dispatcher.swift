import Synchronization

/// One event ready to post.
struct Job: Sendable {
    let offset: UInt64
    /// The ordering lane: the SKU, or "" for events without one (`extended`).
    let lane: String
    let kind: String
    /// The JSON body (`EventJSON.body`).
    let body: [UInt8]
}

/// Per-SKU lanes with a global bound.
///
/// Ordering: a lane (one SKU) has at most one job out with a worker at a
/// time, and hands its jobs out in the order they were added — so an event
/// is not posted before the earlier events of its SKU were delivered or
/// dead-lettered. Different lanes go out in parallel, as many as there are
/// workers (`--concurrency`). A lane with more work goes to the back of the
/// ready queue after each job, so a hot SKU cannot starve the others.
///
/// Bound: at most `capacity` jobs are buffered (queued or out with a
/// worker). The feed reader waits in `waitForSpace` when full, stops
/// taking events from the feed, and the feed's credit then pauses the
/// server's side.
final class Dispatcher: Sendable {
    private struct Lane {
        var queue = FIFO<Job>()
        var busy = false
    }

    private struct State {
        var lanes: [String: Lane] = [:]
        /// Lanes with queued work and no job out; each at most once.
        var ready = FIFO<String>()
        /// Jobs queued or out with a worker.
        var buffered = 0
        var idleWorkers: [CheckedContinuation<Job?, Never>] = []
        var spaceWaiter: CheckedContinuation<Bool, Never>?
        var stopped = false
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        precondition(capacity >= 1)
        self.capacity = capacity
    }

    /// Jobs queued or out with a worker.
    var buffered: Int { state.withLock { $0.buffered } }

    /// Waits until a job may be added; false once stopped. One caller (the feed reader).
    func waitForSpace() async -> Bool {
        await withCheckedContinuation { (k: CheckedContinuation<Bool, Never>) in
            let answer: Bool? = state.withLock { s in
                if s.stopped { return false }
                if s.buffered < capacity { return true }
                precondition(s.spaceWaiter == nil, "one feed reader")
                s.spaceWaiter = k
                return nil
            }
            if let answer { k.resume(returning: answer) }
        }
    }

    /// Adds a job to its lane (after `waitForSpace` said yes).
    func add(_ job: Job) {
        let handOff: (CheckedContinuation<Job?, Never>, Job)? = state.withLock { s in
            s.buffered += 1
            // Mutated in place: a copy out of the dictionary would copy the queue.
            let becameReady = Self.mutate(&s.lanes[job.lane, default: Lane()]) { lane in
                lane.queue.append(job)
                return !lane.busy && lane.queue.count == 1
            }
            guard becameReady else { return nil }
            s.ready.append(job.lane)
            return Self.handToIdleWorker(&s)
        }
        if let (k, j) = handOff { k.resume(returning: j) }
    }

    /// The next job for a worker, waiting for one; nil once stopped.
    func next() async -> Job? {
        await withCheckedContinuation { (k: CheckedContinuation<Job?, Never>) in
            let answer: Job?? = state.withLock { s in
                if s.stopped { return .some(nil) }
                if let job = Self.takeReady(&s) { return .some(job) }
                s.idleWorkers.append(k)
                return nil
            }
            if let answer { k.resume(returning: answer) }
        }
    }

    /// A worker is done with `job` (delivered, dead-lettered or abandoned).
    func finish(_ job: Job) {
        let (worker, space): ((CheckedContinuation<Job?, Never>, Job)?, CheckedContinuation<Bool, Never>?) =
            state.withLock { s in
                s.buffered -= 1
                let more = Self.mutate(&s.lanes[job.lane, default: Lane()]) { lane in
                    precondition(lane.busy, "finishing a job of a lane with none out")
                    lane.busy = false
                    return !lane.queue.isEmpty
                }
                var worker: (CheckedContinuation<Job?, Never>, Job)?
                if more {
                    s.ready.append(job.lane)
                    worker = Self.handToIdleWorker(&s)
                } else {
                    s.lanes[job.lane] = nil
                }
                var space: CheckedContinuation<Bool, Never>?
                if s.buffered < capacity, let w = s.spaceWaiter {
                    s.spaceWaiter = nil
                    space = w
                }
                return (worker, space)
            }
        if let (k, j) = worker { k.resume(returning: j) }
        space?.resume(returning: true)
    }

    /// Stops handing out jobs: idle workers and a waiting reader are woken
    /// (nil / false). Queued jobs stay undelivered (their offsets stay above
    /// the watermark, so the next run sends them).
    func stop() {
        let (workers, space) = state.withLock { s in
            s.stopped = true
            defer {
                s.idleWorkers = []
                s.spaceWaiter = nil
            }
            return (s.idleWorkers, s.spaceWaiter)
        }
        for w in workers { w.resume(returning: nil) }
        space?.resume(returning: false)
    }

    /// The next job of the first ready lane, which is then busy.
    private static func takeReady(_ s: inout State) -> Job? {
        guard let key = s.ready.popFirst() else { return nil }
        return mutate(&s.lanes[key, default: Lane()]) { lane in
            precondition(!lane.busy && !lane.queue.isEmpty, "a ready lane has queued work and no job out")
            lane.busy = true
            return lane.queue.popFirst()
        }
    }

    /// A ready job paired with an idle worker, if both exist (and not stopped).
    private static func handToIdleWorker(_ s: inout State) -> (CheckedContinuation<Job?, Never>, Job)? {
        guard !s.stopped, !s.idleWorkers.isEmpty, let job = takeReady(&s) else { return nil }
        return (s.idleWorkers.removeLast(), job)
    }

    private static func mutate<T, R>(_ value: inout T, _ body: (inout T) -> R) -> R { body(&value) }
}
