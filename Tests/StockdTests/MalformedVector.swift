import Foundation
import StockProtocol
import TestSupport

/// One vector of `protocol/vectors/malformed.json` (see its README).
struct MalformedVector: Sendable, CustomStringConvertible {
    let name: String
    let bytes: [UInt8]
    /// `need_more`, `length_too_small`, `too_large`, or a status name.
    let error: String
    let requestID: UInt32?

    var description: String { name }

    /// The status the server answers with, when `error` names one.
    var status: Status? { Status(name: error) }

    /// The vectors, read from `protocol/vectors/malformed.json` found from this file's path.
    static func load() throws -> [MalformedVector] {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // StockdTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // package root
            .appendingPathComponent("protocol/vectors/malformed.json")
        let data = try Data(contentsOf: url)
        guard let top = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let list = top["vectors"] as? [[String: Any]]
        else { throw HarnessError("\(url.path): not a vector file") }
        return try list.map { v in
            guard let name = v["name"] as? String, let hex = v["hex"] as? String, let error = v["error"] as? String,
                  let bytes = Hex.decode(hex)
            else { throw HarnessError("\(url.path): bad vector \(v)") }
            let id = (v["request_id"] as? NSNumber).map { UInt32(truncating: $0) }
            return MalformedVector(name: name, bytes: bytes, error: error, requestID: id)
        }
    }
}
