// TimingWheel.swift — per-worker hierarchical timing wheel for token expiry.
//
// ## What it stores
// Opaque 64-bit entries (the core packs a token slot and generation into one) with a
// millisecond deadline each. One wheel belongs to one worker thread; nothing here is
// thread-safe and the type is explicitly not `Sendable`.
//
// ## Levels
//   level 0: 256 buckets x          1 ms  (one epoch =          256 ms)
//   level 1:  64 buckets x        256 ms  (one epoch =       16,384 ms)
//   level 2:  64 buckets x     16,384 ms  (one epoch =    1,048,576 ms ~ 17.5 min)
//   level 3:  64 buckets x  1,048,576 ms  (one epoch =   67,108,864 ms ~ 18.6 h)
//   overflow: one more bucket after level 3 for deadlines beyond the level-3 epoch.
// An entry lives at the lowest level whose epoch contains both the wheel's cursor and
// its deadline: `deadlineMs ^ cursorMs < 256` puts it in level 0, `< 2^14` in level 1,
// and so on ("the highest differing bit picks the level"). Two consequences that make
// the wheel simple to reason about:
//   * every bucket covers a time range strictly after the cursor, and every entry at a
//     lower level (or lower bucket index on the same level) is due before every entry at
//     a higher one. The next bucket to process is therefore the lowest set bit in one
//     448-bit occupancy bitmap (7 words; bucket number b lives in word b >> 6), and an
//     idle gap of any length costs a handful of bit scans, never a loop over milliseconds;
//   * moving the cursor forward to any time before the next occupied bucket's start
//     keeps every placement valid, so idle time is skipped in O(1).
// The overflow bucket plays the role of "the farthest top-level bucket": it is opened
// when the cursor enters the next level-3 epoch (every 2^26 ms) and its entries are
// re-placed from their stored deadline (cascading is exact because entries carry it).
// Deadlines up to `TimingWheel.maxDeadlineMs` (2^62 ms) are accepted.
//
// ## Processing a bucket
// When the cursor reaches a bucket's start and that start is <= the target time:
//   * a level-0 bucket, or any bucket whose largest deadline is <= the target, is wholly
//     due: its block chain is spliced onto the due queue in O(1) (tiny chains are copied
//     instead, so half-empty blocks do not pile up in the queue);
//   * a bucket with nothing due whose smallest and largest deadlines fall into the same
//     lower bucket is relinked there whole, in O(1) (a stampede of tokens with one
//     deadline cascades without touching its entries);
//   * otherwise the bucket is detached as the *pending cascade* and its entries are
//     visited one by one: due ones fire (or join the due queue once the fire budget is
//     spent), the rest are re-placed into lower levels.
// Every advance call fires at most `budget` entries and visits at most
// `max(4 * budget, 4096)` entries while cascading, so one call costs
// O(budget + blocks touched) even with 1,000,000 entries in one bucket. Work left over
// (the due queue, the rest of the pending cascade, buckets not yet opened) is resumed
// first by the next call, due queue first. An entry never fires before its deadline and
// fires exactly once.
//
// ## Why cancellation is lazy
// There is no `cancel`. A token that is confirmed, released or extended leaves its old
// entry in the wheel; when the entry fires, the core looks the token up (slot +
// generation) and skips it if the token is gone or its deadline moved. Tokens are
// short-lived (~90 s) and most are confirmed or released, so eager removal would cost a
// back-pointer per entry and a random memory write per confirm, while a stale entry costs
// 16 bytes for at most one ttl and one cheap check when it fires.
//
// ## Storage
// Entries are 16-byte `Slot`s (entry + deadlineMs) in fixed blocks of 256 (4 KiB),
// carved out of chunks allocated with `UnsafeMutablePointer` (each chunk doubles the
// pool while it is under 4 MiB, then adds 4 MiB, so an idle tail stays small). Block headers live in one table indexed by `Int32` block id; each bucket, the
// due queue and the pending cascade is a singly linked chain of block ids. Emptied blocks
// go back to a free list and are reused, so steady state allocates nothing; memory grows
// only when live entries (plus at most one partially filled tail block per bucket) exceed
// the pool. All memory is freed in `deinit`.
//
// ## Re-entrancy
// `fire` must not call back into the wheel (no `schedule`, no `advance`): the core
// collects re-arms and schedules them after `advance` returns. A flag enforces this.

