import Foundation
import Glibc
import StockClient
import Testing
import TestSupport

// stock-hooks against real processes: a stockd on port 0 with its own data
// directory, a local HTTP receiver (HooksReceiver) that fails a seeded
// share of requests, and the built `stock-hooks` binary.

@Suite(.ownThread, .serialized) struct StockHooksTests {
    static let secret = "whsec-test-\u{e9}-42"
    static let skus = ["HOOK-A", "HOOK-B", "HOOK-C", "HOOK-D", "HOOK-E"]
    static var catalog: String { skus.map { "\($0),100000" }.joined(separator: "\n") + "\n" }

    /// A state dir and a secret file in a fresh temporary directory.
    struct Files {
        let dir: TempDirectory
        let secretFile: String
        var stateDir: String { dir.path("state") }

        init() throws {
            dir = try TempDirectory(prefix: "stock-hooks")
            secretFile = try dir.write("secret", StockHooksTests.secret + "\n")  // one trailing newline: trimmed
        }
    }

    /// The common flags: fast backoff, short timeout.
    static func args(server: StockdProcess, receiver: HooksReceiver, files: Files, timeout: String = "1s",
                     extra: [String] = []) -> [String] {
        ["--server", "127.0.0.1:\(server.port)", "--url", receiver.url, "--secret-file", files.secretFile,
         "--state-dir", files.stateDir, "--timeout", timeout, "--backoff-initial", "10ms", "--backoff-max", "100ms"]
            + extra
    }

    /// Checks every request against the signature, the headers and the first
    /// body seen for its id; returns the first-accepted bodies by id.
    @discardableResult
    static func checkRequests(_ receiver: HooksReceiver, _ context: String) -> [String: [String: Any]] {
        var bodies: [String: Data] = [:]
        var parsed: [String: [String: Any]] = [:]
        let now = Int(Date().timeIntervalSince1970)
        var badSignatures = 0, badHeaders = 0, changedBodies = 0
        for r in receiver.requests {
            let id = r.eventID
            let ts = r.headers["stockd-timestamp"] ?? ""
            if r.headers["stockd-signature"] != hooksSignature(secret: secret, timestamp: ts, body: r.body) {
                badSignatures += 1
            }
            guard let t = Int(ts), abs(t - now) < 120, r.method == "POST", r.path == "/hooks/stock",
                  r.headers["content-type"] == "application/json", let json = hooksJSON(r.body),
                  json["id"] as? String == id, (json["offset"] as? NSNumber)?.stringValue == id
            else {
                badHeaders += 1
                continue
            }
            if let first = bodies[id] {
                if first != r.body { changedBodies += 1 }
            } else {
                bodies[id] = r.body
                parsed[id] = json
            }
        }
        #expect(badSignatures == 0, "\(context): \(badSignatures) requests with a signature that does not verify")
        #expect(badHeaders == 0, "\(context): \(badHeaders) requests with wrong method, path, headers or id")
        #expect(changedBodies == 0, "\(context): \(changedBodies) redeliveries whose body differs from the first")
        return parsed
    }

    /// Per SKU, first acceptances come in offset order.
    static func checkPerSKUOrder(_ receiver: HooksReceiver, _ context: String) {
        var last: [String: UInt64] = [:]
        var violations: [String] = []
        for (id, body) in receiver.firstAccepted {
            guard let json = hooksJSON(body), let sku = json["sku"] as? String, let offset = UInt64(id) else { continue }
            if let prev = last[sku], prev >= offset { violations.append("\(sku): \(offset) after \(prev)") }
            last[sku] = offset
        }
        #expect(violations.isEmpty, "\(context): per-SKU order broken: \(violations.prefix(5))")
    }

    /// The (order, sku, quantity) lines of the accepted confirmed events.
    static func acceptedLines(_ parsed: [String: [String: Any]], accepted ids: Set<String>) -> Set<String> {
        var out: Set<String> = []
        for (id, json) in parsed where ids.contains(id) && json["kind"] as? String == "confirmed" {
            if let order = json["order"] as? String, let sku = json["sku"] as? String,
               let q = (json["quantity"] as? NSNumber)?.intValue {
                out.insert(HooksOrders.key(order: order, sku: sku, quantity: q))
            }
        }
        return out
    }

