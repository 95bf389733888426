import CLibUV
import StockProtocol

/// The Prometheus text exposition (format 0.0.4) of a running server: the
/// same counters STATS reads, named and labelled the Prometheus way. Written
/// by hand rather than through swift-prometheus so stockd's own dependency
/// set stays as lean as its build time wants; the format is small and
/// stable. Per-SKU gauges stop at `config.metricsMaxSKUs` SKUs (catalog order).
enum MetricsText {
    static func render(_ s: StockServer) -> String {
        var out = Output()
        let workers = s.workers
        let rowNames = Opcode.allCases.map(\.name).appending("UNASSIGNED")
        out.help("stockd_build_info", "The running binary: version and git commit (value always 1).", type: "gauge")
        out.sample("stockd_build_info", ["version": s.config.buildVersion, "commit": s.config.buildCommit], 1)
        out.gauge("stockd_ready", "1 when GET /ready answers 200 (recovered, journal healthy, every loop serving).",
                  s.notReadyReason == nil ? 1 : 0)
        // Requests by operation and status.
        out.help("stockd_requests_total", "Requests answered, by operation and status.", type: "counter")
        for (row, op) in rowNames.enumerated() {
            for status in Status.allCases {
                let n = workers.reduce(Int64(0)) { $0 + $1.counters.answers(row: row, status: status) }
                if n > 0 { out.sample("stockd_requests_total", ["op": op, "status": status.name], Double(n)) }
            }
        }
        // Request latency, server side, per operation (operations with no answers yet are left out).
        out.help("stockd_request_duration_seconds",
                 "From reading a request to handing its answer to the kernel (journal wait included), by operation.",
                 type: "histogram")
        for (row, op) in rowNames.enumerated() { requestDuration(&out, workers, row: row, op: op) }
        // Tokens.
        let c = s.core.stats()
        out.gauge("stockd_tokens_live", "Reservation tokens held now.", Double(c.liveTokens))
        out.gauge("stockd_tokens_capacity", "Live tokens at most (--max-tokens).", Double(c.tokenCapacity))
        out.counter("stockd_reservations_total", "Reservations granted (a bundle counts once).", Double(c.reserves + c.bundles))
        out.counter("stockd_confirms_total", "Tokens confirmed.", Double(c.confirms))
        out.counter("stockd_releases_total", "Tokens released.", Double(c.releases))
        out.counter("stockd_expiries_total", "Tokens expired.", Double(c.expiries))
        out.counter("stockd_reserve_failures_total", "Reservations refused (out of stock, limits, capacity).", Double(c.reserveFailures))
        // Connections.
        let conns = workers.reduce(Int64(0)) {
            $0 + $1.counters.value(.connectionsAccepted) - $1.counters.value(.connectionsClosed)
        }
        out.gauge("stockd_connections_open", "Protocol connections open now.", Double(conns))
        out.counter("stockd_connections_total", "Protocol connections accepted.",
                    Double(workers.reduce(Int64(0)) { $0 + $1.counters.value(.connectionsAccepted) }))
        // Journal.
        if let j = s.journal {
            out.help("stockd_journal_fsync_seconds", "fdatasync latency of journal rounds.", type: "histogram")
            var cum: UInt64 = 0
            for (i, b) in j.syncLatencyBuckets.enumerated() {
                cum += b.load(ordering: .relaxed)
                let le = i == j.syncLatencyBuckets.count - 1 ? "+Inf" : format(Double(UInt64(1) << UInt64(i)) / 1e6)
                out.sample("stockd_journal_fsync_seconds_bucket", ["le": le], Double(cum))
            }
            out.sample("stockd_journal_fsync_seconds_sum", [:], Double(j.syncNanosTotal.load(ordering: .relaxed)) / 1e9)
            out.sample("stockd_journal_fsync_seconds_count", [:], Double(j.syncs.load(ordering: .relaxed)))
            out.counter("stockd_journal_records_total",
                        "Records made durable (divided by the fsync count: records per batch).",
                        Double(j.recordsWritten.load(ordering: .relaxed)))
            out.gauge("stockd_journal_batch_records_max", "Largest journal round, in records.",
                      Double(j.batchRecordsMax.load(ordering: .relaxed)))
            out.counter("stockd_journal_bytes_total", "Bytes written to the journal.",
                        Double(j.bytesWritten.load(ordering: .relaxed)))
            out.gauge("stockd_journal_durable_offset", "Every record up to this sequence number is durable.",
                      Double(j.durable.load(ordering: .relaxed)))
            out.gauge("stockd_journal_failed", "1 once a journal write failed (changes refused).",
                      j.failed.load(ordering: .relaxed) ? 1 : 0)
        }
        if let hub = s.feedHub {
            out.gauge("stockd_feed_subscribers", "Event-feed subscribers now.", Double(hub.active.load(ordering: .relaxed)))
            out.counter("stockd_feed_events_sent_total", "Events sent to subscribers.",
                        Double(hub.eventsSent.load(ordering: .relaxed)))
            out.gauge("stockd_feed_subscriber_lag_max", "Records the slowest subscriber is behind the durable offset.",
                      Double(hub.maxLag.load(ordering: .relaxed)))
        }
        // Per SKU, up to the configured number.
        var entries: [StockEntry] = []
        var cursor: UInt32 = 0
        while entries.count < s.config.metricsMaxSKUs && cursor != Limits.listEnd {
            let page = s.core.list(cursor: cursor, limit: min(1000, s.config.metricsMaxSKUs - entries.count))
            // Drill SKUs (`stockctl drill`) are the tooling's, not the show's: no per-SKU series for them.
            entries += page.entries.filter { e in !e.sku.withUnsafeBytes { ReservedSKU.isDrill(bytes: $0) } }
            cursor = page.nextCursor
        }
        out.gauge("stockd_skus", "SKUs in the catalog.", Double(c.skus))
        for (name, help, value) in [
            ("stockd_sku_available", "Units on sale now.", { (i: StockInfo) in i.available }),
            ("stockd_sku_reserved", "Units held by tokens now.", { (i: StockInfo) in i.reserved }),
            ("stockd_sku_confirmed", "Units sold.", { (i: StockInfo) in i.confirmed }),
            ("stockd_sku_backup", "Units held back from sale until released.", { (i: StockInfo) in i.backup }),
        ] as [(String, String, (StockInfo) -> UInt64)] {
            out.help(name, help + " Per SKU, the first \(s.config.metricsMaxSKUs) in catalog order, drill SKUs left out.", type: "gauge")
            for e in entries {  // the bulk of a scrape: no dictionaries, no floating point
                out.text += name + "{sku=\"" + out.escape(e.sku.string) + "\"} " + String(value(e.info)) + "\n"
            }
        }
        return out.text
    }

