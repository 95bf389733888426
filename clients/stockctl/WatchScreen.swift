import Foundation
import StockClient

/// One frame of `stockctl watch` on a terminal, as a pure function of what it
/// shows: no I/O, no clock, so a frame can be checked for a given input.
///
/// Layout, top to bottom (every line cut to the terminal's width, and never
/// more lines than its height, so nothing scrolls):
/// 1. header: server, time, SKU count with how many are sold out / low;
/// 2. the show's totals from the event feed (two lines);
/// 3. a blank line, then the table's column names (pinned);
/// 4. the SKU rows that fit, those that need attention first (sold out, then
///    low, then by reservations/s), then `… N more SKUs` for the rest;
/// 5. a TOTAL row (every SKU that passed the filters, shown or not);
/// 6. the latest alerts, as many as the height leaves (at most `maxAlerts`).
struct WatchScreen {
    /// One SKU's line.
    struct Row {
        let sku: String
        let info: StockInfo
        /// Reservations per second since the previous frame (nil on the first).
        let rate: Double?

        var status: String { stockStatus(info) }

        /// 0 sold out, 1 low, 2 the rest: the attention order.
        var attention: Int {
            switch status {
            case "SOLD OUT": 0
            case "LOW": 1
            default: 2
            }
        }
    }

    /// Height and width in character cells.
    struct Size: Equatable {
        let rows: Int
        let columns: Int
    }

    /// What the screen shows besides the rows.
    var server: String
    /// Wall-clock time of the frame, already formatted (`15:04:05`).
    var time: String
    /// Server-wide reservations/s (STATS `tokens.reserved`), nil on the first frame.
    var serverRate: Double?
    var show: ShowTally.Snapshot
    var size: Size
    var colour: Bool

    /// The fewest rows and columns a frame is laid out for; a smaller terminal gets the frame cut.
    static let minimumSize = Size(rows: 8, columns: 40)
    /// Alerts shown at most, whatever the height (ShowTally keeps this many).
    static let maxAlerts = ShowTally.recentAlertsShown
    /// The SKU column is never narrowed below this (SKUs stay recognisable; the line's end is cut instead).
    static let minimumSKUWidth = 12
    /// STATUS right after the SKU: on a narrow terminal the line's end is cut, never what needs attention.
    static let headers = ["SKU", "STATUS", "ON_HAND", "AVAILABLE", "RESERVED", "SOLD", "BACKUP", "RES/S"]

    private static let red = "\u{1B}[1;31m", yellow = "\u{1B}[33m", bold = "\u{1B}[1m", reverse = "\u{1B}[7m"
    private static let reset = "\u{1B}[0m"

    /// Sold out first, then low, then the busiest (reservations/s), then by SKU.
    static func attentionOrder(_ rows: [Row]) -> [Row] {
        rows.sorted { a, b in
            if a.attention != b.attention { return a.attention < b.attention }
            let ra = a.rate ?? 0, rb = b.rate ?? 0
            if ra != rb { return ra > rb }
            return a.sku < b.sku
        }
    }

    /// The frame's lines (no escape sequences other than colour, none when `colour` is false).
    func lines(_ rows: [Row]) -> [String] {
        let height = max(size.rows, Self.minimumSize.rows)
        let ordered = Self.attentionOrder(rows)
        let alerts = Array(show.recentAlerts.suffix(alertBudget(height: height)))
        // header, two show lines, blank, column names, TOTAL; plus a blank and a title line above the alerts
        let fixed = 6 + (alerts.isEmpty ? 0 : alerts.count + 2)
        var room = max(1, height - fixed)
        var shown = ordered
        var hidden = 0
        if ordered.count > room {
            room -= 1  // one line says how many are left out
            shown = Array(ordered.prefix(max(0, room)))
            hidden = ordered.count - shown.count
        }
        let table = tableLines(shown, all: ordered)
        var out = [headerLine(ordered)] + showLines + [""]
        out.append(paint(table.header, Self.reverse))
        for (row, text) in zip(shown, table.rows) {
            out.append(paint(text, row.attention == 0 ? Self.red : row.attention == 1 ? Self.yellow : nil))
        }
        if hidden > 0 {
            out.append(cut("… \(hidden) more SKU\(hidden == 1 ? "" : "s") (narrow with --sku PREFIX or --low-only)"))
        }
        out.append(paint(table.total, Self.bold))
        if !alerts.isEmpty {
            out.append("")
            out.append(cut("latest alerts:"))
            for a in alerts.reversed() {  // newest first
                let style = a.kind == .soldOut ? Self.red : a.kind == .lowStock ? Self.yellow : nil
                out.append(paint("  \(alertTime(a.timeMs))  \(a.sku)  \(a.what)", style))
            }
        }
        return Array(out.prefix(height))
    }

