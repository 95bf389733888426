import ArgumentParser

/// A duration flag value: a whole number with a unit, `ms`, `s`, `m` or `h`
/// (`200ms`, `90s`, `1h`); `0` alone means zero.
struct DurationArgument: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let milliseconds: UInt64

    init(milliseconds: UInt64) { self.milliseconds = milliseconds }

    init?(argument: String) {
        if argument == "0" {
            milliseconds = 0
            return
        }
        let units: [(String, UInt64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, scale) in units where argument.hasSuffix(suffix) {
            let number = argument.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy(\.isNumber), let n = UInt64(number),
                  n <= UInt64.max / scale else { return nil }
            milliseconds = n * scale
            return
        }
        return nil
    }

    var description: String {
        if milliseconds % 3_600_000 == 0 && milliseconds > 0 { return "\(milliseconds / 3_600_000)h" }
        if milliseconds % 60_000 == 0 && milliseconds > 0 { return "\(milliseconds / 60_000)m" }
        if milliseconds % 1000 == 0 && milliseconds > 0 { return "\(milliseconds / 1000)s" }
        return "\(milliseconds)ms"
    }

    static var defaultCompletionKind: CompletionKind { .default }
}
