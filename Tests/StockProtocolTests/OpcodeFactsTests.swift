import Foundation
import StockProtocol
import Testing
import TestSupport

/// The per-opcode facts table (`Opcode.facts`) against PROTOCOL.md §4: the spec's role column is
/// read from the document itself, so the table and the spec cannot drift apart.
@Suite(.cpuHeavy) struct OpcodeFactsTests {
    /// `opcode byte -> role name` from the §4 table (`| `0x10` | RESERVE | checkout | …`).
    static func specRoles() throws -> [UInt8: String] {
        let spec = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("protocol/PROTOCOL.md")
        let text = try String(contentsOf: spec, encoding: .utf8)
        var roles: [UInt8: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `0x") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 3, let byte = UInt8(cells[0].dropFirst(3).dropLast(), radix: 16) else { continue }
            roles[byte] = cells[2]
        }
        return roles
    }

    @Test("every opcode's role is the one PROTOCOL.md §4 gives it")
    func rolesMatchTheSpec() throws {
        let spec = try Self.specRoles()
        #expect(Set(spec.keys) == Set(Opcode.allCases.map(\.rawValue)), "the §4 table lists every opcode once")
        for op in Opcode.allCases {
            let expected: Role = switch spec[op.rawValue] {
            case "any", "—": .none
            case "viewer": .viewer
            case "checkout": .checkout
            case "admin": .admin
            default: .admin  // an unknown word in the spec fails below
            }
            #expect(["any", "—", "viewer", "checkout", "admin"].contains(spec[op.rawValue] ?? ""), "\(op.name)")
            #expect(op.facts.role == expected, "\(op.name): table \(op.facts.role.name), spec \(spec[op.rawValue] ?? "-")")
        }
    }

    @Test("exactly the ten state-changing requests need the journal; unassigned bytes need nothing")
    func changesStateAndUnknownBytes() {
        let changing = Opcode.allCases.filter(\.facts.changesState).map(\.name)
        #expect(Set(changing) == ["RESERVE", "RESERVE_BUNDLE", "CONFIRM", "RELEASE", "EXTEND", "STOCK_SET",
                                  "STOCK_ADJUST", "BACKUP_RELEASE", "BACKUP_HOLD", "STAGE"])
        // Whoever changes state is at least checkout: a viewer can never reach the journal.
        for op in Opcode.allCases where op.facts.changesState { #expect(op.facts.role >= .checkout, "\(op.name)") }
        for raw in 0...255 where Opcode(rawValue: UInt8(raw)) == nil {
            #expect(Opcode.facts(UInt8(raw)) == .unassigned, "byte \(raw)")
        }
        for op in Opcode.allCases { #expect(Opcode.facts(op.rawValue) == op.facts) }
        // The server's per-request table says what the facts say, for every byte.
        for raw in 0...255 {
            let f = Opcode.facts(UInt8(raw))
            #expect(Opcode.access(UInt8(raw)) == OpcodeAccess(role: f.role, changesState: f.changesState), "byte \(raw)")
        }
    }
}

/// The table's payload sizes against the codec: every vector's payload fits its opcode's range,
/// and the largest and smallest valid requests the codec can encode land on the range's ends.
@Suite(.cpuHeavy) struct OpcodeLayoutTests {
    static let longest = ShortBytes(String(repeating: "x", count: Limits.maxSKULength))!
    static let token = Token(slot: 7, generation: 1, secret: 42)

    @Test("every request vector the codec accepts, and every OK answer vector, fits its opcode's range")
    func vectorsFitTheTable() throws {
        var checked = 0
        for v in Vectors.requests + Vectors.responses {
            guard case .frame(let header, let payload) = parseFrame(v.bytes),
                  let op = Opcode(rawValue: header.opcode) else { continue }
            let size = payload.count
            if header.isResponse {
                guard header.status == Status.ok.rawValue, op != .event else { continue }
                let answer = try #require(op.facts.answer, "\(v.name): \(op.name) is answered OK")
                #expect(answer.admits(size), "\(v.name): \(size) bytes outside \(answer)")
            } else {
                guard case .success = decodeRequest(header, v.bytes.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[payload]) }) else { continue }
                let request = try #require(op.facts.request, "\(v.name): \(op.name) is sent by clients")
                #expect(request.admits(size), "\(v.name): \(size) bytes outside \(request)")
            }
            checked += 1
        }
        #expect(checked >= 40, "the vectors cover the table (\(checked) checked)")
    }

    /// The payload the codec writes for `request`.
    static func payloadSize(_ request: Request) -> Int {
        var w = ByteWriter()
        RequestCodec.encode(request, requestID: 1, into: &w)
        return w.count - Limits.headerSize
    }

    @Test("the largest valid requests are the table's maxima, the smallest its minima")
    func requestExtremesAreTheRangeEnds() {
        let x = Self.longest
        let one = SKU("A")!
        let t = Self.token
        let cases: [(Request, Request)] = [
            (.hello(Hello(clientName: [])),
             .hello(Hello(clientName: Array(x.bytes), credential: [UInt8](repeating: 1, count: Limits.maxCredentialLength)))),
            (.reserve(Reserve(sku: one, quantity: 1)),
             .reserve(Reserve(sku: x, quantity: 1, customer: x, idempotencyKey: x))),
            (.reserveBundle(ReserveBundle(lines: [BundleLine(sku: one, quantity: 1)])),
             .reserveBundle(ReserveBundle(lines: (0..<Limits.maxBundleLines).map { _ in BundleLine(sku: x, quantity: 1) },
                                          customer: x, idempotencyKey: x))),
            (.confirm(Confirm(token: t)), .confirm(Confirm(token: t, orderReference: x))),
            (.stockSet(StockSet(sku: one, onHand: 1)), .stockSet(StockSet(sku: x, onHand: 1))),
            (.stockAdjust(StockAdjust(sku: one, delta: 1)), .stockAdjust(StockAdjust(sku: x, delta: 1))),
            (.stockGet(one), .stockGet(x)),
            (.backupRelease(BackupMove(sku: one, quantity: 1)), .backupHold(BackupMove(sku: x, quantity: 1))),
            (.stage(Stage(lines: [StageLine(sku: one, onHand: 1)])),
             .stage(Stage(lines: (0..<Limits.maxStageLines).map { _ in StageLine(sku: x, onHand: 1) }))),
            (.subscribe(Subscribe(from: 0, credit: 1)), .subscribe(Subscribe(from: 0, credit: 1, skuPrefix: x))),
            (.release(t), .release(t)), (.extend(Extend(token: t, ttlMs: 1)), .extend(Extend(token: t, ttlMs: 1))),
            (.ping, .ping), (.stats, .stats), (.stockList(StockList()), .stockList(StockList())), (.credit(1), .credit(1)),
            (.replHello(ReplHello(fingerprint: 1, highestEpoch: 1, lastEpoch: 1, lastSeq: 1, node: one, cluster: one)),
             .replHello(ReplHello(fingerprint: 1, highestEpoch: 1, lastEpoch: 1, lastSeq: 1, node: x, cluster: x))),
            (.replAck(ReplAck(epoch: 1, durable: 1)), .replAck(ReplAck(epoch: 1, durable: 1))),
            (.role(RoleChange(role: .primary, epoch: 1)), .role(RoleChange(role: .standby, epoch: 1, primary: x))),
            (.fence(untilNs: 1), .fence(untilNs: 1)),
            (.isrSet(ISRSet(epoch: 1, nodes: [])),
             .isrSet(ISRSet(epoch: 1, nodes: (0..<Limits.maxStandbys).map { i in
                 ShortBytes(String(format: "%063d", i) + "n")!
             }))),
            (.clusterStatus, .clusterStatus),
        ]
        #expect(Set(cases.map(\.0.opcode)).union(cases.map(\.1.opcode)) == Set(clientOpcodes))
        for (small, large) in cases {
            let range = small.opcode.facts.request
            #expect(range?.min == Self.payloadSize(small), "\(small.opcode.name) smallest")
            #expect(range?.max == Self.payloadSize(large), "\(large.opcode.name) largest")
        }
    }

    @Test("fixed-size OK answers are the sizes the codec writes")
    func fixedAnswers() {
        let t = Self.token
        let info = StockInfo(onHand: 1, available: 1, reserved: 0, confirmed: 0, lowStockThreshold: 0)
        let bodies: [(Opcode, ResponseBody)] = [
            (.reserve, .reserved(Reservation(token: t, expiresAtMs: 1, available: 1))),
            (.reserveBundle, .bundleReserved(BundleReservation(token: t, expiresAtMs: 1))),
            (.confirm, .confirmed(ConfirmReply(confirmed: 1, returned: 0))), (.release, .released(units: 1)),
            (.extend, .extended(expiresAtMs: 1)), (.stockSet, .stock(info)), (.stockAdjust, .stock(info)),
            (.stockGet, .stock(info)), (.backupRelease, .stock(info)), (.backupHold, .stock(info)),
            (.stage, .staged(StageReply(lines: 1, created: 1))), (.subscribe, .subscribed(FeedStart(start: 1, end: 1))),
            (.ping, .pong), (.replHello, .replStarted(ReplStart(epoch: 1, start: 1, committed: 0))),
            (.role, .role(RoleReply(role: .primary, epoch: 1, lastSeq: 1))), (.fence, .committed(1)),
            (.isrSet, .committed(1)),
        ]
        for (op, body) in bodies {
            var w = ByteWriter()
            ResponseCodec.encodeBody(body, into: &w)
            #expect(op.facts.answer == .fixed(w.count), "\(op.name): \(w.count) bytes")
        }
    }
}
