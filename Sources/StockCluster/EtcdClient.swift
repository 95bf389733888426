import Foundation
import Synchronization

// The etcd v3 API as the agent needs it (docs/replication.md §4–§6): leases for the leader key,
// guarded transactions for campaigns and ISR changes, plain reads. Blocking calls over etcd's JSON
// gateway; each call tries the endpoints in turn, starting with the one that last answered.

/// A key as etcd stores it. Revisions and versions are etcd's int64s; 0 means absent or none.
public struct EtcdKeyValue: Sendable, Equatable {
    public let key: String
    public let value: [UInt8]
    /// The revision of the put that created the key (in its current life).
    public let createRevision: Int64
    /// The revision of the last put.
    public let modRevision: Int64
    /// Puts since the key was created: 1 after the first.
    public let version: Int64
    /// The lease the key is attached to; 0 for none.
    public let lease: Int64

    public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }
}

/// A transaction's guard: the key's field equals the value. An absent key has create revision,
/// mod revision and version 0.
public enum EtcdCompare: Sendable, Equatable {
    case createRevision(key: String, equals: Int64)
    case modRevision(key: String, equals: Int64)
    case version(key: String, equals: Int64)
    case value(key: String, equals: [UInt8])
}

/// One operation of a transaction's branch.
public enum EtcdOp: Sendable, Equatable {
    case put(key: String, value: [UInt8], lease: Int64 = 0)
    case delete(key: String)
    case get(key: String)
}

/// What a transaction did.
public struct EtcdTxnResult: Sendable, Equatable {
    /// Whether every compare held (and the success branch ran).
    public let succeeded: Bool
    /// The store's revision after the txn. When the branch that ran wrote anything, this is the
    /// revision of those writes: a put-if-absent that succeeded created its key at this revision.
    public let revision: Int64
    /// One entry per `.get` of the branch that ran, in order; nil for a key that does not exist.
    public let gets: [EtcdKeyValue?]
}

public enum EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No endpoint could be used: every one failed at the transport (refused, timed out, closed,
    /// not HTTP), answered an error that is not etcd's, or answered UNAVAILABLE (no leader, request
    /// timed out). The string has each endpoint's reason.
    /// After a timeout a write may or may not have been applied: the agent's writes are guarded
    /// txns, so it reads the key to find out.
    case unavailable(String)
    /// etcd refused the request: a gRPC status code (5 NOT_FOUND, 3 INVALID_ARGUMENT, …) and its message.
    case server(code: Int, message: String)
    /// A 2xx answer we could not read.
    case malformed(String)
    /// An endpoint given to `EtcdClient.init` is not `http://<IPv4 or localhost>:port`.
    /// (The client's configuration, not etcd's answer; only `init` throws it.)
    case badEndpoint(String)

    public var description: String {
        switch self {
        case .unavailable(let s): "etcd unavailable: \(s)"
        case .server(let code, let message): "etcd error \(code): \(message)"
        case .malformed(let s): "malformed etcd answer: \(s)"
        case .badEndpoint(let s): "bad etcd endpoint: \(s)"
        }
    }
}

/// A blocking client of etcd's v3 JSON gateway. Safe to share between threads (each call makes
/// its own connections).
public final class EtcdClient: Sendable {
    /// gRPC's UNAVAILABLE: the member has no leader or timed out; another member may do better.
    static let grpcUnavailable = 14
    static let grpcNotFound = 5

    public let endpoints: [HTTPURL]
    /// The bound of one attempt (connect, send, answer) at one endpoint. A call tries each endpoint
    /// at most once, so it returns within `endpoints.count × timeoutMs` (plus scheduling).
    public let timeoutMs: Int
    /// The index of the endpoint that answered last; calls start there.
    private let preferred = Mutex(0)

    /// `endpoints` such as `["http://127.0.0.1:2379"]`.
    public init(endpoints: [String], timeoutMs: Int) throws(EtcdError) {
        precondition(timeoutMs > 0, "an etcd call needs a positive timeout")
        guard !endpoints.isEmpty else { throw .badEndpoint("no endpoints") }
        var urls: [HTTPURL] = []
        for text in endpoints {
            do throws(HTTPError) {
                let url = try HTTPURL(text)
                // The gateway serves /v3/… at the root; a path here would be silently dropped.
                guard url.path == "/" else { throw .badURL("\(text): an etcd endpoint has no path") }
                urls.append(url)
            } catch {
                throw .badEndpoint(error.description)
            }
        }
        self.endpoints = urls
        self.timeoutMs = timeoutMs
    }

