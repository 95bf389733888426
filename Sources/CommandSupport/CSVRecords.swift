import CSV

// The one CSV reading of every file an operator hands a binary: stockctl's stage, stock import and
// audit files, and stockd's --catalog.

/// The data records of an operator's CSV file, each with the line it starts on, and the lines that
/// cannot be read. RFC 4180 (CSV.swift reads it): fields may be quoted, a quote inside a quoted field
/// is doubled, commas and line breaks may stand inside quotes; CRLF, CR or LF end a record; a UTF-8
/// byte order mark is dropped; spaces around a field are trimmed (inside quotes they are kept).
/// Blank lines and records whose first field starts with `#` are skipped, and the first data record
/// is skipped when `isHeader` says it is a header.
public func csvRecords(_ text: String, isHeader: ([String]) -> Bool)
    -> (records: [(line: Int, fields: [String])], errors: [(line: Int, reason: String)]) {
    var body = text
    if body.unicodeScalars.first == "\u{FEFF}" { body.unicodeScalars.removeFirst() }
    let reader: CSVReader
    do {
        reader = try CSVReader(string: body, hasHeaderRow: false, trimFields: true)
    } catch {
        return ([], [(1, "cannot read as CSV: \(error)")])
    }
    let quotes = quotesPerLine(body)
    var records: [(line: Int, fields: [String])] = []
    var errors: [(line: Int, reason: String)] = []
    var sawData = false
    var line = 1
    while let fields = reader.next() {
        let start = line
        // Unquoted fields hold no line break, so the breaks inside the fields and the one that ends
        // the record tell how many lines it spans: the next record's first line follows.
        let span = 1 + fields.reduce(0) { $0 + lineBreaks($1) }
        line += span
        if fields == [""] { continue }
        if fields[0].hasPrefix("#") {
            if span > 1 { errors.append((start, "a quote in this comment opens a field that runs over \(span) lines")) }
            continue
        }
        // A closed quoted field holds an even number of quote characters; an odd count is a quote
        // never closed (which would swallow the lines after it) or a stray one in an unquoted field.
        if quotes[(start - 1)..<min(start - 1 + span, quotes.count)].reduce(0, +) % 2 != 0 {
            errors.append((start, "unbalanced double quote: close the quoted field, or quote a field that contains "
                           + "\" and double it (\"a \"\"b\"\" c\")"))
            continue
        }
        defer { sawData = true }
        if !sawData && isHeader(fields) { continue }
        records.append((start, fields))
    }
    return (records, errors)
}

/// Line breaks in `s` as CSV.swift ends records: CRLF, CR or LF, each one break.
func lineBreaks(_ s: String) -> Int {
    var count = 0
    var afterCR = false
    for scalar in s.unicodeScalars {
        if scalar == "\r" || (scalar == "\n" && !afterCR) { count += 1 }
        afterCR = scalar == "\r"
    }
    return count
}

/// How many `"` each physical line of `s` holds (lines ended as `lineBreaks` counts them).
func quotesPerLine(_ s: String) -> [Int] {
    var counts = [0]
    var afterCR = false
    for scalar in s.unicodeScalars {
        if scalar == "\r" || (scalar == "\n" && !afterCR) { counts.append(0) }
        if scalar == "\"" { counts[counts.count - 1] += 1 }
        afterCR = scalar == "\r"
    }
    return counts
}
