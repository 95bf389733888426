import Foundation

/// Writes an SVG of latency percentile curves: x is the percentile on a
/// "nines" scale (50, 90, 99, 99.9 … equally spaced), y the latency on a log
/// scale — the usual HdrHistogram view, where a tail shows as a climb. The
/// curves are in µs; every tick and legend value carries its own unit (µs, ms
/// or s), so the axis title names no unit.
func writePlot(_ path: String, title: String, results: [RunResult]) throws {
    let curves = results.filter { !$0.latency_curve.isEmpty }
    guard !curves.isEmpty else { throw BenchError("--plot: no latency recorded") }
    // The legend sits below the axis title, one row per curve, so it never covers a curve.
    let legendRow = 18.0, plotH = 370.0
    let width = 760.0, left = 70.0, right = 36.0, top = 40.0  // right: room for the "99.999%" tick
    let bottom = 50.0 + 8 + Double(curves.count) * legendRow
    let height = top + plotH + bottom
    let plotW = width - left - right

    func nines(_ p: Double) -> Double { log10(100 / (100 - min(p, 99.9999))) }
    let xMin = nines(50), xMax = nines(99.999)
    let values = curves.flatMap { $0.latency_curve.map { max($0[1], 0.1) } }
    let yMin = floor(log10(values.min()!)), yMax = max(ceil(log10(values.max()!)), yMin + 1)
    func x(_ p: Double) -> Double { left + (nines(p) - xMin) / (xMax - xMin) * plotW }
    func y(_ us: Double) -> Double { top + plotH - (log10(max(us, 0.1)) - yMin) / (yMax - yMin) * plotH }

    var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
        font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="22" text-anchor="middle" font-size="15">\(escape(title))</text>

        """
    for p in [50.0, 90, 99, 99.9, 99.99, 99.999] {
        let px = x(p)
        svg += "<line x1=\"\(px)\" y1=\"\(top)\" x2=\"\(px)\" y2=\"\(top + plotH)\" stroke=\"#ddd\"/>\n"
        svg += "<text x=\"\(px)\" y=\"\(top + plotH + 18)\" text-anchor=\"middle\">\(formatPercent(p))%</text>\n"
    }
    var e = yMin
    while e <= yMax {
        let py = y(pow(10, e))
        svg += "<line x1=\"\(left)\" y1=\"\(py)\" x2=\"\(left + plotW)\" y2=\"\(py)\" stroke=\"#ddd\"/>\n"
        svg += "<text x=\"\(left - 8)\" y=\"\(py + 4)\" text-anchor=\"end\">\(formatMicros(pow(10, e)))</text>\n"
        e += 1
    }
    svg += "<text x=\"\(left + plotW / 2)\" y=\"\(top + plotH + 40)\" text-anchor=\"middle\">percentile</text>\n"
    svg += "<text x=\"16\" y=\"\(top + plotH / 2)\" transform=\"rotate(-90 16 \(top + plotH / 2))\" "
        + "text-anchor=\"middle\">latency (log scale)</text>\n"
    svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotW)\" height=\"\(plotH)\" fill=\"none\" stroke=\"#444\"/>\n"

    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    for (i, r) in curves.enumerated() {
        let color = colors[i % colors.count]
        let points = r.latency_curve.map { "\(x($0[0])),\(y($0[1]))" }.joined(separator: " ")
        svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points)\"/>\n"
        for pt in r.latency_curve {
            svg += "<circle cx=\"\(x(pt[0]))\" cy=\"\(y(pt[1]))\" r=\"3\" fill=\"\(color)\"/>\n"
        }
        let ly = top + plotH + 50 + 8 + Double(i + 1) * legendRow - 4
        svg += "<line x1=\"\(left + 12)\" y1=\"\(ly - 4)\" x2=\"\(left + 36)\" y2=\"\(ly - 4)\" stroke=\"\(color)\" "
            + "stroke-width=\"3\"/>\n"
        let label = "\(r.backend): \(formatRate(r.ops_per_sec)) · p50 \(formatLatency(r.p50_us)) · "
            + "p99 \(formatLatency(r.p99_us)) · p99.9 \(formatLatency(r.p999_us))"
        svg += "<text x=\"\(left + 42)\" y=\"\(ly)\">\(escape(label))</text>\n"
    }
    svg += "</svg>\n"
    do {
        try svg.write(toFile: path, atomically: true, encoding: .utf8)
    } catch {
        throw BenchError("--plot \(path): \(error.localizedDescription)")
    }
}

private func formatPercent(_ p: Double) -> String {
    p == p.rounded() ? String(Int(p)) : String(format: "%g", p)
}

private func formatMicros(_ us: Double) -> String {
    us >= 1_000_000 ? "\(Int(us / 1_000_000)) s" : us >= 1000 ? "\(Int(us / 1000)) ms" : us >= 1 ? "\(Int(us)) µs"
        : String(format: "%g µs", us)
}

/// A latency in µs with three significant digits in the unit that keeps it between 1 and 1000:
/// 85.2 µs, 1.24 ms, 2.05 s.
func formatLatency(_ us: Double) -> String {
    func digits(_ v: Double) -> String { v >= 100 ? String(format: "%.0f", v) : v >= 10 ? String(format: "%.1f", v)
        : String(format: "%.2f", v) }
    return us >= 1_000_000 ? digits(us / 1_000_000) + " s" : us >= 1000 ? digits(us / 1000) + " ms" : digits(us) + " µs"
}

private func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
}