    // MARK: leases

    /// A new lease of `ttlSeconds`: its id and the TTL etcd granted (etcd raises a TTL below its
    /// minimum, about 1.5 × the election timeout, rounded up to whole seconds).
    public func grantLease(ttlSeconds: Int) throws(EtcdError) -> (id: Int64, ttl: Int64) {
        precondition(ttlSeconds > 0, "a lease needs a positive TTL")
        let r: EtcdWire.LeaseGrantResponse = try call("/v3/lease/grant", EtcdWire.LeaseGrant(ttl: Int64(ttlSeconds)))
        guard r.id != 0 else { throw .malformed("lease grant without an ID") }
        return (r.id, r.ttl)
    }

    /// Renews `lease` once: its TTL from now, or 0 when the lease no longer exists (expired or
    /// revoked — etcd answers the keepalive of an unknown lease with no TTL rather than an error).
    public func keepAlive(_ lease: Int64) throws(EtcdError) -> Int64 {
        let body = try send("/v3/lease/keepalive", EtcdWire.LeaseID(id: lease), chunked: .firstChunk)
        let message: EtcdWire.KeepAliveMessage = try decode(body, "/v3/lease/keepalive")
        if let error = message.error {
            if error.code == EtcdClient.grpcUnavailable { throw .unavailable("keepalive: \(error.message)") }
            throw .server(code: error.code, message: error.message)
        }
        guard let result = message.result else { throw .malformed("keepalive answer without a result") }
        return result.ttl
    }

    /// Revokes `lease`, deleting its keys. A lease that does not exist counts as revoked.
    public func revoke(_ lease: Int64) throws(EtcdError) {
        do throws(EtcdError) {
            _ = try send("/v3/lease/revoke", EtcdWire.LeaseID(id: lease))
        } catch .server(let code, let message) where code == EtcdClient.grpcNotFound && message.contains("lease not found") {
            return
        }
    }

    // MARK: keys

    /// The key, or nil, and the store's revision as of the read.
    public func get(_ key: String) throws(EtcdError) -> (kv: EtcdKeyValue?, revision: Int64) {
        let r: EtcdWire.RangeResponse = try call("/v3/kv/range", EtcdWire.Range(key))
        return (try single(r, key), r.header?.revision ?? 0)
    }

    /// Every key starting with `prefix`, in key order, and the store's revision as of the read (one
    /// consistent read: the agent's whole view of its cluster per step).
    public func get(prefix: String) throws(EtcdError) -> (kvs: [EtcdKeyValue], revision: Int64) {
        let r: EtcdWire.RangeResponse = try call("/v3/kv/range", EtcdWire.Range(prefix: prefix))
        let kvs = (r.kvs ?? []).map(\.kv)
        guard kvs.allSatisfy({ $0.key.hasPrefix(prefix) }) else {
            throw .malformed("range of prefix \(prefix) answered \(kvs.map(\.key))")
        }
        return (kvs, r.header?.revision ?? 0)
    }

