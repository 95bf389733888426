import TestSupport
import Foundation
import StockProtocol
import Testing

// MARK: - 4–7. Pipelining, byte-at-a-time streams, garbage, disconnects

extension StockServerTests {
    @Test("10,000 pipelined requests in one write: 10,000 answers, in order, ids matching")
    func pipelined10k() throws {
        let server = try StockdProcess(catalog: "HOT,1000000\nCOLD,5\n")
        let c = try server.connect()
        let forged = Token(slot: 99_999, generation: 1, secret: 42)
        var requests: [(id: UInt32, request: Request)] = []
        for i in 0..<10_000 {
            let id = UInt32(1_000_000 + i * 3)  // distinct, not consecutive
            let r: Request = switch i % 5 {
            case 0: .ping
            case 1: .stockGet(sku("COLD"))
            case 2: .reserve(Reserve(sku: sku("HOT"), quantity: 1))
            case 3: .release(forged)
            default: .stockGet(sku("NOPE"))
            }
            requests.append((id, r))
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(requests.count * 32)
        for (id, r) in requests { bytes += Wire.frame(r, id: id) }
        // One write, sent while the answers are read.
        let sender = c.sendInBackground(bytes)
        let answers = try c.readResponses(requests.count, timeout: 30)
        #expect(sender.wait(timeout: 10) == nil)
        #expect(answers.count == 10_000)
        var reserves: UInt64 = 0
        var mismatches = 0
        for (i, (req, ans)) in zip(requests, answers).enumerated() {
            guard ans.requestID == req.id, ans.opcode == req.request.opcode.rawValue else {
                mismatches += 1
                if mismatches < 5 { Issue.record("answer \(i): \(ans) for request \(req.id) \(req.request.opcode.name)") }
                continue
            }
            let expected: Bool
            switch i % 5 {
            case 0: expected = ans.body == .pong
            case 1: expected = ans.stockInfo == StockInfo(onHand: 5, available: 5, reserved: 0, confirmed: 0)
            case 2:
                reserves += 1
                // One connection, answered in order: the count is exact.
                expected = ans.reservation?.available == 1_000_000 - reserves
            case 3: expected = ans.status == .tokenUnknown
            default: expected = ans.status == .unknownSKU
            }
            if !expected {
                mismatches += 1
                if mismatches < 5 { Issue.record("answer \(i) to \(req.request.opcode.name): \(ans)") }
            }
        }
        #expect(mismatches == 0)
        // Nothing more arrives.
        #expect(c.staysSilent(for: 0.1))
        #expect(try c.info("HOT") == StockInfo(onHand: 1_000_000, available: 1_000_000 - 2_000, reserved: 2_000,
                                              confirmed: 0, reservations: 2_000))
    }

    /// The answers outgrow the socket buffers, so the server queues them
    /// with `uv_write` and stops reading; once the client reads, the queued
    /// writes complete (their callbacks run) and every answer arrives. (A
    /// write callback that read `req->bufs` crashed here: libuv clears it
    /// before the callback of a successful write.)
    @Test("a client that reads nothing for a while: queued answers complete, all 400,000 arrive in order")
    func slowReaderQueuedWrites() throws {
        let server = try StockdProcess()
        let c = try server.connect(timeout: 30)
        var bytes: [UInt8] = []
        let n = 400_000
        bytes.reserveCapacity(n * 12)
        for i in 0..<n { bytes += Wire.frame(.ping, id: UInt32(i + 1)) }
        let sender = c.sendInBackground(bytes)
        sleepSeconds(0.5)  // nothing read: the server's output queue fills, then it stops reading
        let answers = try c.readResponses(n, timeout: 60)
        #expect(sender.wait(timeout: 10) == nil)
        #expect(answers.count == n && answers.last?.requestID == UInt32(n))
        #expect(zip(answers, 1...n).allSatisfy { $0.requestID == UInt32($1) && $0.body == .pong })
        #expect(server.isRunning)
        #expect(try server.connect().ping().body == .pong)
    }

    @Test("a stream fed one byte per send: 50 requests, all answered in order")
    func oneByteAtATime() throws {
        let server = try StockdProcess(catalog: "SKU-A,100\n")
        let c = try server.connect()
        var requests: [(UInt32, Request)] = []
        for i in 0..<50 {
            let r: Request = switch i % 4 {
            case 0: .ping
            case 1: .stockGet(sku("SKU-A"))
            case 2: .reserve(Reserve(sku: sku("SKU-A"), quantity: 1, customer: ShortBytes("c-\(i)")!))
            default: .stockList(StockList(cursor: 0, limit: 10))
            }
            requests.append((UInt32(500 + i), r))
        }
        let bytes = requests.flatMap { Wire.frame($0.1, id: $0.0) }
        for (n, b) in bytes.enumerated() {
            try c.send([b])
            if n % 4 == 0 { sleepSeconds(0.0002) }  // let segments go out one by one
        }
        let answers = try c.readResponses(50, timeout: 10)
        #expect(answers.map(\.requestID) == requests.map(\.0))
        #expect(answers.allSatisfy { $0.status == .ok }, "\(answers.filter { $0.status != .ok })")
        #expect(zip(requests, answers).allSatisfy { $0.1.opcode == $0.0.1.opcode.rawValue })
        #expect(try c.info("SKU-A").reserved == 12)
    }

    @Test("64 KiB of seeded random bytes: the server answers or closes, and stays up")
    func garbage() throws {
        let server = try StockdProcess(catalog: "SKU-A,100\n")
        for seed: UInt64 in [1, 2, 3, 0x5EED] {
            var rng = SplitMix64(seed: seed)
            let junk = rng.bytes(64 * 1024)
            let c = try server.connect()
            let sender = c.sendInBackground(junk)  // may fail once the server closes: fine
            let drain = try c.readUntilClosed(timeout: 5)
            #expect(drain.closed || !drain.responses.isEmpty, "seed \(seed): neither an answer nor a close in 5 s")
            c.shutdownBoth()  // stops the sender before the descriptor is released
            _ = sender.wait(timeout: 10)
            c.close()
            let probe = try server.connect()
            #expect(try probe.ping().body == .pong, "seed \(seed): server down")
        }
        #expect(try server.connect().info("SKU-A").balances)
        #expect(server.isRunning)
    }

    @Test("length prefix 0xFFFFFFFF: FRAME_TOO_LARGE, then EOF")
    func hugeLengthPrefix() throws {
        let server = try StockdProcess()
        let c = try server.connect()
        try c.send([0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0, 0, 0, 0x63, 0, 0, 0])
        let drain = try c.readUntilClosed(timeout: 3)
        #expect(drain.closed)
        #expect(!drain.reset)
        #expect(drain.responses.map(\.status) == [.frameTooLarge])
        #expect(drain.responses.first?.requestID == 0x63)
        #expect(try server.connect().ping().status == .ok)
    }

    @Test("1,000 frames with valid headers and random payloads: exactly one answer each, in order")
    func randomPayloads() throws {
        let server = try StockdProcess(catalog: "SKU-A,100\n")
        let c = try server.connect()
        var rng = SplitMix64(seed: 0xF00D)
        // Every assigned opcode but HELLO (a bad version would close), and a few unassigned.
        let opcodes: [UInt8] = Opcode.allCases.map(\.rawValue).filter { $0 != Opcode.hello.rawValue } + [0x03, 0x7E]
        var bytes: [UInt8] = []
        var ids: [UInt32] = []
        for i in 0..<1_000 {
            let op = opcodes[Int(rng.next() % UInt64(opcodes.count))]
            let payload = rng.bytes(Int(rng.next() % 48))
            let id = UInt32(i + 1)
            ids.append(id)
            bytes += Wire.rawFrame(opcode: op, id: id, payload: payload)
        }
        let sender = c.sendInBackground(bytes)
        let answers = try c.readResponses(ids.count, timeout: 15)
        #expect(sender.wait(timeout: 5) == nil)
        #expect(answers.map(\.requestID) == ids)
        #expect(c.staysSilent(for: 0.1))
        #expect(try c.ping().status == .ok)
        #expect(try c.info("SKU-A").balances)
    }

    @Test("a client that disconnects mid-frame changes nothing")
    func disconnectMidFrame() throws {
        let server = try StockdProcess(catalog: "SKU-A,10\n")
        let watcher = try server.connect()
        let before = try watcher.info("SKU-A")
        let frame = Wire.frame(.reserve(Reserve(sku: sku("SKU-A"), quantity: 3, customer: ShortBytes("x")!)), id: 1)
        // Cut at every byte boundary short of the whole frame.
        for cut in 1..<frame.count {
            let c = try server.connect()
            try c.send(Array(frame.prefix(cut)))
            c.close()
        }
        // And half a frame after a complete one: the complete one counts, the half does not.
        let c = try server.connect()
        try c.send(frame + Array(frame.prefix(frame.count / 2)))
        let answered = try c.readResponse()
        #expect(answered.reservation?.available == 7)
        c.close()

        sleepSeconds(0.1)
        #expect(server.isRunning)
        let after = try watcher.info("SKU-A")
        #expect(after == StockInfo(onHand: before.onHand, available: before.available - 3, reserved: 3, confirmed: 0, reservations: 1))
        let deadline = monotonicSeconds() + 3
        var open = try watcher.stats()["connections.open"]
        while open != 1 && monotonicSeconds() < deadline {
            sleepSeconds(0.02)
            open = try watcher.stats()["connections.open"]
        }
        #expect(open == 1, "connections the clients closed are still counted open")
    }
}
