import TestSupport
import Testing
@testable import StockCore


/// Minimal binary min-heap of (deadlineMs, id) for the reference model.
private struct DeadlineHeap {
    private var items: [(deadlineMs: UInt64, id: Int)] = []

    var isEmpty: Bool { items.isEmpty }
    var min: (deadlineMs: UInt64, id: Int)? { items.first }

    mutating func push(_ deadlineMs: UInt64, _ id: Int) {
        items.append((deadlineMs, id))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if items[parent].deadlineMs <= items[child].deadlineMs { break }
            items.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> (deadlineMs: UInt64, id: Int) {
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < items.count && items[left].deadlineMs < items[smallest].deadlineMs { smallest = left }
                if right < items.count && items[right].deadlineMs < items[smallest].deadlineMs { smallest = right }
                if smallest == parent { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}

private let hourMs: UInt64 = 3_600_000
private let minuteMs: UInt64 = 60_000

/// Advances one millisecond at a time from `fromMs` to `toMs` and returns the times at
/// which `fire` ran, with what.
private func stepMs(_ wheel: TimingWheel, from fromMs: UInt64, to toMs: UInt64) -> [(atMs: UInt64, entry: UInt64, deadlineMs: UInt64)] {
    var fired: [(atMs: UInt64, entry: UInt64, deadlineMs: UInt64)] = []
    var nowMs = fromMs
    while nowMs <= toMs {
        let atMs = nowMs
        wheel.advance(to: atMs, budget: 1_000) { entry, deadlineMs in fired.append((atMs, entry, deadlineMs)) }
        nowMs += 1
    }
    return fired
}

@Suite(.cpuHeavy) struct TimingWheelTests {
    /// The named bucket bounds add up to the layout the header comment describes.
    @Test func bucketLayoutIsTheDocumentedOne() {
        #expect(TimingWheel.level0BucketCount == 256 && TimingWheel.upperBucketCount == 64)
        #expect([TimingWheel.level1FirstBucket, TimingWheel.level2FirstBucket, TimingWheel.level3FirstBucket]
                == [256, 320, 384])
        #expect(TimingWheel.wheelBucketCount == 448 && TimingWheel.chainCount == 451)
        #expect(TimingWheel.occupancyWordCount * 64 >= TimingWheel.wheelBucketCount)
        #expect(TimingWheel.topEpochBits == 26)
    }

    @Test func firesExactlyAtTheDeadlineNotOneMillisecondBefore() {
        let startMs: UInt64 = 1_000_003
        // One deadline per interesting distance: each level, each level boundary, overflow.
        let distancesMs: [UInt64] = [
            1, 2, 254, 255, 256, 257, 300, 16_383, 16_384, 16_385, 90_000,
            1_048_575, 1_048_576, 1_048_577, 5_000_000, 67_108_863, 67_108_864, 67_108_865,
        ]
        for distanceMs in distancesMs {
            let wheel = TimingWheel(nowMs: startMs)
            let deadlineMs = startMs + distanceMs
            wheel.schedule(7, deadlineMs: deadlineMs)
            // Jump close in one go, then walk the last milliseconds one by one.
            let approachMs = deadlineMs >= startMs + 3 ? deadlineMs - 3 : startMs
            var early = 0
            wheel.advance(to: approachMs, budget: 10) { _, _ in early += 1 }
            #expect(early == 0, "distance \(distanceMs)")
            let fired = stepMs(wheel, from: approachMs, to: deadlineMs + 2)
            #expect(fired.count == 1, "distance \(distanceMs)")
            #expect(fired.first?.atMs == deadlineMs, "distance \(distanceMs)")
            #expect(fired.first?.entry == 7 && fired.first?.deadlineMs == deadlineMs)
            #expect(wheel.count == 0 && wheel.nextWakeMs == nil)
            wheel.verifyInvariants()
        }
    }

    @Test func pastAndPresentDeadlinesFireAtTheNextAdvance() {
        let wheel = TimingWheel(nowMs: 5_000)
        wheel.schedule(1, deadlineMs: 100)      // long past
        wheel.schedule(2, deadlineMs: 5_000)    // exactly now
        wheel.schedule(3, deadlineMs: 5_001)    // the future
        #expect(wheel.count == 3)
        #expect(wheel.nextWakeMs.map { $0 <= 100 } == true)
        var fired: [UInt64] = []
        // An earlier time is ignored for time, but due entries still fire.
        wheel.advance(to: 10, budget: 10) { entry, _ in fired.append(entry) }
        #expect(fired.sorted() == [1, 2])
        #expect(wheel.nowMs == 5_000)
        #expect(wheel.count == 1 && wheel.nextWakeMs == 5_001)
        wheel.advance(to: 5_001, budget: 10) { entry, _ in fired.append(entry) }
        #expect(fired.sorted() == [1, 2, 3])
        #expect(wheel.count == 0 && wheel.nextWakeMs == nil)
        wheel.verifyInvariants()
    }

    @Test func backlogFiresFirstAndAnEarlierTimeStillDrainsIt() {
        let wheel = TimingWheel(nowMs: 0)
        for entry in 0..<10 as Range<UInt64> {
            wheel.schedule(entry, deadlineMs: 50)
        }
        wheel.schedule(100, deadlineMs: 60)
        var fired: [UInt64] = []
        #expect(wheel.advance(to: 70, budget: 4) { entry, _ in fired.append(entry) } == 4)
        #expect(wheel.backlog == 7 && wheel.count == 7)
        #expect(wheel.nextWakeMs.map { $0 <= 50 } == true)
        #expect(wheel.advance(to: 0, budget: 0) { entry, _ in fired.append(entry) } == 0)
        #expect(wheel.backlog == 7)
        #expect(wheel.advance(to: 0, budget: 6) { entry, _ in fired.append(entry) } == 6)
        // The deadline-50 entries were queued first, so they went first.
        #expect(fired == Array(0..<10))
        #expect(wheel.advance(to: 0, budget: 6) { entry, _ in fired.append(entry) } == 1)
        #expect(fired.last == 100 && wheel.count == 0 && wheel.backlog == 0)
        wheel.verifyInvariants()
    }

    /// Random deadlines and random steps against a reference model (a min-heap).
    /// With an unlimited budget every entry must fire at the first advance whose time
    /// reaches its deadline; with a small budget it must never fire early, fire exactly
    /// once, and everything due must have fired whenever the wheel reports it is not behind.
    private func runReferenceModel(seed: UInt64, entries: Int, budget: () -> Int) {
        var random = SplitMix64(seed: seed)
        // A Unix-epoch-like start one hour before a level-3 epoch boundary (2^26 ms), so the
        // run crosses it and exercises the overflow bucket.
        let startMs: UInt64 = (25_000 << 26) - hourMs + random.next(below: 1_000_000)
        let wheel = TimingWheel(nowMs: startMs)
        var deadlines: [UInt64] = []
        deadlines.reserveCapacity(entries)
        var firedAtCall = [Int](repeating: -1, count: entries)
        var heap = DeadlineHeap()
        var nowMs = startMs
        var firedTotal = 0

        func scheduleOne(_ deadlineMs: UInt64) {
            let id = deadlines.count
            deadlines.append(deadlineMs)
            heap.push(deadlineMs, id)
            wheel.schedule(UInt64(id), deadlineMs: deadlineMs)
        }
        for _ in 0..<(entries / 2) {
            scheduleOne(startMs + random.next(below: 2 * hourMs))
        }
        var call = 0
        while deadlines.count < entries || wheel.count > 0 {
            // Interleave new entries, a few of them already due.
            if deadlines.count < entries {
                for _ in 0..<random.next(below: 40) where deadlines.count < entries {
                    let offsetMs = random.next(below: 2 * hourMs + 2_000)
                    scheduleOne(nowMs + offsetMs >= 2_000 ? nowMs + offsetMs - 2_000 : 0)
                }
            }
            // Mostly small steps, sometimes a long jump.
            let stepMs = random.next(below: 10) == 0 ? random.next(below: 200_000) : random.next(below: 2_000)
            nowMs += stepMs
            call += 1
            let callBudget = budget()
            let thisCall = call
            let callNowMs = nowMs
            var firedThisCall = 0
            var wrongDeadline = false
            var early = false
            var twice = false
            let returned = wheel.advance(to: nowMs, budget: callBudget) { entry, deadlineMs in
                let id = Int(entry)
                precondition(id < deadlines.count)
                wrongDeadline = wrongDeadline || deadlineMs != deadlines[id]
                early = early || deadlineMs > callNowMs
                twice = twice || firedAtCall[id] != -1
                firedAtCall[id] = thisCall
                firedThisCall += 1
            }
            #expect(!wrongDeadline && !early && !twice, "call \(thisCall)")
            #expect(returned == firedThisCall && returned <= callBudget)
            firedTotal += returned
            #expect(wheel.count == deadlines.count - firedTotal)
            #expect(wheel.backlog <= wheel.count)
            if returned < callBudget {
                #expect(wheel.backlog == 0)
            }
            if !wheel.isBehind {
                // Everything due by now has fired; with an unlimited budget, in this very call.
                var late = false
                while let top = heap.min, top.deadlineMs <= nowMs {
                    _ = heap.pop()
                    if callBudget == Int.max {
                        late = late || firedAtCall[top.id] != thisCall
                    } else {
                        late = late || firedAtCall[top.id] == -1
                    }
                }
                #expect(!late, "an entry due by call \(thisCall) did not fire when it should have")
                #expect(wheel.backlog == 0)
            }
            // nextWakeMs is a lower bound of the earliest pending deadline, nil iff empty.
            if let wakeMs = wheel.nextWakeMs {
                #expect(wheel.count > 0)
                if !wheel.isBehind, let top = heap.min {
                    #expect(wakeMs <= top.deadlineMs)
                    #expect(wakeMs > nowMs)
                }
            } else {
                #expect(wheel.count == 0)
            }
            if call % 2_000 == 0 {
                wheel.verifyInvariants()
            }
            if call > 1_000_000 {
                Issue.record("the wheel never drained")
                break
            }
        }
        wheel.verifyInvariants()
        #expect(firedTotal == entries)
        #expect(!firedAtCall.contains(-1))
        #expect(wheel.blocksInUse == 0)
    }

    @Test func randomDeadlinesMatchTheReferenceModel() {
        runReferenceModel(seed: 0x5EED_0001, entries: 100_000) { Int.max }
    }

    @Test func randomDeadlinesUnderASmallBudgetNeverFireEarlyOrTwice() {
        var random = SplitMix64(seed: 0x5EED_0002)
        runReferenceModel(seed: 0x5EED_0003, entries: 30_000) { 1 + Int(random.next(below: 64)) }
    }

    @Test func aMillionEntriesDueInOneMillisecondAreSpreadOverCalls() {
        let entries = 1_000_000
        let budget = 10_000
        let deadlineMs: UInt64 = 5_000
        let wheel = TimingWheel(nowMs: 0)
        for entry in 0..<UInt64(entries) {
            wheel.schedule(entry, deadlineMs: deadlineMs)
        }
        #expect(wheel.count == entries && wheel.backlog == 0)
        // Opening their level-1 bucket just before the deadline relinks all of them into one
        // level-0 bucket at once, without visiting them.
        let visitsBefore = wheel.bucketVisits
        #expect(wheel.advance(to: deadlineMs - 1, budget: budget) { _, _ in } == 0)
        #expect(!wheel.isBehind && wheel.backlog == 0)
        #expect(wheel.bucketVisits - visitsBefore <= 3)
        #expect(wheel.nextWakeMs == deadlineMs)
        var seen = [Bool](repeating: false, count: entries)
        var calls = 0
        while true {
            var early = false
            var twice = false
            let fired = wheel.advance(to: deadlineMs, budget: budget) { entry, firedDeadlineMs in
                early = early || firedDeadlineMs != deadlineMs
                twice = twice || seen[Int(entry)]
                seen[Int(entry)] = true
            }
            #expect(!early && !twice)
            if fired == 0 {
                break
            }
            calls += 1
            #expect(fired == budget)
            #expect(wheel.count == entries - calls * budget)
            #expect(wheel.backlog == wheel.count)
            #expect((wheel.nextWakeMs != nil) == (wheel.count > 0))
            #expect(wheel.nextWakeMs.map { $0 <= deadlineMs } ?? true)
        }
        #expect(calls == 100)
        #expect(wheel.count == 0 && wheel.backlog == 0 && wheel.nextWakeMs == nil)
        #expect(!seen.contains(false))
        wheel.verifyInvariants()
    }

    @Test func cascadingAHugeBucketIsBoundedPerCall() {
        // 400,000 entries spread over one level-1 bucket: opening it re-places them all,
        // which must be spread over calls, none of which fires anything early.
        let entries = 400_000
        let budget = 10_000
        let wheel = TimingWheel(nowMs: 0)
        for entry in 0..<UInt64(entries) {
            wheel.schedule(entry, deadlineMs: 1_024 + entry % 256)  // level-1 bucket 4: [1024, 1280)
        }
        let dueAt1024 = (entries + 255) / 256
        var cascadeCalls = 0
        var firedTotal = 0
        var early = false
        while true {
            let fired = wheel.advance(to: 1_024, budget: budget) { _, deadlineMs in
                early = early || deadlineMs != 1_024
            }
            #expect(fired <= budget)
            firedTotal += fired
            cascadeCalls += 1
            if !wheel.isBehind { break }
            #expect(cascadeCalls < 100)
            if cascadeCalls >= 100 { break }
        }
        // At most 40,000 entries visited per call at budget 10,000.
        #expect(cascadeCalls >= entries / (4 * budget))
        #expect(firedTotal == dueAt1024 && wheel.count == entries - dueAt1024)
        wheel.verifyInvariants()
        var nowMs: UInt64 = 1_024
        while wheel.count > 0 && nowMs < 10_000 {
            nowMs += 1
            let callNowMs = nowMs
            firedTotal += wheel.advance(to: nowMs, budget: budget) { _, deadlineMs in
                early = early || deadlineMs > callNowMs
            }
        }
        #expect(!early)
        #expect(firedTotal == entries)
        #expect(nowMs <= 1_279 + UInt64(entries / budget))
    }

    @Test func oneAndTwentyHourTtlsFireExactlyWithBigSteps() {
        let startMs: UInt64 = 1_700_000_123_457
        for ttlMs in [hourMs, 20 * hourMs, 40 * hourMs] {
            let wheel = TimingWheel(nowMs: startMs)
            let deadlineMs = startMs + ttlMs
            wheel.schedule(42, deadlineMs: deadlineMs)
            let visitsBefore = wheel.bucketVisits
            var nowMs = startMs
            var firedAtMs: UInt64? = nil
            var calls = 0
            while firedAtMs == nil && nowMs <= deadlineMs + 10 {
                // A minute at a time, then a second, then a millisecond near the deadline.
                let remainingMs = deadlineMs > nowMs ? deadlineMs - nowMs : 0
                let stepMs: UInt64 = remainingMs > minuteMs ? minuteMs : remainingMs > 1_000 ? 1_000 : 1
                nowMs += stepMs
                let atMs = nowMs
                wheel.advance(to: nowMs, budget: 100) { entry, firedDeadlineMs in
                    #expect(entry == 42 && firedDeadlineMs == deadlineMs)
                    firedAtMs = atMs
                }
                calls += 1
                if firedAtMs == nil {
                    #expect(wheel.nextWakeMs.map { $0 <= deadlineMs } == true)
                } else {
                    #expect(wheel.nextWakeMs == nil)
                }
            }
            #expect(firedAtMs == deadlineMs, "ttl \(ttlMs) ms")
            // About one scan per call plus a few bucket openings, never one per millisecond.
            #expect(wheel.bucketVisits - visitsBefore < calls + 20)
            #expect(wheel.count == 0)
        }
    }

    @Test func aLongIdleAdvanceIsCheap() {
        let startMs: UInt64 = 987_654_321
        let wheel = TimingWheel(nowMs: startMs)
        let deadlineMs = startMs + 20 * hourMs
        wheel.schedule(9, deadlineMs: deadlineMs)
        wheel.schedule(10, deadlineMs: startMs + 30 * 24 * hourMs)
        let visitsBefore = wheel.bucketVisits
        #expect(wheel.advance(to: deadlineMs - 1, budget: 10) { _, _ in } == 0)
        #expect(wheel.bucketVisits - visitsBefore < 50)
        #expect(wheel.nextWakeMs == deadlineMs)
        var fired: [UInt64] = []
        wheel.advance(to: deadlineMs, budget: 10) { entry, _ in fired.append(entry) }
        #expect(fired == [9])
        wheel.advance(to: startMs + 30 * 24 * hourMs, budget: 10) { entry, _ in fired.append(entry) }
        #expect(fired == [9, 10])
        #expect(wheel.bucketVisits - visitsBefore < 100)
        // An empty wheel skips 20 hours in one scan.
        let empty = TimingWheel(nowMs: 0)
        empty.advance(to: 20 * hourMs, budget: 10) { _, _ in }
        #expect(empty.bucketVisits <= 1 && empty.nowMs == 20 * hourMs)
        wheel.verifyInvariants()
        empty.verifyInvariants()
    }

    @Test func memoryIsReusedAcrossWaves() {
        var random = SplitMix64(seed: 0x5EED_0004)
        let wheel = TimingWheel(nowMs: 0)
        let initialBytes = wheel.memoryBytes
        var nowMs: UInt64 = 0
        var afterFirstWaveBytes = 0
        var nextEntry: UInt64 = 0
        for wave in 0..<100 {
            for _ in 0..<10_000 {
                wheel.schedule(nextEntry, deadlineMs: nowMs + 1 + random.next(below: 90_000))
                nextEntry += 1
            }
            let waveStartMs = nowMs
            while wheel.count > 0 && nowMs < waveStartMs + 200_000 {
                nowMs += 250
                wheel.advance(to: nowMs, budget: 100_000) { _, deadlineMs in
                    precondition(deadlineMs <= nowMs)
                }
            }
            #expect(wheel.blocksInUse == 0)
            if wave == 0 {
                afterFirstWaveBytes = wheel.memoryBytes
            }
        }
        wheel.verifyInvariants()
        #expect(nextEntry == 1_000_000)
        // One wave needs at most ~10,000 x 16 bytes plus a partly filled block per bucket;
        // the pool may double once more for an unlucky wave but never tracks the total.
        #expect(initialBytes < afterFirstWaveBytes)
        #expect(wheel.memoryBytes <= 2 * afterFirstWaveBytes)
        #expect(wheel.memoryBytes < 4 * 1_024 * 1_024)
    }

    @Test func nextWakeIsALowerBoundAndNilExactlyWhenEmpty() {
        let wheel = TimingWheel(nowMs: 1_000)
        #expect(wheel.nextWakeMs == nil)
        var random = SplitMix64(seed: 0x5EED_0005)
        var earliestMs = UInt64.max
        for entry in 0..<2_000 as Range<UInt64> {
            let deadlineMs = 1_001 + random.next(below: 30 * hourMs)
            earliestMs = min(earliestMs, deadlineMs)
            wheel.schedule(entry, deadlineMs: deadlineMs)
            #expect(wheel.nextWakeMs.map { $0 <= earliestMs && $0 > 1_000 } == true)
        }
        // Jumping from wake to wake drains the wheel; every jump fires or re-arms lower.
        var jumps = 0
        while let wakeMs = wheel.nextWakeMs {
            #expect(wheel.count > 0)
            wheel.advance(to: wakeMs, budget: Int.max) { _, deadlineMs in
                #expect(deadlineMs <= wakeMs)
            }
            jumps += 1
            if jumps > 2_000 {
                Issue.record("more jumps than entries: some jump fired nothing")
                break
            }
        }
        #expect(wheel.count == 0)
        wheel.verifyInvariants()
    }

    @Test func callingBackIntoTheWheelFromFireTraps() async {
        await #expect(processExitsWith: .failure) {
            let wheel = TimingWheel(nowMs: 0)
            wheel.schedule(1, deadlineMs: 1)
            wheel.advance(to: 1, budget: 10) { entry, deadlineMs in
                wheel.schedule(entry, deadlineMs: deadlineMs + 1)
            }
        }
    }
}
