import Foundation
import StockProtocol
import Testing
import TestSupport

/// The replication and cluster opcodes (PROTOCOL.md §10) on a node started without a cluster
/// name — every stockd until it is given one: CLUSTER_STATUS reports a standalone node whose
/// commit point is its durable watermark, the rest is refused with a defined status and changes
/// nothing, and the admin role is demanded before any payload is judged.
@Suite(.ownThread) struct ClusterOpcodeTests {
    static let authText = """
        monitor     viewer    vw-0c7e2d9a4b6f8e1a3c5d
        shop        checkout  \(AuthTests.checkoutSecret)
        ops         admin     \(AuthTests.adminSecret)
        """

    @Test func standaloneNodeAnswersClusterStatusAndRefusesTheRest() throws {
        let server = try StockdProcess(["--workers", "1"], catalog: "JACKET,10\n")
        let c = try RawClient(port: server.port)
        _ = try c.reserveOK("JACKET", 2)

        let status = try c.request(.clusterStatus)
        guard case .clusterStatus(let s) = status.body else { throw HarnessError("CLUSTER_STATUS answered \(status)") }
        #expect(s.role == .standalone && s.epoch == 0 && s.node.isEmpty && s.primary.isEmpty && s.standbys.isEmpty)
        // The catalog's stock-set record and the reserve are durable before the reserve was answered.
        #expect(s.durable >= 2 && s.committed == s.durable, "\(s)")

        let cluster = ShortBytes("cluster")!
        let hello = ReplHello(fingerprint: 1, highestEpoch: 0, lastEpoch: 0, lastSeq: 0, node: ShortBytes("n2")!,
                              cluster: ShortBytes("show")!)
        for request: Request in [.replHello(hello), .role(RoleChange(role: .primary, epoch: 3)), .fence(untilNs: 1),
                                 .isrSet(ISRSet(epoch: 3, nodes: [ShortBytes("n2")!]))] {
            let answer = try c.request(request)
            #expect(answer.body == .failure(.configMismatch, .configMismatch(field: cluster)), "\(request.opcode.name)")
        }
        #expect(try c.request(.replAck(ReplAck(epoch: 1, durable: 1))).status == .invalidArgument)
        // A node may send these two only: as requests they are unknown opcodes.
        for op in [Opcode.replRound, .replSnapshot] {
            #expect(try c.rawRequest(opcode: op.rawValue, payload: [UInt8](repeating: 0, count: 18)).status
                    == .unknownOpcode)
        }
        #expect(try c.rawRequest(opcode: Opcode.role.rawValue, payload: [3] + [UInt8](repeating: 0, count: 9)).status
                == .invalidArgument, "role 3 is no role")
        #expect(try c.info("JACKET").reserved == 2, "nothing changed")
        #expect(try c.ping().body == .pong, "the connection stays usable")
    }

    @Test func clusterControlNeedsAdminAndStatusNeedsViewer() throws {
        let dir = try TempDirectory(prefix: "cluster-auth")
        defer { dir.remove() }
        let server = try StockdProcess(["--auth-file", try AuthTests.authFile(dir, Self.authText), "--workers", "1"])
        let anonymous = try server.connect()
        #expect(try anonymous.request(.clusterStatus).status == .unauthenticated)

        let viewer = try server.connect()
        _ = try AuthTests.hello(viewer, "vw-0c7e2d9a4b6f8e1a3c5d")
        guard case .clusterStatus = try viewer.request(.clusterStatus).body else {
            throw HarnessError("a viewer reads CLUSTER_STATUS")
        }
        let shop = try server.connect()
        _ = try AuthTests.hello(shop, AuthTests.checkoutSecret)
        // The role is checked before the payload: a garbage REPL_HELLO from checkout is FORBIDDEN.
        for op in [Opcode.replHello, .replAck, .role, .fence, .isrSet] {
            #expect(try shop.rawRequest(opcode: op.rawValue, payload: [1, 2, 3]).status == .forbidden, "\(op.name)")
        }
        let ops = try server.connect()
        _ = try AuthTests.hello(ops, AuthTests.adminSecret)
        #expect(try ops.request(.fence(untilNs: 5)).status == .configMismatch)
        #expect(try ops.rawRequest(opcode: Opcode.fence.rawValue, payload: [1, 2, 3]).status == .malformed)
    }
}
