import Foundation
import StockClient

/// The show's totals and alerts for `stockctl watch`, counted from the event
/// feed (from the moment watch starts) as events happen: reservations and
/// confirmations are counted per token (a bundle's line 0), units as they
/// come; alerts are the low-stock, sold-out, back-in-stock and backup events
// (`available` carries the backup change for those).
final class ShowTally: @unchecked Sendable {
    struct Alert {
        let kind: EventKind
        let sku: String
        let available: Int64
        let timeMs: UInt64

        /// What happened, without the time and SKU: `SOLD OUT`, `LOW (3 left)`, ….
        var what: String {
            switch kind {
            case .soldOut: "SOLD OUT"
            case .lowStock: "LOW (\(available) left)"
            case .backupChanged where available < 0: "BACKUP RELEASED (\(-available) units to sale)"
            case .backupChanged: "BACKUP HELD (\(available) units off sale)"
            default: "BACK IN STOCK (\(available))"
            }
        }

        /// The ALERT line's text: ISO-8601 UTC time, SKU, what happened.
        var text: String { "\(isoTime(timeMs)) \(sku) \(what)" }

        var json: JSON {
            .object([("time_ms", .uint(timeMs)), ("kind", .string(kind.name)), ("sku", .string(sku)),
                     ("available", .int(available))])
        }
    }

    /// What one refresh shows.
    struct Snapshot {
        var reservations: UInt64 = 0
        var confirmations: UInt64 = 0
        var releases: UInt64 = 0
        var expiries: UInt64 = 0
        var unitsSold: Int64 = 0
        var reservationsPerSecond: Double?
        var confirmationsPerSecond: Double?
        var newAlerts: [Alert] = []
        var recentAlerts: [Alert] = []
        /// Why there are no totals (no feed: --sync none, or not reachable yet).
        var unavailable: String?

        /// Confirmed tokens / reserved tokens since watch started (nil before any reservation).
        var conversion: Double? { reservations == 0 ? nil : Double(confirmations) / Double(reservations) }

        var line: String {
            if let unavailable { return "show=unavailable(\(unavailable))" }
            return "show_reservations=\(reservations) show_confirmations=\(confirmations) "
                + "confirmations/s=\(WatchCommand.rateText(confirmationsPerSecond)) "
                + "conversion=\(conversion.map { String(format: "%.1f%%", $0 * 100) } ?? "-") "
                + "expiries=\(expiries) releases=\(releases) units_sold=\(unitsSold)"
        }

        var json: JSON {
            if let unavailable { return .object([("unavailable", .string(unavailable))]) }
            return .object([
                ("reservations", .uint(reservations)), ("confirmations", .uint(confirmations)),
                ("releases", .uint(releases)), ("expiries", .uint(expiries)), ("units_sold", .int(unitsSold)),
                ("reservations_per_s", reservationsPerSecond.map { .double($0) } ?? .null),
                ("confirmations_per_s", confirmationsPerSecond.map { .double($0) } ?? .null),
                ("conversion", conversion.map { .double($0) } ?? .null),
            ])
        }
    }

    /// The SKUs whose events count (watch's --sku and drill rule).
    let selection: SKUSelection
    private let lock = NSLock()
    private var current = Snapshot()
    private var pendingAlerts: [Alert] = []
    private var recent: [Alert] = []
    private var last: (reservations: UInt64, confirmations: UInt64, at: ContinuousClock.Instant)?
    private var feed: EventFeed?
    private var stopped = false
    static let recentAlertsShown = 8

    init(selection: SKUSelection = SKUSelection()) { self.selection = selection }

    /// Reads the feed until cancelled (a dropped connection resumes by itself).
    func follow(_ client: StockClient) async {
        let kinds: Set<EventKind> = [.reserved, .confirmed, .released, .expired, .lowStock, .soldOut, .backInStock,
                                     .backupChanged]
        while !Task.isCancelled {
            do {
                let filter = EventFilter(kinds: kinds, skuPrefix: selection.prefix ?? "")
                let f = try await client.events(from: .now, filter: filter)
                let keep = lock.withLock { () -> Bool in
                    guard !stopped else { return false }
                    feed = f
                    current.unavailable = nil
                    return true
                }
                guard keep else { return f.close() }
                for try await e in f { count(e) }
                return
            } catch {
                lock.withLock { current.unavailable = error == .feedUnavailable ? "stockd runs without a journal" : "\(error)" }
                if error == .feedUnavailable { return }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func stop() {
        let f = lock.withLock { () -> EventFeed? in
            stopped = true
            return feed
        }
        f?.close()
    }

    private func count(_ e: FeedEvent) {
        // A bundle's line 0 decides whether its token is counted, so a bundle is counted once or not at all.
        guard selection.selects(e.sku.string) else { return }
        lock.withLock {
            switch e.kind {
            case .reserved where e.line == 0: current.reservations += 1
            case .confirmed:
                if e.line == 0 { current.confirmations += 1 }
                current.unitsSold += e.quantity
            case .released where e.line == 0: current.releases += 1
            case .expired where e.line == 0: current.expiries += 1
            case .lowStock, .soldOut, .backInStock, .backupChanged:
                pendingAlerts.append(Alert(kind: e.kind, sku: e.sku.string, available: e.quantity, timeMs: e.timeMs))
            default: break
            }
        }
    }

    /// The totals now, rates since the previous call, and the alerts since then.
    func take(now: ContinuousClock.Instant) -> Snapshot {
        lock.withLock {
            var s = current
            if let last {
                let c = (now - last.at).components
                let secs = Double(c.seconds) + Double(c.attoseconds) / 1e18
                if secs > 0 {
                    s.reservationsPerSecond = Double(s.reservations - last.reservations) / secs
                    s.confirmationsPerSecond = Double(s.confirmations - last.confirmations) / secs
                }
            }
            last = (s.reservations, s.confirmations, now)
            s.newAlerts = pendingAlerts
            recent = Array((recent + pendingAlerts).suffix(Self.recentAlertsShown))
            pendingAlerts.removeAll()
            s.recentAlerts = recent
            return s
        }
    }
}

/// Which SKUs an operator screen or export covers: those starting with `prefix`
/// (all without one), and drill SKUs (ReservedSKU, `DRILL-…`) only when asked.
struct SKUSelection: Sendable, Equatable {
    var prefix: String?
    var includeDrill = false

    func selects(_ sku: String) -> Bool {
        (includeDrill || !ReservedSKU.isDrill(sku)) && (prefix.map { sku.utf8.starts(with: $0.utf8) } ?? true)
    }
}
