import Foundation
import Glibc
import StockProtocol
import Testing
import TestSupport

/// `stockd --auth-file`: roles enforced per request, wrong credentials
/// refused and closed, failures counted and logged without secrets,
/// rotation on SIGHUP, and no unauthenticated non-loopback listener.
@Suite(.ownThread) struct AuthTests {
    static let checkoutSecret = AuthFixture.checkoutSecret
    static let adminSecret = AuthFixture.adminSecret
    static let authText = AuthFixture.authText

    /// An auth file (mode 600) in `dir`.
    @discardableResult
    static func authFile(_ dir: TempDirectory, _ text: String = authText, name: String = "auth") throws -> String {
        try AuthFixture.authFile(dir, text, name: name)
    }

    static func hello(_ c: RawClient, _ credential: String) throws -> Response {
        try c.request(.hello(Hello(clientName: Array("auth-test".utf8), credential: Array(credential.utf8))))
    }

    static func role(_ r: Response) -> Role? {
        if case .hello(let h) = r.body { return h.role }
        return nil
    }

    @Test func rolesAreEnforcedPerRequest() throws {
        let dir = try TempDirectory(prefix: "auth")
        defer { dir.remove() }
        let server = try StockdProcess(["--auth-file", try Self.authFile(dir)], catalog: "JACKET,10\n")

        // Before HELLO: PING only; everything else is UNAUTHENTICATED and the connection stays.
        let anon = try server.connect()
        #expect(try anon.ping().status == .ok)
        #expect(try anon.reserve("JACKET", 1).status == .unauthenticated)
        #expect(try anon.stockGet("JACKET").status == .unauthenticated)
        #expect(try anon.request(.stats).status == .unauthenticated)
        #expect(try anon.ping().status == .ok)

        // A wrong credential: AUTH_FAILED, then the server closes.
        let wrong = try server.connect()
        #expect(try Self.hello(wrong, "chk-7f3a9c2e1b4d8f60a5e3").status == .authFailed)
        #expect(try wrong.readUntilClosed(timeout: 5).closed)
        let none = try server.connect()
        #expect(try Self.hello(none, "").status == .authFailed)

        // Checkout: reservations and reads (STATS too), not stock changes.
        let shop = try server.connect()
        #expect(try Self.role(Self.hello(shop, Self.checkoutSecret)) == .checkout)
        let hold = try shop.reserveOK("JACKET", 2)
        #expect(try shop.confirm(hold.token).status == .ok)
        #expect(try shop.info("JACKET").confirmed == 2)
        #expect(try shop.stockSet("JACKET", onHand: 100).status == .forbidden)
        #expect(try shop.request(.stockAdjust(StockAdjust(sku: SKU("JACKET")!, delta: 5))).status == .forbidden)
        #expect(try shop.request(.backupRelease(BackupMove(sku: SKU("JACKET")!, quantity: 0))).status == .forbidden)
        #expect(try shop.request(.stage(Stage(lines: [StageLine(sku: SKU("X")!, onHand: 1)]))).status == .forbidden)
        #expect(try shop.request(.stats).status == .ok)
        #expect(try shop.info("JACKET").onHand == 10)  // nothing changed

        // Admin: everything; the failures are counted.
        let ops = try server.connect()
        #expect(try Self.role(Self.hello(ops, Self.adminSecret)) == .admin)
        #expect(try ops.stockSet("JACKET", onHand: 12).status == .ok)
        let stats = try ops.stats()
        #expect(stats["auth.failures"] == 2 && stats["status.AUTH_FAILED"] == 2, "\(stats)")
        #expect(stats["status.UNAUTHENTICATED"] == 3 && stats["status.FORBIDDEN"] == 4, "\(stats)")

        // Logged once (rate-limited), naming the peer, never a secret.
        let log = server.stderrText
        #expect(log.contains("authentication failed: wrong credential in HELLO from 127.0.0.1:"), "\(log)")
        #expect(!log.contains("chk-") && !log.contains("adm-"), "a secret reached the log: \(log)")
        #expect(log.contains("auth: 2 credentials"), "\(log)")
    }