/// Per-worker hierarchical timing wheel of opaque 64-bit entries with millisecond deadlines.
///
/// Not thread-safe: one wheel belongs to one worker thread, and the type is not `Sendable`.
/// Cancellation is lazy: entries are never removed early; the owner checks, when an entry
/// fires, whether it is still current. The `fire` closure passed to ``advance(to:budget:_:)``
/// must not call back into the wheel.
public final class TimingWheel {
    // MARK: Geometry

    /// Entries per storage block (a block is 256 x 16 bytes = 4 KiB).
    static let blockCapacity: Int = 256
    /// log2 of level 0's bucket count: 256 buckets of 1 ms.
    static let level0Bits: UInt64 = 8
    /// log2 of the bucket count of each of levels 1, 2 and 3: 64 buckets, each spanning a whole
    /// lower level (256 ms, 16.4 s, 17.5 min).
    static let upperLevelBits: UInt64 = 6
    /// Buckets on level 0 (1 ms each).
    static let level0BucketCount: Int = 1 << level0Bits
    /// Buckets on each of levels 1, 2 and 3.
    static let upperBucketCount: Int = 1 << upperLevelBits
    /// Mask of a bucket's index within an upper level.
    static let upperBucketMask: UInt64 = (1 << upperLevelBits) - 1
    /// Chain index of level 1's, 2's and 3's first bucket (they follow level 0's, in order).
    static let level1FirstBucket: Int = level0BucketCount
    static let level2FirstBucket: Int = level1FirstBucket + upperBucketCount
    static let level3FirstBucket: Int = level2FirstBucket + upperBucketCount
    /// log2 of the span of one level-1, level-2 and level-3 epoch in milliseconds.
    static let level1EpochBits: UInt64 = level0Bits + upperLevelBits
    static let level2EpochBits: UInt64 = level1EpochBits + upperLevelBits
    /// log2 of one level-3 epoch in milliseconds (2^26 ms ~ 18.6 h).
    static let topEpochBits: UInt64 = level2EpochBits + upperLevelBits
    /// Buckets on levels 0 through 3 together (448); also the number of occupancy bits.
    static let wheelBucketCount: Int = level3FirstBucket + upperBucketCount
    /// Chain index of the overflow bucket (deadlines beyond the level-3 epoch).
    static let overflowChain: Int = wheelBucketCount
    /// Chain index of the due queue (the backlog).
    static let dueChain: Int = overflowChain + 1
    /// Chain index of the bucket being cascaded.
    static let pendingChain: Int = dueChain + 1
    /// Number of chains: wheel buckets, overflow, due queue, pending cascade.
    static let chainCount: Int = pendingChain + 1
    /// Words in the occupancy bitmap (one bit per wheel bucket).
    static let occupancyWordCount: Int = (wheelBucketCount + 63) / 64
    /// Lower bound on the entries one advance may visit while cascading.
    static let minimumCascadeVisitsPerAdvance: Int = 4096
    /// Cascade visits allowed per unit of fire budget (a visit is much cheaper than a fire).
    static let cascadeVisitsPerBudgetUnit: Int = 4
    /// Sentinel block id meaning "no block".
    static let noBlock: Int32 = -1

    /// The largest deadline (and clock value) the wheel accepts, in milliseconds (2^62).
    public static let maxDeadlineMs: UInt64 = 1 << 62

    // MARK: Storage types

    /// One stored entry: 16 bytes.
    struct Slot {
        var entry: UInt64
        var deadlineMs: UInt64
    }

    /// Header of one storage block; live slots are `slots[start..<end]`.
    struct BlockHeader {
        var slots: UnsafeMutablePointer<Slot>
        var next: Int32
        var start: Int32
        var end: Int32
    }

    /// A singly linked chain of blocks: a bucket, the due queue or the pending cascade.
    /// `minDeadlineMs`/`maxDeadlineMs` bound the deadlines in the chain (exact for buckets,
    /// conservative for the due queue and the pending cascade).
    struct Chain {
        var head: Int32 = TimingWheel.noBlock
        var tail: Int32 = TimingWheel.noBlock
        var count: Int = 0
        var minDeadlineMs: UInt64 = .max
        var maxDeadlineMs: UInt64 = 0
    }

    // MARK: State
    // Scalar state that the hot paths touch is `@exclusivity(unchecked)`: the wheel is
    // single-threaded, never hands out `inout` access to its properties, and forbids
    // re-entrancy (`isAdvancing`), so the dynamic exclusivity checks (~25% of schedule and
    // churn cost when measured) can never fire.