    /// Alerts that fit: up to a quarter of the height beyond the minimum, at most `maxAlerts`.
    private func alertBudget(height: Int) -> Int {
        min(Self.maxAlerts, max(1, (height - Self.minimumSize.rows) / 3))
    }

    private func headerLine(_ rows: [Row]) -> String {
        let soldOut = rows.filter { $0.attention == 0 }.count, low = rows.filter { $0.attention == 1 }.count
        let rate = serverRate.map { String(format: "%.1f", $0) } ?? "-"
        return cut("stockd \(server)  \(time)  \(rows.count) SKU\(rows.count == 1 ? "" : "s"), \(soldOut) sold out, "
                   + "\(low) low  \(rate) reservations/s  Ctrl-C quits")
    }

    /// The show's totals since watch started, in words: the funnel, then where the units went.
    private var showLines: [String] {
        if let unavailable = show.unavailable { return [cut("show: totals unavailable (\(unavailable))"), ""] }
        let conversion = show.conversion.map { String(format: "%.1f%%", $0 * 100) } ?? "-"
        return [cut("show: \(show.reservations) reserved (\(WatchCommand.rateText(show.reservationsPerSecond))/s) · "
                    + "\(show.confirmations) confirmed (\(WatchCommand.rateText(show.confirmationsPerSecond))/s) · "
                    + "\(conversion) conversion"),
                cut("      \(show.unitsSold) units sold · \(show.releases) released · \(show.expiries) expired "
                    + "(since watch started)")]
    }

    /// An alert's time on the screen: local wall-clock time, like the header's.
    private func alertTime(_ ms: UInt64) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss"
        return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    /// Column names, the rows and the TOTAL row, aligned to one width per column;
    /// the SKU column is narrowed (names cut with `…`) when the terminal is too narrow.
    private func tableLines(_ shown: [Row], all: [Row]) -> (header: String, rows: [String], total: String) {
        var cells = shown.map { r in
            [r.sku, r.status, "\(r.info.onHand)", "\(r.info.available)", "\(r.info.reserved)", "\(r.info.confirmed)",
             "\(r.info.backup)", WatchCommand.rateText(r.rate)]
        }
        let t = all.reduce(into: (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))) { t, r in
            t.0 += r.info.onHand; t.1 += r.info.available; t.2 += r.info.reserved; t.3 += r.info.confirmed
            t.4 += r.info.backup
        }
        let rate = all.contains { $0.rate != nil } ? all.reduce(0) { $0 + ($1.rate ?? 0) } : nil
        cells.append(["TOTAL", "", "\(t.0)", "\(t.1)", "\(t.2)", "\(t.3)", "\(t.4)", WatchCommand.rateText(rate)])
        var widths = Self.headers.map(\.count)
        for row in cells { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        let others = widths.dropFirst().reduce(0, +) + 2 * (widths.count - 1)
        // Too narrow for every column: the SKU column gives way down to `minimumSKUWidth`, then the line is cut.
        widths[0] = max(min(widths[0], Self.minimumSKUWidth), min(widths[0], size.columns - others))
        func line(_ row: [String]) -> String {
            var parts: [String] = []
            for (i, cell) in row.enumerated() {
                let text = i == 0 && cell.count > widths[0] ? String(cell.prefix(widths[0] - 1)) + "…" : cell
                let pad = String(repeating: " ", count: max(0, widths[i] - text.count))
                parts.append(i <= 1 ? text + pad : pad + text)  // SKU and STATUS left, numbers right
            }
            var s = parts.joined(separator: "  ")
            while s.hasSuffix(" ") { s.removeLast() }
            return cut(s)
        }
        let body = cells.map(line)
        return (line(Self.headers), Array(body.dropLast()), body.last ?? "")
    }

    /// `text` cut to the terminal's width (a cut line ends with `…`).
    private func cut(_ text: String) -> String {
        let width = max(size.columns, Self.minimumSize.columns)
        guard text.count > width else { return text }
        return String(text.prefix(width - 1)) + "…"
    }

    /// `text` cut to the width, in `style` when colour is on.
    private func paint(_ text: String, _ style: String?) -> String {
        let text = cut(text)
        guard colour, let style, !text.isEmpty else { return text }
        return style + text + Self.reset
    }
}
