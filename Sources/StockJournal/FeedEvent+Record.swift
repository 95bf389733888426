import StockProtocol

extension FeedEvent {
    /// The event a journal record gives the feed (PROTOCOL.md §9 says which
    /// field carries what, by kind): one event per record, its offset the
    /// record's sequence number.
    public init(_ r: SequencedRecord) {
        switch r.record {
        case let .stockSet(sku, onHand, threshold, limit):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .stockSet, quantity: Int64(onHand),
                      aux: UInt64(threshold) << 32 | UInt64(limit), sku: sku)
        case let .stockAdjusted(sku, delta, reason):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .stockAdjusted, quantity: delta, aux: UInt64(reason),
                      sku: sku)
        case let .reserved(token, sku, quantity, deadline, customer, _, bundle, line, lines):
            // Journals written before the fix of the core's no-customer fast
            // path hold `lines` 0 for a single-SKU hold: it has one line.
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .reserved, line: line,
                      lines: lines == 0 && !bundle ? 1 : lines,
                      quantity: Int64(quantity), aux: deadline, token: token, sku: sku, customer: customer)
        case let .confirmed(token, sku, quantity, returned, order, customer, line, lines):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .confirmed, line: line, lines: lines,
                      quantity: Int64(quantity), aux: UInt64(returned), token: token, sku: sku, order: order,
                      customer: customer)
        case let .released(token, sku, quantity, customer, line, lines):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .released, line: line, lines: lines,
                      quantity: Int64(quantity), token: token, sku: sku, customer: customer)
        case let .expired(token, sku, quantity, customer, line, lines):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .expired, line: line, lines: lines,
                      quantity: Int64(quantity), token: token, sku: sku, customer: customer)
        case let .extended(token, deadline):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .extended, aux: deadline, token: token)
        case let .lowStock(sku, available):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .lowStock, quantity: Int64(available), sku: sku)
        case let .soldOut(sku):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .soldOut, sku: sku)
        case let .backInStock(sku, available):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .backInStock, quantity: Int64(available), sku: sku)
        case let .backupChanged(sku, delta, backup):
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .backupChanged, quantity: delta, aux: backup, sku: sku)
        case let .termStarted(epoch, node):
            // The codec keeps epochs within Int64 (RecordCodec: they are etcd revisions), so this cannot trap.
            self.init(offset: r.seq, timeMs: r.timeMs, kind: .termStarted, quantity: Int64(epoch), order: node)
        }
    }
}