    /// Block header table, indexed by block id; `headerCapacity` entries allocated.
    @exclusivity(unchecked) private var headers: UnsafeMutablePointer<BlockHeader>
    private var headerCapacity: Int
    /// Slot storage chunks (each backs a run of consecutive block ids); freed in deinit.
    private var chunks: [UnsafeMutablePointer<Slot>]
    /// `chainCount` chains; see the chain index constants.
    private let chains: UnsafeMutablePointer<Chain>
    /// 448-bit occupancy bitmap: bit `b & 63` of word `b >> 6` is set iff bucket b is non-empty.
    private let occupancy: UnsafeMutablePointer<UInt64>
    /// Head of the free-block list.
    @exclusivity(unchecked) private var freeHead: Int32 = TimingWheel.noBlock
    /// Blocks allocated in total.
    private var blocksTotal: Int = 0
    /// Blocks on the free list.
    @exclusivity(unchecked) private var blocksFree: Int = 0
    /// Every entry in the wheel buckets has `deadlineMs > cursorMs`, placed relative to it.
    /// `cursorMs <= nowMs`; it lags `nowMs` only while work is left over.
    @exclusivity(unchecked) private(set) var cursorMs: UInt64
    /// Set while `advance` runs; `schedule`/`advance` trap if it is set (re-entrancy).
    @exclusivity(unchecked) private var isAdvancing: Bool = false
    /// Buckets opened and bitmap scans done since creation (for tests and metrics).
    @exclusivity(unchecked) private(set) var bucketVisits: Int = 0

    /// The wheel's current time in milliseconds: the largest `nowMs` given to `init` or
    /// ``advance(to:budget:_:)``.
    @exclusivity(unchecked) public private(set) var nowMs: UInt64

    /// Entries scheduled and not yet fired (including the backlog).
    @exclusivity(unchecked) public private(set) var count: Int = 0

    // MARK: Life cycle

    /// Creates an empty wheel whose current time is `nowMs`.
    /// - Parameters:
    ///   - nowMs: the current time in milliseconds, at most ``maxDeadlineMs``.
    ///   - initialCapacity: entries to pre-allocate storage for (rounded up to whole
    ///     256-entry blocks); the pool grows by doubling (at most 4 MiB at a time) when live entries exceed it.
    public init(nowMs: UInt64, initialCapacity: Int = 1024) {
        precondition(nowMs <= TimingWheel.maxDeadlineMs, "TimingWheel: nowMs beyond maxDeadlineMs")
        precondition(initialCapacity >= 0, "TimingWheel: negative initialCapacity")
        precondition(MemoryLayout<Slot>.stride == 16, "TimingWheel: Slot must be 16 bytes")
        self.nowMs = nowMs
        self.cursorMs = nowMs
        self.chains = .allocate(capacity: TimingWheel.chainCount)
        self.chains.initialize(repeating: Chain(), count: TimingWheel.chainCount)
        self.occupancy = .allocate(capacity: TimingWheel.occupancyWordCount)
        self.occupancy.initialize(repeating: 0, count: TimingWheel.occupancyWordCount)
        let initialBlocks = max(1, (initialCapacity + TimingWheel.blockCapacity - 1) / TimingWheel.blockCapacity)
        self.headers = .allocate(capacity: initialBlocks)
        self.headerCapacity = initialBlocks
        self.chunks = []
        self.chunks.reserveCapacity(40)
        addBlocks(initialBlocks)
    }

    deinit {
        for chunk in chunks {
            chunk.deallocate()
        }
        headers.deinitialize(count: blocksTotal)
        headers.deallocate()
        chains.deinitialize(count: TimingWheel.chainCount)
        chains.deallocate()
        occupancy.deinitialize(count: TimingWheel.occupancyWordCount)
        occupancy.deallocate()
    }

    // MARK: Public API

    /// Due entries waiting because of the budget: entries already found due and queued,
    /// fired first by the next ``advance(to:budget:_:)``. Due entries still inside a bucket
    /// that a budget-limited advance has not yet opened or finished cascading are counted
    /// in ``count`` only, until an advance reaches them.
    public var backlog: Int {
        chains[TimingWheel.dueChain].count
    }

    /// Earliest time, in milliseconds, at which some entry may become due, or nil when the
    /// wheel is empty. A lower bound (the caller re-arms its timer after each advance); it
    /// is at or before ``nowMs`` while there is a backlog or other left-over work. O(1).
    public var nextWakeMs: UInt64? {
        if count == 0 {
            return nil
        }
        var wakeMs = UInt64.max
        let due = chains[TimingWheel.dueChain]
        if due.count > 0 {
            wakeMs = min(wakeMs, due.minDeadlineMs)
        }
        let pending = chains[TimingWheel.pendingChain]
        if pending.count > 0 {
            wakeMs = min(wakeMs, pending.minDeadlineMs)
        }
        // Buckets are ordered: the first occupied one holds the earliest wheel entries,
        // and the overflow bucket only matters when levels 0-3 are empty.
        if let bucket = firstOccupiedBucket() {
            wakeMs = min(wakeMs, chains[bucket].minDeadlineMs)
        } else if chains[TimingWheel.overflowChain].count > 0 {
            wakeMs = min(wakeMs, chains[TimingWheel.overflowChain].minDeadlineMs)
        }
        precondition(wakeMs != .max, "TimingWheel: count > 0 but no chain holds entries")
        return wakeMs
    }