    /// Writes the key (attached to `lease` unless 0); the revision of the write.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) throws(EtcdError) -> Int64 {
        let r: EtcdWire.PutResponse = try call("/v3/kv/put", EtcdWire.Put(key, value, lease: lease))
        guard let revision = r.header?.revision, revision > 0 else { throw .malformed("put answer without a revision") }
        return revision
    }

    /// If every compare holds, runs `success`, else `failure`, atomically.
    public func txn(compare: [EtcdCompare], success: [EtcdOp], failure: [EtcdOp] = []) throws(EtcdError) -> EtcdTxnResult {
        let request = EtcdWire.Txn(compare: compare.map(EtcdWire.Compare.init),
                                   success: success.map(EtcdWire.RequestOp.init),
                                   failure: failure.map(EtcdWire.RequestOp.init))
        let r: EtcdWire.TxnResponse = try call("/v3/kv/txn", request)
        let succeeded = r.succeeded ?? false
        let ran = succeeded ? success : failure
        let gets = try txnGets(r.responses ?? [], ran)
        guard let revision = r.header?.revision, revision > 0 else { throw .malformed("txn answer without a revision") }
        return EtcdTxnResult(succeeded: succeeded, revision: revision, gets: gets)
    }

    /// The kvs of the branch's `.get` ops, matched to the answer's responses one for one.
    private func txnGets(_ responses: [EtcdWire.ResponseOp], _ ran: [EtcdOp]) throws(EtcdError) -> [EtcdKeyValue?] {
        guard responses.count == ran.count else {
            throw .malformed("txn answered \(responses.count) responses for \(ran.count) operations")
        }
        var gets: [EtcdKeyValue?] = []
        for (op, response) in zip(ran, responses) {
            guard case .get(let key) = op else { continue }
            // A range answer with nothing found is `{"header":…}`, never absent.
            guard let range = response.range else { throw .malformed("txn get of \(key) answered without a range") }
            gets.append(try single(range, key))
        }
        return gets
    }

    private func single(_ r: EtcdWire.RangeResponse, _ key: String) throws(EtcdError) -> EtcdKeyValue? {
        let kvs = r.kvs ?? []
        guard kvs.count <= 1, kvs.first.map({ $0.kv.key == key }) ?? true else {
            throw .malformed("range of one key \(key) answered \(kvs.map(\.kv.key))")
        }
        return kvs.first?.kv
    }

    // MARK: transport

    private func call<Request: Encodable, Response: Decodable>(_ path: String, _ request: Request) throws(EtcdError) -> Response {
        try decode(try send(path, request), path)
    }

    /// POSTs the request to each endpoint in turn until one answers (2xx, or an etcd error other
    /// than UNAVAILABLE); the body of the 2xx answer.
    private func send<Request: Encodable>(_ path: String, _ request: Request,
                                          chunked: HTTPConnection.ChunkedBody = .complete) throws(EtcdError) -> [UInt8] {
        let body = EtcdClient.encode(request)
        let first = preferred.withLock { $0 }
        var failures: [String] = []
        for step in 0..<endpoints.count {
            let index = (first + step) % endpoints.count
            let url = endpoints[index].with(path: path)
            do throws(HTTPError) {
                let response = try HTTPConnection.post(url, body: body, timeoutMs: timeoutMs, chunked: chunked)
                preferred.withLock { $0 = index }
                return response.body
            } catch .status(let status, let errorBody) {
                switch EtcdClient.serverError(status: status, body: errorBody) {
                case .server(EtcdClient.grpcUnavailable, let message):
                    failures.append("\(url): \(message)")
                case .server(let code, let message):
                    // etcd answered: this endpoint works, whatever it said.
                    preferred.withLock { $0 = index }
                    throw .server(code: code, message: message)
                case let other:
                    // Not etcd's error format: something else listens there, or a proxy failed.
                    failures.append("\(url): \(other)")
                }
            } catch {
                failures.append("\(url): \(error)")
            }
        }
        throw .unavailable(failures.joined(separator: "; "))
    }

    /// An error answer as etcd's `{"error","message","code"}`, or malformed when it is not one.
    static func serverError(status: Int, body: [UInt8]) -> EtcdError {
        guard let e = try? JSONDecoder().decode(EtcdWire.ErrorBody.self, from: Data(body)) else {
            return .malformed("HTTP \(status): \(String(decoding: body.prefix(512), as: UTF8.self))")
        }
        return .server(code: e.code, message: e.message)
    }

    static func encode<Request: Encodable>(_ request: Request) -> [UInt8] {
        do {
            return [UInt8](try JSONEncoder().encode(request))
        } catch {
            preconditionFailure("encoding \(Request.self) cannot fail: \(error)")
        }
    }

    private func decode<Response: Decodable>(_ body: [UInt8], _ path: String) throws(EtcdError) -> Response {
        do {
            return try JSONDecoder().decode(Response.self, from: Data(body))
        } catch {
            throw .malformed("\(path): \(error); body: \(String(decoding: body.prefix(512), as: UTF8.self))")
        }
    }
}
