import TestSupport
import Testing
@testable import StockProtocol


/// Random valid protocol values.
struct Gen {
    var rng: SplitMix64
    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func u8() -> UInt8 { UInt8.random(in: .min ... .max, using: &rng) }
    mutating func u16() -> UInt16 { UInt16.random(in: .min ... .max, using: &rng) }
    mutating func u32() -> UInt32 { UInt32.random(in: .min ... .max, using: &rng) }
    mutating func u64() -> UInt64 { rng.next() }
    mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }
    /// Often a boundary value, otherwise uniform in `range`.
    mutating func pick<T: FixedWidthInteger>(_ range: ClosedRange<T>) -> T {
        switch int(0...9) {
        case 0: range.lowerBound
        case 1: range.upperBound
        default: T.random(in: range, using: &rng)
        }
    }

    /// One Unicode scalar that is neither a control character nor a surrogate,
    /// encoded as 1 to 4 UTF-8 bytes.
    mutating func scalarUTF8() -> [UInt8] {
        let scalar: UInt32
        switch int(0...9) {
        case 0...4: scalar = UInt32(int(0x20...0x7E))
        case 5, 6: scalar = UInt32(int(0x80...0x7FF))  // includes C1 (U+0080–U+009F): allowed by the spec's byte rule
        case 7, 8:
            var s = UInt32(int(0x800...0xFFFF))
            if (0xD800...0xDFFF).contains(s) { s -= 0x1000 }
            scalar = s
        default: scalar = UInt32(int(0x1_0000...0x10_FFFF))
        }
        return Array(String(Character(Unicode.Scalar(scalar)!)).utf8)
    }

    /// Valid text (UTF-8, no control characters) of `minCount...maxCount` bytes.
    mutating func text(_ minCount: Int, _ maxCount: Int) -> [UInt8] {
        let target = int(minCount...maxCount)
        var out = [UInt8]()
        while out.count < target {
            let s = scalarUTF8()
            if out.count + s.count > target {
                out.append(contentsOf: Array(repeating: UInt8(ascii: "x"), count: target - out.count))
            } else {
                out.append(contentsOf: s)
            }
        }
        return out
    }

    mutating func sku() -> SKU { ShortBytes(bytes: text(1, 64))! }
    mutating func opaque(_ maxCount: Int = 64) -> [UInt8] {
        if chance(30) { return [] }
        return (0..<int(0...maxCount)).map { _ in u8() }
    }
    mutating func optionalShort() -> ShortBytes { ShortBytes(bytes: opaque())! }
    mutating func optionalText() -> ShortBytes { chance(30) ? .empty : ShortBytes(bytes: text(0, 64))! }
    mutating func token() -> Token { Token(slot: u32(), generation: u32(), secret: u64()) }
    mutating func quantity() -> UInt32 { pick(1...Limits.maxQuantity) }
    mutating func ttl() -> UInt32 { pick(0...Limits.maxTTLCeilingMs) }
    mutating func stock() -> UInt64 { pick(0...Limits.maxStock) }

    mutating func request() -> Request {
        switch clientOpcodes[int(0...(clientOpcodes.count - 1))] {
        case .hello:
            return .hello(Hello(version: u16(), clientName: text(0, 64), credential: opaque(255)))
        case .ping: return .ping
        case .reserve:
            return .reserve(Reserve(sku: sku(), quantity: quantity(), ttlMs: ttl(), customer: optionalShort(),
                                    idempotencyKey: optionalShort()))
        case .reserveBundle:
            var lines = [BundleLine]()
            let n = int(1...Limits.maxBundleLines)
            while lines.count < n {
                let s = sku()
                if !lines.contains(where: { $0.sku == s }) { lines.append(BundleLine(sku: s, quantity: quantity())) }
            }
            return .reserveBundle(ReserveBundle(lines: lines, ttlMs: ttl(), customer: optionalShort(),
                                                idempotencyKey: optionalShort()))
        case .confirm:
            return .confirm(Confirm(token: token(), quantity: pick(0...Limits.maxQuantity),
                                    orderReference: optionalText()))
        case .release: return .release(token())
        case .extend: return .extend(Extend(token: token(), ttlMs: ttl()))
        case .stockSet:
            return .stockSet(StockSet(sku: sku(), onHand: stock(), expectedOnHand: chance(50) ? stock() : nil,
                                      lowStockThreshold: chance(50) ? u32() : nil,
                                      perCustomerLimit: chance(50) ? u32() : nil))
        case .stockAdjust:
            var delta = Int64(pick(1...Limits.maxStock))
            if chance(50) { delta = -delta }
            return .stockAdjust(StockAdjust(sku: sku(), delta: delta,
                                            reason: AdjustReason.allCases[int(0...(AdjustReason.allCases.count - 1))]))
        case .stockGet: return .stockGet(sku())
        case .stockList: return .stockList(StockList(cursor: u32(), limit: pick(0...Limits.maxListPage)))
        case .backupRelease: return .backupRelease(BackupMove(sku: sku(), quantity: stock()))
        case .backupHold: return .backupHold(BackupMove(sku: sku(), quantity: pick(1...Limits.maxStock)))
        case .stage:
            // Few lines, so that a frame stays within the default max_frame the pipelined decoder uses.
            var lines = [StageLine]()
            let n = int(1...40)
            while lines.count < n {
                let s = sku()
                guard !lines.contains(where: { $0.sku == s }) else { continue }
                let onHand = stock()
                lines.append(StageLine(sku: s, onHand: onHand, backup: pick(0...onHand), lowStockThreshold: u32(),
                                       perCustomerLimit: u32()))
            }
            return .stage(Stage(lines: lines))
        case .stats: return .stats
        case .subscribe:
            let from: UInt64 = switch int(0...3) {
            case 0: Limits.feedFromOldest
            case 1: Limits.feedFromNow
            default: u64()
            }
            return .subscribe(Subscribe(from: from, credit: pick(0...Limits.maxFeedCredit),
                                        kinds: chance(30) ? 0 : u16() & EventKind.allKindsMask,
                                        skuPrefix: optionalText()))
        case .credit: return .credit(pick(1...Limits.maxFeedCredit))
        case .replHello:
            return .replHello(ReplHello(fingerprint: u64(), highestEpoch: u64(), lastEpoch: u64(), lastSeq: u64(),
                                        node: name(), cluster: name()))
        case .replAck: return .replAck(ReplAck(epoch: u64(), durable: u64()))
        case .role:
            return chance(50) ? .role(RoleChange(role: .primary, epoch: pick(1...UInt64.max)))
                : .role(RoleChange(role: .standby, epoch: pick(1...UInt64.max), primary: name()))
        case .fence: return .fence(untilNs: u64())
        case .isrSet:
            var nodes = [ShortBytes]()
            let n = int(0...Limits.maxStandbys)
            while nodes.count < n {
                let node = name()
                if !nodes.contains(node) { nodes.append(node) }
            }
            return .isrSet(ISRSet(epoch: pick(1...UInt64.max), nodes: nodes))
        case .clusterStatus: return .clusterStatus
        case .event, .replRound, .replSnapshot:
            preconditionFailure("server to client only: clientOpcodes leaves it out")
        }
    }

    /// A node id, cluster name or address: 1...64 bytes of text.
    mutating func name() -> ShortBytes { ShortBytes(bytes: text(1, Limits.maxNodeName))! }

    /// An EVENT payload. The codec judges only its structure (and that the
    /// kind is one of §9's), so any values of the right sizes round-trip.
    mutating func event() -> FeedEvent {
        FeedEvent(offset: u64(), timeMs: u64(), kind: EventKind.allCases[int(0...(EventKind.allCases.count - 1))],
                  line: u8(), lines: u8(), quantity: Int64(bitPattern: u64()), aux: u64(),
                  token: chance(30) ? Token(slot: 0, generation: 0, secret: 0) : token(),
                  sku: chance(10) ? .empty : sku(), order: optionalText(), customer: optionalShort())
    }

    mutating func info() -> StockInfo {
        StockInfo(onHand: u64(), available: u64(), reserved: u64(), confirmed: u64(),
                  lowStockThreshold: u32(), perCustomerLimit: u32(), reservations: u64(), backup: u64())
    }

    mutating func detail(for status: Status) -> ErrorDetail {
        switch status {
        case .outOfStock: .outOfStock(line: u8(), available: u64())
        case .unknownSKU: .unknownSKU(line: u8())
        case .customerLimit: .customerLimit(line: u8(), remaining: u64())
        case .stockChanged: .stockChanged(current: u64())
        case .insufficientAvailable: .insufficientAvailable(available: u64())
        case .ttlTooLong: .ttlTooLong(maxTTLMs: u32())
        case .frameTooLarge: .frameTooLarge(maxFrame: u32())
        case .unsupportedVersion: .unsupportedVersion(min: u16(), max: u16())
        case .offsetCompacted: .offsetCompacted(oldest: u64())
        case .insufficientBackup: .insufficientBackup(backup: u64())
        case .notPrimary: .notPrimary(epoch: u64(), primary: chance(30) ? .empty : name())
        case .notEnoughReplicas: .notEnoughReplicas(inSync: u8(), required: u8())
        case .staleEpoch: .staleEpoch(epoch: u64())
        case .truncateTo: .truncateTo(seq: u64())
        case .configMismatch: .configMismatch(field: name())
        case .stageRefused:
            .stageRefused((0..<int(1...20)).map { _ in
                StageRefusal(line: u16(), status: chance(80) ? .insufficientAvailable : .atCapacity, value: u64())
            })
        default: .none
        }
    }

    mutating func response() -> Response {
        let id = u32()
        if chance(30) {
            let failures = Status.allCases.filter { $0 != .ok }
            let status = failures[int(0...(failures.count - 1))]
            // A failure may answer any opcode byte (UNKNOWN_OPCODE echoes unassigned ones).
            let opcode = chance(80) ? Opcode.allCases[int(0...(Opcode.allCases.count - 1))].rawValue : u8()
            return Response(requestID: id, opcode: opcode, body: .failure(status, detail(for: status)))
        }
        let op = answeredOpcodes[int(0...(answeredOpcodes.count - 1))]
        let body: ResponseBody
        switch op {
        case .hello:
            body = .hello(HelloReply(version: u16(), role: Role.allCases[int(0...2)], maxFrame: u32(),
                                     maxTTLMs: u32(), defaultTTLMs: u32(), maxBundleLines: u16(),
                                     maxSKULength: u16(), maxInflight: u32(), serverName: opaque(255)))
        case .ping: body = .pong
        case .reserve: body = .reserved(Reservation(token: token(), expiresAtMs: u64(), available: u64()))
        case .reserveBundle: body = .bundleReserved(BundleReservation(token: token(), expiresAtMs: u64()))
        case .confirm: body = .confirmed(ConfirmReply(confirmed: u32(), returned: u32()))
        case .release: body = .released(units: u32())
        case .extend: body = .extended(expiresAtMs: u64())
        case .stockSet, .stockAdjust, .stockGet, .backupRelease, .backupHold: body = .stock(info())
        case .stage: body = .staged(StageReply(lines: u16(), created: u16()))
        case .stockList:
            let n = chance(10) ? 0 : int(1...20)
            body = .stockPage(StockPage(nextCursor: chance(30) ? Limits.listEnd : u32(),
                                        entries: (0..<n).map { _ in StockEntry(sku: sku(), info: info()) }))
        case .stats:
            let n = int(0...20)
            body = .stats((0..<n).map { _ in
                StatEntry(name: ShortBytes(bytes: (0..<int(1...64)).map { _ in UInt8(int(0x21...0x7E)) })!, value: u64())
            })
        case .subscribe: body = .subscribed(FeedStart(start: u64(), end: u64()))
        case .event: body = .event(event())
        case .replHello: body = .replStarted(ReplStart(epoch: u64(), start: u64(), committed: u64()))
        case .replRound: body = .replRound(ReplRound(epoch: u64(), end: u64(), count: u16(), records: opaque(300)))
        case .replSnapshot:
            body = .replSnapshot(ReplSnapshotChunk(epoch: u64(), snapshotSeq: u64(), offset: u64(), total: u64(),
                                                   chunk: opaque(300)))
        case .role:
            body = .role(RoleReply(role: NodeRole.allCases[int(0...2)], epoch: u64(), lastSeq: u64()))
        case .fence, .isrSet: body = .committed(u64())
        case .clusterStatus:
            body = .clusterStatus(ClusterStatus(
                role: NodeRole.allCases[int(0...2)], epoch: u64(), durable: u64(), committed: u64(),
                node: chance(30) ? .empty : name(), primary: chance(30) ? .empty : name(),
                standbys: (0..<int(0...Limits.maxStandbys)).map { _ in
                    StandbyStatus(node: name(), acked: u64(), lagMs: u32(), inWaitSet: chance(50))
                }))
        case .credit, .replAck: preconditionFailure("never answered: answeredOpcodes leaves it out")
        }
        return Response(requestID: id, opcode: op.rawValue, body: body)
    }
}

