import StockClient

enum HFrame {
    static func encode(_ r: Request, id: UInt32) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        RequestCodec.encode(r, requestID: id, into: &w)
        return w.bytes
    }

    static func ping(_ id: UInt32) -> [UInt8] { encode(.ping, id: id) }

    static func hello(_ id: UInt32, credential: [UInt8], name: String = "stockbench-hostile") -> [UInt8] {
        encode(.hello(Hello(clientName: Array(name.utf8), credential: credential)), id: id)
    }

    /// A header with any opcode and an empty payload (`length` 8).
    static func bare(opcode: UInt8, id: UInt32) -> [UInt8] {
        var b: [UInt8] = [8, 0, 0, 0, opcode, 0, 0, 0]
        appendU32(&b, id)
        return b
    }

    static func appendU32(_ b: inout [UInt8], _ v: UInt32) {
        for i in 0..<4 { b.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
    }
}

func statusName(_ s: UInt8) -> String { Status(rawValue: s)?.name ?? "STATUS_\(s)" }
