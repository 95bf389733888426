import Crypto
import Foundation
import Glibc
import StockClient
import TestSupport

// Running the built `stock-hooks` binary, and what the tests check its
// requests against.

/// A running `stock-hooks` (found next to the test runner like `stockctl`),
/// killed in `deinit` if still running.
final class HooksProcess {
    let process = Process()
    let stderrPath: String
    private let logs: TempDirectory

    /// The path of the built binary.
    static func binary() throws -> String {
        let fm = FileManager.default
        var candidates: [String] = []
        if let exe = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
            candidates += [dir, dir.deletingLastPathComponent()].map { $0.appendingPathComponent("stock-hooks").path }
        }
        guard let path = candidates.first(where: { fm.isExecutableFile(atPath: $0) }) else {
            throw HarnessError("stock-hooks executable not found; tried \(candidates.joined(separator: ", "))")
        }
        return path
    }

    /// Starts `stock-hooks args`; the environment is the test's minus every
    /// STOCKD_* / STOCK_HOOKS_* variable, plus `env`.
    init(_ args: [String], env: [String: String] = [:]) throws {
        logs = try TempDirectory(prefix: "stock-hooks-run")
        stderrPath = logs.path("stderr")
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        guard let err = FileHandle(forWritingAtPath: stderrPath) else { throw HarnessError("cannot open \(stderrPath)") }
        process.executableURL = URL(fileURLWithPath: try Self.binary())
        process.arguments = args
        var environment = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("STOCKD_") && !$0.key.hasPrefix("STOCK_HOOKS_")
        }
        for (k, v) in env { environment[k] = v }
        process.environment = environment
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        kill9()
        logs.remove()
    }

    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    var isRunning: Bool { process.isRunning }

    /// Waits for the exit (bounded); nil if still running.
    func waitForExit(timeout: Double) -> Int32? {
        StockdProcess.waitForExit(process, timeout: timeout) ? process.terminationStatus : nil
    }

    /// Sends `signal` and waits (bounded) for the exit code.
    func terminate(_ signal: Int32 = SIGTERM, timeout: Double = 15) -> Int32? {
        if process.isRunning { Glibc.kill(process.processIdentifier, signal) }
        return waitForExit(timeout: timeout)
    }

    func kill9() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = StockdProcess.waitForExit(process, timeout: 5)
        }
    }

    /// Polls `condition` every 20 ms for at most `timeout` seconds.
    static func waitFor(_ timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = monotonicSeconds() + timeout
        while !condition() {
            if monotonicSeconds() > deadline { return false }
            sleepSeconds(0.02)
        }
        return true
    }
}

/// `v1=` + hex HMAC-SHA256(secret, "<timestamp>.<body>"), recomputed independently of stock-hooks.
func hooksSignature(secret: String, timestamp: String, body: Data) -> String {
    let message = Data((timestamp + ".").utf8) + body
    let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(secret.utf8)))
    return "v1=" + mac.map { String(format: "%02x", $0) }.joined()
}

/// A JSON body as a dictionary.
func hooksJSON(_ body: Data) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: body) as? [String: Any]
}

/// The `offset` file of a state dir.
func hooksPersistedOffset(_ stateDir: String) -> UInt64? {
    guard let text = try? String(contentsOfFile: stateDir + "/offset", encoding: .utf8) else { return nil }
    return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
}

/// The dead-letter lines of a state dir, parsed.
func hooksDeadLetters(_ stateDir: String) -> [[String: Any]] {
    guard let text = try? String(contentsOfFile: stateDir + "/dead-letter.jsonl", encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
}

/// Every event of `kinds` on the feed so far, by offset (read with StockClient, to check deliveries against).
func hooksFeedEvents(port: Int, kinds: Set<EventKind> = [.confirmed], timeout: Double = 10) async throws
    -> [UInt64: FeedEvent] {
    let client = StockClient(port: port, connections: 1, timeout: testCallTimeout)
    defer { client.close() }
    let feed = try await client.events(from: .oldest, filter: EventFilter(kinds: kinds, includeProgress: true),
                                       resume: false)
    defer { feed.close() }
    var out: [UInt64: FeedEvent] = [:]
    let deadline = monotonicSeconds() + timeout
    if feed.end == 0 || feed.position >= feed.end { return out }
    for try await e in feed {
        if e.kind != .progress { out[e.offset] = e }
        if e.offset >= feed.end { break }
        if monotonicSeconds() > deadline { throw HarnessError("feed not read up to \(feed.end) within \(timeout) s") }
    }
    return out
}

/// What one order generator produced: every confirmed line as (order reference, SKU, units).
struct HooksOrders {
    var lines: Set<String> = []
    static func key(order: String, sku: String, quantity: Int) -> String { "\(order)|\(sku)|\(quantity)" }
}

/// Reserves and confirms `count` single orders round-robin over `skus`
/// (every `bundleEvery`-th one a bundle of three lines), and releases an
/// extra hold every 10 orders (an event stock-hooks must not send by default).
func hooksMakeOrders(_ client: StockClient, skus: [String], count: Int, prefix: String,
                     bundleEvery: Int = 25) async throws -> HooksOrders {
    var orders = HooksOrders()
    for i in 0..<count {
        let ref = "\(prefix)-\(i)"
        if bundleEvery > 0 && i % bundleEvery == bundleEvery - 1 && skus.count >= 3 {
            let lines = [(skus[i % skus.count], 1), (skus[(i + 1) % skus.count], 2), (skus[(i + 2) % skus.count], 1)]
            let b = try await client.reserveBundle(lines.map { (sku: $0.0, quantity: $0.1) }, customer: "c-\(i % 7)")
            try await client.confirm(b.token, orderReference: ref)
            for (sku, q) in lines { orders.lines.insert(HooksOrders.key(order: ref, sku: sku, quantity: q)) }
        } else {
            let sku = skus[i % skus.count]
            let q = 1 + i % 3
            let r = try await client.reserve(sku: sku, quantity: q, customer: i % 4 == 0 ? nil : "c-\(i % 7)")
            try await client.confirm(r.token, orderReference: ref)
            orders.lines.insert(HooksOrders.key(order: ref, sku: sku, quantity: q))
        }
        if i % 10 == 0 {
            let r = try await client.reserve(sku: skus[i % skus.count], quantity: 1)
            try await client.release(r.token)
        }
    }
    return orders
}
