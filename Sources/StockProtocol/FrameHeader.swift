/// The fixed 12-byte header that starts every frame (`protocol/PROTOCOL.md` §2).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `length`: bytes after this field (8 + payload), u32 LE |
/// | 4 | 1 | `opcode` |
/// | 5 | 1 | `flags`: bit 0 = response; other bits zero |
/// | 6 | 1 | `status`: 0 in requests |
/// | 7 | 1 | reserved, zero |
/// | 8 | 4 | `request_id`, u32 LE, echoed by the response |
public struct FrameHeader: Sendable, Hashable {
    /// Flag bit set on every response.
    public static let responseFlag: UInt8 = 0x01

    /// Raw opcode byte (may be unassigned: see `Opcode(rawValue:)`).
    public var opcode: UInt8
    /// Raw flags byte.
    public var flags: UInt8
    /// Raw status byte.
    public var status: UInt8
    /// Reserved byte (must be zero).
    public var reserved: UInt8
    /// The request id chosen by the client.
    public var requestID: UInt32
    /// Payload bytes following the header.
    public var payloadLength: Int

    /// A header from its fields.
    public init(opcode: UInt8, flags: UInt8 = 0, status: UInt8 = 0, reserved: UInt8 = 0,
                requestID: UInt32, payloadLength: Int) {
        self.opcode = opcode
        self.flags = flags
        self.status = status
        self.reserved = reserved
        self.requestID = requestID
        self.payloadLength = payloadLength
    }

    /// Whether this frame is a response.
    public var isResponse: Bool { flags & FrameHeader.responseFlag != 0 }

    /// Total bytes of the frame, header included.
    public var frameLength: Int { Limits.headerSize + payloadLength }

    /// Checks the header bits a request must have: not a response, status 0,
    /// reserved 0, no unknown flag. (Unknown opcodes are checked separately:
    /// they get `unknownOpcode`, not `malformed`.)
    public var isWellFormedRequest: Bool { flags == 0 && status == 0 && reserved == 0 }

    /// Checks the header bits a response must have.
    public var isWellFormedResponse: Bool { flags == FrameHeader.responseFlag && reserved == 0 }
}
