import StockProtocol

/// Entry point 1: the frame decoder and both codecs, no I/O.
///
/// The input is a byte stream as a socket would deliver it. Checks, for any input:
/// - `FrameDecoder` yields the same frames and the same final outcome (a framing error, or
///   the bytes left over) whether the stream is fed at once, a byte at a time, or in
///   pseudo-random chunks derived from the input (so a crash file replays exactly);
/// - every frame goes through `RequestCodec.decode` and `ResponseCodec.decode` without a crash;
/// - a request or response that decodes re-encodes to a frame that parses back to exactly
///   one frame of the same size and decodes to the same value, with the same bytes as the
///   original (the codecs promise one encoding per value).
enum DecodeFuzz {
    /// What a decoder made of a stream: its frames, then how it stopped.
    struct Outcome: Equatable {
        var frames: [Frame] = []
        var error: FrameError?
        var leftover = 0
    }

    struct Frame: Equatable {
        var header: FrameHeader
        var payload: [UInt8]
    }

    static func run(_ input: UnsafeRawBufferPointer) {
        let whole = decode(input, check: true) { _ in input.count }
        let byteAtATime = decode(input, check: false) { _ in 1 }
        var state = seed(input)
        let chunked = decode(input, check: false) { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let r = Int(truncatingIfNeeded: state >> 33)
            return r % 8 == 0 ? 1 + r % 4096 : 1 + r % 24  // mostly small pieces, now and then a big one
        }
        guard whole == byteAtATime else {
            fuzzFail("decoder: fed whole vs a byte at a time differ: \(summary(whole)) vs \(summary(byteAtATime))")
        }
        guard whole == chunked else {
            fuzzFail("decoder: fed whole vs in chunks differ: \(summary(whole)) vs \(summary(chunked))")
        }
        // The stateless parser on the whole buffer agrees with the streaming decoder on the first frame.
        let first = FrameParser.parse(input, maxFrame: Limits.defaultMaxFrame)
        switch first {
        case .frame(let header, _):
            guard whole.frames.first?.header == header else { fuzzFail("FrameParser and FrameDecoder disagree") }
        case .needMore:
            guard whole.frames.isEmpty, whole.error == nil else { fuzzFail("FrameParser needMore, decoder did not") }
        case .lengthTooSmall(let length):
            guard whole.frames.isEmpty, whole.error == .lengthTooSmall(length: length) else {
                fuzzFail("FrameParser lengthTooSmall, decoder did not")
            }
        case .tooLarge(let length, let id):
            guard whole.frames.isEmpty, whole.error == .tooLarge(length: length, requestID: id) else {
                fuzzFail("FrameParser tooLarge, decoder did not")
            }
        }
    }

    /// Feeds `input` in pieces of `nextChunk()` bytes, taking frames out after every feed.
    static func decode(_ input: UnsafeRawBufferPointer, check: Bool, nextChunk: (Int) -> Int) -> Outcome {
        var decoder = FrameDecoder()
        var out = Outcome()
        var offset = 0
        while offset < input.count {
            let n = min(max(1, nextChunk(offset)), input.count - offset)
            decoder.feed(UnsafeRawBufferPointer(rebasing: input[offset..<(offset + n)]))
            offset += n
            do {
                while let frame = try decoder.next({ header, payload in
                    if check { checkCodecs(header, payload) }
                    return Frame(header: header, payload: Array(payload))
                }) {
                    out.frames.append(frame)
                }
            } catch {
                out.error = error
                return out  // the stream is unusable after a framing error
            }
            // Drained: what is held is one incomplete frame, smaller than the maximum.
            guard decoder.buffered < decoder.maxFrame else {
                fuzzFail("decoder holds \(decoder.buffered) bytes after draining (max frame \(decoder.maxFrame))")
            }
        }
        out.leftover = decoder.buffered
        return out
    }

    /// Both codecs on one frame; round trips for whatever decodes.
    static func checkCodecs(_ header: FrameHeader, _ payload: UnsafeRawBufferPointer) {
        let original = frameBytes(header, payload)
        if let request = try? RequestCodec.decode(header: header, payload: payload) {
            var w = ByteWriter()
            RequestCodec.encode(request, requestID: header.requestID, into: &w)
            let again = w.bytes
            again.withUnsafeBytes { raw in
                guard case .frame(let h2, let range) = FrameParser.parse(raw, maxFrame: Limits.maxFrameCeiling),
                      h2.frameLength == raw.count else {
                    fuzzFail("request \(request) re-encodes to an unparsable frame \(Hex.encode(again))")
                }
                let decoded: Request
                do throws(Status) {
                    decoded = try RequestCodec.decode(header: h2, payload: UnsafeRawBufferPointer(rebasing: raw[range]))
                } catch {
                    fuzzFail("request \(request) re-encoded does not decode: \(error.name) (\(Hex.encode(again)))")
                }
                guard decoded == request, h2.requestID == header.requestID, h2.opcode == header.opcode else {
                    fuzzFail("request round trip: \(request) -> \(decoded)")
                }
            }
            guard again == original else {
                fuzzFail("request \(request) decoded from \(Hex.encode(original)) re-encodes as \(Hex.encode(again))")
            }
        }
        if let response = try? ResponseCodec.decode(header: header, payload: payload) {
            var w = ByteWriter()
            ResponseCodec.encode(response, into: &w)
            let again = w.bytes
            again.withUnsafeBytes { raw in
                guard case .frame(let h2, let range) = FrameParser.parse(raw, maxFrame: Limits.maxFrameCeiling),
                      h2.frameLength == raw.count else {
                    fuzzFail("response \(response) re-encodes to an unparsable frame \(Hex.encode(again))")
                }
                let decoded: Response
                do throws(Status) {
                    decoded = try ResponseCodec.decode(header: h2, payload: UnsafeRawBufferPointer(rebasing: raw[range]))
                } catch {
                    fuzzFail("response \(response) re-encoded does not decode: \(error.name) (\(Hex.encode(again)))")
                }
                guard decoded == response else { fuzzFail("response round trip: \(response) -> \(decoded)") }
            }
            guard again == original else {
                fuzzFail("response \(response) decoded from \(Hex.encode(original)) re-encodes as \(Hex.encode(again))")
            }
        }
    }

    /// The frame's bytes as they were on the wire (header fields are all kept in `FrameHeader`).
    static func frameBytes(_ h: FrameHeader, _ payload: UnsafeRawBufferPointer) -> [UInt8] {
        var b = [UInt8]()
        b.reserveCapacity(h.frameLength)
        let length = UInt32(h.frameLength - Limits.lengthPrefixSize)
        for i in 0..<4 { b.append(UInt8(truncatingIfNeeded: length >> (8 * UInt32(i)))) }
        b += [h.opcode, h.flags, h.status, h.reserved]
        for i in 0..<4 { b.append(UInt8(truncatingIfNeeded: h.requestID >> (8 * UInt32(i)))) }
        b += payload
        return b
    }

    /// FNV-1a of the input: the chunking is a function of the bytes alone.
    static func seed(_ input: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in input { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }

    static func summary(_ o: Outcome) -> String {
        "\(o.frames.count) frames, error \(o.error.map { "\($0)" } ?? "none"), leftover \(o.leftover)"
    }
}
