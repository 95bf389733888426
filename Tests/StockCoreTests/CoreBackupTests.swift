import Atomics
import Foundation
@testable import StockCore
import StockProtocol
import Testing
import TestSupport

/// Backup units and STAGE in the core: backup is never sold until released,
/// a stage is all lines or none, and on_hand = available + reserved +
/// confirmed + backup after every step.
@Suite(.cpuHeavy) struct CoreBackupTests {
    static func line(_ sku: String, _ onHand: UInt64, backup: UInt64 = 0, low: UInt32 = 0, limit: UInt32 = 0) -> StageLine {
        StageLine(sku: SKU(sku)!, onHand: onHand, backup: backup, lowStockThreshold: low, perCustomerLimit: limit)
    }

    static func stage(_ f: Fixture, _ lines: [StageLine]) throws(Failure) -> StageReply {
        try f.core.stage(Stage(lines: lines), nowMs: f.now, on: f.worker)
    }

    static func release(_ f: Fixture, _ sku: String, _ n: UInt64) throws(Failure) -> StockInfo {
        try f.core.releaseBackup(BackupMove(sku: SKU(sku)!, quantity: n), nowMs: f.now, on: f.worker)
    }

    static func hold(_ f: Fixture, _ sku: String, _ n: UInt64) throws(Failure) -> StockInfo {
        try f.core.holdBackup(BackupMove(sku: SKU(sku)!, quantity: n), nowMs: f.now, on: f.worker)
    }

    /// Records every change the worker reports.
    final class Sink: @unchecked Sendable {
        var changes: [Change] = []
        init(_ f: Fixture) { f.worker.onChange = { [unowned self] in self.changes.append($0) } }
        var kinds: [ChangeKind] { changes.map(\.kind) }
    }

