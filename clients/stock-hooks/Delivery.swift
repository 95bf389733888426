import AsyncHTTPClient
import Glibc

/// Retry settings: exponential backoff with full jitter.
struct RetryPolicy: Sendable {
    /// 0: retry forever.
    var maxAttempts: Int
    var initialMs: Int
    var maxMs: Int

    /// The delay before attempt `failed + 1`: uniform in
    /// 0 ... min(max, initial × 2^(failed − 1)) ("full jitter": clients
    /// that failed together do not come back together).
    func delayMs(afterFailedAttempts failed: Int) -> Int {
        let exponent = min(max(failed - 1, 0), 30)
        let ceiling = min(maxMs, initialMs.multipliedReportingOverflow(by: 1 << exponent).partialValue)
        return ceiling <= 0 ? 0 : Int.random(in: 0...ceiling)
    }
}

/// What became of one event.
enum Outcome: Sendable {
    /// A 2xx answer.
    case delivered
    /// Written to the dead-letter file (a 3xx or 4xx other than 408/429, or
    /// `--max-attempts` used up).
    case deadLettered
    /// Given up because of a stop; the event stays above the watermark.
    case abandoned
    /// The dead-letter file could not be written; the event stays above the watermark.
    case failed(HooksError)
}

/// Posts events to the receiver, with retries and dead-lettering.
final class Deliverer: Sendable {
    let http: HTTPClient
    let url: String
    let signer: Signer
    let timeoutMs: Int
    let policy: RetryPolicy
    let state: StateDir
    let control: Control
    let retryLog = RetryLog()

    /// Bytes of a response body kept for the dead-letter file and logs.
    static let snippetBytes = 512
    /// Bytes of a response body read at most (the rest is dropped with the connection).
    static let maxBodyBytes = 64 * 1024

    init(http: HTTPClient, url: String, signer: Signer, timeoutMs: Int, policy: RetryPolicy, state: StateDir,
         control: Control) {
        self.http = http
        self.url = url
        self.signer = signer
        self.timeoutMs = timeoutMs
        self.policy = policy
        self.state = state
        self.control = control
    }

    /// One attempt's result.
    enum Attempt: Sendable {
        case answered(status: Int, snippet: String, retryAfterMs: Int?)
        /// Connection refused or dropped, timeout, TLS failure…
        case transportFailure(String)
    }

    /// Delivers `job`: 2xx → delivered; 408, 429, 5xx and transport
    /// failures → retried after a backoff (until `--max-attempts`); any
    /// other status → dead-lettered at once. A stop abandons retries.
    func deliver(_ job: Job) async -> Outcome {
        var attempt = 0
        while true {
            attempt += 1
            let result = await post(job)
            var retryAfterMs: Int?
            let reason: String
            let status: Int
            let snippet: String
            switch result {
            case .answered(let code, let text, let after):
                if (200...299).contains(code) { return .delivered }
                status = code
                snippet = text
                retryAfterMs = after
                reason = "HTTP \(code)"
                if !Self.isRetryable(status: code) {
                    return deadLetter(job, status: code, snippet: text, error: nil, attempts: attempt)
                }
            case .transportFailure(let description):
                status = 0
                snippet = ""
                reason = description
            }
            if policy.maxAttempts > 0 && attempt >= policy.maxAttempts {
                return deadLetter(job, status: status, snippet: snippet, error: reason, attempts: attempt)
            }
            if control.isStopping { return .abandoned }
            var delay = policy.delayMs(afterFailedAttempts: attempt)
            if let retryAfterMs { delay = min(max(delay, retryAfterMs), policy.maxMs) }
            retryLog.note(offset: job.offset, lane: job.lane, attempt: attempt, reason: reason, delayMs: delay)
            guard await control.sleep(ms: delay) else { return .abandoned }
        }
    }

    /// 408 Request Timeout, 429 Too Many Requests and 5xx are worth another try.
    static func isRetryable(status: Int) -> Bool {
        status == 408 || status == 429 || (500...599).contains(status)
    }

    /// One POST. `--timeout` bounds it from connect to the response head
    /// (AsyncHTTPClient's deadline); the body is then read only until the
    /// same deadline or `maxBodyBytes`, whichever comes first (a stalled
    /// body also trips the client's read timeout), after which the status
    /// stands and the connection is dropped instead of reused.
    ///
    /// No timer task per request: racing a sleeping child task against the
    /// request cost about 40% more CPU per event in the throughput run.
    func post(_ job: Job) async -> Attempt {
        let timestamp = unixSeconds()
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "stock-hooks/1")
        request.headers.add(name: "Stockd-Event-Id", value: String(job.offset))
        request.headers.add(name: "Stockd-Event-Kind", value: job.kind)
        request.headers.add(name: "Stockd-Timestamp", value: String(timestamp))
        request.headers.add(name: "Stockd-Signature", value: signer.signature(timestamp: timestamp, body: job.body))
        request.body = .bytes(job.body)
        let deadlineNs = monotonicNs() + UInt64(timeoutMs) * 1_000_000
        do {
            let response = try await http.execute(request, timeout: .milliseconds(Int64(timeoutMs)))
            var kept: [UInt8] = []
            var total = 0
            for try await chunk in response.body {
                if kept.count < Self.snippetBytes {
                    kept += chunk.readableBytesView.prefix(Self.snippetBytes - kept.count)
                }
                total += chunk.readableBytes
                if total > Self.maxBodyBytes || monotonicNs() > deadlineNs { break }
            }
            let after = response.headers.first(name: "Retry-After").flatMap { Int($0) }.map { $0 * 1000 }
            return .answered(status: Int(response.status.code), snippet: String(decoding: kept, as: UTF8.self),
                             retryAfterMs: after)
        } catch {
            return .transportFailure(Self.describe(error))
        }
    }

    /// A short description of a transport error.
    static func describe(_ error: any Error) -> String {
        var text = String(describing: error)
        if text.contains("deadlineExceeded") || text.contains("readTimeout") || text.contains("connectTimeout") {
            text = "timeout (\(text))"
        }
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }

    /// Appends the dead-letter line (fsynced) and logs it.
    private func deadLetter(_ job: Job, status: Int, snippet: String, error: String?, attempts: Int) -> Outcome {
        var w = JSONWriter(capacity: job.body.count + 256)
        w.open()
        w.key("event"); w.raw(job.body)
        w.key("status"); w.number(status)
        w.key("response"); w.string(snippet)
        w.key("error"); w.stringOrNull(error)
        w.key("attempts"); w.number(attempts)
        w.key("dead_lettered_at"); w.string(ISO8601.format(ms: unixMs()))
        w.close()
        do throws(HooksError) {
            try state.appendDeadLetter(w.bytes)
        } catch {
            return .failed(error)
        }
        let why = error.map { "\($0) after \(attempts) attempts" } ?? "HTTP \(status)"
        let shown = String(snippet.prefix(120).map { $0 == "\n" || $0 == "\r" ? " " : $0 })
        logLine("dead-lettered event \(job.offset) (\(job.kind), sku \(job.lane.isEmpty ? "-" : job.lane)): \(why)"
                + (shown.isEmpty ? "" : ": \(shown)") + " → \(state.deadLetterPath)")
        return .deadLettered
    }
}
