import StockProtocol

/// The fate of a token slot.
enum Fate: UInt64 {
    case free = 0
    case live = 1
    case confirmed = 2
    case released = 3
    case expired = 4

    /// The status answered to a request on a token already decided this way.
    var status: Status {
        switch self {
        case .free: .tokenUnknown
        case .live: .ok
        case .confirmed: .tokenConfirmed
        case .released: .tokenReleased
        case .expired: .tokenExpired
        }
    }
}

extension Fate {
    /// The core's fate for a decided one (same codes).
    init(_ decided: DecidedFate) {
        switch decided {
        case .confirmed: self = .confirmed
        case .released: self = .released
        case .expired: self = .expired
        }
    }
}

/// A token slot's state word: `fate:4 | generation:24 | deadline:36`.
///
/// Fate, generation and deadline share one 64-bit word so that every
/// decision about a token — confirm, release, expire, extend — is a single
/// compare-exchange on that word: confirm racing expiry racing release has
/// exactly one winner, and an EXTEND cannot slip between an expiry's
/// deadline check and its state change. The deadline is in milliseconds
/// since the core's epoch (36 bits: 795 days of uptime; asserted).
/// The 24-bit generation tells a stale token from the slot's next occupant;
/// the 64-bit secret does the rest should a generation ever wrap.
enum TokenState {
    static let deadlineBits: UInt64 = 36
    static let generationBits: UInt64 = 24
    static let deadlineMask: UInt64 = (1 << deadlineBits) - 1
    static let generationMask: UInt64 = (1 << generationBits) - 1
    /// Largest deadline representable, in ms since the epoch.
    static let maxDeadline: UInt64 = deadlineMask
    /// Largest token capacity (slot indices are u32; one value kept as a sentinel).
    static let maxSlots = 1 << 30

    @inline(__always) static func pack(_ fate: Fate, generation: UInt32, deadline: UInt64) -> UInt64 {
        assert(UInt64(generation) <= generationMask && deadline <= deadlineMask)
        return fate.rawValue << 60 | UInt64(generation) << deadlineBits | deadline
    }

    @inline(__always) static func fate(_ w: UInt64) -> Fate { Fate(rawValue: w >> 60) ?? .free }
    @inline(__always) static func generation(_ w: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: (w >> deadlineBits) & generationMask)
    }
    @inline(__always) static func deadline(_ w: UInt64) -> UInt64 { w & deadlineMask }

    @inline(__always) static func with(_ w: UInt64, fate: Fate) -> UInt64 {
        (w & ~(0xF << 60)) | fate.rawValue << 60
    }

    @inline(__always) static func with(_ w: UInt64, deadline: UInt64) -> UInt64 {
        assert(deadline <= deadlineMask)
        return (w & ~deadlineMask) | deadline
    }

    @inline(__always) static func nextGeneration(_ g: UInt32) -> UInt32 {
        UInt32(truncatingIfNeeded: (UInt64(g) + 1) & generationMask)
    }
}

/// A token slot's item word (slab word 2): `sku:32 | quantity:32`. A bundle
/// stores `TokenSlab.bundleSKU` with its total units; its lines live in the
/// side table. The one place this layout is written or read.
enum TokenItem {
    @inline(__always) static func pack(sku: UInt32, quantity: Int64) -> UInt64 {
        assert(quantity > 0 && quantity <= Int64(UInt32.max), "a token holds 1...2^32-1 units")
        return UInt64(sku) << 32 | UInt64(truncatingIfNeeded: quantity) & 0xFFFF_FFFF
    }

    /// The item word of a bundle holding `total` units over its lines.
    @inline(__always) static func packBundle(total: Int64) -> UInt64 {
        pack(sku: TokenSlab.bundleSKU, quantity: total)
    }

    @inline(__always) static func sku(_ item: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: item >> 32) }
    @inline(__always) static func quantity(_ item: UInt64) -> Int64 { Int64(UInt32(truncatingIfNeeded: item)) }
    @inline(__always) static func isBundle(_ item: UInt64) -> Bool { sku(item) == TokenSlab.bundleSKU }
}

/// A timing-wheel entry for a token: `generation:32 | slot:32` (the wheel
/// stores opaque words; an entry whose generation no longer matches the
/// slot's is stale and skipped). The one place this layout is written or read.
enum WheelEntry {
    @inline(__always) static func pack(slot: UInt32, generation: UInt32) -> UInt64 {
        assert(UInt64(generation) <= TokenState.generationMask, "generations are 24 bits")
        return UInt64(slot) | UInt64(generation) << 32
    }

    @inline(__always) static func slot(_ entry: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: entry) }
    @inline(__always) static func generation(_ entry: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: entry >> 32) }
}

/// The token slab: four atomic words per slot (32 bytes), two slots per
/// cache line, preallocated for the configured capacity.
///
/// | word | content |
/// |---|---|
/// | 0 | state (`TokenState`) |
/// | 1 | secret (64 random bits) |
/// | 2 | SKU index << 32 \| quantity (bundles: `bundleSKU` << 32 \| total units) |
/// | 3 | flags (`TokenFlags`) \| next free slot << 32 while free |
///
/// Words 1–3 are written by the slot's allocator before it publishes the
/// state word with a releasing store, and read by others only after an
/// acquiring load of the state word; all are atomics so a stale reader
/// racing a reuse is well defined (its compare-exchange then fails).
final class TokenSlab: @unchecked Sendable {
    static let wordsPerSlot = 4
    static let bundleSKU: UInt32 = 0xFFFF_FFFF
    let capacity: Int
    let words: AtomicWords

    init(capacity: Int) {
        precondition(capacity >= 1 && capacity <= TokenState.maxSlots)
        self.capacity = capacity
        words = AtomicWords(count: capacity * TokenSlab.wordsPerSlot)
    }

    deinit { words.deallocate() }

    @inline(__always) func state(_ slot: UInt32) -> UnsafeAtomicWord { words[Int(slot) * 4] }
    @inline(__always) func secret(_ slot: UInt32) -> UnsafeAtomicWord { words[Int(slot) * 4 + 1] }
    @inline(__always) func item(_ slot: UInt32) -> UnsafeAtomicWord { words[Int(slot) * 4 + 2] }
    @inline(__always) func meta(_ slot: UInt32) -> UnsafeAtomicWord { words[Int(slot) * 4 + 3] }
}

typealias UnsafeAtomicWord = UnsafeAtomic<UInt64>

/// Bits of a slot's meta word: which side tables hold something for it.
enum TokenFlags {
    static let customer: UInt64 = 1
    static let idempotencyKey: UInt64 = 2
    static let bundle: UInt64 = 4
    static let any: UInt64 = 7
}

import Atomics
