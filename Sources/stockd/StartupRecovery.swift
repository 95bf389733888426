import Foundation
import Logging
import StockCore
import StockJournal
import StockProtocol
#if canImport(Glibc)
import Glibc
#endif

/// What the data directory gave back, ready for `StockServer.restore`.
struct RecoveredData {
    /// SKUs in creation order.
    var skus: [SKUState]
    var customerSold: [CustomerSKU: UInt64]
    var tokens: [LiveToken]
    /// Decided tokens to remember, oldest decision first.
    var fates: [RestoredFate]
    /// The journal's first record number from now on.
    var nextSeq: UInt64
    /// The oldest offset the event feed can serve.
    var feedFloor: UInt64
}

/// Start-up with `--sync always`: lock the data directory, recover (newest
/// snapshot + journal replay, torn tail truncated, holds past their deadline
/// expired), add `--catalog` SKUs the directory does not know yet, write a
/// fresh snapshot and start an empty journal after it.
enum StartupRecovery {
    /// Held for the life of the process: a second stockd on the same
    /// directory would interleave two journals.
    nonisolated(unsafe) private static var lockFD: Int32 = -1

    static func recover(_ dir: String, catalog: [StockSet], retainBytes: Int64, fateLimit: Int,
                        logger: Logger) throws -> RecoveredData {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try lock(dir)
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        var result: RecoveryResult
        do { result = try Recovery.run(dataDirectory: dir, nowWallMs: now, fateLimit: fateLimit) } catch {
            throw RecoveryFailed("--data-dir \(dir): \(error)")
        }
        if let torn = result.tornTail {
            logger.warning("recovery: torn tail truncated: \(torn)")
        }
        if let gap = result.gapAt {
            logger.warning("recovery: sequence gap at \(gap): \(result.droppedAfterGap) later records were never acknowledged, dropped")
        }
        var staged: [SequencedRecord] = []
        for line in catalog where result.state.sku(line.sku) == nil {
            let record = SequencedRecord(seq: result.nextSeq, timeMs: now, record: .stockSet(
                sku: line.sku, onHand: line.onHand, lowStockThreshold: line.lowStockThreshold ?? 0,
                perCustomerLimit: line.perCustomerLimit ?? 0))
            do { try result.state.apply(record) } catch {
                throw RecoveryFailed("--catalog: \(error)")
            }
            result.nextSeq += 1
            staged.append(record)
        }
        let floor: UInt64
        do {
            floor = try Recovery.finish(result, dataDirectory: dir, nowWallMs: now, startupRecords: staged,
                                        retainBytes: retainBytes).feedFloor
        } catch {
            throw RecoveryFailed("--data-dir \(dir): cannot write the recovery snapshot: \(error)")
        }
        let ms = Double(result.elapsed.components.attoseconds) / 1e15 + Double(result.elapsed.components.seconds) * 1000
        logger.info("recovery: done", metadata: [
            "data_dir": "\(dir)", "snapshot_seq": .stringConvertible(result.snapshotSeq),
            "records_replayed": .stringConvertible(result.recordsReplayed), "ms": "\(String(format: "%.1f", ms))",
            "skus": .stringConvertible(result.state.skuCount), "live_holds": .stringConvertible(result.state.tokenCount),
            "decided_tokens": .stringConvertible(result.state.fates.count),
            "expired_while_down": .stringConvertible(result.expiredAtRecovery.count),
            "catalog_staged": .stringConvertible(staged.count), "catalog_known": .stringConvertible(catalog.count - staged.count),
            "next_seq": .stringConvertible(result.nextSeq), "feed_from": .stringConvertible(floor),
        ])
        return RecoveredData(
            skus: result.state.skus,
            customerSold: result.state.customerSold,
            tokens: Array(result.state.tokens.values),
            fates: result.state.fates.oldestFirst.map { RestoredFate(token: $0.token, fate: $0.fate) },
            nextSeq: result.nextSeq, feedFloor: floor)
    }

    /// A cluster node's start (docs/replication.md §2): recover the journal as it is — nothing
    /// expired, no catalog staged: those are the primary's records to write, and a standby's
    /// journal must stay a prefix of its primary's. Returns the state its ReplicaLog continues, and
    /// the journal's latest record time.
    static func recoverReplica(_ dir: String, retainBytes: Int64, fateLimit: Int, logger: Logger) throws
        -> (state: JournalState, lastTimeMs: UInt64)
    {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try lock(dir)
        let result: RecoveryResult
        do { result = try Recovery.run(dataDirectory: dir, nowWallMs: 0, fateLimit: fateLimit) } catch {
            throw RecoveryFailed("--data-dir \(dir): \(error)")
        }
        precondition(result.expiredAtRecovery.isEmpty, "a replica's recovery expires nothing")
        if let torn = result.tornTail { logger.warning("recovery: torn tail truncated: \(torn)") }
        if let gap = result.gapAt {
            logger.warning("recovery: sequence gap at \(gap): \(result.droppedAfterGap) later records dropped (never acknowledged)")
        }
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        do { try Recovery.finish(result, dataDirectory: dir, nowWallMs: now, retainBytes: retainBytes) } catch {
            throw RecoveryFailed("--data-dir \(dir): cannot write the recovery snapshot: \(error)")
        }
        logger.info("recovery: done (cluster node: nothing expired, no catalog staged until it is primary)", metadata: [
            "data_dir": "\(dir)", "snapshot_seq": .stringConvertible(result.snapshotSeq),
            "records_replayed": .stringConvertible(result.recordsReplayed), "skus": .stringConvertible(result.state.skuCount),
            "live_holds": .stringConvertible(result.state.tokenCount), "last_seq": .stringConvertible(result.state.lastSeq),
            "epoch": .stringConvertible(result.state.currentEpoch),
        ])
        return (result.state, result.lastTimeMs)
    }

    /// After the loops and the journal stopped: replay, write one snapshot, drop the segments beyond
    /// retention. A cluster node (`expire` false) expires nothing: a record only its journal held
    /// would make it diverge from its primary's.
    static func compactAtShutdown(_ dir: String, retainBytes: Int64, fateLimit: Int, expire: Bool = true,
                                  logger: Logger) throws {
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        let result = try Recovery.run(dataDirectory: dir, nowWallMs: expire ? now : 0, fateLimit: fateLimit)
        let snapshot = try Recovery.finish(result, dataDirectory: dir, nowWallMs: now, retainBytes: retainBytes).snapshot
        logger.info("snapshot at seq \(snapshot.seq) written, \(result.recordsReplayed) journal records folded into it")
    }

    private static func lock(_ dir: String) throws {
        let fd = open(dir + "/LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw RecoveryFailed("--data-dir \(dir): cannot open LOCK: \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw RecoveryFailed("--data-dir \(dir) is in use by another stockd")
        }
        lockFD = fd
    }
}

struct RecoveryFailed: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
