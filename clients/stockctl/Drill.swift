import ArgumentParser
import Foundation
import Glibc
import StockClient

/// `stockctl drill`: the full order-to-dispatch path on a throwaway SKU, one
/// PASS / FAIL line per step (the pre-show "test with a dummy SKU").
struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Rehearse order-to-dispatch on a dummy SKU: stage, reserve, confirm, feed, release, expiry.",
        discussion: """
            Steps: connect, stage (STOCK_SET 10, only if the SKU has on-hand 0), reserve, confirm (order \
            DRILL-<ms>), feed-confirmed (the confirmed event on the event feed), webhook-check (with \
            --webhook-check: GET URL answers 2xx), reserve-for-release, release, feed-released, \
            reserve-for-expiry (ttl 1s), feed-expired, cleanup. Every call and every feed wait is bounded by \
            --timeout (the wait for the expiry by 1s + --timeout). The first failure stops the drill; clean-up still runs once stage passed. Clean-up \
            leaves no units on sale: the SKU stays in the catalog (there is no delete operation) with on-hand \
            equal to its confirmed units (1 once the confirm step passed; a sale cannot be undone). Drill SKUs \
            start with the reserved prefix DRILL- (a --sku without it is refused, exit 2), so `stock list`, \
            `watch`, `report` and its staging suggestion leave them out unless --include-drill. The drill \
            order is a real confirmed event, so a webhook receiver should recognise orders starting DRILL-.

            One line per step (PASS stage 3.2 ms); with --json, JSON Lines {"step","ok","ms","detail"}. \
            Exit 0 when every step passes, 1 on a failure, 69 when the server is unreachable at the start.
            """)

    @OptionGroup var options: GlobalOptions
    @Option(help: ArgumentHelp("The dummy SKU (default: DRILL-<unix ms>). It must start with DRILL- (reserved for "
                               + "tooling, so stock list, watch and report leave it out) and must not hold stock: the "
                               + "drill never overwrites it."))
    var sku: String?
    @Option(name: .customLong("webhook-check"),
            help: ArgumentHelp("A plain-HTTP health endpoint of the webhook receiver; a GET must answer 2xx.",
                               valueName: "url"))
    var webhookCheck: String?

    func validate() throws {
        if let sku {
            try Check.sku(sku)
            // A drill on a show's SKU would sell and take back real units, and its sale would count in the report.
            guard ReservedSKU.isDrill(sku) else {
                throw ValidationError("--sku \(sku): a drill SKU must start with \(ReservedSKU.drillPrefix) "
                                      + "(reserved for tooling), e.g. \(ReservedSKU.drillPrefix)\(sku)")
            }
        }
        if let webhookCheck { _ = try HealthCheck.Target(webhookCheck) }
    }

    func run() async throws {
        let started = wallClockMs()
        let drill = Drill(options: options, sku: sku ?? "\(ReservedSKU.drillPrefix)\(started)",
                          orderReference: "\(ReservedSKU.drillPrefix)\(started)",
                          webhook: try webhookCheck.map { try HealthCheck.Target($0) })
        let client = try options.makeClient()
        defer { client.close() }
        try await drill.run(client)
    }
}

/// A step failed; `detail` says why.
struct DrillFailure: Error {
    let detail: String
    init(_ detail: String) { self.detail = detail }
}

/// One drill run: the steps in order, their lines, and the clean-up.
final class Drill {
    let options: GlobalOptions
    let sku: String
    let orderReference: String
    let webhook: HealthCheck.Target?
    /// Tokens the drill holds that are not confirmed, released or expired yet.
    private var openTokens: [Token] = []
    private var failedStep: String?

    init(options: GlobalOptions, sku: String, orderReference: String, webhook: HealthCheck.Target?) {
        self.options = options
        self.sku = sku
        self.orderReference = orderReference
        self.webhook = webhook
    }

    func run(_ client: StockClient) async throws {
        // Unreachable at the start: exit 69 (a rejected credential: its own code).
        do {
            _ = try await timed("connect") { () async throws -> String in
                let hello = try await client.serverInfo()
                return "server \(options.address) (\(String(decoding: hello.serverName, as: UTF8.self)))"
            }
        } catch let error as StockError {
            throw CLIError("drill: cannot start: \(error)", code: ExitStatus.code(for: error))
        }

        guard await step("stage", {
            do {
                try await client.setStock(sku, onHand: 10, expected: 0)
            } catch StockError.stockChanged(let current) {
                throw DrillFailure("SKU '\(sku)' already has on-hand \(current): pick an unused --sku "
                                   + "(the drill never overwrites stock)")
            }
            return "\(sku) on-hand 10"
        }) else { return try await finish(staged: false, client) }

        _ = await rehearse(client)
        try await finish(staged: true, client)
    }