    /// Bytes of memory the wheel holds now: storage blocks (free ones included), the block
    /// header table, the bucket table, the bitmap and the object itself.
    public var memoryBytes: Int {
        let blockBytes = blocksTotal * TimingWheel.blockCapacity * MemoryLayout<Slot>.stride
        let headerBytes = headerCapacity * MemoryLayout<BlockHeader>.stride
        let chainBytes = TimingWheel.chainCount * MemoryLayout<Chain>.stride
        let bitmapBytes = TimingWheel.occupancyWordCount * MemoryLayout<UInt64>.stride
        let chunkListBytes = chunks.capacity * MemoryLayout<UnsafeMutablePointer<Slot>>.stride
        let objectBytes = 128  // object header + stored properties, rounded up
        return blockBytes + headerBytes + chainBytes + bitmapBytes + chunkListBytes + objectBytes
    }

    /// Schedules `entry` to fire at `deadlineMs`. O(1); allocates only when the block pool
    /// is exhausted. A deadline at or before the wheel's current time is due at the next
    /// advance. Must not be called from inside the `fire` closure of an advance.
    /// - Parameters:
    ///   - entry: an opaque value handed back to `fire`.
    ///   - deadlineMs: the earliest time, in milliseconds, at which the entry fires; at most
    ///     ``maxDeadlineMs``.
    public func schedule(_ entry: UInt64, deadlineMs: UInt64) {
        precondition(!isAdvancing, "TimingWheel: schedule called from inside advance's fire closure")
        precondition(deadlineMs <= TimingWheel.maxDeadlineMs, "TimingWheel: deadlineMs beyond maxDeadlineMs")
        let chain = deadlineMs <= cursorMs ? TimingWheel.dueChain : bucketIndex(deadlineMs: deadlineMs)
        append(Slot(entry: entry, deadlineMs: deadlineMs), to: chain)
        count += 1
    }

