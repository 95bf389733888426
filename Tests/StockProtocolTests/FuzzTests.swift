import Testing
import TestSupport
@testable import StockProtocol

/// Seeded, reproducible fuzzing of the frame decoder and both codecs: valid
/// frames mutated (bit flips, truncation, insertion, deletion, length-prefix
/// and header edits, interesting bytes, concatenation) plus purely random bytes.
@Suite("Fuzz", .cpuHeavy)
struct FuzzTests {
    static let inputs = 100_000
    static let seed: UInt64 = 0xF022_0001

    /// How the inputs were answered.
    struct Tally: CustomStringConvertible {
        var frames = 0, requestsOK = 0, requestErrors = 0, responsesOK = 0, responseErrors = 0
        var needMore = 0, lengthTooSmall = 0, tooLarge = 0
        var failures = 0
        var description: String {
            "frames \(frames) (requests ok \(requestsOK) / rejected \(requestErrors); responses ok \(responsesOK)"
                + " / rejected \(responseErrors)), need-more \(needMore), length-too-small \(lengthTooSmall),"
                + " too-large \(tooLarge)"
        }
    }

    /// Valid frames to mutate: random requests and responses, and every vector.
    static func corpus(_ gen: inout Gen) -> [[UInt8]] {
        var out = [[UInt8]]()
        for _ in 0..<300 {
            var w = ByteWriter()
            RequestCodec.encode(gen.request(), requestID: gen.u32(), into: &w)
            out.append(w.bytes)
            var r = ByteWriter()
            ResponseCodec.encode(gen.response(), into: &r)
            out.append(r.bytes)
        }
        for v in Vectors.requests + Vectors.responses + Vectors.malformed { out.append(v.bytes) }
        return out
    }

    static let interesting: [UInt8] = [0x00, 0x01, 0x07, 0x08, 0x0B, 0x0C, 0x10, 0x1F, 0x20, 0x40, 0x41, 0x7E, 0x7F,
                                       0x80, 0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFE, 0xFF]

    static func mutate(_ input: [UInt8], _ gen: inout Gen, corpus: [[UInt8]]) -> [UInt8] {
        var b = input
        for _ in 0..<gen.int(1...3) {
            switch gen.int(0...9) {
            case 0:  // bit flips
                guard !b.isEmpty else { continue }
                for _ in 0..<gen.int(1...8) { b[gen.int(0...(b.count - 1))] ^= 1 << UInt8(gen.int(0...7)) }
            case 1:  // truncation
                b = Array(b.prefix(gen.int(0...b.count)))
            case 2:  // insertion
                let at = gen.int(0...b.count)
                b.insert(contentsOf: (0..<gen.int(1...16)).map { _ in gen.u8() }, at: at)
            case 3:  // length-prefix edit
                guard b.count >= 4 else { continue }
                let old = UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
                let new: UInt32 = switch gen.int(0...4) {
                case 0: UInt32(gen.int(0...11))
                case 1: old &+ UInt32(gen.int(1...16))
                case 2: old &- UInt32(gen.int(1...16))
                case 3: UInt32(gen.int(65_000...70_000))
                default: gen.u32()
                }
                for i in 0..<4 { b[i] = UInt8(truncatingIfNeeded: new >> (8 * UInt32(i))) }
            case 4:  // interesting bytes
                guard !b.isEmpty else { continue }
                for _ in 0..<gen.int(1...4) {
                    b[gen.int(0...(b.count - 1))] = interesting[gen.int(0...(interesting.count - 1))]
                }
            case 5:  // concatenation with another frame
                b += corpus[gen.int(0...(corpus.count - 1))]
            case 6:  // header edits: opcode, flags, status, reserved
                guard b.count >= 8 else { continue }
                b[gen.int(4...7)] = gen.chance(50) ? gen.u8() : interesting[gen.int(0...(interesting.count - 1))]
            case 7:  // deletion of a range
                guard !b.isEmpty else { continue }
                let from = gen.int(0...(b.count - 1))
                b.removeSubrange(from..<min(b.count, from + gen.int(1...8)))
            case 8:  // a payload byte (often a str8 count) set to a random value, prefix kept
                guard b.count > Limits.headerSize else { continue }
                b[gen.int(Limits.headerSize...(b.count - 1))] = gen.u8()
            default:  // duplicate a slice of itself
                guard !b.isEmpty else { continue }
                let from = gen.int(0...(b.count - 1))
                let slice = b[from..<min(b.count, from + gen.int(1...24))]
                b.insert(contentsOf: slice, at: gen.int(0...b.count))
            }
        }
        return b
    }

