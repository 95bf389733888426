import BenchSupport
import StockBenchRedis
import Testing
import TestSupport

// RedisWire without a server: the RESP reply parser (every reply kind, split
// anywhere, malformed input) and the EVALSHA encoder (exact bytes).

let shaR = String(repeating: "a", count: 40)
let shaC = String(repeating: "c", count: 40)
let shaL = String(repeating: "e", count: 40)

func makeWire(_ skus: [String] = ["SKU-0001", "SKU-0002"]) -> RedisWire {
    RedisWire(skus: skus, reserveSHA: shaR, confirmSHA: shaC, releaseSHA: shaL)
}

/// Feeds `chunks` to `wire` in order; returns the replies and whether every call succeeded.
func feed(_ wire: inout RedisWire, _ chunks: [[UInt8]]) -> (replies: [BenchReply], ok: Bool) {
    var replies: [BenchReply] = []
    for chunk in chunks {
        let ok = chunk.withUnsafeBytes { wire.consume($0) { replies.append($0) } }
        if !ok { return (replies, false) }
    }
    return (replies, true)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A small seeded generator, so a random test replays from its seed.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Every reply kind the parser must handle, with what it maps to.
let replyCases: [(resp: String, reply: BenchReply)] = [
    ("*3\r\n:0\r\n:4\r\n:1795748747591\r\n", .reserved(token: .zero, available: 4)),
    ("*3\r\n:0\r\n:0\r\n:1795748747591\r\n", .reserved(token: .zero, available: 0)),
    ("*2\r\n:1\r\n:0\r\n", .outOfStock(available: 0)),
    ("*2\r\n:1\r\n:-3\r\n", .outOfStock(available: -3)),
    ("*1\r\n:2\r\n", .failed(code: 2)),
    ("*1\r\n:3\r\n", .failed(code: 3)),
    ("*1\r\n:4\r\n", .tokenGone),
    ("*1\r\n:5\r\n", .tokenGone),
    ("*1\r\n:6\r\n", .tokenGone),
    ("*1\r\n:7\r\n", .tokenGone),
    ("*1\r\n:8\r\n", .failed(code: 8)),
    ("*2\r\n:9\r\n:1\r\n", .confirmed),
    ("*2\r\n:10\r\n:12\r\n", .released),
    ("-NOSCRIPT No matching script. Please use EVAL.\r\n", .failed(code: -1)),
    ("-ERR Error running script (call to f_x): @user_script:1: oops\r\n", .failed(code: -1)),
    ("-\r\n", .failed(code: -1)),
    // Well-formed RESP no script gives: unexpected.
    ("+OK\r\n", .failed(code: -2)),
    ("+\r\n", .failed(code: -2)),
    (":42\r\n", .failed(code: -2)),
    (":-42\r\n", .failed(code: -2)),
    ("$5\r\nhello\r\n", .failed(code: -2)),
    ("$0\r\n\r\n", .failed(code: -2)),
    ("$4\r\na\r\nb\r\n", .failed(code: -2)),  // bulk strings are binary: CRLF inside
    ("$-1\r\n", .failed(code: -2)),
    ("*-1\r\n", .failed(code: -2)),
    ("*0\r\n", .failed(code: -2)),
    ("*2\r\n*2\r\n:1\r\n$3\r\nabc\r\n:0\r\n", .failed(code: -2)),  // nested array
    ("*3\r\n*1\r\n*1\r\n*0\r\n$-1\r\n*-1\r\n", .failed(code: -2)),  // deeper nesting, nulls inside
    ("*2\r\n$1\r\n0\r\n:1\r\n", .failed(code: -2)),  // status as a bulk string
    ("*2\r\n:0\r\n:1\r\n", .failed(code: -2)),  // status 0 with the wrong length
    ("*3\r\n:9\r\n:1\r\n:1\r\n", .failed(code: -2)),  // status 9 with the wrong length
    ("*1\r\n:11\r\n", .failed(code: -2)),  // unknown status
    ("*2\r\n:1\r\n+x\r\n", .failed(code: -2)),  // second element not an integer
    ("*2\r\n:1\r\n-ERR inside\r\n", .failed(code: -2)),
]

@Suite("RedisWire reply parser", .ownThread)
struct RedisWireParserTests {
    @Test("each reply kind alone")
    func eachKind() {
        for c in replyCases {
            var wire = makeWire()
            let r = feed(&wire, [bytes(c.resp)])
            #expect(r.ok, "\(c.resp.debugDescription)")
            #expect(r.replies == [c.reply], "\(c.resp.debugDescription)")
            #expect(wire.carriedBytes == 0)
        }
    }

    @Test("all kinds pipelined in one read")
    func allInOneRead() {
        var wire = makeWire()
        let stream = replyCases.map(\.resp).joined()
        let r = feed(&wire, [bytes(stream)])
        #expect(r.ok)
        #expect(r.replies == replyCases.map(\.reply))
        #expect(wire.carriedBytes == 0)
    }

    @Test("every reply fed one byte at a time")
    func byteByByte() {
        var wire = makeWire()
        let stream = bytes(replyCases.map(\.resp).joined())
        var replies: [BenchReply] = []
        for (i, b) in stream.enumerated() {
            let ok = [b].withUnsafeBytes { wire.consume($0) { replies.append($0) } }
            #expect(ok, "byte \(i)")
        }
        #expect(replies == replyCases.map(\.reply))
        #expect(wire.carriedBytes == 0)
    }

    @Test("a reply is delivered exactly when its last byte arrives")
    func deliveredOnLastByte() {
        for c in replyCases {
            var wire = makeWire()
            let b = bytes(c.resp)
            var replies: [BenchReply] = []
            for i in 0..<b.count {
                #expect([b[i]].withUnsafeBytes { wire.consume($0) { replies.append($0) } })
                #expect(replies.count == (i == b.count - 1 ? 1 : 0), "\(c.resp.debugDescription) at byte \(i)")
            }
        }
    }

    @Test("1000 pipelined replies split at random boundaries", arguments: [1 as UInt64, 7, 42, 2024, 0xDEAD_BEEF])
    func randomSplits(seed: UInt64) {
        var rng = SeededRNG(state: seed)
        var stream: [UInt8] = []
        var expected: [BenchReply] = []
        for _ in 0..<1000 {
            let c = replyCases[Int.random(in: 0..<replyCases.count, using: &rng)]
            stream += bytes(c.resp)
            expected.append(c.reply)
        }
        // Chunks from 1 byte to a few replies long.
        var chunks: [[UInt8]] = []
        var at = 0
        while at < stream.count {
            let n = min(stream.count - at, Int.random(in: 1...120, using: &rng))
            chunks.append(Array(stream[at..<(at + n)]))
            at += n
        }
        var wire = makeWire()
        let r = feed(&wire, chunks)
        #expect(r.ok)
        #expect(r.replies == expected)
        #expect(wire.carriedBytes == 0)
    }

    @Test("a large bulk reply split across many reads, up to the 64 KiB limit")
    func largeReply() {
        let body = String(repeating: "x", count: RedisWire.maxReplyBytes - 20)
        let resp = bytes("$\(body.utf8.count)\r\n\(body)\r\n*2\r\n:9\r\n:1\r\n")
        var chunks: [[UInt8]] = []
        var at = 0
        while at < resp.count {
            let n = min(resp.count - at, 4096)
            chunks.append(Array(resp[at..<(at + n)]))
            at += n
        }
        var wire = makeWire()
        let r = feed(&wire, chunks)
        #expect(r.ok)
        #expect(r.replies == [.failed(code: -2), .confirmed])
    }

    @Test("a copied wire does not share the carry buffer")
    func copiesAreIndependent() {
        var a = makeWire()
        #expect(feed(&a, [bytes("*2\r\n:9")]).ok)
        var b = a
        let rb = feed(&b, [bytes("\r\n:1\r\n")])
        #expect(rb.replies == [.confirmed])
        let ra = feed(&a, [bytes("9\r\n:1\r\n")])  // a continues ":99" — a different reply
        #expect(ra.ok)
        #expect(ra.replies == [.failed(code: -2)])
    }

    /// A malformed input, shown escaped in test names.
    struct Bad: CustomTestStringConvertible, Sendable {
        let text: String
        var testDescription: String { text.debugDescription }
    }

    static let malformed: [Bad] = [
        "?x\r\n",  // unknown type byte
        "_\r\n",  // RESP3 null: not spoken here (no HELLO 3)
        ":12a\r\n",
        ":\r\n",
        ":-\r\n",
        ":99999999999999999999\r\n",  // overflows Int64
        "*1\r\n:1\r\r",  // CR not followed by LF
        "+OK\rX",
        "$3\r\nabcXY",  // bulk not followed by CRLF
        "$-5\r\n",
        "*-2\r\n",
        "$70000\r\n",  // a bulk longer than the carry buffer
        "*2\r\n:0\r\n?\r\n",  // bad element
        "*1\r\n*1\r\n!x\r\n",  // bad nested element
        "*100000\r\n",  // more elements than could fit in 64 KiB
    ].map(Bad.init)

    @Test("malformed input is a protocol error", arguments: malformed)
    func malformedInput(_ bad: Bad) {
        let input = bad.text
        var wire = makeWire()
        #expect(!feed(&wire, [bytes(input)]).ok)
        // The same, one byte at a time.
        var wire2 = makeWire()
        #expect(!feed(&wire2, bytes(input).map { [$0] }).ok)
    }

    @Test("replies before a malformed one are still delivered")
    func goodThenBad() {
        var wire = makeWire()
        let r = feed(&wire, [bytes("*2\r\n:9\r\n:1\r\n*1\r\n:4\r\n#t\r\n")])
        #expect(!r.ok)
        #expect(r.replies == [.confirmed, .tokenGone])
    }

    @Test("a reply over 64 KiB is a protocol error, whichever way it arrives")
    func oversized() {
        // A simple string that never ends, in 1 KiB reads.
        var wire = makeWire()
        var ok = true
        var reads = 0
        ok = feed(&wire, [bytes("+")]).ok
        while ok && reads < 200 {
            ok = feed(&wire, [[UInt8](repeating: UInt8(ascii: "y"), count: 1024)]).ok
            reads += 1
        }
        #expect(!ok)
        #expect(reads <= 65)
        // An array of many small elements (80,008 bytes), complete in one read.
        var big = "*20000\r\n"
        for _ in 0..<20000 { big += ":1\r\n" }
        var wire2 = makeWire()
        #expect(!feed(&wire2, [bytes(big)]).ok)
        // The same in 1000-byte reads.
        var wire3 = makeWire()
        let b = bytes(big)
        #expect(!feed(&wire3, stride(from: 0, to: b.count, by: 1000).map { Array(b[$0..<min($0 + 1000, b.count)]) }).ok)
    }
}

@Suite("RedisWire encoder", .ownThread)
struct RedisWireEncoderTests {
    static let token = BenchToken(hi: 0x0123_4567_89AB_CDEF, lo: 0xFEDC_BA98_7654_3210)
    static let hex = "0123456789abcdeffedcba9876543210"

    func encode(_ op: BenchOp, wire: inout RedisWire) -> String {
        var out = OutBuffer(capacity: wire.maxRequestBytes)
        defer { out.deallocate() }
        wire.encode(op, into: &out)
        return String(decoding: UnsafeRawBufferPointer(start: out.base, count: out.count), as: UTF8.self)
    }

    func resp(_ args: [String]) -> String {
        "*\(args.count)\r\n" + args.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
    }

    @Test("token hex is hi then lo, big-endian, lowercase")
    func hex() {
        #expect(RedisKeys.hex(Self.token) == Self.hex)
        #expect(RedisKeys.hex(.zero) == String(repeating: "0", count: 32))
        #expect(RedisKeys.hex(BenchToken(hi: 0, lo: 1)) == String(repeating: "0", count: 31) + "1")
    }

    @Test("reserve is EVALSHA with 4 keys, exactly")
    func reserve() {
        var wire = makeWire()
        let got = encode(.reserve(sku: 1, quantity: 3, ttlMs: 90000, token: Self.token), wire: &wire)
        #expect(got == resp(["EVALSHA", shaR, "4", "avail:{SKU-0002}", "held:{SKU-0002}", "tok:{\(Self.hex)}",
                             "deadlines", "SKU-0002", "3", "90000", Self.hex]))
        let zero = encode(.reserve(sku: 0, quantity: 0, ttlMs: 0, token: .zero), wire: &wire)
        let z = String(repeating: "0", count: 32)
        #expect(zero == resp(["EVALSHA", shaR, "4", "avail:{SKU-0001}", "held:{SKU-0001}", "tok:{\(z)}",
                              "deadlines", "SKU-0001", "0", "0", z]))
    }

    @Test("the largest reserve fits maxRequestBytes exactly")
    func largest() {
        var wire = makeWire(["A", "A-MUCH-LONGER-SKU-NAME-0001"])
        let got = encode(.reserve(sku: 1, quantity: .max, ttlMs: .max, token: Self.token), wire: &wire)
        #expect(got == resp(["EVALSHA", shaR, "4", "avail:{A-MUCH-LONGER-SKU-NAME-0001}",
                             "held:{A-MUCH-LONGER-SKU-NAME-0001}", "tok:{\(Self.hex)}", "deadlines",
                             "A-MUCH-LONGER-SKU-NAME-0001", "4294967295", "4294967295", Self.hex]))
        #expect(got.utf8.count == wire.maxRequestBytes)
        let c = encode(.confirm(sku: 1, token: Self.token), wire: &wire)
        #expect(c.utf8.count <= wire.maxRequestBytes)
    }

    @Test("confirm and release are EVALSHA with 5 keys, exactly")
    func decisions() {
        var wire = makeWire()
        let keys = ["tok:{\(Self.hex)}", "avail:{SKU-0001}", "held:{SKU-0001}", "sold:{SKU-0001}", "deadlines"]
        #expect(encode(.confirm(sku: 0, token: Self.token), wire: &wire)
                == resp(["EVALSHA", shaC, "5"] + keys + [Self.hex]))
        #expect(encode(.release(sku: 0, token: Self.token), wire: &wire)
                == resp(["EVALSHA", shaL, "5"] + keys + [Self.hex]))
    }

    @Test("requests append back to back", arguments: [1 as UInt32, 9, 10, 99, 100, 12345, 1_000_000])
    func appends(quantity: UInt32) {
        var wire = makeWire()
        var out = OutBuffer(capacity: wire.maxRequestBytes * 3)
        defer { out.deallocate() }
        wire.encode(.reserve(sku: 0, quantity: quantity, ttlMs: quantity, token: Self.token), into: &out)
        wire.encode(.confirm(sku: 1, token: .zero), into: &out)
        wire.encode(.release(sku: 0, token: Self.token), into: &out)
        let got = String(decoding: UnsafeRawBufferPointer(start: out.base, count: out.count), as: UTF8.self)
        let z = String(repeating: "0", count: 32)
        let want = resp(["EVALSHA", shaR, "4", "avail:{SKU-0001}", "held:{SKU-0001}", "tok:{\(Self.hex)}",
                         "deadlines", "SKU-0001", "\(quantity)", "\(quantity)", Self.hex])
            + resp(["EVALSHA", shaC, "5", "tok:{\(z)}", "avail:{SKU-0002}", "held:{SKU-0002}", "sold:{SKU-0002}",
                    "deadlines", z])
            + resp(["EVALSHA", shaL, "5", "tok:{\(Self.hex)}", "avail:{SKU-0001}", "held:{SKU-0001}",
                    "sold:{SKU-0001}", "deadlines", Self.hex])
        #expect(got == want)
    }
}
