import Foundation
@testable import StockCluster
import Testing
import TestSupport

/// The gateway's JSON as etcd 3.4.23 wrote it (captured with curl), decoded without an etcd.
@Suite(.ownThread) struct EtcdWireTests {
    func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(json.utf8))
    }

    @Test func int64sAreStringsAndAbsentMeansZero() throws {
        let range = try decode(EtcdWire.RangeResponse.self, """
            {"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"5","raft_term":"2"},\
            "kvs":[{"key":"Yw==","create_revision":"5","mod_revision":"5","version":"1"}],"count":"1"}
            """)
        #expect(range.header?.revision == 5)
        #expect(range.kvs?.map(\.kv) == [EtcdKeyValue(key: "c", value: [], createRevision: 5, modRevision: 5, version: 1, lease: 0)])
        let empty = try decode(EtcdWire.RangeResponse.self, #"{"header":{"revision":"1"}}"#)
        #expect(empty.kvs == nil)
        // Numbers where strings are expected are read too.
        #expect(try decode(EtcdWire.Header.self, #"{"revision":7}"#).revision == 7)
    }

    @Test func failedTxnHasNoSucceededField() throws {
        let txn = try decode(EtcdWire.TxnResponse.self, """
            {"header":{"revision":"3"},"responses":[{"response_range":{"header":{"revision":"3"},\
            "kvs":[{"key":"Yw==","create_revision":"3","mod_revision":"3","version":"1","value":"MQ=="}],"count":"1"}}]}
            """)
        #expect(txn.succeeded == nil)
        #expect(txn.responses?.first?.range?.kvs?.first?.kv.value == Array("1".utf8))
    }

    @Test func keepAliveShapes() throws {
        let live = try decode(EtcdWire.KeepAliveMessage.self, #"{"result":{"header":{"revision":"1"},"ID":"4111120414820120326","TTL":"2"}}"#)
        #expect(live.result?.id == 4_111_120_414_820_120_326 && live.result?.ttl == 2 && live.error == nil)
        // A lease etcd does not know: a result without TTL (and for ID 0 without ID), not an error.
        let gone = try decode(EtcdWire.KeepAliveMessage.self, #"{"result":{"header":{"revision":"1"},"ID":"123"}}"#)
        #expect(gone.result?.ttl == 0)
        let nested = try decode(EtcdWire.KeepAliveMessage.self,
                                #"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#)
        #expect(nested.error?.code == 14 && nested.error?.message == "etcdserver: no leader")
        let flat = try decode(EtcdWire.KeepAliveMessage.self, #"{"error":"bad","message":"bad","code":3}"#)
        #expect(flat.error?.code == 3 && flat.error?.message == "bad")
    }

    @Test func errorBodies() {
        let body = Array(#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#.utf8)
        #expect(EtcdClient.serverError(status: 404, body: body) == .server(code: 5, message: "etcdserver: requested lease not found"))
        // The gateway's mux answers an unknown path in plain text: not etcd's error, so malformed.
        guard case .malformed = EtcdClient.serverError(status: 404, body: Array("Not Found\n".utf8)) else {
            Issue.record("a plain-text 404 is not an etcd error")
            return
        }
    }

    @Test func requestsAsTheGatewayReadsThem() throws {
        let txn = EtcdWire.Txn(compare: [EtcdWire.Compare(.createRevision(key: "a", equals: 0)),
                                         EtcdWire.Compare(.value(key: "a", equals: [1]))],
                               success: [EtcdWire.RequestOp(.put(key: "a", value: [0x61], lease: 42))],
                               failure: [EtcdWire.RequestOp(.get(key: "a")), EtcdWire.RequestOp(.delete(key: "a"))])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(EtcdClient.encode(txn))) as? [String: Any])
        let compare = try #require(json["compare"] as? [[String: String]])
        #expect(compare == [["key": "YQ==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"],
                            ["key": "YQ==", "target": "VALUE", "result": "EQUAL", "value": "AQ=="]])
        let success = try #require(json["success"] as? [[String: [String: String]]])
        #expect(success == [["request_put": ["key": "YQ==", "value": "YQ==", "lease": "42"]]])
        let failure = try #require(json["failure"] as? [[String: [String: String]]])
        #expect(failure == [["request_range": ["key": "YQ=="]], ["request_delete_range": ["key": "YQ=="]]])
        let unleased = String(decoding: EtcdClient.encode(EtcdWire.Put("a", [], lease: 0)), as: UTF8.self)
        #expect(!unleased.contains("lease"))
        #expect(String(decoding: EtcdClient.encode(EtcdWire.LeaseID(id: -1)), as: UTF8.self) == #"{"ID":"-1"}"#)
    }
}