    static func randomBytes(_ gen: inout Gen) -> [UInt8] {
        var b = (0..<gen.int(0...64)).map { _ in gen.u8() }
        if gen.chance(50), b.count >= 12 {
            // A plausible length prefix, so the random bytes reach the codecs.
            let length = UInt32(b.count - 4 - (gen.chance(70) ? 0 : gen.int(0...(b.count - 12))))
            for i in 0..<4 { b[i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(i))) }
            b[5] = gen.chance(50) ? 0 : 1
            b[6] = gen.chance(50) ? 0 : UInt8(gen.int(0...44))
            b[7] = 0
        }
        return b
    }

    /// Decodes one frame both ways and checks the canonical-encoding property:
    /// whatever decodes re-encodes to the same bytes (one value, one encoding).
    static func classify(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer, _ tally: inout Tally) {
        tally.frames += 1
        switch decodeRequest(header, payload) {
        case .success(let request):
            tally.requestsOK += 1
            var w = ByteWriter()
            RequestCodec.encode(request, requestID: header.requestID, into: &w)
            if !w.bytes[Limits.headerSize...].elementsEqual(payload) || w.bytes[4] != header.opcode {
                tally.failures += 1
                if tally.failures <= 5 { Issue.record("request \(request) does not re-encode to its bytes") }
            }
        case .failure:
            tally.requestErrors += 1
        }
        switch decodeResponse(header, payload) {
        case .success(let response):
            tally.responsesOK += 1
            var w = ByteWriter()
            ResponseCodec.encode(response, into: &w)
            if !w.bytes[Limits.headerSize...].elementsEqual(payload) || w.bytes[4] != header.opcode
                || w.bytes[6] != header.status {
                tally.failures += 1
                if tally.failures <= 5 { Issue.record("response \(response) does not re-encode to its bytes") }
            }
        case .failure:
            tally.responseErrors += 1
        }
    }

    /// Feeds `input` (in one or two pieces) and drains the decoder. The loop
    /// is bounded: each frame consumes at least a header, so more than
    /// `count / 12 + 2` turns means a frame was returned without consuming.
    static func run(_ input: [UInt8], maxFrame: Int, split: Int?, _ tally: inout Tally) {
        var decoder = FrameDecoder(maxFrame: maxFrame)
        var pieces = [input[...]]
        if let split { pieces = [input[..<split], input[split...]] }
        for piece in pieces {
            decoder.feed(Array(piece))
            var turns = 0
            while true {
                turns += 1
                if turns > input.count / Limits.headerSize + 2 {
                    tally.failures += 1
                    Issue.record("decoder loop did not terminate on \(hexString(input))")
                    return
                }
                let before = decoder.buffered
                do {
                    guard try decoder.next({ h, p in classify(h, p, &tally) }) != nil else {
                        tally.needMore += 1
                        if decoder.buffered != before {
                            tally.failures += 1
                            Issue.record("need-more consumed bytes on \(hexString(input))")
                        }
                        break
                    }
                    if decoder.buffered > before - Limits.headerSize {
                        tally.failures += 1
                        Issue.record("a frame consumed fewer than 12 bytes on \(hexString(input))")
                        return
                    }
                } catch {
                    switch error {
                    case .lengthTooSmall: tally.lengthTooSmall += 1
                    case .tooLarge: tally.tooLarge += 1
                    }
                    return  // the stream is unusable after a framing error
                }
            }
        }
    }

    @Test("100,000 mutated and random inputs: no trap, bounded, every outcome classified")
    func fuzz() {
        var gen = Gen(seed: Self.seed)
        let corpus = Self.corpus(&gen)
        let maxFrames = [Limits.defaultMaxFrame, 1024, 64, Limits.headerSize]
        var tally = Tally()
        let clock = ContinuousClock()
        let start = clock.now
        for i in 0..<Self.inputs {
            let input = i % 10 == 9
                ? Self.randomBytes(&gen)
                : Self.mutate(corpus[gen.int(0...(corpus.count - 1))], &gen, corpus: corpus)
            let maxFrame = gen.chance(80) ? maxFrames[0] : maxFrames[gen.int(1...(maxFrames.count - 1))]
            let split = gen.chance(20) ? gen.int(0...input.count) : nil
            Self.run(input, maxFrame: maxFrame, split: split, &tally)
        }
        let elapsed = clock.now - start
        print("fuzz: \(Self.inputs) inputs (seed 0x\(String(Self.seed, radix: 16))) in \(elapsed): \(tally)")
        #expect(tally.failures == 0)
        // The mix reaches every outcome, or the fuzzer is not doing its job.
        #expect(tally.requestsOK > 1000 && tally.requestErrors > 1000)
        #expect(tally.responsesOK > 1000 && tally.responseErrors > 1000)
        #expect(tally.needMore > 1000 && tally.lengthTooSmall > 100 && tally.tooLarge > 100)
    }
}
