import Foundation
import Testing

// Keeping the Swift cooperative pool free in the test process.
//
// The pool has one thread per core: two on the CI machine. A test that
// blocks a pool thread — polling for a child process (`runTool`, a stockd's
// port file, `waitForExit`), a blocking RawClient read, a fuzzer computing
// for seconds — holds it for all that time, and two such tests at once stall
// every other test in the process: an integration test's StockClient answer,
// already read by the client's own I/O thread, cannot be delivered to its
// awaiting task, and its bounded wait runs out. CI saw two 30 s client
// timeouts that way while `stockctl drill` runs and the pure suites held
// both pool threads.
//
// So no test body runs on the pool: each suite has one of two traits.
// - `.ownThread`: every test case runs on a thread of its own (its awaits
//   resume there too), so its blocking waits block nobody else. At most
//   `OwnThreadTrait.concurrentTests` run at once.
// - `.cpuHeavy`: the pure, CPU-bound suites share one thread and so run one
//   test at a time beside the others; the OS shares the cores among all the
//   threads. Not for a test that blocks on another task's work: that task
//   would queue behind it.

/// See the top of this file.
public struct OwnThreadTrait: SuiteTrait, TestTrait, TestScoping {
    /// Test cases running at once on their own threads; the others wait
    /// (suspended, holding no thread) for a turn.
    public static let concurrentTests = 4
    static let turns = AsyncTurns(Self.concurrentTests)

    public var isRecursive: Bool { true }

    /// Once per test case, never for a suite (whose scope would hold a turn
    /// while its tests wait for theirs).
    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        testCase == nil ? nil : self
    }

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        await Self.turns.take()
        let executor = ThreadExecutor(name: "test-case")
        defer {
            executor.finish()
            Self.turns.give()
        }
        try await withTaskExecutorPreference(executor) { try await function() }
    }
}

/// See the top of this file.
public struct CPUHeavyTrait: SuiteTrait, TestTrait, TestScoping {
    static let executor = ThreadExecutor(name: "cpu-heavy-tests")

    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        testCase == nil ? nil : self
    }

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        try await withTaskExecutorPreference(Self.executor) { try await function() }
    }
}

extension Trait where Self == OwnThreadTrait {
    /// Each test case on a thread of its own (see OwnThreadTrait).
    public static var ownThread: Self { OwnThreadTrait() }
}

extension Trait where Self == CPUHeavyTrait {
    /// The suite's tests one at a time on the CPU-heavy thread (see CPUHeavyTrait).
    public static var cpuHeavy: Self { CPUHeavyTrait() }
}

/// A task executor of one thread with a FIFO of jobs.
///
/// After `finish()` the thread runs what is queued and ends; jobs enqueued
/// later (an unstructured Task a test left behind inherits the preference)
/// go to the global concurrent executor instead, so none is stranded.
final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []  // guarded by `condition`
    private var finished = false  // guarded by `condition`

    init(name: String) {
        let thread = Thread { [self] in runJobs() }
        thread.name = name
        thread.stackSize = 8 << 20  // deep recursion in debug builds of the fuzzers
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        condition.lock()
        if finished {
            condition.unlock()
            globalConcurrentExecutor.enqueue(job)
            return
        }
        jobs.append(UnownedJob(job))
        condition.signal()
        condition.unlock()
    }

    func finish() {
        condition.lock()
        finished = true
        condition.signal()
        condition.unlock()
    }

    private func runJobs() {
        while true {
            condition.lock()
            while jobs.isEmpty && !finished { condition.wait() }
            if jobs.isEmpty {  // finished and drained
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// A counting semaphore for tasks: `take` suspends (holding no thread)
/// until one of the `count` turns is free.
final class AsyncTurns: @unchecked Sendable {
    private let lock = NSLock()
    private var free: Int  // guarded by `lock`
    private var waiting: [CheckedContinuation<Void, Never>] = []  // guarded by `lock`

    init(_ count: Int) {
        precondition(count > 0)
        free = count
    }

    func take() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.lock()
            if free > 0 {
                free -= 1
                lock.unlock()
                c.resume()
            } else {
                waiting.append(c)
                lock.unlock()
            }
        }
    }

    func give() {
        lock.lock()
        if waiting.isEmpty {
            free += 1
            lock.unlock()
        } else {
            let next = waiting.removeFirst()
            lock.unlock()
            next.resume()
        }
    }
}