    @Test("every confirmed order arrives signed, in per-SKU order, through 500s, timeouts and drops; 400s are dead-lettered once")
    func deliversThroughFaults() async throws {
        let server = try StockdProcess(["--workers", "2"], catalog: Self.catalog)
        let client = StockClient(port: server.port, connections: 2, timeout: testCallTimeout)
        defer { client.close() }
        let orders = try await hooksMakeOrders(client, skus: Self.skus, count: 150, prefix: "ORD")
        // A partial confirm: `returned` in the body.
        let partial = try await client.reserve(sku: "HOOK-A", quantity: 5, customer: "c-partial")
        try await client.confirm(partial.token, quantity: 2, orderReference: "ORD-PARTIAL")
        // Text that JSON must escape.
        let oddOrder = "ORD-\"q\"\\\u{e9}/\u{1F9E5}"
        let odd = try await client.reserve(sku: "HOOK-E", quantity: 1, customer: "c\u{e7}-\"1\"")
        try await client.confirm(odd.token, orderReference: oddOrder)
        let expected = try await hooksFeedEvents(port: server.port)
        #expect(expected.count == orders.lines.count + 2, "confirmed events on the feed vs lines confirmed")

        // 400 for three chosen event ids.
        let sortedOffsets = expected.keys.sorted()
        let rejected = Set([sortedOffsets[3], sortedOffsets[40], sortedOffsets[100]].map { String($0) })
        let receiver = try HooksReceiver(seed: 0x5EED, faults: HooksFaults(fail500: 15, slow: 4, drop: 6),
                                         slowSeconds: 1.4)
        defer { receiver.stop() }
        receiver.reject(rejected)

        let files = try Files()
        defer { files.dir.remove() }
        let hooks = try HooksProcess(Self.args(server: server, receiver: receiver, files: files,
                                               extra: ["--concurrency", "4", "--until-caught-up"]))
        guard let code = hooks.waitForExit(timeout: 25) else {
            Issue.record("stock-hooks --until-caught-up did not finish within 25 s; \(receiver.acceptedCount) of \(expected.count) accepted; stderr: \(hooks.stderr.suffix(2000))")
            return
        }
        #expect(code == 0, "exit \(code); stderr: \(hooks.stderr.suffix(2000))")

        let parsed = Self.checkRequests(receiver, "faulty receiver")
        let acceptedIDs = Set(receiver.firstAccepted.map(\.id))
        // Every confirmed event but the rejected ones was accepted; nothing else was sent.
        let expectedIDs = Set(expected.keys.map { String($0) })
        #expect(acceptedIDs == expectedIDs.subtracting(rejected),
                "missing: \(expectedIDs.subtracting(rejected).subtracting(acceptedIDs).sorted().prefix(10)); unexpected: \(acceptedIDs.subtracting(expectedIDs).sorted().prefix(10))")
        #expect(Set(parsed.keys).isSubset(of: expectedIDs), "only confirmed events are sent by default")
        var wantLines = orders.lines
        wantLines.insert(HooksOrders.key(order: "ORD-PARTIAL", sku: "HOOK-A", quantity: 2))
        wantLines.insert(HooksOrders.key(order: oddOrder, sku: "HOOK-E", quantity: 1))
        let rejectedLines = Self.acceptedLines(parsed, accepted: rejected)
        #expect(Self.acceptedLines(parsed, accepted: acceptedIDs) == wantLines.subtracting(rejectedLines),
                "every confirmed order line reached the receiver")

        // Bodies carry what the feed says, tokens as stockctl prints them.
        for (offset, e) in expected {
            guard let json = parsed[String(offset)] else { continue }
            #expect(json["kind"] as? String == "confirmed" && json["sku"] as? String == e.sku.string
                    && json["token"] as? String == e.token.description && json["order"] as? String == e.order.string
                    && (json["quantity"] as? NSNumber)?.int64Value == e.quantity
                    && (json["line"] as? NSNumber)?.intValue == Int(e.line)
                    && (json["lines"] as? NSNumber)?.intValue == Int(e.lines)
                    && (json["time_ms"] as? NSNumber)?.uint64Value == e.timeMs
                    && (json["returned"] as? NSNumber)?.uint64Value == e.aux,
                    "body of \(offset) does not match the feed: \(json)")
            let iso = ISO8601DateFormatter()
            iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let time = (json["time"] as? String).flatMap { iso.date(from: $0) }
            #expect(time.map { UInt64(($0.timeIntervalSince1970 * 1000).rounded()) } == e.timeMs
                    && (json["time"] as? String)?.count == 24, "time \(String(describing: json["time"])) vs \(e.timeMs)")
        }
        let oddBody = parsed.values.first { $0["order"] as? String == oddOrder }
        #expect(oddBody?["customer"] as? String == "c\u{e7}-\"1\"", "escaped strings round-trip: \(String(describing: oddBody))")
        let partialBody = parsed.values.first { $0["order"] as? String == "ORD-PARTIAL" }
        #expect((partialBody?["returned"] as? NSNumber)?.intValue == 3 && partialBody?["customer"] as? String == "c-partial")
        #expect(parsed.values.contains { $0["customer"] is NSNull }, "an order without a customer has customer null")
        #expect(parsed.values.contains { ($0["lines"] as? NSNumber)?.intValue == 3 }, "bundle lines arrive")

        // Faults happened, and duplicates were sent (slow answers) with the same id and body (checked above).
        let fates = receiver.requests.map(\.fate)
        #expect(fates.contains(.fail500) && fates.contains(.slow) && fates.contains(.drop), "fault mix: \(Set(fates))")
        // 400s: dead-lettered, each requested exactly once.
        for id in rejected {
            #expect(receiver.requests.filter { $0.eventID == id }.count == 1, "event \(id) answered 400 was retried")
        }
        let dead = hooksDeadLetters(files.stateDir)
        let deadIDs = Set(dead.compactMap { ($0["event"] as? [String: Any])?["id"] as? String })
        #expect(deadIDs == rejected && dead.count == 3, "dead letters: \(dead)")
        #expect(dead.allSatisfy { ($0["status"] as? NSNumber)?.intValue == 400 && ($0["response"] as? String)?.contains("refused") == true })
        #expect(hooks.stderrLines.filter { $0.contains("dead-lettered event") }.count == 3, "\(hooks.stderr)")
        #expect(hooks.stderrLines.contains { $0.contains("retrying event") }, "retries are logged")

        Self.checkPerSKUOrder(receiver, "faulty receiver")
        #expect(hooksPersistedOffset(files.stateDir).map { $0 >= sortedOffsets.last! } == true,
                "offset file: \(String(describing: hooksPersistedOffset(files.stateDir)))")
    }

    @Test("kill -9 mid-stream, more orders while down, restart on the same state dir: nothing lost, nothing resent below the offset")
    func killNineAndRestart() async throws {
        let server = try StockdProcess(["--workers", "2"], catalog: Self.catalog)
        let client = StockClient(port: server.port, connections: 2, timeout: testCallTimeout)
        defer { client.close() }
        let receiver = try HooksReceiver(seed: 0xD1E, faults: HooksFaults(fail500: 10, slow: 2, drop: 3),
                                         slowSeconds: 1.4, answerDelaySeconds: 0.004)
        defer { receiver.stop() }
        let files = try Files()
        defer { files.dir.remove() }
        let args = Self.args(server: server, receiver: receiver, files: files, extra: ["--concurrency", "3"])

        let first = try HooksProcess(args)
        var orders = try await hooksMakeOrders(client, skus: Self.skus, count: 300, prefix: "K1")
        let total1 = orders.lines.count
        let progressed = HooksProcess.waitFor(15) { receiver.acceptedCount >= total1 / 3 }
        #expect(progressed, "stock-hooks delivered only \(receiver.acceptedCount) within 15 s; stderr: \(first.stderr.suffix(1500))")
        first.kill9()
        let acceptedAtKill = Set(receiver.firstAccepted.map(\.id))
        // The persisted offset never runs ahead of what was delivered.
        let expectedSoFar = try await hooksFeedEvents(port: server.port)
        let persistedAtKill = hooksPersistedOffset(files.stateDir)
        if let persisted = persistedAtKill {
            let below = expectedSoFar.keys.filter { $0 <= persisted }.map { String($0) }
            #expect(below.allSatisfy { acceptedAtKill.contains($0) },
                    "offset \(persisted) persisted but \(below.filter { !acceptedAtKill.contains($0) }.prefix(5)) not delivered")
        }

        // More orders while stock-hooks is down.
        let more = try await hooksMakeOrders(client, skus: Self.skus, count: 60, prefix: "K2")
        orders.lines.formUnion(more.lines)
        let expected = try await hooksFeedEvents(port: server.port)
        #expect(expected.count == orders.lines.count)
        let requestsBefore = receiver.requests.count

        let second = try HooksProcess(args + ["--until-caught-up"])
        guard let code = second.waitForExit(timeout: 25) else {
            Issue.record("restarted stock-hooks did not catch up within 25 s; \(receiver.acceptedCount) of \(expected.count); stderr: \(second.stderr.suffix(1500))")
            return
        }
        #expect(code == 0, "exit \(code); stderr: \(second.stderr.suffix(1500))")
        let parsed = Self.checkRequests(receiver, "kill -9 and restart")
        let acceptedIDs = Set(receiver.firstAccepted.map(\.id))
        let expectedIDs = Set(expected.keys.map { String($0) })
        #expect(acceptedIDs == expectedIDs, "missing after restart: \(expectedIDs.subtracting(acceptedIDs).sorted().prefix(10))")
        #expect(Self.acceptedLines(parsed, accepted: acceptedIDs) == orders.lines, "every order line arrived")
        Self.checkPerSKUOrder(receiver, "kill -9 and restart")
        // The restart resumed after the persisted offset: nothing at or below it was sent again.
        let floor = persistedAtKill ?? 0
        let resentBelow = receiver.requests[requestsBefore...].filter { (UInt64($0.eventID) ?? 0) <= floor }
        #expect(resentBelow.isEmpty, "re-sent at or below the offset \(floor): \(resentBelow.map(\.eventID).prefix(5))")

        // A third run on the same state dir has nothing to send.
        let requestsAfter = receiver.requests.count
        let third = try HooksProcess(args + ["--until-caught-up"])
        #expect(third.waitForExit(timeout: 10) == 0, "\(third.stderr)")
        #expect(receiver.requests.count == requestsAfter, "a caught-up state dir re-sent events")
    }

    @Test("SIGTERM: in-flight requests finish, the offset is persisted, exit 0; the offset never runs ahead of deliveries")
    func sigtermIsGraceful() async throws {
        let server = try StockdProcess(["--workers", "1"], catalog: Self.catalog)
        let client = StockClient(port: server.port, connections: 1, timeout: testCallTimeout)
        defer { client.close() }
        let orders = try await hooksMakeOrders(client, skus: Self.skus, count: 120, prefix: "T")
        let expected = try await hooksFeedEvents(port: server.port)
        let receiver = try HooksReceiver(seed: 7, answerDelaySeconds: 0.03)
        defer { receiver.stop() }
        let files = try Files()
        defer { files.dir.remove() }
        let hooks = try HooksProcess(Self.args(server: server, receiver: receiver, files: files,
                                               timeout: "5s", extra: ["--concurrency", "2"]))
        #expect(HooksProcess.waitFor(15) { receiver.acceptedCount >= 20 }, "no progress: \(hooks.stderr)")
        let code = hooks.terminate(SIGTERM, timeout: 10)
        #expect(code == 0, "SIGTERM exit: \(String(describing: code)); stderr: \(hooks.stderr)")
        #expect(hooks.stderr.contains("SIGTERM") && hooks.stderr.contains("stopped at offset"), "\(hooks.stderr)")
        let accepted = Set(receiver.firstAccepted.map(\.id))
        #expect(accepted.count < orders.lines.count, "the run was supposed to be stopped mid-stream")
        guard let persisted = hooksPersistedOffset(files.stateDir) else {
            Issue.record("no offset file after SIGTERM")
            return
        }
        let below = expected.keys.filter { $0 <= persisted }
        #expect(below.allSatisfy { accepted.contains(String($0)) }, "offset \(persisted) is ahead of deliveries")
        // Graceful: what was delivered before the stop is covered by the offset, except events behind a gap.
        let maxBelowGap = expected.keys.sorted().prefix { accepted.contains(String($0)) }.last ?? 0
        #expect(persisted >= maxBelowGap, "persisted \(persisted) but every event up to \(maxBelowGap) was delivered")
    }

    @Test("--max-attempts: a 503 forever is dead-lettered after exactly that many attempts; settings from STOCK_HOOKS_* variables")
    func maxAttemptsAndEnvironment() async throws {
        let server = try StockdProcess(["--workers", "1"], catalog: Self.catalog)
        let client = StockClient(port: server.port, connections: 1, timeout: testCallTimeout)
        defer { client.close() }
        _ = try await hooksMakeOrders(client, skus: Self.skus, count: 12, prefix: "M", bundleEvery: 0)
        let extra = try await client.reserve(sku: "HOOK-B", quantity: 1)
        try await client.release(extra.token)
        let expected = try await hooksFeedEvents(port: server.port, kinds: [.confirmed, .released])
        let failing = String(expected.keys.sorted()[2])
        let receiver = try HooksReceiver(seed: 1)
        defer { receiver.stop() }
        receiver.alwaysFail([failing])
        let files = try Files()
        defer { files.dir.remove() }
        let hooks = try HooksProcess(["--until-caught-up"], env: [
            "STOCKD_SERVER": "127.0.0.1:\(server.port)", "STOCK_HOOKS_URL": receiver.url,
            "STOCK_HOOKS_SECRET": Self.secret, "STOCK_HOOKS_STATE_DIR": files.stateDir,
            "STOCK_HOOKS_KIND": "confirmed,released", "STOCK_HOOKS_MAX_ATTEMPTS": "3",
            "STOCK_HOOKS_BACKOFF_INITIAL": "5ms", "STOCK_HOOKS_BACKOFF_MAX": "20ms", "STOCK_HOOKS_TIMEOUT": "2s",
        ])
        let code = hooks.waitForExit(timeout: 20)
        #expect(code == 0, "exit \(String(describing: code)); stderr: \(hooks.stderr)")
        Self.checkRequests(receiver, "max attempts")
        #expect(receiver.requests.filter { $0.eventID == failing }.count == 3)
        let dead = hooksDeadLetters(files.stateDir)
        #expect(dead.count == 1 && (dead.first?["status"] as? NSNumber)?.intValue == 503
                && (dead.first?["attempts"] as? NSNumber)?.intValue == 3, "\(dead)")
        let kinds = Set(receiver.requests.compactMap { hooksJSON($0.body)?["kind"] as? String })
        #expect(kinds == ["confirmed", "released"], "STOCK_HOOKS_KIND: \(kinds)")
        #expect(Set(receiver.firstAccepted.map(\.id)) == Set(expected.keys.map { String($0) }).subtracting([failing]))
    }

    @Test("command-line errors are one line and exit 2; an unreachable stockd is retried until SIGTERM; one process per state dir")
    func commandLineErrors() throws {
        let files = try Files()
        defer { files.dir.remove() }
        let missingURL = try runTool("stock-hooks", ["--secret-file", files.secretFile, "--state-dir", files.stateDir])
        #expect(missingURL.code == 2 && missingURL.stderrLines.count == 1 && missingURL.stderr.contains("--url"),
                "\(missingURL)")
        let badSecret = try runTool("stock-hooks", ["--url", "http://127.0.0.1:1/", "--secret-file",
                                                    files.dir.path("nope"), "--state-dir", files.stateDir])
        #expect(badSecret.code == 2 && badSecret.stderrLines.count == 1 && badSecret.stderr.contains("nope"),
                "\(badSecret)")
        let noSecret = try runTool("stock-hooks", ["--url", "http://127.0.0.1:1/", "--state-dir", files.stateDir])
        #expect(noSecret.code == 2 && noSecret.stderrLines.count == 1 && noSecret.stderr.contains("secret"), "\(noSecret)")
        let badKind = try runTool("stock-hooks", ["--url", "http://127.0.0.1:1/", "--secret-file", files.secretFile,
                                                  "--state-dir", files.stateDir, "--kind", "sold"])
        #expect(badKind.code == 2 && badKind.stderrLines.count == 1 && badKind.stderr.contains("confirmed"), "\(badKind)")
        let unknown = try runTool("stock-hooks", ["--frobnicate"])
        #expect(unknown.code == 2 && unknown.stderrLines.count == 1, "\(unknown)")

        // Unreachable stockd: retried with a log line, SIGTERM ends it with 0.
        let port = try unusedPort()
        let args = ["--server", "127.0.0.1:\(port)", "--url", "http://127.0.0.1:1/", "--secret-file", files.secretFile,
                    "--state-dir", files.stateDir]
        let waiting = try HooksProcess(args)
        #expect(HooksProcess.waitFor(5) { waiting.stderrLines.count >= 2 }, "no retry lines: \(waiting.stderr)")
        #expect(waiting.stderrLines.first?.contains("unreachable") == true, "\(waiting.stderr)")
        // The state dir is locked while it runs.
        let second = try runTool("stock-hooks", args)
        #expect(second.code == 1 && second.stderr.contains("in use"), "\(second)")
        #expect(waiting.terminate(SIGTERM, timeout: 5) == 0, "\(waiting.stderr)")
    }
}
