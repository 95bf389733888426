// Decode throughput of the wire protocol: 1,000,000 small pipelined request
// frames (RESERVE with a 12-byte SKU, RELEASE, PING in turn) in one buffer,
// framed by `FrameParser` and decoded by `RequestCodec.decode`, as a server
// connection does with a socket's read buffer. Release builds only mean
// anything: `swift run -c release stockproto-bench [frames] [runs]`.
//
// Prints one line per run, a summary, and a final JSON line for scripts:
// {"decode_frames_per_sec":...,"ns_per_frame":...,"frames":...,"runs":...}
// (the median run; the best run is printed in the summary).
import StockProtocol

@main
struct DecodeBench {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        let frames = args.first.flatMap { Int($0) } ?? 1_000_000
        let runs = args.dropFirst().first.flatMap { Int($0) } ?? 5
        precondition(frames > 0 && runs > 0, "usage: stockproto-bench [frames > 0] [runs > 0]")

        let buffer = makeBuffer(frames: frames)
        print("decode bench: \(frames) frames, \(buffer.count) bytes (\(buffer.count / frames) B/frame avg), \(runs) runs")

        var nanos = [Int64]()
        for run in 1...runs {
            let (elapsed, checksum) = decodeAll(buffer, expected: frames)
            let ns = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
            nanos.append(ns)
            print("run \(run): \(format(rate(frames, ns))) frames/s, \(format(Double(ns) / Double(frames))) ns/frame"
                  + " (checksum \(checksum))")
        }
        nanos.sort()
        let median = nanos[nanos.count / 2]
        let best = nanos[0]
        print("median: \(format(rate(frames, median))) frames/s, \(format(Double(median) / Double(frames))) ns/frame;"
              + " best: \(format(rate(frames, best))) frames/s")
        print("{\"decode_frames_per_sec\":\(Int(rate(frames, median))),\"ns_per_frame\":"
              + "\(format(Double(median) / Double(frames))),\"frames\":\(frames),\"runs\":\(runs)}")
    }

    /// `frames` pipelined requests: RESERVE (12-byte SKU), RELEASE, PING in turn.
    static func makeBuffer(frames: Int) -> [UInt8] {
        var w = ByteWriter(capacity: frames * 40)
        let sku = ShortBytes("JACKET-RED-M")!
        for i in 0..<frames {
            let id = UInt32(truncatingIfNeeded: i)
            switch i % 3 {
            case 0:
                RequestCodec.encode(.reserve(Reserve(sku: sku, quantity: UInt32(i % 5 + 1), ttlMs: 90_000)),
                                    requestID: id, into: &w)
            case 1:
                RequestCodec.encode(.release(Token(slot: id, generation: 1, secret: 0x9E37_79B9_7F4A_7C15 &* UInt64(i))),
                                    requestID: id, into: &w)
            default:
                RequestCodec.encode(.ping, requestID: id, into: &w)
            }
        }
        return w.bytes
    }

    /// Frames and decodes every request in `buffer`; returns the time taken
    /// and a checksum of the decoded values (so the work cannot be elided).
    static func decodeAll(_ buffer: [UInt8], expected: Int) -> (Duration, UInt64) {
        let clock = ContinuousClock()
        var checksum: UInt64 = 0
        var decoded = 0
        let start = clock.now
        buffer.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let rest = UnsafeRawBufferPointer(rebasing: raw[offset...])
                guard case .frame(let header, let range) = FrameParser.parse(rest, maxFrame: Limits.defaultMaxFrame)
                else { fatalError("bench buffer is not a sequence of whole frames at offset \(offset)") }
                do {
                    switch try RequestCodec.decode(header: header, payload: UnsafeRawBufferPointer(rebasing: rest[range])) {
                    case .reserve(let r): checksum &+= UInt64(r.quantity) &+ UInt64(r.sku.count)
                    case .release(let t): checksum &+= t.secret
                    case .ping: checksum &+= 1
                    default: fatalError("unexpected request in the bench buffer")
                    }
                } catch {
                    fatalError("bench frame rejected: \(error)")
                }
                decoded += 1
                offset += header.frameLength
            }
        }
        let elapsed = clock.now - start
        precondition(decoded == expected, "decoded \(decoded) frames, expected \(expected)")
        return (elapsed, checksum)
    }

    static func rate(_ frames: Int, _ ns: Int64) -> Double { Double(frames) / (Double(max(ns, 1)) / 1e9) }

    /// A number with at most two decimals, without Foundation.
    static func format(_ x: Double) -> String {
        let hundredths = Int(x * 100 + 0.5)  // x ≥ 0; no libm rounding (no Foundation, no Glibc)
        let whole = hundredths / 100
        let frac = hundredths % 100
        return frac == 0 ? "\(whole)" : "\(whole).\(frac < 10 ? "0" : "")\(frac)"
    }
}
