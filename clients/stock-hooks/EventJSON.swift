import StockClient

/// The JSON body posted for one event: one object, keys in a fixed order,
/// written by hand so the same event always gives the same bytes (the
/// signature covers them, and a redelivery must be byte-identical).
///
/// Common keys, in this order: `id` (the offset as a string: the
/// idempotency key), `offset`, `kind`, `time` (ISO-8601 UTC with ms),
/// `time_ms`, `sku` (null for `extended`), `quantity`, `token` (32 hex
/// digits as stockctl prints tokens; null for kinds that concern no token),
/// `order`, `customer` (null when empty), `line`, `lines`; then the
/// kind's own keys (see `appendKindFields`).
enum EventJSON {
    /// The body of `e`.
    static func body(_ e: FeedEvent) -> [UInt8] {
        var w = JSONWriter()
        w.open()
        w.key("id"); w.string(String(e.offset))
        w.key("offset"); w.number(e.offset)
        w.key("kind"); w.string(e.kind.name)
        w.key("time"); w.string(ISO8601.format(ms: e.timeMs))
        w.key("time_ms"); w.number(e.timeMs)
        w.key("sku"); w.stringOrNull(e.sku.isEmpty ? nil : e.sku.string)
        w.key("quantity"); w.number(e.quantity)
        w.key("token"); w.stringOrNull(hasToken(e.kind) ? e.token.description : nil)
        w.key("order"); w.stringOrNull(e.order.isEmpty ? nil : e.order.string)
        w.key("customer"); w.stringOrNull(e.customer.isEmpty ? nil : e.customer.string)
        w.key("line"); w.number(UInt64(e.line))
        w.key("lines"); w.number(UInt64(e.lines))
        appendKindFields(e, &w)
        w.close()
        return w.bytes
    }

    /// Whether events of `kind` carry a reservation token.
    static func hasToken(_ kind: EventKind) -> Bool {
        switch kind {
        case .reserved, .confirmed, .released, .expired, .extended: true
        default: false
        }
    }

    /// Keys that only some kinds have (PROTOCOL.md §9, the `aux` column).
    private static func appendKindFields(_ e: FeedEvent, _ w: inout JSONWriter) {
        switch e.kind {
        case .stockSet:
            w.key("on_hand"); w.number(e.quantity)
            w.key("low_stock_threshold"); w.number(e.aux >> 32)
            w.key("per_customer_limit"); w.number(e.aux & 0xFFFF_FFFF)
        case .stockAdjusted:
            w.key("delta"); w.number(e.quantity)
            w.key("reason"); w.string(reasonName(e.aux))
            w.key("reason_code"); w.number(e.aux)
        case .reserved, .extended:
            w.key("expires_at_ms"); w.number(e.aux)
            w.key("expires_at"); w.string(ISO8601.format(ms: e.aux))
        case .confirmed:
            w.key("returned"); w.number(e.aux)
        case .lowStock, .backInStock, .soldOut:
            w.key("available"); w.number(e.quantity)
        case .backupChanged:
            w.key("backup_change"); w.number(e.quantity)
            w.key("backup"); w.number(e.aux)
        case .released, .expired, .progress:
            break
        case .termStarted:
            // Never posted (Runner skips it); written out in full all the same, should that change.
            w.key("epoch"); w.number(e.quantity)
            w.key("node"); w.string(e.order.string)
        }
    }

    /// STOCK_ADJUST's reason codes (PROTOCOL.md §4).
    static func reasonName(_ code: UInt64) -> String {
        switch code {
        case 0: "unspecified"
        case 1: "restock"
        case 2: "shrinkage"
        case 3: "damage"
        case 4: "return"
        case 5: "correction"
        case 6: "transfer"
        default: "unknown"
        }
    }
}

/// A minimal JSON writer: objects, strings, integers, null. Commas are
/// placed by `key`, so callers write keys and values in order.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    private var needsComma = false

    init(capacity: Int = 384) { bytes.reserveCapacity(capacity) }

    mutating func open() {
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    mutating func close() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    mutating func key(_ k: String) {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        string(k)
        bytes.append(UInt8(ascii: ":"))
        needsComma = true
    }

    /// Appends already-encoded JSON (a nested document) as a value.
    mutating func raw(_ json: [UInt8]) { bytes.append(contentsOf: json) }

    mutating func number(_ n: UInt64) { bytes.append(contentsOf: String(n).utf8) }
    mutating func number(_ n: Int64) { bytes.append(contentsOf: String(n).utf8) }
    mutating func number(_ n: Int) { bytes.append(contentsOf: String(n).utf8) }

    mutating func null() { bytes.append(contentsOf: "null".utf8) }

    mutating func stringOrNull(_ s: String?) {
        if let s { string(s) } else { null() }
    }

    /// A JSON string: `"` and `\` escaped, control characters as `\u00XX`,
    /// everything else as its UTF-8 bytes (the input is a Swift `String`, so
    /// always valid UTF-8).
    mutating func string(_ s: String) {
        let hex = Array("0123456789abcdef".utf8)
        bytes.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20, 0x7F:
                bytes.append(contentsOf: "\\u00".utf8)
                bytes.append(hex[Int(c >> 4)])
                bytes.append(hex[Int(c & 0xF)])
            default: bytes.append(c)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

/// ISO-8601 UTC timestamps with milliseconds (`2026-05-01T19:04:05.123Z`),
/// computed from Unix epoch ms without a formatter (no locale, no time zone
/// database, no shared state).
enum ISO8601 {
    static func format(ms: UInt64) -> String {
        let seconds = Int64(ms / 1000)
        let milli = Int(ms % 1000)
        let days = seconds / 86_400
        let secOfDay = Int(seconds % 86_400)
        let (y, m, d) = civil(daysSinceEpoch: days)
        return pad(Int(y), 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T" + pad(secOfDay / 3600, 2) + ":"
            + pad(secOfDay / 60 % 60, 2) + ":" + pad(secOfDay % 60, 2) + "." + pad(milli, 3) + "Z"
    }

    /// Year, month, day of a day count since 1970-01-01 (proleptic
    /// Gregorian; H. Hinnant's `civil_from_days`).
    static func civil(daysSinceEpoch: Int64) -> (Int64, Int, Int) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = Int(doy - (153 * mp + 2) / 5 + 1)
        let m = Int(mp < 10 ? mp + 3 : mp - 9)
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        return (y, m, d)
    }

    private static func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}