    /// Advances the wheel's time to `nowMs` and fires due entries (deadline <= the wheel's
    /// time), at most `budget` of them.
    ///
    /// Time never goes backwards: an earlier `nowMs` is ignored for time but the call still
    /// drains the backlog. Due entries over budget stay queued (the backlog) and fire first
    /// on the next call. An entry is never fired before its deadline and is fired exactly
    /// once. Besides the fires, one call visits at most `max(4 * budget, 4096)` entries while
    /// cascading; left-over cascade work is resumed by the next call.
    /// - Parameters:
    ///   - nowMs: the current time in milliseconds, at most ``maxDeadlineMs``.
    ///   - budget: the maximum number of `fire` calls, >= 0.
    ///   - fire: called with `(entry, deadlineMs)` for each fired entry. Must not call back
    ///     into the wheel (no `schedule`, no `advance`); collect re-arms and schedule them
    ///     after `advance` returns. Reading the wheel's properties from it is memory-safe
    ///     but gives values that are in flux.
    /// - Returns: the number of entries fired.
    @discardableResult
    public func advance(to nowMs: UInt64, budget: Int, _ fire: (UInt64, UInt64) -> Void) -> Int {
        precondition(!isAdvancing, "TimingWheel: advance called from inside advance's fire closure")
        precondition(budget >= 0, "TimingWheel: negative budget")
        precondition(nowMs <= TimingWheel.maxDeadlineMs, "TimingWheel: nowMs beyond maxDeadlineMs")
        if nowMs > self.nowMs {
            self.nowMs = nowMs
        }
        let targetMs = self.nowMs
        isAdvancing = true
        defer { isAdvancing = false }

        let (scaledBudget, scaledOverflow) = budget.multipliedReportingOverflow(by: TimingWheel.cascadeVisitsPerBudgetUnit)
        let visitLimit = scaledOverflow ? Int.max : max(scaledBudget, TimingWheel.minimumCascadeVisitsPerAdvance)
        // Each iteration fires, visits or opens a bucket (and opening one costs >= 1 visit),
        // or ends the loop; see `verifyInvariants` for the state each step preserves.
        let (iterationLimit, iterationOverflow) = visitLimit.multipliedReportingOverflow(by: 3)
        let maxIterations = iterationOverflow ? Int.max : iterationLimit &+ 8
        var fired = 0
        var visits = 0
        var iterations = 0
        while true {
            iterations += 1
            precondition(iterations <= maxIterations, "TimingWheel: advance loop exceeded its bound")
            if fired < budget && chains[TimingWheel.dueChain].count > 0 {
                fired += drainDue(limit: budget - fired, fire)
                continue
            }
            if visits >= visitLimit {
                break
            }
            if chains[TimingWheel.pendingChain].count > 0 {
                cascadePending(targetMs: targetMs, budget: budget, fired: &fired, visits: &visits, visitLimit: visitLimit, fire)
                continue
            }
            bucketVisits += 1
            guard let bucket = nextBucket() else {
                if targetMs > cursorMs {
                    cursorMs = targetMs
                }
                break
            }
            let startMs = bucketStartMs(bucket)
            if startMs > targetMs {
                // Skipping idle time: valid because targetMs precedes every bucket's range.
                if targetMs > cursorMs {
                    cursorMs = targetMs
                }
                break
            }
            precondition(startMs > cursorMs, "TimingWheel: bucket start not after the cursor")
            cursorMs = startMs
            let opened = detach(bucket)
            if bucket < TimingWheel.level0BucketCount || opened.maxDeadlineMs <= targetMs {
                // Wholly due.
                visits += move(opened, to: TimingWheel.dueChain)
            } else if opened.minDeadlineMs > targetMs
                && bucketIndex(deadlineMs: opened.minDeadlineMs) == bucketIndex(deadlineMs: opened.maxDeadlineMs) {
                // Nothing due and everything lands in one lower bucket (buckets are contiguous
                // time ranges, so the whole [min, max] range does): relink the chain in O(1).
                // This is the common stampede case: many tokens with the same deadline.
                visits += move(opened, to: bucketIndex(deadlineMs: opened.minDeadlineMs))
            } else {
                precondition(chains[TimingWheel.pendingChain].count == 0, "TimingWheel: two pending cascades")
                chains[TimingWheel.pendingChain] = opened
                visits += 1
            }
        }
        precondition(fired <= budget, "TimingWheel: fired over budget")
        precondition(count >= 0 && blocksFree <= blocksTotal, "TimingWheel: counters out of range")
        precondition(cursorMs <= self.nowMs, "TimingWheel: cursor ahead of now")
        return fired
    }

    // MARK: Placement

    /// The bucket for a deadline after the cursor: the level is picked by the highest bit in
    /// which `deadlineMs` and `cursorMs` differ.
    @inline(__always)
    private func bucketIndex(deadlineMs: UInt64) -> Int {
        assert(deadlineMs > cursorMs, "TimingWheel: placing a deadline that is not after the cursor")
        typealias W = TimingWheel
        let differingBits = deadlineMs ^ cursorMs
        let bucket: Int
        if differingBits < (1 << W.level0Bits) {
            bucket = Int(truncatingIfNeeded: deadlineMs & UInt64(W.level0BucketCount - 1))
        } else if differingBits < (1 << W.level1EpochBits) {
            bucket = W.level1FirstBucket + Int(truncatingIfNeeded: (deadlineMs >> W.level0Bits) & W.upperBucketMask)
        } else if differingBits < (1 << W.level2EpochBits) {
            bucket = W.level2FirstBucket
                + Int(truncatingIfNeeded: (deadlineMs >> W.level1EpochBits) & W.upperBucketMask)
        } else if differingBits < (1 << W.topEpochBits) {
            bucket = W.level3FirstBucket
                + Int(truncatingIfNeeded: (deadlineMs >> W.level2EpochBits) & W.upperBucketMask)
        } else {
            return W.overflowChain
        }
        assert(bucket >= 0 && bucket < W.wheelBucketCount, "TimingWheel: bucket index out of the wheel")
        return bucket
    }

