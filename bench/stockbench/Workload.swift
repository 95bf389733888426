import BenchSupport
#if canImport(Glibc)
import Glibc
#endif

/// Xoshiro256** seeded through SplitMix64: fast, and every run replays from `--seed`.
struct BenchRandom {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
    }

    @inline(__always) mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    @inline(__always) mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in 0..<bound (Lemire's multiply-shift; the bias is below 2^-32 for our bounds).
    @inline(__always) mutating func below(_ bound: Int) -> Int {
        Int(truncatingIfNeeded: ((next() >> 32) &* UInt64(bound)) >> 32)
    }
}

/// What happens to a granted hold.
enum Fate: UInt8 {
    case confirm = 1, release = 2, expire = 3
}

/// `--mix reserve:confirm:release:expire`: weights of the four request kinds.
/// Every confirm and release follows a reserve of its own, and a reservation
/// left to expire sends nothing more, so the reserve weight must equal the
/// sum of the other three: `10:7:2:1` means 10 reserves, of which 7 are
/// confirmed, 2 released and 1 left to expire.
struct Mix: CustomStringConvertible, Equatable, Sendable {
    var reserve: Int, confirm: Int, release: Int, expire: Int

    init(reserve: Int, confirm: Int, release: Int, expire: Int) {
        self.reserve = reserve
        self.confirm = confirm
        self.release = release
        self.expire = expire
    }

    /// Parses `R:C:L:E`; nil with a reason when invalid.
    static func parse(_ text: String) -> Result<Mix, MixError> {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 4, parts.allSatisfy({ $0 != nil && $0! >= 0 }) else {
            return .failure(MixError("--mix '\(text)': expected four whole numbers reserve:confirm:release:expire"))
        }
        let m = Mix(reserve: parts[0]!, confirm: parts[1]!, release: parts[2]!, expire: parts[3]!)
        guard m.reserve > 0, m.reserve == m.confirm + m.release + m.expire else {
            return .failure(MixError("--mix '\(text)': the reserve weight must be positive and equal "
                                     + "confirm + release + expire (each reservation has one fate)"))
        }
        return .success(m)
    }

    var description: String { "\(reserve):\(confirm):\(release):\(expire)" }

    /// Draws a fate with the confirm:release:expire weights.
    @inline(__always) func draw(_ rng: inout BenchRandom) -> Fate {
        let r = rng.below(reserve)
        if r < confirm { return .confirm }
        if r < confirm + release { return .release }
        return .expire
    }
}

struct MixError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Which SKU a request goes to: uniform, a hot share on SKU 0, or Zipf.
struct SKUChooser {
    enum Shape: Equatable, Sendable {
        case uniform
        /// This share of requests goes to SKU 0, the rest uniformly to all.
        case hot(Double)
        /// Zipf with this exponent over the SKUs (rank 1 = SKU 0).
        case zipf(Double)
    }

    let count: Int
    let shape: Shape
    /// Zipf: cumulative probabilities, for a binary search.
    private let cdf: UnsafeMutablePointer<Double>?

    init(count: Int, shape: Shape) {
        precondition(count >= 1)
        self.count = count
        self.shape = shape
        if case .zipf(let s) = shape, count > 1 {
            let table = UnsafeMutablePointer<Double>.allocate(capacity: count)
            var total = 0.0
            for k in 0..<count {
                total += 1 / pow(Double(k + 1), s)
                table[k] = total
            }
            for k in 0..<count { table[k] /= total }
            cdf = table
        } else {
            cdf = nil
        }
    }

    @inline(__always) func pick(_ rng: inout BenchRandom) -> Int32 {
        if count == 1 { return 0 }
        switch shape {
        case .uniform:
            return Int32(rng.below(count))
        case .hot(let share):
            return rng.unit() < share ? 0 : Int32(rng.below(count))
        case .zipf:
            let u = rng.unit()
            var lo = 0, hi = count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cdf![mid] < u { lo = mid + 1 } else { hi = mid }
            }
            return Int32(lo)
        }
    }
}

/// SKU names of one run: a run prefix keeps runs against a long-lived server
/// apart, since confirmed units stay sold.
func skuNames(prefix: String, count: Int) -> [String] {
    (0..<count).map { i in
        let n = String(i)
        return prefix + "-SKU-" + String(repeating: "0", count: max(0, 5 - n.count)) + n
    }
}
