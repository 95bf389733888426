import CommandSupport
import BenchSupport
#if canImport(Glibc)
import Glibc
#endif

/// The load the driver generates.
enum Operation: String {
    /// D PINGs outstanding per connection; each answer sends a new PING.
    case ping
    /// RESERVE (1 unit) → RELEASE of its token → RESERVE ...; OUT_OF_STOCK → RESERVE.
    case reserveRelease = "reserve-release"
}

/// Command-line flags, parsed by hand.
struct Options {
    var port: UInt16 = 0
    var connections = 16
    var depth = 32
    var durationSeconds = 5.0
    var warmupSeconds = 1.0
    var operation = Operation.ping
    var sku = "BENCH-HOT"
    var threads = 1
    var json = false

    static let usage = """
        usage: stockbench-lite --port N [--connections C] [--depth D] [--duration 5s] [--warmup 1s]
                               [--op ping|reserve-release] [--sku NAME] [--threads T] [--json]
        """

    static func parse(_ arguments: ArraySlice<String>) -> Options {
        var o = Options()
        var args = arguments
        var portGiven = false
        while let flag = args.popFirst() {
            func value() -> String {
                guard let v = args.popFirst() else { fatal("\(flag) needs a value") }
                return v
            }
            func int(_ range: ClosedRange<Int>) -> Int {
                guard let v = Int(value()), range.contains(v) else { fatal("\(flag): a number in \(range)") }
                return v
            }
            func seconds() -> Double {
                let text = value()
                guard let ms = try? DurationParser.milliseconds(text) else { fatal("\(flag) '\(text)': \(DurationParser.expected)") }
                guard ms <= 86_400_000 else { fatal("\(flag): at most 24h") }
                return Double(ms) / 1000
            }
            switch flag {
            case "--port": o.port = UInt16(int(1...65_535)); portGiven = true
            case "--connections": o.connections = int(1...10_000)
            case "--depth": o.depth = int(1...65_536)
            case "--duration": o.durationSeconds = seconds()
            case "--warmup": o.warmupSeconds = seconds()
            case "--op":
                guard let op = Operation(rawValue: value()) else { fatal("--op: ping or reserve-release") }
                o.operation = op
            case "--sku": o.sku = value()
            case "--threads": o.threads = int(1...64)
            case "--json": o.json = true
            case "-h", "--help":
                print(usage)
                exit(0)
            default: fatal("unknown flag \(flag)\n\(usage)")
            }
        }
        guard portGiven else { fatal("--port is required\n\(usage)") }
        guard o.durationSeconds > 0 else { fatal("--duration must be above 0") }
        return o
    }
}