    @Test func backupUnitsAreNeverSoldUntilReleased() throws {
        let f = Fixture()
        let sink = Sink(f)
        #expect(try Self.stage(f, [Self.line("HERO", 10, backup: 4, low: 2)]) == StageReply(lines: 1, created: 1))
        #expect(f.info("HERO") == StockInfo(onHand: 10, available: 6, reserved: 0, confirmed: 0, lowStockThreshold: 2,
                                            backup: 4))
        for _ in 0..<6 { _ = try f.reserve("HERO", 1) }
        // Four units are on hand, none on sale.
        expectFailure(.outOfStock, .outOfStock(line: 0, available: 0)) { try f.reserve("HERO", 1) }
        #expect(sink.kinds.contains(.soldOut))
        f.expectInvariants()

        sink.changes.removeAll()
        let after = try Self.release(f, "HERO", 3)
        #expect(after == StockInfo(onHand: 10, available: 3, reserved: 6, confirmed: 0, lowStockThreshold: 2,
                                   reservations: 6, backup: 1))
        // The release is announced before its units can be sold, then the level changes.
        #expect(sink.kinds == [.backupChanged, .backInStock])
        #expect(sink.changes[0].detail == .backupChanged(delta: -3, backupAfter: 1))
        for _ in 0..<3 { _ = try f.reserve("HERO", 1) }
        expectFailure(.outOfStock) { try f.reserve("HERO", 1) }

        expectFailure(.insufficientBackup, .insufficientBackup(backup: 1)) { try Self.release(f, "HERO", 2) }
        #expect(try Self.release(f, "HERO", 0).backup == 0)  // 0: all of them
        #expect(try Self.release(f, "HERO", 0).available == 1)  // nothing left to release: no change
        expectFailure(.unknownSKU) { try Self.release(f, "NOPE", 1) }
        f.expectInvariants()
    }

    @Test func holdTakesOnlyAvailableUnits() throws {
        let f = Fixture(stock: [("TEE", 10)])
        let a = try f.reserve("TEE", 7)
        expectFailure(.insufficientAvailable, .insufficientAvailable(available: 3)) { try Self.hold(f, "TEE", 4) }
        expectFailure(.quantityInvalid) { try Self.hold(f, "TEE", 0) }
        #expect(try Self.hold(f, "TEE", 3) == StockInfo(onHand: 10, available: 0, reserved: 7, confirmed: 0,
                                                         reservations: 1, backup: 3))
        // Released holds go back on sale, not into backup.
        _ = try f.core.release(a.token, nowMs: f.now, on: f.worker)
        #expect(f.info("TEE").available == 7 && f.info("TEE").backup == 3)
        f.expectInvariants()
    }

    @Test func stockSetAndAdjustNeverTakeBackupUnits() throws {
        let f = Fixture()
        _ = try Self.stage(f, [Self.line("CAP", 10, backup: 4)])
        _ = try f.reserve("CAP", 5)
        // 5 reserved + 4 backup: on-hand cannot go below 9.
        expectFailure(.insufficientAvailable, .insufficientAvailable(available: 1)) { try f.set("CAP", 8) }
        #expect(try f.set("CAP", 9).available == 0)
        #expect(try f.set("CAP", 12).available == 3)
        expectFailure(.insufficientAvailable) {
            try f.core.adjustStock(StockAdjust(sku: SKU("CAP")!, delta: -4), nowMs: f.now, on: f.worker)
        }
        #expect(f.info("CAP").backup == 4)
        f.expectInvariants()
    }

    @Test func stageAppliesEveryLineOrNone() throws {
        let f = Fixture(stock: [("A", 10), ("B", 10)])
        _ = try f.reserve("A", 8)
        _ = try f.reserve("B", 3)
        let sink = Sink(f)
        let before = (f.info("A"), f.info("B"), f.core.skuCount)
        // Line 0 is fine, line 1 would take 2 of A's 8 held units back, line 2 is new, line 3 takes B's held units.
        expectFailure(.stageRefused, .stageRefused([
            StageRefusal(line: 1, status: .insufficientAvailable, value: 2),
            StageRefusal(line: 3, status: .insufficientAvailable, value: 7),
        ])) {
            try Self.stage(f, [Self.line("C-NEW-0", 5), Self.line("A", 10, backup: 4), Self.line("C-NEW-1", 1),
                               Self.line("B", 5, backup: 3)])
        }
        #expect((f.info("A"), f.info("B"), f.core.skuCount) == before)
        #expect(f.core.index(of: SKU("C-NEW-0")!) == nil && sink.changes.isEmpty)
        f.expectInvariants()

        // The same catalog with room for what is held applies whole.
        let reply = try Self.stage(f, [Self.line("C-NEW-0", 5), Self.line("A", 12, backup: 4, low: 1, limit: 2),
                                       Self.line("C-NEW-1", 1), Self.line("B", 6, backup: 3)])
        #expect(reply == StageReply(lines: 4, created: 2))
        #expect(f.info("A") == StockInfo(onHand: 12, available: 0, reserved: 8, confirmed: 0, lowStockThreshold: 1,
                                         perCustomerLimit: 2, reservations: 1, backup: 4))
        #expect(f.info("B") == StockInfo(onHand: 6, available: 0, reserved: 3, confirmed: 0, reservations: 1, backup: 3))
        #expect(f.info("C-NEW-1").available == 1)
        f.expectInvariants()
    }

    @Test func stageRefusesWhenTheCatalogCannotTakeEveryNewSKU() throws {
        let f = Fixture(skus: 3, stock: [("OLD", 1)])
        expectFailure(.stageRefused, .stageRefused([StageRefusal(line: 1, status: .atCapacity, value: 2)])) {
            try Self.stage(f, [Self.line("OLD", 2), Self.line("N1", 1), Self.line("N2", 1), Self.line("N3", 1)])
        }
        #expect(f.core.skuCount == 1 && f.info("OLD").onHand == 1)
        #expect(try Self.stage(f, [Self.line("N1", 1), Self.line("N2", 1)]).created == 2)
        f.expectInvariants()
    }

    @Test func stageRejectsBadLinesFromAnyCaller() throws {
        let f = Fixture()
        expectFailure(.invalidArgument) { try Self.stage(f, []) }
        expectFailure(.invalidArgument) { try Self.stage(f, [Self.line("X", 1), Self.line("X", 2)]) }
        expectFailure(.quantityInvalid) { try Self.stage(f, [Self.line("X", 1, backup: 2)]) }
        expectFailure(.quantityInvalid) { try Self.stage(f, [Self.line("X", Limits.maxStock + 1)]) }
        #expect(f.core.skuCount == 0)
    }

    /// Each line's two changes come in an order in which every prefix keeps
    /// available >= 0 when replayed one by one (the journal's rule).
    @Test func stageAnnouncesBackupAndOnHandInAReplayableOrder() throws {
        let f = Fixture()
        _ = try Self.stage(f, [Self.line("S", 100, backup: 50)])
        let sink = Sink(f)
        _ = try Self.stage(f, [Self.line("S", 30, backup: 0)])  // backup falls: backup first
        #expect(sink.kinds.prefix(2) == [.backupChanged, .stockSet])
        sink.changes.removeAll()
        _ = try Self.stage(f, [Self.line("S", 80, backup: 60)])  // backup rises: on-hand first
        #expect(sink.kinds.prefix(2) == [.stockSet, .backupChanged])
        sink.changes.removeAll()
        _ = try Self.stage(f, [Self.line("S", 80, backup: 60)])  // unchanged backup: no backup change
        #expect(!sink.kinds.contains(.backupChanged))
        f.expectInvariants()
    }

    /// Buyers on two threads against an operator releasing backup one unit at
    /// a time and staging: every unit released is sold exactly once, and no
    /// backup unit ever is before its release.
    @Test func releasesRaceReservationsWithoutLosingAUnit() throws {
        var config = CoreConfig()
        config.shardCount = 2
        config.tokenCapacity = 1 << 16
        config.skuCapacity = 16
        let core = try StockCore(config: config, nowMs: Fixture.t0)
        let admin = core.makeWorker(shard: 0, nowMs: Fixture.t0)
        _ = try core.stage(Stage(lines: [StageLine(sku: SKU("HOT")!, onHand: 2000, backup: 1500)]),
                           nowMs: Fixture.t0, on: admin)
        let granted = ManagedAtomic<Int>(0)
        let operatorDone = ManagedAtomic<Bool>(false)
        let buyersDone = ManagedAtomic<Int>(0)
        let released = ManagedAtomic<Int>(0)
        for t in 0..<2 {
            Thread {
                let w = core.makeWorker(shard: t, nowMs: Fixture.t0)
                // Until the operator is done and a reserve after that finds nothing.
                while true {
                    let finished = operatorDone.load(ordering: .acquiring)
                    if (try? core.reserve(Reserve(sku: SKU("HOT")!, quantity: 1), nowMs: Fixture.t0, on: w)) != nil {
                        let sold = granted.wrappingIncrementThenLoad(ordering: .relaxed)
                        precondition(sold <= 500 + released.load(ordering: .acquiring), "sold a backup unit")
                    } else if finished {
                        break
                    }
                }
                buyersDone.wrappingIncrement(ordering: .releasing)
            }.start()
        }
        for _ in 0..<1500 {
            // Counted before the release so a buyer that sees the unit sees the count.
            released.wrappingIncrement(ordering: .releasing)
            _ = try core.releaseBackup(BackupMove(sku: SKU("HOT")!, quantity: 1), nowMs: Fixture.t0, on: admin)
        }
        operatorDone.store(true, ordering: .releasing)
        while buyersDone.load(ordering: .acquiring) < 2 { usleep(1000) }
        #expect(granted.load(ordering: .relaxed) == 2000)
        #expect(try core.stock(SKU("HOT")!) == StockInfo(onHand: 2000, available: 0, reserved: 2000, confirmed: 0,
                                                         reservations: 2000, backup: 0))
        #expect(core.checkInvariants().isEmpty)
    }
}
