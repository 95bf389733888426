import Foundation
import Glibc
import StockClient
import StockProtocol
import Testing
import TestSupport

// `stockd --metrics-port`: a real stockd, scraped over HTTP by the test.

/// One HTTP/1.1 request on a fresh loopback connection, read until the
/// server closes (it answers `Connection: close`); the status code and body.
func httpRequest(port: Int, _ raw: String, timeout: Double = 5) throws -> (status: Int, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { Glibc.close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw HarnessError("cannot connect to the metrics port \(port)") }
    try RawClient.sendAll(fd: fd, Array(raw.utf8))
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        if n <= 0 { break }
        data += buffer[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let sep = text.range(of: "\r\n\r\n") else { throw HarnessError("no HTTP head in \(text.prefix(200))") }
    let statusLine = text[..<sep.lowerBound].split(separator: "\r\n").first ?? ""
    let code = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
    return (code, String(text[sep.upperBound...]))
}

/// Parses the Prometheus text format strictly enough to catch a malformed
/// line: `# HELP`/`# TYPE` comments, then `name{label="value",...} number`.
/// Returns the samples by `name{labels}` (labels as written) and the declared types.
func parsePrometheus(_ text: String) throws -> (samples: [String: Double], types: [String: String]) {
    var samples: [String: Double] = [:]
    var types: [String: String] = [:]
    let name = try Regex(#"^[a-zA-Z_:][a-zA-Z0-9_:]*$"#)
    let sampleLine = try Regex(#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*)\})? (\S+)$"#)
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
        if line.hasPrefix("# HELP ") { continue }
        if line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            guard parts.count == 4, parts[2].wholeMatch(of: name) != nil,
                  ["counter", "gauge", "histogram", "summary", "untyped"].contains(String(parts[3])) else {
                throw HarnessError("bad TYPE line: \(line)")
            }
            types[String(parts[2])] = String(parts[3])
            continue
        }
        guard let m = line.wholeMatch(of: sampleLine), let valueText = m.output[7].substring,
              let value = Double(valueText) ?? (valueText == "+Inf" ? .infinity : nil) else {
            throw HarnessError("bad sample line: \(line)")
        }
        let family = String(m.output[1].substring!).replacingOccurrences(of: "_bucket", with: "")
            .replacingOccurrences(of: "_sum", with: "").replacingOccurrences(of: "_count", with: "")
        guard types[family] != nil || types[String(m.output[1].substring!)] != nil else {
            throw HarnessError("sample before its TYPE: \(line)")
        }
        samples[String(line[..<line.lastIndex(of: " ")!])] = value
    }
    return (samples, types)
}

@Suite(.ownThread) struct MetricsTests {
    @Test("GET /metrics: valid Prometheus text; counters, histograms and per-SKU gauges follow the traffic")
    func scrape() async throws {
        let files = try TempDirectory(prefix: "stockd-metrics")
        defer { files.remove() }
        let server = try StockdProcess(["--metrics-port", "0", "--metrics-port-file", files.path("mport"),
                                        "--metrics-max-skus", "2"],
                                       catalog: "M-A,10\nM-B,5\nM-C,7\n")
        let mport = try #require(Int((try String(contentsOfFile: files.path("mport"), encoding: .utf8))
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        let get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        let first = try httpRequest(port: mport, get)
        #expect(first.status == 200)
        let before = try parsePrometheus(first.body)
        #expect(before.types["stockd_requests_total"] == "counter")
        #expect(before.types["stockd_request_duration_seconds"] == "histogram")
        #expect(before.types["stockd_journal_fsync_seconds"] == "histogram")
        #expect(before.samples["stockd_sku_available{sku=\"M-A\"}"] == 10)
        #expect(before.samples["stockd_sku_available{sku=\"M-C\"}"] == nil, "--metrics-max-skus 2")

        let client = StockClient(port: server.port, timeout: testCallTimeout)
        defer { client.close() }
        for _ in 0..<3 {
            let r = try await client.reserve(sku: "M-A", quantity: 2)
            try await client.confirm(r.token)
        }
        let held = try await client.reserve(sku: "M-B", quantity: 1)
        _ = try? await client.reserve(sku: "M-NONE", quantity: 1)
        let after = try parsePrometheus(try httpRequest(port: mport, get).body).samples
        #expect(after["stockd_requests_total{op=\"RESERVE\",status=\"OK\"}"] == 4)
        #expect(after["stockd_requests_total{op=\"RESERVE\",status=\"UNKNOWN_SKU\"}"] == 1)
        #expect(after["stockd_requests_total{op=\"CONFIRM\",status=\"OK\"}"] == 3)
        #expect(after["stockd_tokens_live"] == 1 && after["stockd_confirms_total"] == 3)
        #expect(after["stockd_sku_available{sku=\"M-A\"}"] == 4 && after["stockd_sku_confirmed{sku=\"M-A\"}"] == 6)
        #expect(after["stockd_sku_reserved{sku=\"M-B\"}"] == 1)
        // Histograms: cumulative buckets, +Inf equals the count. Request latency is one histogram per
        // operation (label op, as in stockd_requests_total); the journal's fsync histogram has no labels.
        for (family, op) in [("stockd_request_duration_seconds", "RESERVE"), ("stockd_journal_fsync_seconds", "")] {
            let labels = op.isEmpty ? "" : ",op=\"\(op)\""
            let buckets = after.filter { $0.key.hasPrefix(family + "_bucket{") && $0.key.hasSuffix(labels + "}") }
            #expect(buckets.count >= 20)
            let inf = try #require(after["\(family)_bucket{le=\"+Inf\"\(labels)}"])
            let count = after[op.isEmpty ? "\(family)_count" : "\(family)_count{op=\"\(op)\"}"]
            #expect(inf == count && inf > 0, "\(family)")
            #expect(buckets.values.allSatisfy { $0 <= inf })
        }
        let reserves = "stockd_request_duration_seconds_count{op=\"RESERVE\"}"
        #expect((after[reserves] ?? 0) > (before.samples[reserves] ?? 0))
        #expect(after["stockd_request_duration_seconds_count"] == nil, "no unlabelled series beside the per-op ones")
        try await client.release(held.token)

        // Anything else is a clean HTTP error, and the endpoint keeps serving.
        #expect(try httpRequest(port: mport, "GET /other HTTP/1.1\r\n\r\n").status == 404)
        #expect(try httpRequest(port: mport, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status == 405)
        #expect(try httpRequest(port: mport, "garbage\r\n\r\n").status == 400)
        #expect(try httpRequest(port: mport, "GET /metrics HTTP/1.1\r\n" + String(repeating: "X-Pad: y\r\n", count: 1000)).status == 431)
        #expect(try httpRequest(port: mport, get).status == 200)
    }

    @Test("a bad --metrics-port is one line and exit 2")
    func flags() throws {
        let bad = try #require(try StockdProcess.runToExit(["--metrics-port", "70000", "--port", "0", "--sync", "none"]))
        #expect(bad.code == 2 && bad.stderrLines.count == 1 && bad.stderr.contains("--metrics-port"), "\(bad)")
    }
}
