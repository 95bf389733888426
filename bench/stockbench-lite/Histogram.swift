/// A fixed log-linear latency histogram over nanoseconds: exact below 256,
/// then 128 linear buckets per power of two, so a bucket is at most 1/128 of
/// its lower bound wide and a reported value (the bucket's midpoint) is
/// within 0.4% of any value recorded in it. Values from 2^41 ns (about 36
/// minutes) up share the top bucket. 4,480 counters, allocated once;
/// `record` is a few instructions and never allocates.
struct Histogram {
    static let linearBits = 7
    static let linearBuckets = 1 << linearBits            // 128 per power of two
    static let exactBelow: UInt64 = 2 << linearBits       // 256: one bucket per value
    static let maxExponent = 33                            // 2^(33+8) = 2^41 ns
    static let bucketCount = Int(exactBelow) + maxExponent * linearBuckets

    let counts: UnsafeMutablePointer<UInt64>
    private(set) var total: UInt64 = 0
    private(set) var maxValue: UInt64 = 0

    init() {
        counts = .allocate(capacity: Histogram.bucketCount)
        counts.initialize(repeating: 0, count: Histogram.bucketCount)
    }

    @inline(__always)
    static func index(_ value: UInt64) -> Int {
        if value < exactBelow { return Int(value) }
        let exponent = (63 - value.leadingZeroBitCount) - linearBits  // >= 1: value >> exponent is in 128...255
        if exponent > maxExponent { return bucketCount - 1 }
        let mantissa = Int(truncatingIfNeeded: value >> UInt64(exponent))
        return Int(exactBelow) + (exponent - 1) * linearBuckets + (mantissa - linearBuckets)
    }

    /// The smallest value of bucket `index` and the bucket's width.
    static func bucket(_ index: Int) -> (lower: UInt64, width: UInt64) {
        if index < Int(exactBelow) { return (UInt64(index), 1) }
        let exponent = (index - Int(exactBelow)) / linearBuckets + 1
        let mantissa = (index - Int(exactBelow)) % linearBuckets + linearBuckets
        return (UInt64(mantissa) << UInt64(exponent), 1 << UInt64(exponent))
    }

    @inline(__always)
    mutating func record(_ nanoseconds: UInt64) {
        counts[Histogram.index(nanoseconds)] &+= 1
        total &+= 1
        if nanoseconds > maxValue { maxValue = nanoseconds }
    }

    /// Adds `other`'s counts to this one.
    mutating func merge(_ other: Histogram) {
        for i in 0..<Histogram.bucketCount { counts[i] &+= other.counts[i] }
        total &+= other.total
        maxValue = max(maxValue, other.maxValue)
    }

    /// The value at quantile `q` (0...1) in nanoseconds: the midpoint of the
    /// bucket holding the ⌈q·total⌉-th smallest value; 0 when empty.
    func value(atQuantile q: Double) -> Double {
        guard total > 0 else { return 0 }
        let rank = max(1, UInt64((q * Double(total)).rounded(.up)))
        var seen: UInt64 = 0
        for i in 0..<Histogram.bucketCount {
            seen &+= counts[i]
            if seen >= rank {
                let (lower, width) = Histogram.bucket(i)
                return min(Double(lower) + Double(width - 1) / 2, Double(maxValue))
            }
        }
        return Double(maxValue)
    }

    func deallocate() { counts.deallocate() }
}
