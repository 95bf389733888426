import ArgumentParser

extension DurationParser {
    /// `outOfBounds` as a usage error, for a command's `validate()`.
    public static func require(_ ms: UInt64, flag: String, in range: ClosedRange<UInt64>) throws {
        if let message = outOfBounds(ms, flag: flag, range: range) { throw ValidationError(message) }
    }
}
