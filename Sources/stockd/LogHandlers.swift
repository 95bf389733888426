import CommandSupport
import Foundation
import Logging
import Synchronization

/// `--log-format`: how stockd's log lines look on stderr.
enum LogFormat: String, CaseIterable {
    /// `2026-11-27T05:20:11.030Z info stockd: listening host=127.0.0.1 port=7878`: for people.
    case text
    /// One JSON object per line (`timestamp`, `level`, `label`, `message`, then
    /// each metadata key as a field of its own): for log shippers.
    case json
}

/// stockd's log handler: one line per event on stderr, in either format,
/// written with a single `write(2)` under a process-wide lock, so lines of
/// different threads never interleave. Logging is rare (start, stop,
/// errors), never per request: the lock costs the hot path nothing.
struct StockdLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    /// Keys the JSON format uses itself; a metadata key among them is written as `metadata.KEY`.
    static let reservedKeys: Set<String> = ["timestamp", "level", "label", "message", "error"]
    private static let writeLock = Mutex(())

    init(label: String, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        logLevel = level
        metadataProvider = LoggingSystem.metadataProvider
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let explicit = event.metadata { all.merge(explicit) { _, new in new } }
        let line: String
        switch format {
        case .text: line = textLine(event, all)
        case .json: line = jsonLine(event, all)
        }
        Self.emit(line)
    }

    /// `TIME LEVEL LABEL: MESSAGE key=value ...`, keys sorted (a stable order to grep).
    func textLine(_ event: LogEvent, _ metadata: Logger.Metadata) -> String {
        var line = "\(Self.timestamp()) \(event.level) \(label): \(event.message)"
        for key in metadata.keys.sorted() { line += " \(key)=\(Self.text(metadata[key]!))" }
        if let error = event.error { line += " error=\(Self.quotedIfNeeded(String(describing: error)))" }
        return line + "\n"
    }

    func jsonLine(_ event: LogEvent, _ metadata: Logger.Metadata) -> String {
        var line = "{\"timestamp\":\"\(Self.timestamp())\",\"level\":\"\(event.level)\","
            + "\"label\":\(JSONText.string(label)),\"message\":\(JSONText.string(event.message.description))"
        for key in metadata.keys.sorted() {
            let name = Self.reservedKeys.contains(key) ? "metadata." + key : key
            line += ",\(JSONText.string(name)):\(JSONText.value(metadata[key]!))"
        }
        if let error = event.error { line += ",\"error\":\(JSONText.string(String(describing: error)))" }
        return line + "}\n"
    }

    /// A metadata value in the text format: strings with a space or quote are quoted.
    static func text(_ v: Logger.Metadata.Value) -> String {
        switch v {
        case .string(let s): quotedIfNeeded(s)
        case .stringConvertible(let c): quotedIfNeeded(c.description)
        case .array(let a): "[" + a.map(text).joined(separator: ",") + "]"
        case .dictionary(let d): "{" + d.keys.sorted().map { "\($0)=\(text(d[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    static func quotedIfNeeded(_ s: String) -> String {
        s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) ? JSONText.string(s) : s
    }

    /// UTC, millisecond resolution, ISO 8601 (`2026-11-27T05:20:11.030Z`).
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }

    /// The whole line in one `write(2)` (retried on a short write), under the lock.
    static func emit(_ line: String) {
        let bytes = Array(line.utf8)
        writeLock.withLock { _ in
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = write(2, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { return }  // stderr gone: nothing better to do with a log line
                    offset += n
                }
            }
        }
    }
}

/// JSON text for log lines, written by hand: one line per event must not
/// depend on an encoder's key order or pretty-printing.
enum JSONText {
    /// A JSON string literal (RFC 8259 escapes; control characters as \u00XX).
    static func string(_ s: String) -> String { JSONString.literal(s) }

    /// A metadata value: integers, finite doubles and booleans given as
    /// `stringConvertible` stay numbers and booleans; the rest are strings.
    static func value(_ v: Logger.Metadata.Value) -> String {
        switch v {
        case .string(let s): return string(s)
        case .stringConvertible(let c):
            switch c {
            case let b as Bool: return b ? "true" : "false"
            case let i as any BinaryInteger: return String(describing: i)
            case let d as Double where d.isFinite: return String(d)
            default: return string(c.description)
            }
        case .array(let a): return "[" + a.map(value).joined(separator: ",") + "]"
        case .dictionary(let d):
            return "{" + d.keys.sorted().map { "\(string($0)):\(value(d[$0]!))" }.joined(separator: ",") + "}"
        }
    }
}
