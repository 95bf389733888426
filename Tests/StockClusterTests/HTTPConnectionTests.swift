import Foundation
import StockCluster
import Testing
import TestSupport

/// The error a call threw, nil when it returned. (The closure throws untyped: Swift 6 does not
/// infer a closure's thrown type from its body, and the API's typed errors convert.)
func httpError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> HTTPError? {
    do {
        _ = try body()
        return nil
    } catch let error as HTTPError {
        return error
    } catch {
        Issue.record("not a HTTPError: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

extension HTTPError {
    /// The case's name, for expectations that do not care about the text.
    var kind: String {
        switch self {
        case .badURL: "badURL"
        case .connect: "connect"
        case .timeout: "timeout"
        case .closed: "closed"
        case .malformed: "malformed"
        case .status: "status"
        }
    }
}

@Suite(.ownThread) struct HTTPConnectionTests {
    func post(_ server: ScriptedHTTPServer, body: String = #"{"a":1}"#, timeoutMs: Int = 3000,
              chunked: HTTPConnection.ChunkedBody = .complete) throws(HTTPError) -> HTTPResponse {
        try HTTPConnection.post(try HTTPURL(server.url), body: Array(body.utf8), timeoutMs: timeoutMs, chunked: chunked)
    }

    @Test func contentLengthBodyAndTheRequestSent() throws {
        let server = try ScriptedHTTPServer(answer: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                            + "Content-Length: 11\r\n\r\n{\"ok\":true}")
        let response = try post(server)
        #expect(response.status == 200)
        #expect(response.headers["content-type"] == "application/json")
        #expect(String(decoding: response.body, as: UTF8.self) == #"{"ok":true}"#)
        let request = server.received
        #expect(request.hasPrefix("POST /v3/test HTTP/1.1\r\n"))
        #expect(request.contains("\r\nHost: 127.0.0.1:\(server.port)\r\n"))
        #expect(request.contains("\r\nContent-Length: 7\r\n"))
        #expect(request.contains("\r\nConnection: close\r\n"))
        #expect(request.hasSuffix("\r\n\r\n{\"a\":1}"))
    }

    /// A response dribbled a few bytes at a time parses as one sent at once.
    @Test func responseSplitAcrossManyReads() throws {
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
        let steps = stride(from: 0, to: text.utf8.count, by: 5).flatMap { i -> [ScriptedHTTPServer.Step] in
            [.write(Array(Array(text.utf8)[i..<min(i + 5, text.utf8.count)])), .sleep(0.005)]
        }
        let response = try post(try ScriptedHTTPServer(steps))
        #expect(response.body == Array("abcdefg".utf8))
    }

    @Test func chunkedCompleteJoinsChunksAndSkipsTrailers() throws {
        let server = try ScriptedHTTPServer(answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                            + "3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nGrpc-Trailer: x\r\n\r\n")
        #expect(try post(server).body == Array("abc0123456789".utf8))
    }

    /// A stream that never ends: the first chunk comes back at once, not at the timeout.
    @Test func chunkedFirstChunkOfAStreamThatStaysOpen() throws {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        let server = try ScriptedHTTPServer([.write(Array((head + "6\r\nfirst\n\r\n").utf8)), .hold])
        defer { server.stop() }
        let t0 = monotonicSeconds()
        let response = try post(server, timeoutMs: 5000, chunked: .firstChunk)
        #expect(response.body == Array("first\n".utf8))
        #expect(monotonicSeconds() - t0 < 2)
    }

    @Test func chunkedWithoutTheLastChunkIsClosed() throws {
        let server = try ScriptedHTTPServer(answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        #expect(httpError { try post(server) }?.kind == "closed")
    }

    @Test func bodyUntilCloseWithoutLength() throws {
        let server = try ScriptedHTTPServer(answer: "HTTP/1.0 200 OK\r\n\r\nto the end")
        #expect(try post(server).body == Array("to the end".utf8))
    }

    @Test func errorStatusCarriesItsBody() throws {
        let body = #"{"error":"x","message":"x","code":5}"#
        let server = try ScriptedHTTPServer(answer: "HTTP/1.1 404 Not Found\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
        #expect(httpError { try post(server) } == .status(code: 404, body: Array(body.utf8)))
    }

    @Test func oversizedHeadIsRefused() throws {
        let line = "X-Filler: " + String(repeating: "y", count: 100) + "\r\n"
        let head = "HTTP/1.1 200 OK\r\n" + String(repeating: line, count: 200)
        let server = try ScriptedHTTPServer([.write(Array(head.utf8)), .hold])
        defer { server.stop() }
        let error = httpError { try post(server) }
        #expect(error?.kind == "malformed" && error?.description.contains("16384") == true, "\(String(describing: error))")
    }

    @Test func oversizedBodyIsRefusedBeforeReading() throws {
        let server = try ScriptedHTTPServer([.write(Array("HTTP/1.1 200 OK\r\nContent-Length: 4194305\r\n\r\n".utf8)), .hold])
        defer { server.stop() }
        #expect(httpError { try post(server) }?.kind == "malformed")
    }

    @Test func oversizedChunkedBodyIsRefused() throws {
        let server = try ScriptedHTTPServer([.write(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400001\r\n".utf8)), .hold])
        defer { server.stop() }
        #expect(httpError { try post(server) }?.kind == "malformed")
    }

    @Test(arguments: [
        "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "hello\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    ])
    func malformedResponses(_ text: String) throws {
        let server = try ScriptedHTTPServer(answer: text)
        let error = httpError { try post(server) }
        #expect(error?.kind == "malformed", "\(String(describing: error))")
    }

    /// Accepted, never answered: the receive times out at the deadline.
    @Test func serverThatNeverAnswersTimesOut() throws {
        let server = try ScriptedHTTPServer([.hold])
        defer { server.stop() }
        let t0 = monotonicSeconds()
        let error = httpError { try post(server, timeoutMs: 300) }
        let elapsed = monotonicSeconds() - t0
        #expect(error?.kind == "timeout", "\(String(describing: error))")
        #expect(elapsed >= 0.29 && elapsed < 2, "\(elapsed) s")
    }

    /// A response that starts and then stalls times out too: one deadline covers the whole exchange.
    @Test func responseThatStallsTimesOut() throws {
        let server = try ScriptedHTTPServer([.write(Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".utf8)), .hold])
        defer { server.stop() }
        let error = httpError { try post(server, timeoutMs: 300) }
        #expect(error?.kind == "timeout", "\(String(describing: error))")
    }

    /// Listening, never accepting: the kernel completes the connect and buffers the request.
    @Test func listenerThatNeverAcceptsTimesOut() throws {
        let server = try ScriptedHTTPServer([], accept: false)
        defer { server.stop() }
        let t0 = monotonicSeconds()
        let error = httpError { try post(server, timeoutMs: 300) }
        #expect(error?.kind == "timeout", "\(String(describing: error))")
        #expect(monotonicSeconds() - t0 < 2)
    }

    @Test func refusedConnect() throws {
        let port = try unusedPort()
        let error = httpError {
            try HTTPConnection.post(try HTTPURL("http://127.0.0.1:\(port)/"), body: [], timeoutMs: 1000)
        }
        #expect(error?.kind == "connect", "\(String(describing: error))")
    }

    @Test func urls() throws {
        let u = try HTTPURL("http://127.0.0.1:2379")
        #expect(u.host == "127.0.0.1" && u.port == 2379 && u.path == "/")
        let l = try HTTPURL("http://localhost:8080/v3/kv/range")
        #expect(l.host == "127.0.0.1" && l.port == 8080 && l.path == "/v3/kv/range")
        #expect(try HTTPURL("http://10.1.2.3").port == 80)
        #expect(l.with(path: "/x").description == "http://127.0.0.1:8080/x")
        for bad in ["https://127.0.0.1:2379", "http://[::1]:2379", "http://etcd.local:2379", "127.0.0.1:2379",
                    "http://127.0.0.1:0", "http://127.0.0.1:70000", "http://127.0.0.1:x", "http://"] {
            #expect(httpError { try HTTPURL(bad) }?.kind == "badURL", "\(bad)")
        }
    }
}
