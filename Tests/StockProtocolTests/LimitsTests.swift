import StockProtocol
import Testing
import TestSupport

/// Limits written as literals (so inlined hot-path checks read a constant) still agree with what
/// they are derived from.
@Suite(.cpuHeavy) struct LimitsTests {
    @Test("the smallest length field is the header after the length prefix")
    func minLengthField() {
        #expect(Int(Limits.minLengthField) == Limits.headerSize - Limits.lengthPrefixSize)
    }
}
