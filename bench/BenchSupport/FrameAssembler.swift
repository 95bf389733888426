import StockProtocol

/// Finds frames in what one read delivered, parsing in place over the read
/// buffer; only a frame split across reads is copied, into a per-connection
/// carry buffer of `maxFrame` bytes, and completed from the next read.
///
/// Shared by the echo and the driver (target `BenchSupport`).
public struct FrameAssembler {
    /// Largest frame accepted; the carry buffer's size.
    public let maxFrame: Int
    private let carry: UnsafeMutableRawPointer
    /// Bytes of a partial frame held over from earlier reads.
    public private(set) var carried = 0

    public init(maxFrame: Int) {
        precondition(maxFrame >= Limits.headerSize)
        self.maxFrame = maxFrame
        carry = UnsafeMutableRawPointer.allocate(byteCount: maxFrame, alignment: 16)
    }

    /// Frees the carry buffer (the owner calls it once, when the connection closes).
    public func deallocate() { carry.deallocate() }

    /// Calls `onFrame` for every complete frame in the carried bytes followed
    /// by `input`, in order, and keeps an incomplete tail. Returns nil, or the
    /// framing error that ends the connection.
    @inline(__always)
    public mutating func consume(_ input: UnsafeRawBufferPointer,
                          _ onFrame: (FrameHeader, UnsafeRawBufferPointer) -> Void) -> FrameParse? {
        let n = input.count
        guard n > 0, let base = input.baseAddress else { return nil }
        var offset = 0
        // 1. Complete a frame split across reads: first its header, then its body.
        while carried > 0 {
            let target: Int
            if carried < Limits.headerSize {
                target = Limits.headerSize
            } else {
                target = Int(UInt32(littleEndian: carry.loadUnaligned(as: UInt32.self))) + Limits.lengthPrefixSize
            }
            assert(target <= maxFrame, "a frame over maxFrame is reported before it is carried")
            let take = min(target - carried, n - offset)
            if take == 0 { return nil }
            (carry + carried).copyMemory(from: base + offset, byteCount: take)
            carried += take
            offset += take
            switch FrameParser.parse(UnsafeRawBufferPointer(start: carry, count: carried), maxFrame: maxFrame) {
            case .frame(let header, let payload):
                onFrame(header, UnsafeRawBufferPointer(start: carry + payload.lowerBound, count: payload.count))
                carried = 0
            case .needMore:
                continue
            case let failure:
                return failure
            }
        }
        // 2. Frames wholly inside this read: parsed where they lie.
        while offset < n {
            let rest = UnsafeRawBufferPointer(start: base + offset, count: n - offset)
            switch FrameParser.parse(rest, maxFrame: maxFrame) {
            case .frame(let header, let payload):
                onFrame(header, UnsafeRawBufferPointer(start: base + offset + payload.lowerBound, count: payload.count))
                offset += header.frameLength
            case .needMore:
                // Shorter than its frame, which is at most maxFrame: it fits.
                carry.copyMemory(from: base + offset, byteCount: rest.count)
                carried = rest.count
                return nil
            case let failure:
                return failure
            }
        }
        return nil
    }
}
