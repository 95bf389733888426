import Atomics
import StockProtocol

/// SKU strings interned to dense indices 0, 1, 2… in creation order.
///
/// Lookup is lock-free and allocation-free: an open-addressing table of
/// `index + 1` words (0 = empty) probed linearly from the SKU's 64-bit
/// hash, comparing the inline SKU bytes. Inserting (STOCK_SET of a new SKU,
/// rare) takes one lock, writes the SKU's bytes, then publishes its table
/// word with a releasing store, so a reader that sees the word also sees the
/// bytes. SKUs are never deleted, so a published word never changes and
/// readers need no retry. The table is kept at most half full.
final class Catalog: @unchecked Sendable {
    let capacity: Int
    private let names: UnsafeMutablePointer<SKU>
    private let table: AtomicWords
    private let mask: Int
    private let size: UnsafeAtomic<Int>
    private let insertLock: SpinLock
    private let lockWord: UnsafeMutablePointer<Int.AtomicRepresentation>

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        names = .allocate(capacity: capacity)
        var slots = 1
        while slots < capacity * 2 { slots <<= 1 }
        table = AtomicWords(count: slots)
        mask = slots - 1
        size = .create(0)
        lockWord = .allocate(capacity: 1)
        lockWord.initialize(to: .init(0))
        insertLock = SpinLock(word: UnsafeAtomic(at: lockWord))
    }

    deinit {
        names.deinitialize(count: size.load(ordering: .acquiring))
        names.deallocate()
        table.deallocate()
        size.destroy()
        lockWord.deallocate()
    }

    /// SKUs in the catalog (acquire: every index below it is published).
    var count: Int { size.load(ordering: .acquiring) }

    /// The index of `sku`, or nil.
    @inline(__always)
    func lookup(_ sku: SKU) -> UInt32? {
        var i = Int(truncatingIfNeeded: sku.hash64) & mask
        while true {
            let word = table[i].load(ordering: .acquiring)
            if word == 0 { return nil }
            let index = Int(word - 1)
            if names[index] == sku { return UInt32(index) }
            i = (i + 1) & mask
        }
    }

    /// The SKU at `index` (which must be below `count`).
    func name(_ index: UInt32) -> SKU {
        precondition(Int(index) < count, "SKU index beyond the catalog")
        return names[Int(index)]
    }

    /// The indices of `skus`, creating the new ones: all of them, or — when
    /// the catalog cannot take every new one — none (`atCapacity`, with the
    /// number of SKUs it can still take). Returns how many it created.
    func internAll(_ skus: [SKU], into indices: inout [UInt32]) throws(Failure) -> Int {
        insertLock.lock()
        defer { insertLock.unlock() }
        let n = size.load(ordering: .relaxed)
        let fresh = skus.filter { lookup($0) == nil }
        guard n + fresh.count <= capacity else { throw Failure(.atCapacity) }
        for (k, sku) in fresh.enumerated() {
            (names + n + k).initialize(to: sku)
            var i = Int(truncatingIfNeeded: sku.hash64) & mask
            while table[i].load(ordering: .relaxed) != 0 { i = (i + 1) & mask }
            size.store(n + k + 1, ordering: .releasing)  // the count first, as in `intern`
            table[i].store(UInt64(n + k + 1), ordering: .releasing)
        }
        indices = skus.map { lookup($0)! }
        return fresh.count
    }

    /// SKUs the catalog can still take.
    var free: Int { capacity - count }

    /// The index of `sku`, creating it if new. `created` says which.
    /// Throws `atCapacity` when the catalog is full.
    func intern(_ sku: SKU) throws(Failure) -> (index: UInt32, created: Bool) {
        if let i = lookup(sku) { return (i, false) }
        insertLock.lock()
        defer { insertLock.unlock() }
        if let i = lookup(sku) { return (i, false) }  // lost a race with another creator
        let n = size.load(ordering: .relaxed)
        guard n < capacity else { throw Failure(.atCapacity) }
        (names + n).initialize(to: sku)
        var i = Int(truncatingIfNeeded: sku.hash64) & mask
        while table[i].load(ordering: .relaxed) != 0 { i = (i + 1) & mask }
        // Publish the count first: a reader that finds the word may ask for
        // `name(index)`, which checks index < count.
        size.store(n + 1, ordering: .releasing)
        table[i].store(UInt64(n + 1), ordering: .releasing)
        return (UInt32(n), true)
    }
}