    /// Start time of a bucket's range relative to the current cursor; for the overflow
    /// bucket, the start of the next level-3 epoch.
    private func bucketStartMs(_ bucket: Int) -> UInt64 {
        if bucket == TimingWheel.overflowChain {
            return ((cursorMs >> TimingWheel.topEpochBits) + 1) << TimingWheel.topEpochBits
        }
        let shift: UInt64
        let epochBits: UInt64
        let index: UInt64
        precondition(bucket >= 0 && bucket < TimingWheel.wheelBucketCount, "TimingWheel: not a wheel bucket")
        if bucket < TimingWheel.level0BucketCount {
            (shift, epochBits, index) = (0, TimingWheel.level0Bits, UInt64(bucket))
        } else {
            let upper = bucket - TimingWheel.level1FirstBucket
            let level = UInt64(upper >> Int(TimingWheel.upperLevelBits))  // 0, 1, 2 for levels 1-3
            shift = TimingWheel.level0Bits + TimingWheel.upperLevelBits * level
            epochBits = shift + TimingWheel.upperLevelBits
            index = UInt64(upper) & TimingWheel.upperBucketMask
        }
        let epochStartMs = cursorMs & ~((UInt64(1) << epochBits) - 1)
        return epochStartMs | (index << shift)
    }

    /// The lowest non-empty bucket on levels 0-3 (the earliest one), or nil.
    @inline(__always)
    private func firstOccupiedBucket() -> Int? {
        for word in 0..<TimingWheel.occupancyWordCount {
            let bits = occupancy[word]
            if bits != 0 {
                return word << 6 | bits.trailingZeroBitCount
            }
        }
        return nil
    }

    /// The next bucket to open: the first occupied one, else the overflow bucket, else nil.
    private func nextBucket() -> Int? {
        if let bucket = firstOccupiedBucket() {
            return bucket
        }
        return chains[TimingWheel.overflowChain].count > 0 ? TimingWheel.overflowChain : nil
    }

    // MARK: Chains and blocks

    /// Appends a slot to a chain, taking a block from the pool when the tail block is full.
    @inline(__always)
    private func append(_ slot: Slot, to chain: Int) {
        let tail = chains[chain].tail
        var block = tail
        if tail == TimingWheel.noBlock || headers[Int(tail)].end == Int32(TimingWheel.blockCapacity) {
            block = takeBlock()
            if tail == TimingWheel.noBlock {
                chains[chain].head = block
            } else {
                headers[Int(tail)].next = block
            }
            chains[chain].tail = block
        }
        let header = headers + Int(block)
        (header.pointee.slots + Int(header.pointee.end)).initialize(to: slot)
        header.pointee.end += 1
        chains[chain].count += 1
        if slot.deadlineMs < chains[chain].minDeadlineMs {
            chains[chain].minDeadlineMs = slot.deadlineMs
        }
        if slot.deadlineMs > chains[chain].maxDeadlineMs {
            chains[chain].maxDeadlineMs = slot.deadlineMs
        }
        if chain < TimingWheel.wheelBucketCount {
            occupancy[chain >> 6] |= UInt64(1) << UInt64(chain & 63)
        }
    }

    /// Removes a wheel or overflow bucket's chain, leaving the bucket empty.
    private func detach(_ bucket: Int) -> Chain {
        let chain = chains[bucket]
        precondition(chain.count > 0, "TimingWheel: opening an empty bucket")
        chains[bucket] = Chain()
        if bucket < TimingWheel.wheelBucketCount {
            occupancy[bucket >> 6] &= ~(UInt64(1) << UInt64(bucket & 63))
        }
        return chain
    }

    /// Moves a whole detached chain onto the end of another chain (the due queue, or a
    /// bucket every one of its entries belongs to); returns the visits it cost. Chains are
    /// relinked in O(1) unless they are short and the target is not empty: those are copied,
    /// so that half-empty blocks do not pile up in the middle of a chain.
    private func move(_ chain: Chain, to target: Int) -> Int {
        precondition(chain.count > 0 && target != TimingWheel.pendingChain, "TimingWheel: bad chain move")
        let existing = chains[target]
        if existing.count == 0 || chain.count >= TimingWheel.blockCapacity / 2 {
            if existing.count == 0 {
                precondition(existing.head == TimingWheel.noBlock, "TimingWheel: empty chain still holds blocks")
                chains[target] = chain
            } else {
                headers[Int(existing.tail)].next = chain.head
                chains[target].tail = chain.tail
                chains[target].count += chain.count
                chains[target].minDeadlineMs = min(existing.minDeadlineMs, chain.minDeadlineMs)
                chains[target].maxDeadlineMs = max(existing.maxDeadlineMs, chain.maxDeadlineMs)
            }
            if target < TimingWheel.wheelBucketCount {
                occupancy[target >> 6] |= UInt64(1) << UInt64(target & 63)
            }
            return 1
        }
        var block = chain.head
        var copied = 0
        while block != TimingWheel.noBlock {
            let header = headers[Int(block)]
            for index in Int(header.start)..<Int(header.end) {
                append(header.slots[index], to: target)
            }
            copied += Int(header.end - header.start)
            let next = header.next
            releaseBlock(block)
            block = next
        }
        precondition(copied == chain.count, "TimingWheel: chain count does not match its blocks")
        return copied
    }

