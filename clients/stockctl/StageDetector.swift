import StockClient

/// Finds STAGE requests in the event feed, for `stockctl report --since-stage`.
///
/// The feed has no STAGE event: a stage shows as, per line, a `stock_set` and —
/// when the line changed the backup — a `backup_changed`, written together with
/// one `time_ms` (PROTOCOL.md §9, "Which operations give events"). A STOCK_SET
/// gives a lone `stock_set` and never a `backup_changed`. So a run of
/// `stock_set` / `backup_changed` events with one `time_ms` and nothing else
/// between them is taken for a stage when it
/// - sets two or more SKUs, or
/// - has a `stock_set` and a `backup_changed` of the same SKU.
///
/// Known look-alikes (README-report.md): a one-line stage that left the backup
/// as it was is indistinguishable from STOCK_SET, and is not found; several
/// STOCK_SETs answered within one millisecond with nothing between them (a fast
/// `stock import`) are taken for a stage. Drill SKUs' events are skipped: a
/// drill never opens a show.
struct StageDetector {
    struct Stage: Equatable {
        /// The offset of the stage's first event: where the show's window opens.
        let offset: UInt64
        /// The SKUs the stage set.
        let skus: Set<String>
    }

    /// The last stage found so far.
    private(set) var found: Stage?
    private var run: (offset: UInt64, timeMs: UInt64, set: Set<String>, backup: Set<String>, reported: Bool)?

    /// Feeds one event (in offset order). Returns the stage when this event makes
    /// the current run a stage — once per run; later events of the same run only
    /// extend `found.skus`.
    mutating func observe(_ e: FeedEvent) -> Stage? {
        // A term start (a failover) is no change to the stock: it neither ends nor extends a run.
        guard e.kind != .termStarted else { return nil }
        let sku = e.sku.string
        guard !ReservedSKU.isDrill(sku) else { return nil }
        // A stage's alerts come after its lines, at its time: they neither end nor extend the run.
        let alert = e.kind == .lowStock || e.kind == .soldOut || e.kind == .backInStock
        if alert && run?.timeMs == e.timeMs { return nil }
        guard e.kind == .stockSet || e.kind == .backupChanged else {
            run = nil
            return nil
        }
        if run == nil || run?.timeMs != e.timeMs {
            run = (e.offset, e.timeMs, [], [], false)
        }
        guard var r = run else { return nil }
        if e.kind == .stockSet { r.set.insert(sku) } else { r.backup.insert(sku) }
        run = r
        guard r.set.count >= 2 || !r.set.isDisjoint(with: r.backup) else { return nil }
        let stage = Stage(offset: r.offset, skus: r.set.union(r.backup))
        found = stage
        guard !r.reported else { return nil }
        run?.reported = true
        return stage
    }
}