    /// The steps after staging; false at the first failure.
    private func rehearse(_ client: StockClient) async -> Bool {
        // Confirm, and see the order on the feed.
        var from = await feedPosition(client)
        var token = Token(slot: 0, generation: 0, secret: 0)
        guard await step("reserve", {
            token = try await client.reserve(sku: sku, quantity: 1).token
            openTokens.append(token)
            return "1 unit, token \(token)"
        }) else { return false }
        guard await step("confirm", {
            try await client.confirm(token, orderReference: orderReference)
            openTokens.removeAll { $0 == token }
            return "order \(orderReference)"
        }) else { return false }
        guard await step("feed-confirmed", {
            let e = try await awaitEvent(.confirmed, token: token, from: from, client)
            guard e.order.string == orderReference else {
                throw DrillFailure("confirmed event #\(e.offset) carries order '\(e.order.string)', "
                                   + "expected '\(orderReference)'")
            }
            return "event #\(e.offset) order \(orderReference)"
        }) else { return false }

        if let webhook {
            let timeoutMs = Int(options.timeout.milliseconds)
            guard await step("webhook-check", {
                let status = try await HealthCheck.get(webhook, timeoutMs: timeoutMs)
                guard (200...299).contains(status) else {
                    throw DrillFailure("GET \(webhook.text) answered HTTP \(status), expected 2xx")
                }
                return "GET \(webhook.text): HTTP \(status)"
            }) else { return false }
        }

        // Release, and see it on the feed.
        from = await feedPosition(client)
        guard await step("reserve-for-release", {
            token = try await client.reserve(sku: sku, quantity: 1).token
            openTokens.append(token)
            return "1 unit, token \(token)"
        }) else { return false }
        guard await step("release", {
            let units = try await client.release(token)
            openTokens.removeAll { $0 == token }
            return "\(units) unit\(units == 1 ? "" : "s") back on sale"
        }) else { return false }
        guard await step("feed-released", {
            "event #\(try await awaitEvent(.released, token: token, from: from, client).offset)"
        }) else { return false }

        // A hold that nobody confirms expires by itself.
        from = await feedPosition(client)
        guard await step("reserve-for-expiry", {
            token = try await client.reserve(sku: sku, quantity: 1, ttl: .seconds(1)).token
            openTokens.append(token)
            return "1 unit, ttl 1s, token \(token)"
        }) else { return false }
        guard await step("feed-expired", {
            let e = try await awaitEvent(.expired, token: token, from: from, after: 1000, client)
            openTokens.removeAll { $0 == token }
            return "event #\(e.offset)"
        }) else { return false }
        return true
    }

    /// Clean-up (once stage passed), then the exit status.
    private func finish(staged: Bool, _ client: StockClient) async throws {
        if staged {
            _ = await step("cleanup", { try await cleanUp(client) })
        }
        fflush(nil)
        if let failedStep {
            throw CLIError("drill failed at \(failedStep)", code: ExitStatus.failure)
        }
    }

    /// Releases the holds still open and takes every available unit off sale.
    private func cleanUp(_ client: StockClient) async throws -> String {
        for t in openTokens {
            _ = try? await client.release(t)  // may have expired meanwhile: nothing to give back then
        }
        openTokens = []
        // A hold expiring between the read and the set puts a unit back on sale: look again (bounded).
        for _ in 0..<3 {
            let info = try await client.stock(sku)
            if info.available == 0 {
                let kept = info.onHand
                return "\(sku) stays in the catalog (no delete operation) with on-hand \(kept)"
                    + (kept > 0 ? " (its confirmed unit\(kept == 1 ? "" : "s"), which cannot be undone)" : "")
                    + ", none on sale"
            }
            do {
                try await client.setStock(sku, onHand: info.onHand - info.available, expected: info.onHand)
            } catch StockError.stockChanged, StockError.insufficientAvailable {
                continue  // it moved under us: read again
            }
        }
        throw DrillFailure("\(sku) still has units on sale after 3 attempts: it is changing concurrently")
    }

