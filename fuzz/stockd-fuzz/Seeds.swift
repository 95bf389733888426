import Foundation
import Glibc
import StockProtocol

/// `STOCKD_FUZZ_MODE=seed stockd-fuzz VECTORS_DIR OUT_DIR`: writes the seed corpora from
/// protocol/vectors/*.json (in Swift, so `make fuzz` needs nothing beyond the toolchain):
///
/// - OUT_DIR/decode: every vector frame (requests, responses, malformed) alone, plus the request
///   and the response vectors pipelined back to back in streams of at most 4 KiB;
/// - OUT_DIR/dispatch: every request and malformed vector alone, each request after a HELLO,
///   a few sessions (one request of every opcode but SUBSCRIBE and CREDIT, pipelined) and the
///   requests pipelined. The tokens of CONFIRM, RELEASE and EXTEND become placeholders
///   (`Placeholder`, swapped for live tokens by the dispatch harness).
///
/// The corpora are generated, never committed; libFuzzer adds what it finds to its own directory.
enum Seeds {
    static func write(vectors: String, out: String) -> Never {
        let requests = load(vectors, "requests"), responses = load(vectors, "responses")
        let malformed = load(vectors, "malformed")
        guard let hello = requests.first(where: { $0[4] == Opcode.hello.rawValue }) else {
            fuzzFail("seed: no HELLO among the request vectors")
        }
        let decodeDir = out + "/decode", dispatchDir = out + "/dispatch"
        var n = save(decodeDir, "request", requests)
        n += save(decodeDir, "response", responses)
        n += save(decodeDir, "malformed", malformed)
        n += save(decodeDir, "pipelined", pipelined(requests) + pipelined(responses))

        let withTokens = requests.enumerated().map { withPlaceholder($0.element, index: UInt8($0.offset % 4)) }
        var m = save(dispatchDir, "request", withTokens)
        m += save(dispatchDir, "hello", withTokens.filter { $0[4] != Opcode.hello.rawValue }.map { hello + $0 })
        m += save(dispatchDir, "malformed", malformed)
        var firstOfOpcode: [UInt8: [UInt8]] = [:]
        for frame in withTokens where firstOfOpcode[frame[4]] == nil { firstOfOpcode[frame[4]] = frame }
        let session = firstOfOpcode.keys.sorted()
            .filter { $0 != Opcode.subscribe.rawValue && $0 != Opcode.credit.rawValue }
            .flatMap { firstOfOpcode[$0]! }
        m += save(dispatchDir, "session", [session, hello + session, session + session] + pipelined(withTokens))
        fuzzLog("stockd-fuzz: seed: \(n) decode seeds in \(decodeDir), \(m) dispatch seeds in \(dispatchDir)")
        exit(0)
    }

    /// The `hex` frames of protocol/vectors/NAME.json.
    static func load(_ dir: String, _ name: String) -> [[UInt8]] {
        let path = dir + "/" + name + ".json"
        guard let data = FileManager.default.contents(atPath: path),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let vectors = root["vectors"] as? [[String: Any]] else {
            fuzzFail("seed: cannot read the vectors in \(path)")
        }
        return vectors.map { v in
            guard let hex = v["hex"] as? String, let bytes = Hex.decode(hex) else {
                fuzzFail("seed: a vector in \(path) has no valid hex")
            }
            return bytes
        }
    }

    /// CONFIRM, RELEASE and EXTEND carry the token first: overwrite it with a placeholder.
    static func withPlaceholder(_ frame: [UInt8], index: UInt8) -> [UInt8] {
        let tokenFirst: Set<UInt8> = [Opcode.confirm.rawValue, Opcode.release.rawValue, Opcode.extend.rawValue]
        guard frame.count >= Limits.headerSize + Token.size, tokenFirst.contains(frame[4]), frame[5] == 0 else {
            return frame
        }
        var f = frame
        f.replaceSubrange(Limits.headerSize..<(Limits.headerSize + Token.size), with: Placeholder.prefix + [index])
        return f
    }

    static func pipelined(_ frames: [[UInt8]], limit: Int = 4_096) -> [[UInt8]] {
        var out: [[UInt8]] = [], current: [UInt8] = []
        for f in frames {
            if !current.isEmpty && current.count + f.count > limit {
                out.append(current)
                current = []
            }
            current += f
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    static func save(_ dir: String, _ prefix: String, _ items: [[UInt8]]) -> Int {
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            fuzzFail("seed: cannot create \(dir): \(error)")
        }
        for (i, bytes) in items.enumerated() {
            let name = dir + "/" + prefix + "-" + String(1000 + i).dropFirst()
            guard FileManager.default.createFile(atPath: name, contents: Data(bytes)) else {
                fuzzFail("seed: cannot write \(name)")
            }
        }
        return items.count
    }
}
