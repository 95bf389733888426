/// A small seeded generator (SplitMix64) shared by the test targets, so every
/// random test replays exactly from the seed it names.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform enough in `0..<bound` for tests.
    public mutating func next(below bound: UInt64) -> UInt64 { next() % bound }

    /// `n` random bytes.
    public mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(n)
        while out.count < n {
            var v = next()
            for _ in 0..<8 where out.count < n {
                out.append(UInt8(truncatingIfNeeded: v))
                v >>= 8
            }
        }
        return out
    }
}
