import Atomics

/// A hash map split into 256 stripes, each a dictionary behind its own spin
/// lock, with a global bound on the number of entries.
///
/// Used only off the common path — by requests that carry a customer id or
/// an idempotency key, and by bundles — where a short lock per request is
/// acceptable (the issue allows striped locks there) and a dictionary is the
/// simplest exact structure. Its cost is measured separately in bench-core.
final class StripedMap<Key: Hashable & Sendable, Value: Sendable>: @unchecked Sendable {
    static var stripeCount: Int { 256 }
    private let maps: UnsafeMutablePointer<[Key: Value]>
    private let locks: StripedLocks
    private let entries: UnsafeAtomic<Int>
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        maps = .allocate(capacity: Self.stripeCount)
        maps.initialize(repeating: [:], count: Self.stripeCount)
        locks = StripedLocks(count: Self.stripeCount)
        entries = .create(0)
    }

    deinit {
        maps.deinitialize(count: Self.stripeCount)
        maps.deallocate()
        entries.destroy()
    }

    /// Entries held.
    var count: Int { entries.load(ordering: .relaxed) }

    /// The stripe of `stripeKey` (callers pass a hash they already have).
    @inline(__always) func stripe(_ stripeKey: Int) -> Int { stripeKey & (Self.stripeCount - 1) }

    /// Runs `body` with the stripe locked and its dictionary, keeping the
    /// entry count in step. `body` must not touch another stripe of this map
    /// unless it locks in ascending stripe order (nobody does).
    func with<R>(stripe s: Int, _ body: (inout Bucket) throws(Failure) -> R) throws(Failure) -> R {
        let lock = locks.lock(for: s)
        lock.lock()
        defer { lock.unlock() }
        var bucket = Bucket(map: maps + s, owner: self)
        return try body(&bucket)
    }

    /// Access to one locked stripe.
    struct Bucket {
        let map: UnsafeMutablePointer<[Key: Value]>
        let owner: StripedMap

        subscript(key: Key) -> Value? { map.pointee[key] }

        /// Inserts or replaces; throws `atCapacity` when a new key would exceed the bound.
        mutating func set(_ key: Key, _ value: Value) throws(Failure) {
            if map.pointee[key] == nil {
                guard owner.entries.loadThenWrappingIncrement(ordering: .relaxed) < owner.capacity else {
                    owner.entries.wrappingDecrement(ordering: .relaxed)
                    throw Failure(.atCapacity)
                }
            }
            map.pointee[key] = value
        }

        /// Removes `key` if present.
        mutating func remove(_ key: Key) {
            if map.pointee.removeValue(forKey: key) != nil {
                owner.entries.wrappingDecrement(ordering: .relaxed)
            }
        }
    }
}