    /// One operation's latency histogram, summed over the workers: cumulative
    /// buckets (bucket i: under 2^i µs), `+Inf` equal to the count.
    private static func requestDuration(_ out: inout Output, _ workers: [LoopWorker], row: Int, op: String) {
        var cumulative: Int64 = 0
        var lines: [(le: String, count: Int64)] = []
        lines.reserveCapacity(WorkerCounters.latencyBuckets)
        for i in 0..<WorkerCounters.latencyBuckets {
            cumulative += workers.reduce(Int64(0)) { $0 + $1.counters.latencyBucket(row: row, i) }
            let le = i == WorkerCounters.latencyBuckets - 1 ? "+Inf" : format(Double(UInt64(1) << UInt64(i)) / 1e6)
            lines.append((le, cumulative))
        }
        guard cumulative > 0 else { return }
        for l in lines { out.sample("stockd_request_duration_seconds_bucket", ["op": op, "le": l.le], Double(l.count)) }
        let sumNs = workers.reduce(Int64(0)) { $0 + $1.counters.latencySumNanos(row: row) }
        out.sample("stockd_request_duration_seconds_sum", ["op": op], Double(sumNs) / 1e9)
        out.sample("stockd_request_duration_seconds_count", ["op": op], Double(cumulative))
    }

    static func format(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    struct Output {
        var text = ""

        mutating func help(_ name: String, _ help: String, type: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }

        mutating func sample(_ name: String, _ labels: [String: String], _ value: Double) {
            text += name
            if !labels.isEmpty {
                text += "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(escape($0.value))\"" }
                    .joined(separator: ",") + "}"
            }
            text += " \(MetricsText.format(value))\n"
        }

        mutating func gauge(_ name: String, _ help: String, _ value: Double) {
            self.help(name, help, type: "gauge")
            sample(name, [:], value)
        }

        mutating func counter(_ name: String, _ help: String, _ value: Double) {
            self.help(name, help, type: "counter")
            sample(name, [:], value)
        }

        /// Label values escape backslash, double quote and newline.
        func escape(_ s: String) -> String {
            var out = ""
            for ch in s {
                switch ch {
                case "\\": out += "\\\\"
                case "\"": out += "\\\""
                case "\n": out += "\\n"
                default: out.append(ch)
                }
            }
            return out
        }
    }
}

extension Array {
    func appending(_ e: Element) -> [Element] { self + [e] }
}