    /// Fires up to `limit` entries from the head of the due queue; returns how many fired.
    private func drainDue(limit: Int, _ fire: (UInt64, UInt64) -> Void) -> Int {
        var fired = 0
        while fired < limit {
            let block = chains[TimingWheel.dueChain].head
            if block == TimingWheel.noBlock {
                break
            }
            let header = headers + Int(block)
            while fired < limit && header.pointee.start < header.pointee.end {
                let slot = header.pointee.slots[Int(header.pointee.start)]
                header.pointee.start += 1
                chains[TimingWheel.dueChain].count -= 1
                count -= 1
                fired += 1
                fire(slot.entry, slot.deadlineMs)
            }
            if header.pointee.start == header.pointee.end {
                popHeadBlock(of: TimingWheel.dueChain)
            }
        }
        return fired
    }

    /// Visits pending-cascade entries until it is empty or `visitLimit` is reached: due ones
    /// fire (or join the due queue when the budget is spent), others move down a level.
    private func cascadePending(
        targetMs: UInt64,
        budget: Int,
        fired: inout Int,
        visits: inout Int,
        visitLimit: Int,
        _ fire: (UInt64, UInt64) -> Void
    ) {
        precondition(targetMs >= cursorMs, "TimingWheel: cascading behind the cursor")
        while visits < visitLimit {
            let block = chains[TimingWheel.pendingChain].head
            if block == TimingWheel.noBlock {
                break
            }
            // `append` may grow (move) the header table, so re-read headers each step.
            while visits < visitLimit && headers[Int(block)].start < headers[Int(block)].end {
                let slot = headers[Int(block)].slots[Int(headers[Int(block)].start)]
                headers[Int(block)].start += 1
                chains[TimingWheel.pendingChain].count -= 1
                visits += 1
                if slot.deadlineMs <= targetMs {
                    if fired < budget {
                        count -= 1
                        fired += 1
                        fire(slot.entry, slot.deadlineMs)
                    } else {
                        append(slot, to: TimingWheel.dueChain)
                    }
                } else {
                    append(slot, to: bucketIndex(deadlineMs: slot.deadlineMs))
                }
            }
            if headers[Int(block)].start == headers[Int(block)].end {
                popHeadBlock(of: TimingWheel.pendingChain)
            }
        }
    }

    /// Unlinks and frees the (emptied) head block of a chain.
    private func popHeadBlock(of chain: Int) {
        let block = chains[chain].head
        precondition(block != TimingWheel.noBlock, "TimingWheel: popping from an empty chain")
        let next = headers[Int(block)].next
        chains[chain].head = next
        if next == TimingWheel.noBlock {
            precondition(chains[chain].count == 0, "TimingWheel: chain count does not match its blocks")
            chains[chain] = Chain()
        }
        releaseBlock(block)
    }

    /// Takes a block from the free list, growing the pool when it is empty.
    @inline(__always)
    private func takeBlock() -> Int32 {
        if freeHead == TimingWheel.noBlock {
            // Double while small, then grow 4 MiB at a time: at millions of
            // live entries, doubling would leave up to half the pool idle.
            addBlocks(min(blocksTotal, TimingWheel.maxGrowthBlocks))
        }
        let block = freeHead
        freeHead = headers[Int(block)].next
        blocksFree -= 1
        precondition(blocksFree >= 0, "TimingWheel: free block count went negative")
        headers[Int(block)].next = TimingWheel.noBlock
        headers[Int(block)].start = 0
        headers[Int(block)].end = 0
        return block
    }

    /// Returns a block to the free list.
    @inline(__always)
    private func releaseBlock(_ block: Int32) {
        headers[Int(block)].next = freeHead
        headers[Int(block)].start = 0
        headers[Int(block)].end = 0
        freeHead = block
        blocksFree += 1
        assert(blocksFree <= blocksTotal, "TimingWheel: more free blocks than blocks")
    }

    /// Largest single growth of the block pool: 1,024 blocks of 256 entries (4 MiB).
    static let maxGrowthBlocks = 1024

