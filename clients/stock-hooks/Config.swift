import CommandSupport
import Glibc
import StockClient

/// Everything a run needs, resolved from flags, then `STOCK_HOOKS_*`
/// environment variables, then defaults (flags win).
struct Config: Sendable {
    var host: String
    var port: Int
    /// The other nodes of a replicated cluster (`--server a,b,c`): the feed follows the primary.
    var otherEndpoints: [String] = []
    var credential: String
    var url: String
    var secret: [UInt8]
    var stateDir: String
    var kinds: Set<EventKind>
    var skuPrefix: String
    var concurrency: Int
    var timeoutMs: Int
    var retry: RetryPolicy
    /// Where to start when the state dir holds no offset yet.
    var from: FeedPosition
    var maxBuffered: Int
    var untilCaughtUp: Bool

    static let defaultServer = "127.0.0.1:7878"
    static let defaultKinds: Set<EventKind> = [.confirmed]
    /// Kinds a webhook may be asked for (`all` is these): every event but
    /// `term_started`, which is the cluster's bookkeeping (a new primary's
    /// term, docs/replication.md), not something the shop did. Its offset
    /// still counts as handled (Runner's feed reader), like a filtered one.
    static let forwardableKinds: [EventKind] = EventKind.allCases.filter { $0 != .progress && $0 != .termStarted }
}

/// Reads the environment.
func environment(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    let s = String(cString: p)
    return s.isEmpty ? nil : s
}

/// Parsers for flag and environment values; each failure names its source.
enum Parse {
    /// A duration in the grammar every binary shares (`DurationParser`: `500ms`, `1.5s`, `1m30s`, `1h`),
    /// at most a day: no wait of stock-hooks is meant to be longer.
    static func durationMs(_ text: String, _ source: String) throws(HooksError) -> Int {
        let ms: UInt64
        do {
            ms = try DurationParser.milliseconds(text)
        } catch {
            throw HooksError("\(source) '\(text)': \(error)")
        }
        if let problem = DurationParser.outOfBounds(ms, flag: source, range: 0...86_400_000) {
            throw HooksError(problem)
        }
        return Int(ms)
    }

    static func integer(_ text: String, _ source: String, _ range: ClosedRange<Int>) throws(HooksError) -> Int {
        guard let n = Int(text), range.contains(n) else {
            throw HooksError("\(source) '\(text)': expected a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    static func endpoint(_ text: String, _ source: String) throws(HooksError) -> (String, Int) {
        guard let colon = text.lastIndex(of: ":") else { return (text, 7878) }
        let host = String(text[..<colon])
        guard !host.isEmpty, let p = Int(text[text.index(after: colon)...]), (1...65535).contains(p) else {
            throw HooksError("\(source) '\(text)': expected host:port with a port in 1...65535")
        }
        return (host, p)
    }

    /// Kind names, each possibly a comma-separated list; `all` = every kind.
    static func kinds(_ values: [String], _ source: String) throws(HooksError) -> Set<EventKind> {
        var out: Set<EventKind> = []
        for value in values {
            for name in value.split(separator: ",").map({ $0.trimmingSpaces }) where !name.isEmpty {
                if name == "all" {
                    out.formUnion(Config.forwardableKinds)
                } else if let k = EventKind(name: name), Config.forwardableKinds.contains(k) {
                    out.insert(k)
                } else if name == EventKind.termStarted.name {
                    throw HooksError("\(source) '\(name)': not sent as a webhook (a replication term start, not a shop event)")
                } else {
                    let names = Config.forwardableKinds.map(\.name).joined(separator: ", ")
                    throw HooksError("\(source) '\(name)': unknown event kind (one of: \(names), all)")
                }
            }
        }
        return out
    }

    static func from(_ text: String, _ source: String) throws(HooksError) -> FeedPosition {
        switch text {
        case "oldest": return .oldest
        case "now": return .now
        default:
            guard let o = UInt64(text), o >= 1 else {
                throw HooksError("\(source) '\(text)': expected oldest, now or an offset (1 or more)")
            }
            return .offset(o)
        }
    }

    static func url(_ text: String, _ source: String) throws(HooksError) -> String {
        let lower = text.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw HooksError("\(source) '\(text)': expected an http:// or https:// URL")
        }
        let rest = text.drop(while: { $0 != "/" }).dropFirst(2)
        guard let first = rest.first, first != "/" else { throw HooksError("\(source) '\(text)': the URL has no host") }
        return text
    }

    static func bool(_ text: String, _ source: String) throws(HooksError) -> Bool {
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw HooksError("\(source) '\(text)': expected true or false")
        }
    }

    /// A whole file's bytes (for secrets and tokens), at most 64 KiB, with
    /// one trailing newline (`\n` or `\r\n`) removed.
    static func secretFile(_ path: String, _ source: String) throws(HooksError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HooksError("\(source) \(path): cannot read: \(errnoText())") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HooksError("\(source) \(path): cannot read: \(errnoText())")
            }
            if n == 0 { break }
            out += buffer[..<n]
            guard out.count <= 65_536 else { throw HooksError("\(source) \(path): larger than 64 KiB") }
        }
        if out.last == UInt8(ascii: "\n") {
            out.removeLast()
            if out.last == UInt8(ascii: "\r") { out.removeLast() }
        }
        guard !out.isEmpty else { throw HooksError("\(source) \(path) is empty") }
        return out
    }
}

extension Substring {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
