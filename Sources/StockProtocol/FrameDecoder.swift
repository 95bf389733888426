/// What the frame parser found at the start of a buffer.
public enum FrameParse: Sendable, Equatable {
    /// A complete frame: its header and the payload's byte range in the buffer.
    /// The frame occupies `header.frameLength` bytes from the start.
    case frame(FrameHeader, payload: Range<Int>)
    /// Fewer bytes than a complete frame: feed more.
    case needMore
    /// The length prefix is below 8, so the header itself is inconsistent and
    /// the next frame cannot be found: answer MALFORMED (request id 0), close.
    case lengthTooSmall(length: UInt32)
    /// The length prefix exceeds the maximum frame. Reported once the 12-byte
    /// header is in, so the error answer can echo the request id; then close.
    case tooLarge(length: UInt32, requestID: UInt32)
}

/// Finds frame boundaries in a byte buffer. Stateless: usable directly on a
/// socket's read buffer, so complete frames never need copying.
public enum FrameParser {
    /// Parses the frame at the start of `bytes`, whose maximum total size is `maxFrame`.
    @inlinable
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxFrame: Int) -> FrameParse {
        guard bytes.count >= Limits.headerSize else {
            if bytes.count >= Limits.lengthPrefixSize {
                let length = UInt32(littleEndian: bytes.loadUnaligned(as: UInt32.self))
                if length < Limits.minLengthField { return .lengthTooSmall(length: length) }
            }
            return .needMore
        }
        let length = UInt32(littleEndian: bytes.loadUnaligned(as: UInt32.self))
        if length < Limits.minLengthField { return .lengthTooSmall(length: length) }
        let requestID = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let total = Int(length) + Limits.lengthPrefixSize
        if total > maxFrame { return .tooLarge(length: length, requestID: requestID) }
        if bytes.count < total { return .needMore }
        let header = FrameHeader(
            opcode: bytes[4], flags: bytes[5], status: bytes[6], reserved: bytes[7],
            requestID: requestID, payloadLength: total - Limits.headerSize)
        return .frame(header, payload: Limits.headerSize..<total)
    }
}

/// A framing error that ends a connection (see `FrameParse`).
public enum FrameError: Error, Sendable, Equatable {
    case lengthTooSmall(length: UInt32)
    case tooLarge(length: UInt32, requestID: UInt32)
}

/// A streaming decoder: feed it whatever bytes arrived — part of a frame, one
/// frame, hundreds of pipelined frames — and take complete frames out.
///
/// Bytes are kept in one growable buffer that is compacted, not reallocated,
/// so steady-state decoding allocates nothing. Its size is bounded by the
/// maximum frame plus one read, provided the caller drains complete frames
/// with `next` after every `feed` (the server does).
public struct FrameDecoder: Sendable {
    /// The maximum total frame size accepted.
    public let maxFrame: Int
    private var buffer: [UInt8] = []
    private var start = 0

    /// A decoder accepting frames up to `maxFrame` bytes.
    public init(maxFrame: Int = Limits.defaultMaxFrame) {
        precondition(maxFrame >= Limits.headerSize && maxFrame <= Limits.maxFrameCeiling)
        self.maxFrame = maxFrame
    }

    /// Bytes held but not yet returned as frames.
    public var buffered: Int { buffer.count - start }

    /// Appends received bytes.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        compactIfWorthIt()
        buffer.append(contentsOf: bytes)
    }

    /// Appends received bytes from an array.
    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Calls `body` with the next complete frame's header and payload (a view
    /// valid only during the call) and returns its result; nil when more
    /// bytes are needed. Throws on a framing error, after which the stream is
    /// unusable.
    public mutating func next<R>(_ body: (FrameHeader, UnsafeRawBufferPointer) -> R) throws(FrameError) -> R? {
        let parsed = buffer.withUnsafeBytes { raw in
            FrameParser.parse(UnsafeRawBufferPointer(rebasing: raw[start...]), maxFrame: maxFrame)
        }
        switch parsed {
        case .needMore:
            return nil
        case .lengthTooSmall(let length):
            throw .lengthTooSmall(length: length)
        case .tooLarge(let length, let id):
            throw .tooLarge(length: length, requestID: id)
        case .frame(let header, let range):
            let result = buffer.withUnsafeBytes { raw in
                body(header, UnsafeRawBufferPointer(rebasing: raw[(start + range.lowerBound)..<(start + range.upperBound)]))
            }
            start += header.frameLength
            if start == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                start = 0
            }
            return result
        }
    }

    /// Moves unconsumed bytes to the front once they are the smaller part,
    /// so the buffer never grows past max frame + one read.
    private mutating func compactIfWorthIt() {
        guard start > 0, start >= buffer.count - start else { return }
        buffer.removeSubrange(0..<start)
        start = 0
    }
}
