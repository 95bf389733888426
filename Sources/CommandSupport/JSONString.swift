/// A JSON string literal written by hand (RFC 8259), for the binaries' machine output: stockctl's
/// `--json` documents and errors, stockd's `--log-format json` lines. Both must not depend on an
/// encoder's key order or formatting, so they build their text themselves and share this one escape.
public enum JSONString {
    /// Appends `s` as a quoted JSON string: `"` and `\` escaped, \n \r \t by name, every other
    /// control character (and DEL) as \u00XX.
    public static func append(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// `s` as a quoted JSON string.
    public static func literal(_ s: String) -> String {
        var out = ""
        append(s, to: &out)
        return out
    }
}
