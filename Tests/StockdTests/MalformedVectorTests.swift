import Foundation
import StockProtocol
import Testing
import TestSupport

// MARK: - 3. protocol/vectors/malformed.json against the server

extension StockServerTests {
    @Test("malformed.json: every vector, each on a fresh connection")
    func malformedVectorsOneByOne() throws {
        let vectors = try MalformedVector.load()
        #expect(vectors.count > 50, "malformed.json has \(vectors.count) vectors")
        // A catalog so that well-formed-but-odd requests have something to hit.
        let server = try StockdProcess(catalog: "JACKET-RED-M,100\n")
        var checked = 0
        for v in vectors {
            let c = try server.connect()
            switch v.error {
            case "need_more":
                // Not a frame yet: no answer, the connection stays open; then we go away.
                if !v.bytes.isEmpty { try c.send(v.bytes) }
                #expect(c.staysSilent(for: 0.05), "\(v): the server answered or closed")
                c.close()
            case "length_too_small":
                try c.send(v.bytes)
                let drain = try c.readUntilClosed(timeout: 3)
                #expect(drain.closed, "\(v): connection not closed")
                #expect(!drain.reset, "\(v): reset instead of EOF")
                #expect(drain.responses.map(\.status) == [.malformed], "\(v): \(drain.responses)")
                #expect(drain.responses.first?.requestID == 0, "\(v)")
            case "too_large":
                try c.send(v.bytes)
                let drain = try c.readUntilClosed(timeout: 3)
                #expect(drain.closed, "\(v): connection not closed")
                #expect(!drain.reset, "\(v): reset instead of EOF")
                #expect(drain.responses.map(\.status) == [.frameTooLarge], "\(v): \(drain.responses)")
                #expect(drain.responses.first?.requestID == v.requestID, "\(v)")
                #expect(drain.responses.first?.detail == .frameTooLarge(maxFrame: 65_536), "\(v)")
            default:
                let status = try #require(v.status, "\(v): unknown error \(v.error)")
                try c.send(v.bytes)
                let r = try c.readResponse(timeout: 3)
                #expect(r.status == status, "\(v): answered \(r.status.name)")
                #expect(r.requestID == v.requestID, "\(v)")
                #expect(r.opcode == v.bytes[4], "\(v): the answer must repeat the opcode byte")
                if status == .ttlTooLong {
                    #expect(r.detail == .ttlTooLong(maxTTLMs: 3_600_000), "\(v)")
                }
                if !status.closesConnection {
                    #expect(try c.ping().body == .pong, "\(v): connection not kept")
                }
            }
            checked += 1
        }
        #expect(checked == vectors.count)
        // Nothing happened to the stock, and the server is up.
        let after = try server.connect()
        #expect(try after.info("JACKET-RED-M") == StockInfo(onHand: 100, available: 100, reserved: 0, confirmed: 0))
    }

    @Test("malformed.json: every status vector pipelined on one connection, answered in order")
    func malformedVectorsPipelined() throws {
        let vectors = try MalformedVector.load().filter { v in
            guard let s = v.status else { return false }
            // HELLO vectors are left out: whether a bad HELLO after other requests
            // is judged on its fields or as out of order is not pinned down by §4.
            return !s.closesConnection && v.bytes[4] != Opcode.hello.rawValue
        }
        #expect(vectors.count > 40)
        let server = try StockdProcess(catalog: "JACKET-RED-M,100\n")
        let c = try server.connect()
        try c.send(vectors.flatMap(\.bytes) + Wire.frame(.ping, id: 0xABCD))
        let answers = try c.readResponses(vectors.count + 1)
        for (v, r) in zip(vectors, answers) {
            #expect(r.status == v.status, "\(v): answered \(r.status.name)")
            #expect(r.requestID == v.requestID, "\(v)")
        }
        #expect(answers.last == Response(requestID: 0xABCD, opcode: Opcode.ping.rawValue, body: .pong))
    }

    @Test("need_more vectors then a close leave the server up and the stock untouched")
    func needMoreThenClose() throws {
        let vectors = try MalformedVector.load().filter { $0.error == "need_more" }
        #expect(!vectors.isEmpty)
        let server = try StockdProcess(catalog: "JACKET-RED-M,100\n")
        for v in vectors {
            let c = try server.connect()
            if !v.bytes.isEmpty { try c.send(v.bytes) }
            c.close()
        }
        let c = try server.connect()
        #expect(try c.ping().body == .pong)
        #expect(try c.info("JACKET-RED-M") == StockInfo(onHand: 100, available: 100, reserved: 0, confirmed: 0))
        // All those connections are gone (the server noticed the closes).
        let deadline = monotonicSeconds() + 3
        var open = try c.stats()["connections.open"]
        while open != 1 && monotonicSeconds() < deadline {
            sleepSeconds(0.02)
            open = try c.stats()["connections.open"]
        }
        #expect(open == 1)
    }
}