    /// The feed's last offset now (from STATS `journal.durable_seq`): events
    /// of a step taken next come after it. `.oldest` when the server does not say.
    private func feedPosition(_ client: StockClient) async -> FeedPosition {
        guard let stats = try? await client.stats(),
              let seq = stats.first(where: { $0.name == "journal.durable_seq" })?.value
        else { return .oldest }
        return .offset(max(1, seq))
    }

    /// Subscribes from `from` and waits (at most `afterMs` + --timeout) for
    /// the `kind` event of `token` on the drill SKU.
    private func awaitEvent(_ kind: EventKind, token: Token, from: FeedPosition, after afterMs: UInt64 = 0,
                            _ client: StockClient) async throws -> FeedEvent {
        let feed = try await client.events(from: from, filter: EventFilter(kinds: [kind], skuPrefix: sku),
                                           resume: false)
        defer { feed.close() }
        let timeout = DurationValue(milliseconds: options.timeout.milliseconds + afterMs)
        let timer = Task {
            do {
                try await Task.sleep(for: timeout.duration)
                feed.close()  // ends the loop below
            } catch {}  // cancelled: the event came
        }
        defer { timer.cancel() }
        for try await e in feed where e.sku.string == sku && e.token == token {
            return e
        }
        throw DrillFailure("no \(kind.name) event for token \(token) within \(timeout)")
    }

    /// Runs one step, prints its line; false (and remembered) on failure.
    private func step(_ name: String, _ body: () async throws -> String) async -> Bool {
        do {
            _ = try await timed(name, body)
            return true
        } catch {
            return false
        }
    }

    /// Runs one step and prints its line; rethrows its failure after printing it.
    private func timed(_ name: String, _ body: () async throws -> String) async throws -> String {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let detail = try await body()
            report(name, ok: true, ms: Self.ms(clock.now - start), detail: detail)
            return detail
        } catch {
            report(name, ok: false, ms: Self.ms(clock.now - start), detail: Self.describe(error))
            if failedStep == nil { failedStep = name }
            throw error
        }
    }

    private func report(_ name: String, ok: Bool, ms: Double, detail: String) {
        if options.json {
            print(JSON.object([("step", .string(name)), ("ok", .bool(ok)), ("ms", .double(ms)),
                               ("detail", .string(detail))]).rendered)
        } else if ok {
            print("PASS \(name) \(String(format: "%.1f", ms)) ms (\(detail))")
        } else {
            print("FAIL \(name): \(detail) (\(String(format: "%.1f", ms)) ms)")
        }
        fflush(nil)  // a watching operator sees each step as it ends
    }

    static func ms(_ d: Duration) -> Double {
        let c = d.components
        return Double(c.seconds) * 1000 + Double(c.attoseconds) / 1e15
    }

    /// A failure as one line, led by the server's status name where there is one.
    static func describe(_ error: any Error) -> String {
        if let f = error as? DrillFailure { return f.detail }
        guard let e = error as? StockError else { return "\(error)" }
        switch e {
        case .feedUnavailable: return "FEED_UNAVAILABLE: \(e)"
        case .offsetCompacted: return "OFFSET_COMPACTED: \(e)"
        case .stockChanged: return "STOCK_CHANGED: \(e)"
        case .insufficientAvailable: return "INSUFFICIENT_AVAILABLE: \(e)"
        case .outOfStock: return "OUT_OF_STOCK: \(e)"
        case .unknownSKU: return "UNKNOWN_SKU: \(e)"
        case .tokenExpired: return "TOKEN_EXPIRED: \(e)"
        case .tokenUnknown: return "TOKEN_UNKNOWN: \(e)"
        case .customerLimit: return "CUSTOMER_LIMIT: \(e)"
        default: return "\(e)"
        }
    }
}

/// The webhook receiver's health check: one HTTP/1.1 GET over a plain POSIX
/// socket (stockctl links no HTTP library), bounded by a deadline.
enum HealthCheck {
    /// An `http://host[:port][/path]` URL, checked up front.
    struct Target: Sendable {
        let text: String
        let host: String
        let port: Int
        let pathAndQuery: String
        let hostHeader: String

