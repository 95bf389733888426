import Testing
import TestSupport
@testable import StockProtocol

/// A pipelined stream fed to `FrameDecoder` in pieces of every size.
@Suite("Streaming", .cpuHeavy)
struct StreamingTests {
    enum Message: Equatable {
        case request(UInt32, Request)
        case response(Response)
    }

    static let frameCount = 1_500

    /// A stream of mixed requests and responses, all opcodes and failures.
    static func stream(seed: UInt64) -> (messages: [Message], bytes: [UInt8]) {
        var gen = Gen(seed: seed)
        var w = ByteWriter(capacity: 1 << 18)
        var messages = [Message]()
        for _ in 0..<frameCount {
            if gen.chance(60) {
                let request = gen.request()
                let id = gen.u32()
                RequestCodec.encode(request, requestID: id, into: &w)
                messages.append(.request(id, request))
            } else {
                let response = gen.response()
                ResponseCodec.encode(response, into: &w)
                messages.append(.response(response))
            }
        }
        return (messages, w.bytes)
    }

    /// Takes every complete frame out of `decoder`.
    static func drain(_ decoder: inout FrameDecoder, into out: inout [Message]) throws {
        while let message = try decoder.next({ h, p -> Message? in
            if h.isResponse {
                guard case .success(let r) = decodeResponse(h, p) else { return nil }
                return .response(r)
            }
            guard case .success(let r) = decodeRequest(h, p) else { return nil }
            return .request(h.requestID, r)
        }) {
            guard let message else {
                Issue.record("a frame of the stream did not decode")
                return
            }
            out.append(message)
        }
    }

    @Test("fed one byte at a time, the decoder yields exactly the frames sent, in order")
    func byteAtATime() throws {
        let (sent, bytes) = Self.stream(seed: 0x57_0001)
        var decoder = FrameDecoder()
        var received = [Message]()
        received.reserveCapacity(sent.count)
        for b in bytes {
            withUnsafeBytes(of: b) { decoder.feed($0) }
            try Self.drain(&decoder, into: &received)
        }
        #expect(received.count == sent.count)
        #expect(received == sent)
        #expect(decoder.buffered == 0)
    }

    @Test("fed in random chunk sizes, the decoder yields exactly the frames sent, in order",
          arguments: [UInt64(1), 2, 3, 4])
    func randomChunks(seed: UInt64) throws {
        let (sent, bytes) = Self.stream(seed: 0x57_0100 + seed)
        var gen = Gen(seed: seed)
        var decoder = FrameDecoder()
        var received = [Message]()
        var offset = 0
        var maxBuffered = 0
        while offset < bytes.count {
            let size = switch gen.int(0...3) {
            case 0: gen.int(1...16)
            case 1: gen.int(1...200)
            case 2: gen.int(1...4096)
            default: gen.int(1...(Limits.headerSize + 1))
            }
            let end = min(bytes.count, offset + size)
            bytes[offset..<end].withUnsafeBytes { decoder.feed($0) }
            offset = end
            maxBuffered = max(maxBuffered, decoder.buffered)
            try Self.drain(&decoder, into: &received)
            // Whatever is left is less than one frame.
            #expect(decoder.buffered < Limits.defaultMaxFrame)
        }
        #expect(received == sent)
        #expect(decoder.buffered == 0)
        // The decoder never held more than one frame plus one chunk.
        #expect(maxBuffered <= Limits.defaultMaxFrame + 4096)
    }

    @Test("the whole stream in one feed")
    func oneFeed() throws {
        let (sent, bytes) = Self.stream(seed: 0x57_0200)
        var decoder = FrameDecoder()
        decoder.feed(bytes)
        var received = [Message]()
        try Self.drain(&decoder, into: &received)
        #expect(received == sent)
        #expect(decoder.buffered == 0)
    }

    @Test("a framing error in mid-stream comes after the frames before it, and sticks")
    func errorMidStream() throws {
        let (sent, bytes) = Self.stream(seed: 0x57_0300)
        var decoder = FrameDecoder()
        decoder.feed(bytes)
        decoder.feed([0x03, 0x00, 0x00, 0x00] + [UInt8](repeating: 0, count: 8))  // length prefix 3
        var received = [Message]()
        #expect(throws: FrameError.lengthTooSmall(length: 3)) { try Self.drain(&decoder, into: &received) }
        #expect(received == sent)
        #expect(throws: FrameError.lengthTooSmall(length: 3)) { try decoder.next { _, _ in 0 } }
    }
}
