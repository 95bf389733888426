import StockJournal
import StockProtocol
import TestSupport

/// Random field values for codec tests (any bytes: the codec does not read text).
struct RandomRecords {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func short(min: Int = 0) -> ShortBytes {
        let n = min + Int(rng.next(below: UInt64(ShortBytes.capacity - min + 1)))
        return ShortBytes(bytes: rng.bytes(n))!
    }

    mutating func token() -> Token {
        Token(slot: UInt32(truncatingIfNeeded: rng.next()), generation: UInt32(truncatingIfNeeded: rng.next()),
              secret: rng.next())
    }

    mutating func u32() -> UInt32 { UInt32(truncatingIfNeeded: rng.next()) }

    /// A record of `kind` with every field random.
    mutating func record(_ kind: RecordKind) -> JournalRecord {
        switch kind {
        case .stockSet:
            .stockSet(sku: short(min: 1), onHand: rng.next(), lowStockThreshold: u32(), perCustomerLimit: u32())
        case .stockAdjusted:
            .stockAdjusted(sku: short(min: 1), delta: Int64(bitPattern: rng.next()), reason: UInt8(truncatingIfNeeded: rng.next()))
        case .reserved:
            .reserved(token: token(), sku: short(min: 1), quantity: u32(), deadlineWallMs: rng.next(), customer: short(),
                      idempotencyKey: short(), bundle: rng.next() & 1 == 1)
        case .confirmed:
            .confirmed(token: token(), sku: short(min: 1), quantity: u32(), returned: u32(), orderReference: short())
        case .released:
            .released(token: token(), sku: short(min: 1), quantity: u32())
        case .expired:
            .expired(token: token(), sku: short(min: 1), quantity: u32())
        case .extended:
            .extended(token: token(), deadlineWallMs: rng.next())
        case .lowStock:
            .lowStock(sku: short(min: 1), available: rng.next())
        case .soldOut:
            .soldOut(sku: short(min: 1))
        case .backInStock:
            .backInStock(sku: short(min: 1), available: rng.next())
        case .backupChanged:
            .backupChanged(sku: short(min: 1), delta: Int64(bitPattern: rng.next()), backup: rng.next())
        case .termStarted:
            // Every epoch the codec takes: 1...Int64.max (etcd revisions).
            .termStarted(epoch: 1 + rng.next(below: UInt64(Int64.max)), node: short(min: 1))
        }
    }

    mutating func sequenced(_ kind: RecordKind) -> SequencedRecord {
        SequencedRecord(seq: rng.next(), timeMs: rng.next(), record: record(kind))
    }
}
