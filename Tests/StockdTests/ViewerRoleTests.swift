import Foundation
import Glibc
import StockProtocol
import Testing
import TestSupport

/// The read-only `viewer` role (`stockd --auth-file`, PROTOCOL.md §3, §4 "role"):
/// a viewer reads stock, STATS and the event feed and is FORBIDDEN everything
/// that holds or changes units; checkout may read STATS too; `stockctl watch`
/// runs on a viewer credential.
@Suite(.ownThread, .serialized) struct ViewerRoleTests {
    static let viewerSecret = "vw-5d1c7a9e3b2f4d6a8c0e"
    static let authText = """
        # name      role      secret
        monitor     viewer    \(viewerSecret)
        shop        checkout  \(AuthTests.checkoutSecret)
        ops         admin     \(AuthTests.adminSecret)
        """

    static func server(_ dir: TempDirectory) throws -> StockdProcess {
        try StockdProcess(["--auth-file", try AuthTests.authFile(dir, authText), "--workers", "1"],
                          catalog: "JACKET,10,3,2\nSCARF,5\n")
    }

    @Test func roleOrderIsByRankNotWireValue() {
        // Wire values stay as they were (checkout 1, admin 2); viewer, added later, is 3.
        #expect(Role.none.rawValue == 0 && Role.checkout.rawValue == 1 && Role.admin.rawValue == 2)
        #expect(Role.viewer.rawValue == 3 && Role(rawValue: 3) == .viewer && Role.viewer.name == "viewer")
        #expect(Role.none < .viewer && Role.viewer < .checkout && Role.checkout < .admin)
        #expect(!(Role.viewer > .checkout) && Role.admin > .viewer)
    }

    @Test func viewerReadsAndIsRefusedEveryChange() throws {
        let dir = try TempDirectory(prefix: "viewer")
        defer { dir.remove() }
        let server = try Self.server(dir)
        let viewer = try server.connect()
        #expect(try AuthTests.role(AuthTests.hello(viewer, Self.viewerSecret)) == .viewer)

        // Reads: PING, STOCK_GET, STOCK_LIST, STATS.
        #expect(try viewer.ping().status == .ok)
        #expect(try viewer.info("JACKET").onHand == 10)
        let page = try viewer.request(.stockList(StockList()))
        guard case .stockPage(let p) = page.body else { throw HarnessError("STOCK_LIST answered \(page)") }
        #expect(Set(p.entries.map(\.sku.string)) == ["JACKET", "SCARF"], "\(p)")
        #expect(try viewer.stats()["requests.STOCK_LIST"] != nil)

        // Holds and changes: FORBIDDEN (the permission status), the connection stays, nothing changes.
        #expect(try viewer.reserve("JACKET", 1).status == .forbidden)
        let bundle = ReserveBundle(lines: [BundleLine(sku: SKU("JACKET")!, quantity: 1)])
        #expect(try viewer.request(.reserveBundle(bundle)).status == .forbidden)
        let someToken = Token(slot: 0, generation: 0, secret: 0)
        #expect(try viewer.confirm(someToken).status == .forbidden)
        #expect(try viewer.release(someToken).status == .forbidden)
        #expect(try viewer.extend(someToken, ttlMs: 1000).status == .forbidden)
        #expect(try viewer.stockSet("JACKET", onHand: 100).status == .forbidden)
        #expect(try viewer.request(.stockAdjust(StockAdjust(sku: SKU("JACKET")!, delta: 5))).status == .forbidden)
        #expect(try viewer.request(.backupRelease(BackupMove(sku: SKU("JACKET")!, quantity: 0))).status == .forbidden)
        #expect(try viewer.request(.backupHold(BackupMove(sku: SKU("JACKET")!, quantity: 1))).status == .forbidden)
        #expect(try viewer.request(.stage(Stage(lines: [StageLine(sku: SKU("X")!, onHand: 1)]))).status == .forbidden)
        let after = try viewer.info("JACKET")
        #expect(after.onHand == 10 && after.available == 10 && after.reserved == 0, "\(after)")

        // The feed: SUBSCRIBE answered, and a change made by a checkout client arrives as an event.
        let feed = try server.connect()
        _ = try AuthTests.hello(feed, Self.viewerSecret)
        let answer = try feed.request(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 16)))
        guard case .subscribed = answer.body else { throw HarnessError("SUBSCRIBE answered \(answer)") }
        let shop = try server.connect()
        _ = try AuthTests.hello(shop, AuthTests.checkoutSecret)
        _ = try shop.reserveOK("SCARF", 1)
        let deadline = monotonicSeconds() + 5
        var sawReserved = false
        while !sawReserved, monotonicSeconds() < deadline, let frame = try feed.readResponseOrEnd(timeout: 5) {
            if case .event(let e) = frame.body, e.kind == .reserved, e.sku.string == "SCARF" { sawReserved = true }
        }
        #expect(sawReserved, "the viewer's feed did not deliver the reservation within 5 s")

        let stats = try viewer.stats()
        #expect(stats["status.FORBIDDEN"] == 10, "\(stats)")
    }

    @Test func checkoutReadsStatsButStillChangesNoStock() throws {
        let dir = try TempDirectory(prefix: "viewer")
        defer { dir.remove() }
        let server = try Self.server(dir)
        let shop = try server.connect()
        #expect(try AuthTests.role(AuthTests.hello(shop, AuthTests.checkoutSecret)) == .checkout)
        #expect(try shop.stats()["requests.total"] != nil)
        #expect(try shop.stockSet("JACKET", onHand: 1).status == .forbidden)
        #expect(try shop.reserve("JACKET", 1).status == .ok)
    }

    @Test func authFileAcceptsViewerAndNamesTheRoles() throws {
        let dir = try TempDirectory(prefix: "viewer")
        defer { dir.remove() }
        let bad = try AuthTests.authFile(dir, "who reader 0123456789abcdefXYZ\n", name: "bad")
        let refused = try StockdProcess.runToExit(["--port", "0", "--sync", "none", "--auth-file", bad])
        #expect(refused?.code == 2, "\(String(describing: refused))")
        #expect(refused?.stderr.contains("role must be checkout or admin, or viewer (read-only), got 'reader'") == true,
                "\(String(describing: refused))")
    }

    /// `stockctl watch`, `stock list` and `stats` with a viewer token: exit 0; a change: exit 77.
    @Test func stockctlWatchNeedsOnlyAViewer() throws {
        let dir = try TempDirectory(prefix: "viewer")
        defer { dir.remove() }
        let f = CtlFixture(server: try Self.server(dir))
        let token = ["--token", Self.viewerSecret]
        let watch = try f.run(["watch", "--count", "2", "--interval", "200ms"] + token)
        #expect(watch.code == 0 && watch.stdoutLines.count == 2, "\(watch)")
        #expect(watch.stdoutLines.allSatisfy { $0.contains("skus=2") }, "\(watch)")
        let json = try f.run(["watch", "--count", "1", "--json"] + token)
        #expect(json.code == 0 && json.keys.contains("show"), "\(json)")
        #expect(try f.run(["stock", "list"] + token).code == 0)
        #expect(try f.run(["stats"] + token).code == 0)
        let reserve = try f.run(["reserve", "JACKET", "1"] + token)
        #expect(reserve.code == 77 && reserve.stderrLines.count == 1, "\(reserve)")
        let set = try f.run(["stock", "set", "JACKET", "1"] + token)
        #expect(set.code == 77 && set.stderrLines.count == 1, "\(set)")
    }
}