        init(_ text: String) throws {
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased() else {
                throw ValidationError("--webhook-check '\(text)': not a URL")
            }
            guard scheme == "http" else {
                throw ValidationError("--webhook-check '\(text)': only http:// is supported "
                                      + "(point it at the receiver's plain-HTTP health endpoint)")
            }
            guard let host = url.host, !host.isEmpty else {
                throw ValidationError("--webhook-check '\(text)': no host")
            }
            let port = url.port ?? 80
            guard (1...65535).contains(port) else { throw ValidationError("--webhook-check '\(text)': bad port") }
            self.text = text
            self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
            self.port = port
            var path = url.path.isEmpty ? "/" : url.path
            if let q = url.query { path += "?" + q }
            pathAndQuery = path
            let bare = self.host.contains(":") ? "[\(self.host)]" : self.host
            hostHeader = port == 80 ? bare : "\(bare):\(port)"
        }
    }

    /// The HTTP status of a GET to `target`, on a thread of its own (the
    /// socket calls block); throws `DrillFailure` when there is none within `timeoutMs`.
    static func get(_ target: Target, timeoutMs: Int) async throws -> Int {
        let result: Result<Int, DrillFailure> = await withCheckedContinuation { done in
            Thread.detachNewThread {
                done.resume(returning: fetchStatus(target, deadlineNs: nowNs() + UInt64(timeoutMs) * 1_000_000))
            }
        }
        return try result.get()
    }

    static func nowNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    private static func remainingMs(_ deadlineNs: UInt64) -> Int32 {
        let now = nowNs()
        return now >= deadlineNs ? 0 : Int32(min(Int64(Int32.max), Int64((deadlineNs - now) / 1_000_000) + 1))
    }

    private static func fetchStatus(_ t: Target, deadlineNs: UInt64) -> Result<Int, DrillFailure> {
        let fd: Int32
        switch connect(t, deadlineNs: deadlineNs) {
        case .success(let s): fd = s
        case .failure(let f): return .failure(f)
        }
        defer { close(fd) }
        let request = "GET \(t.pathAndQuery) HTTP/1.1\r\nHost: \(t.hostHeader)\r\nUser-Agent: stockctl-drill\r\n"
            + "Accept: */*\r\nConnection: close\r\n\r\n"
        var bytes = Array(request.utf8)
        while !bytes.isEmpty {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, remainingMs(deadlineNs)) == 1 else {
                return .failure(DrillFailure("GET \(t.text): timed out sending the request"))
            }
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard n > 0 else { return .failure(DrillFailure("GET \(t.text): send: \(String(cString: strerror(errno)))")) }
            bytes.removeFirst(n)
        }
        // The status line is all we need: "HTTP/1.1 200 OK\r\n".
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !received.contains(10) && received.count < 8192 {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, remainingMs(deadlineNs)) == 1 else {
                return .failure(DrillFailure("GET \(t.text): no answer within the timeout"))
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard n > 0 else { return .failure(DrillFailure("GET \(t.text): connection closed without an answer")) }
            received += chunk[..<n]
        }
        let line = String(decoding: received.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]), (100...999).contains(status)
        else { return .failure(DrillFailure("GET \(t.text): not an HTTP answer: '\(line.prefix(60))'")) }
        return .success(status)
    }

    /// A non-blocking TCP socket connected to `t` (every resolved address in turn).
    private static func connect(_ t: Target, deadlineNs: UInt64) -> Result<Int32, DrillFailure> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(t.host, String(t.port), &hints, &list)
        guard rc == 0, list != nil else {
            return .failure(DrillFailure("GET \(t.text): \(t.host): \(String(cString: gai_strerror(rc)))"))
        }
        defer { freeaddrinfo(list) }
        var why = "no address"
        var next = list
        while let ai = next {
            next = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            guard fd >= 0 else { why = String(cString: strerror(errno)); continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return .success(fd) }
            guard errno == EINPROGRESS else {
                why = String(cString: strerror(errno))
                close(fd)
                continue
            }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, remainingMs(deadlineNs)) == 1 else {
                close(fd)
                return .failure(DrillFailure("GET \(t.text): connect timed out"))
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err == 0 { return .success(fd) }
            why = String(cString: strerror(err))
            close(fd)
        }
        return .failure(DrillFailure("GET \(t.text): cannot connect: \(why)"))
    }
}
