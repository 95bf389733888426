import Foundation
import Glibc
import StockProtocol
import Testing
import TestSupport

// The operator-facing surface of a real stockd: GET /healthz and /ready on the metrics port,
// stockd_build_info, the per-operation latency histogram, drill SKUs kept out of the per-SKU
// series, the feed-lag gauge, --log-format json, and the systemd notification protocol.

/// The port in a port file stockd wrote (it writes it whole: temp file + rename).
func portFromFile(_ path: String) throws -> Int {
    try #require(Int((try String(contentsOfFile: path, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)),
                 "no port in \(path)")
}

/// A GET on the metrics port.
func httpGet(_ port: Int, _ path: String) throws -> (status: Int, body: String) {
    try httpRequest(port: port, "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
}

/// Polls `body` every 20 ms until it returns true; false after `timeout` seconds.
func eventually(timeout: Double, _ body: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonicSeconds() + timeout
    while monotonicSeconds() < deadline {
        if try body() { return true }
        sleepSeconds(0.02)
    }
    return try body()
}

/// A stockd with a metrics port; `mport` is that port.
struct MetricsStockd {
    let files: TempDirectory
    let server: StockdProcess
    let mport: Int

    init(_ extra: [String] = [], catalog: String? = nil) throws {
        files = try TempDirectory(prefix: "stockd-ops")
        do {
            server = try StockdProcess(["--metrics-port", "0", "--metrics-port-file", files.path("mport")] + extra,
                                       catalog: catalog)
            mport = try portFromFile(files.path("mport"))
        } catch {
            files.remove()
            throw error
        }
    }

    func scrape() throws -> (samples: [String: Double], types: [String: String]) {
        let r = try httpGet(mport, "/metrics")
        guard r.status == 200 else { throw HarnessError("GET /metrics: \(r.status) \(r.body)") }
        return try parsePrometheus(r.body)
    }

    func remove() { files.remove() }
}

@Suite(.ownThread, .serialized) struct OpsEndpointTests {
    @Test("GET /healthz is 200 ok, GET /ready is 200 ready once started; other paths and methods unchanged")
    func probes() throws {
        let m = try MetricsStockd()
        defer { m.remove() }
        let live = try httpGet(m.mport, "/healthz")
        #expect(live.status == 200 && live.body == "ok\n", "\(live)")
        // start() returns once every loop runs, and the port file is written after it: ready at once.
        let ready = try httpGet(m.mport, "/ready")
        #expect(ready.status == 200 && ready.body == "ready\n", "\(ready)")
        #expect(try httpGet(m.mport, "/ready?verbose=1").status == 200, "a query string is ignored, as for /metrics")
        #expect(try httpRequest(port: m.mport, "POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status == 405)
        #expect(try httpRequest(port: m.mport, "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status == 405)
        let other = try httpGet(m.mport, "/other")
        #expect(other.status == 404 && other.body.contains("/ready"), "\(other)")
        #expect(try m.scrape().samples["stockd_ready"] == 1)

        let stopped = try #require(m.server.terminate(), "stockd did not stop on SIGTERM")
        #expect(stopped.code == 0 && !stopped.signaled, "\(stopped)")
    }

    @Test("stockd_build_info is one gauge sample of 1 with version and commit labels")
    func buildInfo() throws {
        let m = try MetricsStockd()
        defer { m.remove() }
        let scrape = try m.scrape()
        #expect(scrape.types["stockd_build_info"] == "gauge")
        let info = scrape.samples.filter { $0.key.hasPrefix("stockd_build_info{") }
        #expect(info.count == 1, "\(info)")
        let key = try #require(info.keys.first)
        #expect(info[key] == 1)
        #expect(key.contains("commit=\"") && key.contains("version=\""), "\(key)")
        #expect(!key.contains("version=\"\""), "an empty version: \(key)")
    }

    @Test("the request-duration histogram has one series per operation, each count equal to that operation's answers")
    func perOperationHistogram() throws {
        let m = try MetricsStockd(catalog: "OPS-H,100\n")
        defer { m.remove() }
        let c = try m.server.connect()
        defer { c.close() }
        var tokens: [Token] = []
        for _ in 0..<3 { tokens.append(try c.reserveOK("OPS-H", 1).token) }
        #expect(try c.confirm(tokens[0]).status == .ok)
        for _ in 0..<2 { #expect(try c.stockGet("OPS-H").status == .ok) }
        #expect(try c.reserve("OPS-NONE", 1).status == .unknownSKU)  // a refusal is an answer too

        let s = try m.scrape().samples
        #expect(s["stockd_request_duration_seconds_count{op=\"RESERVE\"}"] == 4, "3 OK + 1 UNKNOWN_SKU")
        #expect(s["stockd_request_duration_seconds_count{op=\"CONFIRM\"}"] == 1)
        #expect(s["stockd_request_duration_seconds_count{op=\"STOCK_GET\"}"] == 2)
        #expect(s["stockd_request_duration_seconds_count{op=\"RELEASE\"}"] == nil, "no RELEASE answered: no series")
        #expect(s["stockd_request_duration_seconds_count"] == nil, "no unlabelled series beside the per-op ones")
        for op in ["RESERVE", "CONFIRM", "STOCK_GET"] {
            let count = try #require(s["stockd_request_duration_seconds_count{op=\"\(op)\"}"])
            #expect(s["stockd_request_duration_seconds_bucket{le=\"+Inf\",op=\"\(op)\"}"] == count, "\(op)")
            let buckets = s.filter { $0.key.hasPrefix("stockd_request_duration_seconds_bucket{") && $0.key.hasSuffix("op=\"\(op)\"}") }
            #expect(buckets.count == 24, "\(op): \(buckets.count) buckets")
            #expect(buckets.values.allSatisfy { $0 <= count }, "\(op)")
            let sum = try #require(s["stockd_request_duration_seconds_sum{op=\"\(op)\"}"])
            #expect(sum > 0 && sum < count * 5, "\(op): sum \(sum) s over \(count) answers")
        }
    }

    @Test("drill SKUs have no per-SKU series and do not take a --metrics-max-skus slot")
    func drillSKUsLeftOut() throws {
        // The drill SKU comes first in catalog order; with room for one SKU, the show's SKU gets it.
        let m = try MetricsStockd(["--metrics-max-skus", "1"],
                                  catalog: "\(ReservedSKU.drillPrefix)1764000000000,5\nSHOW-OPS-A,7\n")
        defer { m.remove() }
        let s = try m.scrape().samples
        #expect(s["stockd_sku_available{sku=\"SHOW-OPS-A\"}"] == 7)
        #expect(!s.keys.contains { $0.contains("sku=\"\(ReservedSKU.drillPrefix)") }, "\(s.keys.filter { $0.contains("DRILL") })")
        #expect(s["stockd_skus"] == 2, "the catalog size still counts every SKU")
    }

    @Test("stockd_feed_subscriber_lag_max: a feed that takes no more credit falls behind; 0 once it is gone")
    func feedLag() throws {
        let m = try MetricsStockd(catalog: "OPS-LAG,1000\n")
        defer { m.remove() }
        #expect(try m.scrape().samples["stockd_feed_subscriber_lag_max"] == 0)
        let feed = try m.server.connect()
        _ = try feed.sendRequest(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 1)))
        let c = try m.server.connect()
        defer { c.close() }
        for _ in 0..<30 { _ = try c.reserveOK("OPS-LAG", 1) }  // one record each
        // Credit 1: the feed examined one record at most; the hub refreshes the gauge every 100 ms.
        var lag = 0.0
        let behind = try eventually(timeout: 5) {
            lag = try m.scrape().samples["stockd_feed_subscriber_lag_max"] ?? -1
            return lag >= 29
        }
        #expect(behind, "30 records journaled after SUBSCRIBE with credit 1; lag \(lag)")
        feed.close()
        let caughtUp = try eventually(timeout: 5) { try m.scrape().samples["stockd_feed_subscriber_lag_max"] == 0 }
        #expect(caughtUp, "the lag of a closed feed still counts")
    }

    @Test("a failed journal (EFBIG) makes GET /ready 503 naming it, while /healthz stays 200")
    func notReadyAfterJournalFailure() throws {
        // The failing disk of DiskFaultTests: the running process's file-size limit is lowered
        // just past the open segment's end, so a record write soon fails with EFBIG.
        let m = try MetricsStockd(["--segment-size", "64", "--workers", "1"], catalog: "OPS-FAULT,1000000\n")
        defer { m.remove() }
        let c = try m.server.connect()
        _ = try c.reserveOK("OPS-FAULT", 1, ttlMs: 600_000)
        let bytes = try #require(try c.stats()["journal.bytes"])
        try FileSizeLimit.set(pid: m.server.pid, bytes: bytes + 4096 + 37)
        let deadline = monotonicSeconds() + 30
        var refused = false
        while !refused && monotonicSeconds() < deadline {
            guard let r = try? c.reserve("OPS-FAULT", 1, ttlMs: 600_000) else { break }  // closed: outcome unknown
            refused = r.status == .storageFailed
        }
        c.close()
        let failed = try eventually(timeout: 10) { try m.scrape().samples["stockd_journal_failed"] == 1 }
        try #require(failed, "the journal never failed; stderr: \(m.server.diagnostics)")

        let ready = try httpGet(m.mport, "/ready")
        #expect(ready.status == 503, "\(ready)")
        #expect(ready.body.hasPrefix("journal failed") && ready.body.hasSuffix("\n")
                && ready.body.split(separator: "\n").count == 1, "one line naming the journal: \(ready.body)")
        let live = try httpGet(m.mport, "/healthz")
        #expect(live.status == 200 && live.body == "ok\n", "a refusing stockd is alive (reads still answered): \(live)")
        #expect(try m.scrape().samples["stockd_ready"] == 0)
        _ = m.server.terminate()
    }

    @Test("--log-format json: one JSON object per line, fields timestamp/level/label/message, values in metadata")
    func jsonLogs() throws {
        let m = try MetricsStockd(["--log-format", "json"])
        defer { m.remove() }
        let port = m.server.port
        let stopped = try #require(m.server.terminate(), "stockd did not stop on SIGTERM")
        #expect(stopped.code == 0, "\(stopped)")
        var objects: [[String: Any]] = []
        for line in stopped.stderrLines {
            let parsed = try? JSONSerialization.jsonObject(with: Data(line.utf8))
            let object = try #require(parsed as? [String: Any], "not a JSON object: \(line)")
            for key in ["timestamp", "level", "label", "message"] {
                #expect(object[key] is String, "\(key) missing in \(line)")
            }
            #expect((object["timestamp"] as? String)?.hasSuffix("Z") == true, "UTC timestamp: \(line)")
            objects.append(object)
        }
        let listening = try #require(objects.first { $0["message"] as? String == "listening" }, "\(stopped.stderr)")
        #expect(listening["level"] as? String == "info" && listening["label"] as? String == "stockd")
        #expect((listening["port"] as? NSNumber)?.intValue == port, "the port is a number field: \(listening)")
        #expect((listening["workers"] as? NSNumber)?.intValue ?? 0 >= 1)
        #expect(listening["host"] as? String == "127.0.0.1")
        #expect((listening["metrics"] as? String)?.hasSuffix(":\(m.mport)/metrics") == true, "\(listening)")
        let recovery = try #require(objects.first { $0["message"] as? String == "recovery: done" })
        #expect(recovery["records_replayed"] is NSNumber && recovery["next_seq"] is NSNumber, "\(recovery)")
        let stopping = try #require(objects.first { $0["message"] as? String == "stopping" })
        #expect(stopping["signal"] as? String == "SIGTERM")
        let end = try #require(objects.first { $0["message"] as? String == "stopped" })
        #expect(end["requests"] is NSNumber && end["connections_served"] is NSNumber, "\(end)")
    }

    @Test("--log-format text: TIME LEVEL stockd: MESSAGE key=value, without the doubled stockd: [stockd] prefix")
    func textLogs() throws {
        let server = try StockdProcess()
        let stopped = try #require(server.terminate())
        let lines = stopped.stderrLines
        #expect(!lines.isEmpty)
        #expect(!stopped.stderr.contains("[stockd]") && !stopped.stderr.contains("stockd: stockd"), "\(stopped.stderr)")
        let listening = try #require(lines.first { $0.contains(" info stockd: listening ") }, "\(stopped.stderr)")
        #expect(listening.contains(" port=\(server.port)") && listening.contains(" host=127.0.0.1"), "\(listening)")
        let stamp = try Regex(#"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (trace|debug|info|notice|warning|error|critical) stockd: "#)
        for line in lines { #expect(line.firstMatch(of: stamp) != nil, "\(line)") }
    }

    @Test("a bad --log-format is one line and exit 2")
    func badLogFormat() throws {
        let bad = try #require(try StockdProcess.runToExit(["--log-format", "xml", "--port", "0", "--sync", "none"]))
        #expect(bad.code == 2 && bad.stderrLines.count == 1 && bad.stderr.contains("--log-format"), "\(bad)")
    }

    @Test("sd_notify: READY=1 once listening, STOPPING=1 on SIGTERM, to a path or an abstract NOTIFY_SOCKET",
          arguments: [false, true])
    func systemdNotify(abstract: Bool) throws {
        let files = try TempDirectory(prefix: "stockd-notify")
        defer { files.remove() }
        let name = abstract ? "@stockd-test-\(getpid())-\(UUID().uuidString.prefix(8))" : files.path("notify.sock")
        let socket = try NotifyReceiver(name: name)
        defer { socket.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: try StockdBinary.path())
        process.arguments = ["--host", "127.0.0.1", "--port", "0", "--port-file", files.path("port"),
                             "--data-dir", files.path("data"), "--segment-size", "4"]
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = name
        process.environment = env
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            _ = StockdProcess.waitForExit(process, timeout: 5)
        }

        let ready = try #require(try socket.receive(timeout: 15), "no notification within 15 s")
        #expect(ready.split(separator: "\n").contains("READY=1"), "\(ready)")
        // READY=1 comes after the port file: a unit ordered after stockd can connect at once.
        let port = try portFromFile(files.path("port"))
        #expect(try RawClient(port: port).ping().status == .ok)

        kill(process.processIdentifier, SIGTERM)
        let stopping = try #require(try socket.receive(timeout: 10), "no STOPPING=1 after SIGTERM")
        #expect(stopping == "STOPPING=1", "\(stopping)")
        #expect(StockdProcess.waitForExit(process, timeout: 10) && process.terminationStatus == 0)
    }
}

/// A unix datagram socket standing in for systemd's notification socket: a
/// filesystem path, or an abstract name when it starts with `@`.
final class NotifyReceiver {
    let fd: Int32
    let name: String

    init(name: String) throws {
        self.name = name
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket(AF_UNIX, SOCK_DGRAM): \(String(cString: strerror(errno)))") }
        var bytes = Array(name.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw HarnessError("socket name too long: \(name)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0 else {
            Glibc.close(fd)
            throw HarnessError("bind \(name): \(String(cString: strerror(errno)))")
        }
    }

    /// The next datagram's text, or nil after `timeout` seconds.
    func receive(timeout: Double) throws -> String? {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return nil }
        guard n >= 0 else { throw HarnessError("recv on \(name): \(String(cString: strerror(errno)))") }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    func close() {
        Glibc.close(fd)
        if !name.hasPrefix("@") { unlink(name) }
    }
}
