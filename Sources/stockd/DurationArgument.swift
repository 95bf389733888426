import ArgumentParser
import CommandSupport

/// A duration flag value in the grammar every binary shares (`DurationParser`: `200ms`, `1.5s`,
/// `1m30s`, `1h`; `0` alone means zero). Options declared with `transform: DurationArgument.parse`
/// report a bad value with the accepted format; the `ExpressibleByArgument` conformance serves the rest.
struct DurationArgument: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let milliseconds: UInt64

    init(milliseconds: UInt64) { self.milliseconds = milliseconds }

    init?(argument: String) {
        guard let ms = try? DurationParser.milliseconds(argument) else { return nil }
        milliseconds = ms
    }

    /// For `@Option(transform:)`: a bad value's error names the accepted format.
    static func parse(_ text: String) throws -> DurationArgument {
        DurationArgument(milliseconds: try DurationParser.milliseconds(text))
    }

    var description: String { DurationParser.format(milliseconds) }

    static var defaultCompletionKind: CompletionKind { .default }
}
