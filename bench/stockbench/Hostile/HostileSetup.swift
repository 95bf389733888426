/// Everything the phases need (read-only).
struct HostileSetup: Sendable {
    var address: LoopbackAddress
    var authOn: Bool
    var credential: [UInt8]
    var sku: String
    var connections: Int
    var durationNs: UInt64
    var cycles: Int
    var forgedTokens: Int
    var halfOpen: Int
    var neverRead: Int
    var seed: UInt64
    var pid: Int32?
    var attacks: Set<String>

    /// The attacks, in the order of the issue.
    static let attackNames = ["garbage", "huge_length", "zero_length", "unknown_opcode", "hello_pipelined",
                              "hello_connections", "connect_cycles", "half_open", "never_read", "forged_tokens"]
}
