import Synchronization

/// The offset watermark: the highest offset O such that every event at or
/// below O has been delivered (2xx) or dead-lettered, or was never ours to
/// send (filtered out by the server, as the feed's order and its progress
/// markers prove).
///
/// Events are registered in offset order as they are buffered, and
/// completed in any order as deliveries finish. O is one below the oldest
/// registered event not yet completed, or — when none is pending — the
/// highest offset the feed has shown us (an event or a progress marker).
/// O never moves backwards.
final class Watermark: Sendable {
    private struct State {
        /// Registered events in offset order, with whether each is done.
        var pending = FIFO<(offset: UInt64, done: Bool)>()
        /// Highest offset seen on the feed (events and progress markers).
        var seen: UInt64
        /// The watermark.
        var value: UInt64
        var delivered = 0
        var deadLettered = 0
    }

    private let state: Mutex<State>

    /// Starts at `initial`: everything at or below it is already handled.
    init(initial: UInt64) {
        state = Mutex(State(seen: initial, value: initial))
    }

    /// The current watermark.
    var value: UInt64 { state.withLock { $0.value } }

    /// Events delivered and dead-lettered since start.
    var counts: (delivered: Int, deadLettered: Int) { state.withLock { ($0.delivered, $0.deadLettered) } }

    /// The feed showed `offset` (a progress marker, or an event we do not send).
    func saw(_ offset: UInt64) {
        state.withLock { s in
            s.seen = max(s.seen, offset)
            Self.advance(&s)
        }
    }

    /// An event at `offset` is buffered for delivery. Offsets must grow.
    func register(_ offset: UInt64) {
        state.withLock { s in
            precondition(s.pending.isEmpty || s.pending[s.pending.count - 1].offset < offset,
                         "offsets registered out of order")
            s.pending.append((offset, false))
            s.seen = max(s.seen, offset)
        }
    }

    /// The event at `offset` was delivered (or dead-lettered).
    func complete(_ offset: UInt64, deadLettered: Bool) {
        state.withLock { s in
            // Binary search: registered offsets are sorted.
            var lo = 0, hi = s.pending.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if s.pending[mid].offset < offset { lo = mid + 1 } else { hi = mid }
            }
            precondition(lo < s.pending.count && s.pending[lo].offset == offset && !s.pending[lo].done,
                         "completing an offset that is not pending")
            s.pending[lo].done = true
            if deadLettered { s.deadLettered += 1 } else { s.delivered += 1 }
            Self.advance(&s)
        }
    }

    private static func advance(_ s: inout State) {
        while let f = s.pending.first, f.done { _ = s.pending.popFirst() }
        let candidate = s.pending.first.map { $0.offset - 1 } ?? s.seen
        s.value = max(s.value, candidate)
    }
}
