import TestSupport
@testable import StockCore
import StockProtocol
import Testing


/// A core with a hand-driven clock starting at `t0`.
struct Fixture {
    static let t0: UInt64 = 1_000_000
    let core: StockCore
    let worker: Worker
    var now: UInt64 = Fixture.t0

    init(tokens: Int = 4096, skus: Int = 1024, shards: Int = 2, fateMemory: Int = 1 << 16, stock: [(String, UInt64)] = []) {
        var config = CoreConfig()
        config.tokenCapacity = tokens
        config.skuCapacity = skus
        config.shardCount = shards
        config.fateMemoryPerWorker = fateMemory
        config.customerCapacity = 1 << 16
        config.idempotencyCapacity = 1 << 16
        core = try! StockCore(config: config, nowMs: Fixture.t0)
        worker = core.makeWorker(shard: 0, nowMs: Fixture.t0)
        for (name, n) in stock { _ = try! set(name, n) }
    }

    func set(_ name: String, _ n: UInt64, expected: UInt64? = nil, threshold: UInt32? = nil,
             limit: UInt32? = nil) throws(Failure) -> StockInfo {
        try core.setStock(StockSet(sku: SKU(name)!, onHand: n, expectedOnHand: expected, lowStockThreshold: threshold,
                                   perCustomerLimit: limit), nowMs: now, on: worker)
    }

    func reserve(_ name: String, _ q: UInt32, ttl: UInt32 = 0, customer: String = "", key: String = "")
        throws(Failure) -> ReserveOutcome {
        try core.reserve(Reserve(sku: SKU(name)!, quantity: q, ttlMs: ttl, customer: ShortBytes(customer)!,
                                 idempotencyKey: ShortBytes(key)!), nowMs: now, on: worker)
    }

    func info(_ name: String) -> StockInfo { try! core.stock(SKU(name)!) }

    func expectInvariants(sourceLocation: SourceLocation = #_sourceLocation) {
        let problems = core.checkInvariants()
        #expect(problems.isEmpty, "\(problems.prefix(5))", sourceLocation: sourceLocation)
    }
}

/// Asserts that `body` fails with `status` (and, if given, `detail`).
func expectFailure<R>(_ status: Status, _ detail: ErrorDetail? = nil, sourceLocation: SourceLocation = #_sourceLocation,
                      _ body: () throws -> R) {
    do {
        let r = try body()
        Issue.record("expected \(status.name), got success \(r)", sourceLocation: sourceLocation)
    } catch let error as Failure {
        #expect(error.status == status, sourceLocation: sourceLocation)
        if let detail { #expect(error.detail == detail, sourceLocation: sourceLocation) }
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}