@Suite("Round trips of random valid values", .cpuHeavy)
struct RoundTripTests {
    static let count = 10_000

    @Test("random requests: encode → decode is the identity, one by one and pipelined")
    func requests() throws {
        var gen = Gen(seed: 0x5eed_0001)
        var sent = [(UInt32, Request)]()
        var pipeline = ByteWriter(capacity: 1 << 20)
        for _ in 0..<Self.count {
            let request = gen.request()
            let id = gen.u32()
            sent.append((id, request))
            var w = ByteWriter()
            RequestCodec.encode(request, requestID: id, into: &w)
            RequestCodec.encode(request, requestID: id, into: &pipeline)
            guard case .frame(let header, let range) = parseFrame(w.bytes, maxFrame: Limits.maxFrameCeiling),
                  header.frameLength == w.count
            else {
                Issue.record("no single frame for \(request)")
                continue
            }
            #expect(header.requestID == id)
            let decoded = w.bytes.withUnsafeBytes { decodeRequest(header, UnsafeRawBufferPointer(rebasing: $0[range])) }
            #expect(decoded == .success(request), "\(request)")
        }

        var decoder = FrameDecoder()
        decoder.feed(pipeline.bytes)
        var index = 0
        while let (id, result) = try decoder.next({ h, p in (h.requestID, decodeRequest(h, p)) }) {
            guard index < sent.count else { break }
            #expect(id == sent[index].0)
            #expect(result == .success(sent[index].1))
            index += 1
        }
        #expect(index == sent.count)
        #expect(decoder.buffered == 0)
    }

    @Test("random responses: encode → decode is the identity, one by one and pipelined")
    func responses() throws {
        var gen = Gen(seed: 0x5eed_0002)
        var sent = [Response]()
        var pipeline = ByteWriter(capacity: 1 << 20)
        for _ in 0..<Self.count {
            let response = gen.response()
            sent.append(response)
            var w = ByteWriter()
            ResponseCodec.encode(response, into: &w)
            ResponseCodec.encode(response, into: &pipeline)
            guard case .frame(let header, let range) = parseFrame(w.bytes, maxFrame: Limits.maxFrameCeiling),
                  header.frameLength == w.count
            else {
                Issue.record("no single frame for \(response)")
                continue
            }
            let decoded = w.bytes.withUnsafeBytes { decodeResponse(header, UnsafeRawBufferPointer(rebasing: $0[range])) }
            #expect(decoded == .success(response), "\(response)")
        }

        var decoder = FrameDecoder()
        decoder.feed(pipeline.bytes)
        var index = 0
        while let result = try decoder.next({ h, p in decodeResponse(h, p) }) {
            guard index < sent.count else { break }
            #expect(result == .success(sent[index]))
            index += 1
        }
        #expect(index == sent.count)
        #expect(decoder.buffered == 0)
    }
}
