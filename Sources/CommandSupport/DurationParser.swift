/// The one duration grammar of every binary (stockd, stockctl, stock-hooks, stockbench), so a value
/// an operator copies from one tool's help into another means the same thing everywhere.
///
/// Grammar: one or more `<number><unit>` parts, largest unit first and each unit at most once;
/// `<number>` is digits with an optional fraction (`1.5s`); units `h`, `m`, `s`, `ms`. `0` alone is
/// zero. A bare non-zero number is refused: `90` could be seconds or milliseconds, and guessing
/// wrong makes a hold 1000 times too short or too long. The result is whole milliseconds (the
/// resolution of every timer in stockd), so `1.5ms` is refused rather than rounded.
/// Bounds are the caller's: `outOfBounds(_:flag:range:)` words the message with the flag's name.
public enum DurationParser {
    /// What every error says is accepted.
    public static let expected = "expected a duration like 500ms, 1.5s, 1m30s or 2h"

    /// Longest accepted duration: 100 days, far above any flag's own bound, far below overflow.
    public static let maxMilliseconds: UInt64 = 100 * 86_400_000

    public struct Failure: Error, CustomStringConvertible, Sendable, Equatable {
        public let text: String
        public let reason: String?
        /// `<reason>; expected a duration like ...`, without the text: a caller's message (and
        /// ArgumentParser's "The value 'x' is invalid for '--ttl'") already shows it.
        public var description: String { (reason.map { "\($0); " } ?? "") + DurationParser.expected }
    }

    /// Units from largest to smallest; `ms` must be tried before `m` and `s` at a position.
    static let units: [(name: String, ms: UInt64)] = [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]

    /// Milliseconds of `text`, or a `Failure` naming the accepted format.
    public static func milliseconds(_ text: String) throws(Failure) -> UInt64 {
        if text == "0" { return 0 }
        guard !text.isEmpty else { throw Failure(text: text, reason: "empty") }
        if isBareNumber(text) {
            throw Failure(text: text, reason: "a number without a unit is ambiguous (\(text)s or \(text)ms?)")
        }
        var rest = Substring(text)
        var total: UInt64 = 0
        var lastUnit = -1
        while !rest.isEmpty {
            let (value, unit, after) = try part(rest, text)
            guard unit > lastUnit else {
                throw Failure(text: text, reason: "units must go from largest to smallest, each once (like 1h30m)")
            }
            lastUnit = unit
            total += value
            guard total <= maxMilliseconds else { throw Failure(text: text, reason: "longer than 100 days") }
            rest = after
        }
        return total
    }

    /// `90` or `1.5`: digits with at most one decimal point between digits.
    private static func isBareNumber(_ text: String) -> Bool {
        let pieces = text.split(separator: ".", omittingEmptySubsequences: false)
        return pieces.count <= 2 && pieces.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
    }

    /// One `<number><unit>` at the start of `s`: its milliseconds, the unit's index, the rest.
    private static func part(_ s: Substring, _ text: String) throws(Failure) -> (UInt64, Int, Substring) {
        let whole = s.prefix { $0.isASCII && $0.isNumber }
        guard !whole.isEmpty, whole.count <= 12 else {
            throw Failure(text: text, reason: whole.isEmpty ? "a number must come before each unit" : "too many digits")
        }
        var after = s[whole.endIndex...]
        var fraction: Substring = ""
        if after.first == "." {
            fraction = after.dropFirst().prefix { $0.isASCII && $0.isNumber }
            guard !fraction.isEmpty, fraction.count <= 6 else {
                throw Failure(text: text, reason: fraction.isEmpty ? "digits must follow the decimal point" : "too many decimals")
            }
            after = after[fraction.endIndex...]
        }
        // Smallest first, so that `ms` is not read as `m` followed by a stray `s`.
        guard let unit = units.indices.reversed().first(where: { after.hasPrefix(units[$0].name) }) else {
            throw Failure(text: text, reason: "unknown or missing unit (use h, m, s or ms)")
        }
        let scale = units[unit].ms
        // Exact integer arithmetic: 12 digits times 3,600,000 stays below 3.6e18 (UInt64 holds 1.8e19),
        // and 6 decimals times the scale below 3.6e12.
        let wholeMs = UInt64(whole)! * scale
        var fractionMs: UInt64 = 0
        if !fraction.isEmpty {
            var denominator: UInt64 = 1
            for _ in fraction { denominator *= 10 }
            let numerator = UInt64(fraction)! * scale
            guard numerator % denominator == 0 else {
                throw Failure(text: text, reason: "finer than a millisecond")
            }
            fractionMs = numerator / denominator
        }
        return (wholeMs + fractionMs, unit, after.dropFirst(units[unit].name.count))
    }

    /// The shortest text that parses back to `ms`: `0`, `250ms`, `1.5s` is written `1s500ms`, `1m30s`, `2h`.
    public static func format(_ ms: UInt64) -> String {
        if ms == 0 { return "0" }
        var rest = ms
        var out = ""
        for (name, scale) in units where rest >= scale {
            out += "\(rest / scale)\(name)"
            rest %= scale
        }
        return out
    }

    /// A caller's bound check: nil when `ms` is in `range`, else `--flag must be 1ms...1h, got 2h`.
    public static func outOfBounds(_ ms: UInt64, flag: String, range: ClosedRange<UInt64>) -> String? {
        guard !range.contains(ms) else { return nil }
        return "\(flag) must be \(format(range.lowerBound))...\(format(range.upperBound)), got \(format(ms))"
    }
}