    @Test func stockctlSendsTheCredential() throws {
        let dir = try TempDirectory(prefix: "auth")
        defer { dir.remove() }
        let server = try StockdProcess(["--auth-file", try Self.authFile(dir)], catalog: "JACKET,10\n")
        let f = CtlFixture(server: server)

        let missing = try f.run(["stock", "get", "JACKET"])
        #expect(missing.code == 77 && missing.stderrLines == ["stockctl: stockd requires a credential: give --token, "
                                                              + "--token-file or STOCKD_TOKEN"], "\(missing)")
        let wrong = try f.run(["stock", "get", "JACKET", "--token", "not-the-secret-at-all"])
        #expect(wrong.code == 77 && wrong.stderr.contains("authentication failed"), "\(wrong)")

        let env = ["STOCKD_TOKEN": Self.checkoutSecret]
        #expect(try f.run(["reserve", "JACKET", "1"], env: env).code == 0)
        let forbidden = try f.run(["stock", "set", "JACKET", "50"], env: env)
        #expect(forbidden.code == 77 && forbidden.stderr.contains("forbidden"), "\(forbidden)")

        let tokenFile = try dir.write("ops.token", Self.adminSecret + "\n")
        let set = try f.run(["stock", "set", "JACKET", "50", "--token-file", tokenFile, "--json"])
        #expect(set.code == 0 && set.object?["on_hand"] as? Int == 50, "\(set)")
        let both = try f.run(["ping", "--token", "x", "--token-file", tokenFile])
        #expect(both.code == 2, "\(both)")
    }

    /// Rotation: add the new secret, SIGHUP, move clients, drop the old one, SIGHUP.
    @Test func sighupRotatesSecretsAndKeepsOpenSessions() throws {
        let dir = try TempDirectory(prefix: "auth")
        defer { dir.remove() }
        let path = try Self.authFile(dir)
        let server = try StockdProcess(["--auth-file", path], catalog: "JACKET,10\n")
        let old = try server.connect()
        #expect(try Self.role(Self.hello(old, Self.checkoutSecret)) == .checkout)

        let newSecret = "chk-new-91c4e7a2d5b8f3e6"
        try Self.authFile(dir, "shop-2 checkout \(newSecret)\nops admin \(Self.adminSecret)\n")
        kill(server.pid, SIGHUP)
        try waitFor("the reload", server) { $0.contains("auth: reloaded, 2 credentials (shop-2, ops)") }
        #expect(try Self.hello(try server.connect(), Self.checkoutSecret).status == .authFailed)
        #expect(try Self.role(Self.hello(try server.connect(), newSecret)) == .checkout)
        // A session opened before keeps its role.
        #expect(try old.reserve("JACKET", 1).status == .ok)

        // A bad file is refused whole: the credentials in force stay.
        try Self.authFile(dir, "shop-3 checkout short\n")
        kill(server.pid, SIGHUP)
        try waitFor("the refusal", server) { $0.contains("auth: reload refused") }
        #expect(!server.stderrText.contains("short"), "a secret reached the log")
        #expect(try Self.role(Self.hello(try server.connect(), newSecret)) == .checkout)
    }

    @Test func startupRefusesUnsafeConfigurations() throws {
        let dir = try TempDirectory(prefix: "auth")
        defer { dir.remove() }
        // No credentials on a non-loopback address: refused before binding anything.
        let open = try StockdProcess.runToExit(["--host", "192.0.2.1", "--port", "0", "--sync", "none"])
        #expect(open?.code == 2 && open?.stderr.contains("not a loopback address and there is no --auth-file") == true,
                "\(String(describing: open))")
        // An auth file others can read.
        let loose = try dir.write("loose", Self.authText)
        chmod(loose, 0o644)
        let leaky = try StockdProcess.runToExit(["--port", "0", "--sync", "none", "--auth-file", loose])
        #expect(leaky?.code == 2 && leaky?.stderr.contains("readable or writable by others") == true,
                "\(String(describing: leaky))")
        // Bad lines: each named by number, no secret echoed.
        let bad = try Self.authFile(dir, """
            ok checkout 0123456789abcdef
            dup admin 0123456789abcdef
            weak checkout tooshort
            who root 0123456789abcdefXYZ
            only-two checkout
            ok admin fedcba9876543210
            """, name: "bad")
        let refused = try StockdProcess.runToExit(["--port", "0", "--sync", "none", "--auth-file", bad])
        let message = refused?.stderr ?? ""
        #expect(refused?.code == 2, "\(String(describing: refused))")
        for expected in ["line 2 (dup): same secret as ok", "line 3 (weak): the secret must be 16-255",
                         "line 4 (who): role must be checkout or admin", "line 5: expected NAME ROLE SECRET",
                         "line 6: name ok already on line 1"] {
            #expect(message.contains(expected), "\(expected): \(message)")
        }
        #expect(!message.contains("0123456789abcdef") && !message.contains("tooshort"), "\(message)")
    }

    /// Polls stockd's stderr (bounded) until `done` holds.
    func waitFor(_ what: String, _ server: StockdProcess, _ done: (String) -> Bool) throws {
        let deadline = monotonicSeconds() + 5
        while !done(server.stderrText) {
            guard monotonicSeconds() < deadline else { throw HarnessError("no \(what) within 5 s: \(server.diagnostics)") }
            sleepSeconds(0.02)
        }
    }
}