    /// Grows the pool by `blockCount` blocks carved out of one new chunk.
    private func addBlocks(_ blockCount: Int) {
        precondition(blockCount > 0, "TimingWheel: growing by no blocks")
        precondition(blocksTotal + blockCount <= Int(Int32.max), "TimingWheel: block pool exhausted")
        let chunk = UnsafeMutablePointer<Slot>.allocate(capacity: blockCount * TimingWheel.blockCapacity)
        chunks.append(chunk)
        let newTotal = blocksTotal + blockCount
        if newTotal > headerCapacity {
            let newCapacity = max(newTotal, headerCapacity * 2)
            let newHeaders = UnsafeMutablePointer<BlockHeader>.allocate(capacity: newCapacity)
            newHeaders.moveInitialize(from: headers, count: blocksTotal)
            headers.deallocate()
            headers = newHeaders
            headerCapacity = newCapacity
        }
        for offset in 0..<blockCount {
            let block = blocksTotal + offset
            let next = offset + 1 < blockCount ? Int32(block + 1) : freeHead
            (headers + block).initialize(to: BlockHeader(
                slots: chunk + offset * TimingWheel.blockCapacity,
                next: next,
                start: 0,
                end: 0
            ))
        }
        freeHead = Int32(blocksTotal)
        blocksTotal = newTotal
        blocksFree += blockCount
    }

    // MARK: Verification (tests and debugging)

    /// True when due entries may be waiting: a backlog, an unfinished cascade, or a bucket
    /// whose range has started but that no advance has opened yet.
    var isBehind: Bool {
        if chains[TimingWheel.dueChain].count > 0 || chains[TimingWheel.pendingChain].count > 0 {
            return true
        }
        guard let bucket = nextBucket() else {
            return false
        }
        return bucketStartMs(bucket) <= nowMs
    }

    /// Blocks currently holding entries (allocated minus free).
    var blocksInUse: Int {
        blocksTotal - blocksFree
    }

    /// Walks every chain and block and traps if any invariant is broken: counts match the
    /// blocks, every block is in exactly one chain or the free list, bitmap bits match
    /// non-empty buckets, and every entry sits where the cursor says it belongs. O(entries).
    func verifyInvariants() {
        var seen = [Bool](repeating: false, count: blocksTotal)
        var entriesTotal = 0
        for chain in 0..<TimingWheel.chainCount {
            let state = chains[chain]
            var block = state.head
            var last = TimingWheel.noBlock
            var entries = 0
            while block != TimingWheel.noBlock {
                precondition(!seen[Int(block)], "TimingWheel: block in two chains")
                seen[Int(block)] = true
                let header = headers[Int(block)]
                precondition(header.start <= header.end && Int(header.end) <= TimingWheel.blockCapacity, "TimingWheel: bad block range")
                if chain < TimingWheel.dueChain {
                    precondition(header.start == 0, "TimingWheel: bucket block consumed from the front")
                }
                for index in Int(header.start)..<Int(header.end) {
                    let deadlineMs = header.slots[index].deadlineMs
                    precondition(deadlineMs >= state.minDeadlineMs && deadlineMs <= state.maxDeadlineMs, "TimingWheel: chain bounds wrong")
                    if chain <= TimingWheel.overflowChain {
                        precondition(deadlineMs > cursorMs && bucketIndex(deadlineMs: deadlineMs) == chain, "TimingWheel: entry in the wrong bucket")
                    } else if chain == TimingWheel.dueChain {
                        precondition(deadlineMs <= nowMs, "TimingWheel: entry in the due queue before its deadline")
                    } else {
                        precondition(deadlineMs >= cursorMs, "TimingWheel: pending entry behind the cursor")
                    }
                }
                entries += Int(header.end - header.start)
                last = block
                block = header.next
            }
            precondition(entries == state.count, "TimingWheel: chain count does not match its blocks")
            precondition(last == state.tail, "TimingWheel: chain tail is not its last block")
            if chain < TimingWheel.wheelBucketCount {
                let bit = occupancy[chain >> 6] >> UInt64(chain & 63) & 1
                precondition((bit == 1) == (state.count > 0), "TimingWheel: occupancy bit out of date")
            }
            entriesTotal += entries
        }
        precondition(entriesTotal == count, "TimingWheel: count does not match the chains")
        var free = 0
        var block = freeHead
        while block != TimingWheel.noBlock {
            precondition(!seen[Int(block)], "TimingWheel: free block also in a chain")
            seen[Int(block)] = true
            free += 1
            block = headers[Int(block)].next
        }
        precondition(free == blocksFree, "TimingWheel: free list length does not match")
        precondition(!seen.contains(false), "TimingWheel: block lost (in no chain and not free)")
        precondition(cursorMs <= nowMs, "TimingWheel: cursor ahead of now")
    }
}

/// A wheel belongs to one worker thread.
@available(*, unavailable)
extension TimingWheel: Sendable {}
