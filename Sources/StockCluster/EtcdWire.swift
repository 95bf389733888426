import Foundation

// The JSON of etcd 3.4's v3 gateway (grpc-gateway over etcdserverpb), only the fields we use.
// proto3 JSON: bytes are base64, int64 are strings, and zero values (0, false, empty, an empty
// list) are omitted — so every field decodes as absent-means-zero.

enum EtcdWire {
    // MARK: requests

    struct LeaseGrant: Encodable {
        let ttl: Int64
        enum CodingKeys: String, CodingKey { case ttl = "TTL" }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(String(ttl), forKey: .ttl)
        }
    }

    /// /v3/lease/keepalive and /v3/lease/revoke.
    struct LeaseID: Encodable {
        let id: Int64
        enum CodingKeys: String, CodingKey { case id = "ID" }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(String(id), forKey: .id)
        }
    }

    struct Range: Encodable {
        let key: String
        /// Every key from `key` up to (not including) this one; nil: `key` alone.
        let range_end: String?
        init(_ key: String) {
            self.key = base64(key)
            range_end = nil
        }
        /// Every key starting with `prefix` (etcd's range end: the prefix with its last byte + 1).
        init(prefix: String) {
            var end = Array(prefix.utf8)
            precondition(!end.isEmpty && end.last! < 0xFF, "a prefix ends in a byte that can be incremented")
            end[end.count - 1] += 1
            key = base64(prefix)
            range_end = Data(end).base64EncodedString()
        }
    }

    struct Put: Encodable {
        let key: String
        let value: String
        let lease: String?

        init(_ key: String, _ value: [UInt8], lease: Int64) {
            self.key = base64(key)
            self.value = Data(value).base64EncodedString()
            // 0 is "no lease"; omitted, as etcd itself would.
            self.lease = lease == 0 ? nil : String(lease)
        }
    }

    struct DeleteRange: Encodable {
        let key: String
        init(_ key: String) { self.key = base64(key) }
    }

    struct Compare: Encodable {
        let key: String
        let target: String
        let result = "EQUAL"
        var createRevision: String?
        var modRevision: String?
        var version: String?
        var value: String?

        enum CodingKeys: String, CodingKey {
            case key, target, result, version, value
            case createRevision = "create_revision", modRevision = "mod_revision"
        }

        init(_ compare: EtcdCompare) {
            switch compare {
            case .createRevision(let k, let r):
                (key, target, createRevision) = (base64(k), "CREATE", String(r))
            case .modRevision(let k, let r):
                (key, target, modRevision) = (base64(k), "MOD", String(r))
            case .version(let k, let v):
                (key, target, version) = (base64(k), "VERSION", String(v))
            case .value(let k, let v):
                (key, target, value) = (base64(k), "VALUE", Data(v).base64EncodedString())
            }
        }
    }

    /// One of request_put, request_delete_range, request_range.
    struct RequestOp: Encodable {
        var put: Put?
        var deleteRange: DeleteRange?
        var range: Range?

        enum CodingKeys: String, CodingKey {
            case put = "request_put", deleteRange = "request_delete_range", range = "request_range"
        }

        init(_ op: EtcdOp) {
            switch op {
            case .put(let k, let v, let lease): put = Put(k, v, lease: lease)
            case .delete(let k): deleteRange = DeleteRange(k)
            case .get(let k): range = Range(k)
            }
        }
    }

    struct Txn: Encodable {
        let compare: [Compare]
        let success: [RequestOp]
        let failure: [RequestOp]
    }

    // MARK: responses

    struct Header: Decodable {
        let revision: Int64
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            revision = try c.int64("revision")
        }
    }

    struct LeaseGrantResponse: Decodable {
        let id: Int64
        let ttl: Int64
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            id = try c.int64("ID")
            ttl = try c.int64("TTL")
        }
    }

    /// One message of the keepalive stream: a result, or an error the gateway reports in-stream —
    /// as grpc-gateway's `{"error":{"grpc_code","message",…}}` or, like its unary errors, flat.
    struct KeepAliveMessage: Decodable {
        let result: LeaseGrantResponse?
        let error: ErrorBody?

        enum CodingKeys: String, CodingKey { case result, error }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            result = try c.decodeIfPresent(LeaseGrantResponse.self, forKey: .result)
            if let nested = try? c.decodeIfPresent(StreamError.self, forKey: .error) {
                error = ErrorBody(code: nested.code, message: nested.message)
            } else if c.contains(.error) {
                error = try ErrorBody(from: decoder)
            } else {
                error = nil
            }
        }
    }

    /// grpc-gateway's in-stream error object.
    struct StreamError: Decodable {
        let code: Int
        let message: String
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            code = Int(try c.int64("grpc_code"))
            message = try c.decodeIfPresent(String.self, forKey: AnyKey("message")) ?? ""
        }
    }

    struct KeyValue: Decodable {
        let kv: EtcdKeyValue
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            let keyBytes = try c.bytes("key")
            guard let key = String(validating: keyBytes, as: UTF8.self) else {
                throw DecodingError.dataCorruptedError(forKey: AnyKey("key"), in: c, debugDescription: "key is not UTF-8")
            }
            kv = EtcdKeyValue(key: key, value: try c.bytes("value"), createRevision: try c.int64("create_revision"),
                              modRevision: try c.int64("mod_revision"), version: try c.int64("version"),
                              lease: try c.int64("lease"))
        }
    }

    struct RangeResponse: Decodable {
        let header: Header?
        let kvs: [KeyValue]?
    }

    struct PutResponse: Decodable {
        let header: Header?
    }

    struct ResponseOp: Decodable {
        let range: RangeResponse?
        enum CodingKeys: String, CodingKey { case range = "response_range" }
    }

    struct TxnResponse: Decodable {
        let header: Header?
        let succeeded: Bool?
        let responses: [ResponseOp]?
    }

    /// The body of a non-2xx answer: `{"error":"…","message":"…","code":5}`.
    struct ErrorBody: Decodable {
        let code: Int
        let message: String

        init(code: Int, message: String) {
            self.code = code
            self.message = message
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            code = Int(try c.int64("code"))
            // "error" and "message" carry the same text in 3.4; take whichever is there.
            let message = try c.decodeIfPresent(String.self, forKey: AnyKey("message"))
            let error = try c.decodeIfPresent(String.self, forKey: AnyKey("error"))
            guard let text = message ?? error else {
                throw DecodingError.keyNotFound(AnyKey("message"), .init(codingPath: c.codingPath, debugDescription: "no message"))
            }
            self.message = text
        }
    }

    struct AnyKey: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static func base64(_ key: String) -> String { Data(key.utf8).base64EncodedString() }
}

extension KeyedDecodingContainer where Key == EtcdWire.AnyKey {
    /// An int64 field: a JSON string as proto3 JSON writes it, a number as some writers do, 0 when absent.
    func int64(_ name: String) throws -> Int64 {
        let key = Key(name)
        guard contains(key), try !decodeNil(forKey: key) else { return 0 }
        if let text = try? decode(String.self, forKey: key) {
            guard let v = Int64(text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "\(text) is not an int64")
            }
            return v
        }
        return try decode(Int64.self, forKey: key)
    }

    /// A bytes field (base64), empty when absent.
    func bytes(_ name: String) throws -> [UInt8] {
        guard let text = try decodeIfPresent(String.self, forKey: Key(name)) else { return [] }
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorruptedError(forKey: Key(name), in: self, debugDescription: "not base64")
        }
        return [UInt8](data)
    }
}
