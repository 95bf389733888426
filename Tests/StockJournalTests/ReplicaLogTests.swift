import Foundation
import StockJournal
import StockProtocol
import Testing
import TestSupport

/// The standby's journal (ReplicaLog.swift, docs/replication.md §2 "Standby"):
/// records streamed in any order within a window end up in the journal and in
/// the shadow state exactly as recovery would rebuild them; the watermarks
/// stop at the first missing seq; a bad batch writes nothing; a record that
/// does not apply leaves the state as it was.
@Suite("Replica log", .cpuHeavy)
struct ReplicaLogTests {
    static let fateLimit = FateMemory.defaultLimit

    /// A replica on `dir` as a standby starts one: recovery (nothing expired) and finish, then the log.
    static func open(_ dir: TempDirectory, maxPending: Int = ReplicaLog.defaultMaxPending,
                     maxQueuedRecords: Int = ReplicaLog.defaultMaxQueuedRecords) throws -> ReplicaLog {
        let recovered = try Recovery.run(dataDirectory: dir.path, nowWallMs: 0, fateLimit: fateLimit)
        try Recovery.finish(recovered, dataDirectory: dir.path, nowWallMs: 0)
        return try ReplicaLog(directory: dir.path, state: recovered.state, segmentBytes: 4096, fateLimit: fateLimit,
                              maxPending: maxPending, maxQueuedRecords: maxQueuedRecords)
    }

    static func recover(_ dir: TempDirectory) throws -> RecoveryResult {
        try Recovery.run(dataDirectory: dir.path, nowWallMs: 0, fateLimit: fateLimit)
    }

    /// A valid history of `count` records (term starts among them).
    static func history(_ count: Int, seed: UInt64) -> [SequencedRecord] {
        var gen = HistoryGenerator(seed: seed)
        gen.termPerMille = 15
        return gen.generate(count)
    }

    /// A history of 10 records and a fresh replica holding them, synced.
    static func replicaWithTen(_ dir: TempDirectory, maxPending: Int = ReplicaLog.defaultMaxPending) throws
        -> ([SequencedRecord], ReplicaLog)
    {
        let records = history(40, seed: 0x5EED_0010)
        let log = try open(dir, maxPending: maxPending)
        try log.append(Array(records[0..<10]))
        #expect(try log.sync() == 10)
        return (records, log)
    }

    // MARK: - streaming

    /// A history streamed in random-sized batches, shuffled within a window:
    /// after every batch `received` is the gap-free prefix delivered, `durable`
    /// what the last sync saw of it, `lastEpoch` the epoch of that prefix's last
    /// term; at the end the state is what recovery rebuilds from a journal of the
    /// same records, and what recovery rebuilds from the replica's own directory.
    @Test(arguments: 1...3 as ClosedRange<UInt64>)
    func streamedInAnyOrder(seed: UInt64) throws {
        let dir = TempDirectory("replica-stream"), reference = TempDirectory("replica-ref")
        defer { dir.remove(); reference.remove() }
        let records = Self.history(2500, seed: 0x5EED_0000 + seed)
        #expect(records.contains { $0.record.kind == .termStarted }, "the history has terms")
        let arrival = shuffledInWindows(records, window: 48, seed: seed)
        let log = try Self.open(dir)
        var rng = SplitMix64(seed: seed)
        var delivered = Set<UInt64>(), prefix: UInt64 = 0, synced: UInt64 = 0, epoch: UInt64 = 0
        var i = 0, batches = 0
        while i < arrival.count {
            let n = min(arrival.count - i, 1 + Int(rng.next(below: 40)))
            try log.append(Array(arrival[i..<(i + n)]))
            for r in arrival[i..<(i + n)] { delivered.insert(r.seq) }
            i += n
            batches += 1
            while delivered.contains(prefix + 1) {
                if case let .termStarted(e, _) = records[Int(prefix)].record { epoch = e }
                prefix += 1
            }
            #expect(log.received == prefix && log.lastEpoch == epoch)
            #expect(log.lastTimeMs == (records[0..<Int(prefix)].map(\.timeMs).max() ?? 0),
                    "the journal's time: the latest record applied (a promotion's clock never goes below it)")
            #expect(log.waiting == delivered.count - Int(prefix) && (log.gapAt == nil) == (log.waiting == 0))
            #expect(log.durable == synced, "durable moves only on a sync")
            if rng.next(below: 3) == 0 {
                synced = try log.sync()
                #expect(synced == prefix && log.durable == prefix)
            }
            if batches % 20 == 0 {
                #expect(differences(log.state, try replay(records[0..<Int(prefix)])) == [])
            }
        }
        #expect(log.received == 2500 && log.waiting == 0 && log.lastEpoch > 0)
        try writeJournal(arrival, to: reference.path, segmentBytes: 4096, maxBatch: 16, seed: seed)
        let expected = try Recovery.run(dataDirectory: reference.path, nowWallMs: 0, fateLimit: Self.fateLimit)
        #expect(differences(log.state, expected.state) == [] && log.state == expected.state)
        #expect(log.state.currentEpoch == expected.state.currentEpoch && log.state.epochs == expected.state.epochs)

        try log.close()
        #expect(log.durable == 2500)
        let recovered = try Self.recover(dir)
        #expect(differences(recovered.state, log.state) == [] && recovered.state == log.state)
        #expect(recovered.nextSeq == 2501 && recovered.droppedAfterGap == 0 && recovered.highestSeqSeen == 2500)
        #expect(recovered.segments > 1, "the replica's journal rotated like the primary's")
        let latest = records.map(\.timeMs).max()!
        #expect(recovered.lastTimeMs == latest && latest > records[0].timeMs, "recovery knows the journal's time too")
        let reopened = try ReplicaLog(directory: dir.path, state: recovered.state, segmentBytes: 4096,
                                      fateLimit: Self.fateLimit, lastTimeMs: recovered.lastTimeMs)
        #expect(reopened.lastTimeMs == latest, "and a replica started on it continues from there")
        try reopened.close()
    }

    /// A replica that starts on a recovered directory continues it: the
    /// watermarks start at its last seq, the epoch at its last term.
    @Test func continuesARecoveredDirectory() throws {
        let dir = TempDirectory("replica-continue")
        defer { dir.remove() }
        let records = Self.history(1200, seed: 0x5EED_0100)
        try writeJournal(Array(records[0..<700]), to: dir.path)
        let log = try Self.open(dir)
        let head = try replay(records[0..<700])
        #expect(log.durable == 700 && log.received == 700 && log.lastEpoch == head.currentEpoch)
        #expect(log.state == head)
        try log.append(shuffledInWindows(Array(records[700...]), window: 16, seed: 3))
        #expect(log.received == 1200 && log.durable == 700)
        try log.close()
        #expect(differences(try Self.recover(dir).state, try replay(records)) == [])
    }

    /// A missing seq holds both watermarks back, however much is behind it;
    /// filling it releases everything up to the next gap, and `durable` then
    /// moves with the next sync only.
    @Test func gapHoldsDurableBack() throws {
        let dir = TempDirectory("replica-gap")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir)
        try log.append(Array(records[11..<20].reversed()))  // seqs 12...20, 11 missing
        #expect(log.received == 10 && log.gapAt == 11 && log.waiting == 9)
        #expect(try log.sync() == 10, "records beyond the gap are on disk but not durable")
        try log.append(Array(records[22..<25]))  // 23...25: a second gap at 21, 22
        try log.append([records[10]])  // 11
        #expect(log.received == 20 && log.gapAt == 21 && log.waiting == 3)
        #expect(log.durable == 10, "not synced since")
        #expect(try log.sync() == 20 && log.durable == 20)
        try log.append([records[21], records[20]])
        #expect(log.received == 25 && log.gapAt == nil && log.waiting == 0 && log.durable == 20)
        #expect(try log.sync() == 25)
        #expect(differences(log.state, try replay(records[0..<25])) == [])
    }

    /// What is beyond a gap when the standby stops is dropped by its
    /// recovery (it was never acknowledged: `durable` stopped at the gap),
    /// and the primary's resend after the next hello goes in once.
    @Test func beyondAGapAtShutdownIsDroppedAndResent() throws {
        let dir = TempDirectory("replica-gap-restart")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir)
        try log.append(Array(records[11..<20]))  // 12...20
        try log.close()
        #expect(log.durable == 10)
        let recovered = try Self.recover(dir)
        #expect(recovered.state.lastSeq == 10 && recovered.gapAt == 11 && recovered.droppedAfterGap == 9)

        let again = try Self.open(dir)  // finish rewrote 12...20 out
        #expect(again.received == 10 && again.durable == 10)
        try again.append(Array(records[10..<20]))  // the resend from 11
        #expect(again.received == 20)
        try again.close()
        let after = try Self.recover(dir)
        #expect(differences(after.state, try replay(records[0..<20])) == [] && after.highestSeqSeen == 20)
    }

    // MARK: - bad batches

    /// Ways a batch of seqs 11...13 can be broken.
    enum Damage: String, CaseIterable, Sendable {
        case truncated, flippedChecksum, flippedPayload, countTooHigh, countTooLow, leftover, zeroLength,
             unknownKind, seqZero

        /// The damaged bytes and count, and a phrase the error must contain.
        func apply(to records: [SequencedRecord]) -> (bytes: [UInt8], count: Int, says: String) {
            var parts = records.map { RecordCodec.encode($0) }
            switch self {
            case .truncated: return (Array(parts.joined().dropLast(5)), 3, "record 3 of 3 at byte")
            case .flippedChecksum: parts[1][5] ^= 0x01; return (Array(parts.joined()), 3, "bad checksum")
            case .flippedPayload:
                parts[1][parts[1].count - 1] ^= 0x40
                return (Array(parts.joined()), 3, "bad checksum")
            case .countTooHigh: return (Array(parts.joined()), 4, "3 records, not 4")
            case .countTooLow: return (Array(parts.joined()), 2, "bytes after 2 records")
            case .leftover: return (Array(parts.joined()) + [1, 2, 3, 4, 5], 3, "5 bytes after 3 records")
            case .zeroLength: return (parts[0] + [0, 0, 0, 0] + parts[2], 3, "bad length 0")
            case .unknownKind:
                parts[2][8] = 99
                TermStartTests.reseal(&parts[2])
                return (Array(parts.joined()), 3, "unknown kind 99")
            case .seqZero:
                withUnsafeBytes(of: UInt64(0)) { for i in 0..<8 { parts[1][9 + i] = $0[i] } }
                TermStartTests.reseal(&parts[1])
                return (Array(parts.joined()), 3, "seq 0")
            }
        }
    }

    /// A damaged batch is `malformed` and writes nothing: the log takes the
    /// good batch afterwards, and recovery finds each record once.
    @Test(arguments: Damage.allCases)
    func malformedWritesNothing(damage: Damage) throws {
        let dir = TempDirectory("replica-malformed")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir)
        let (bytes, count, says) = damage.apply(to: Array(records[10..<13]))
        let got = replicaError { () throws(ReplicaError) in try log.append(bytes, count: count) }
        guard case .malformed(let why) = got else {
            Issue.record("expected malformed, got \(String(describing: got))")
            return
        }
        #expect(why.contains(says), "\(why)")
        #expect(got!.description.hasPrefix("malformed replication records: "))
        let ten = try replay(records[0..<10])
        #expect(log.received == 10 && log.waiting == 0 && log.state == ten)

        try log.close()
        let recovered = try Self.recover(dir)
        #expect(recovered.highestSeqSeen == 10 && recovered.recordsRead == 10 && recovered.tornTail == nil)
    }

    /// After a refused batch the same records, whole, go in once.
    @Test func goodBatchAfterAMalformedOne() throws {
        let dir = TempDirectory("replica-malformed-then-good")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir)
        for damage in Damage.allCases {
            let (bytes, count, _) = damage.apply(to: Array(records[10..<13]))
            #expect(replicaError { () throws(ReplicaError) in try log.append(bytes, count: count) } != nil)
        }
        try log.append(Array(records[10..<13]))
        #expect(log.received == 13)
        try log.close()
        let recovered = try Self.recover(dir)
        #expect(recovered.highestSeqSeen == 13 && recovered.recordsRead == 13)
        #expect(differences(recovered.state, try replay(records[0..<13])) == [])
    }

    /// An empty round (it only moves the primary's `end`) is no batch; bytes with a count of 0 are.
    @Test func emptyBatch() throws {
        let dir = TempDirectory("replica-empty")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir)
        try log.append([UInt8](), count: 0)
        #expect(log.received == 10)
        let bytes = RecordCodec.encode(records[10])
        #expect(replicaError { () throws(ReplicaError) in try log.append(bytes, count: 0) }
                == .malformed("\(bytes.count) bytes after 0 records"))
    }

    /// A seq the log already holds — received, waiting, or twice in one batch — refuses the whole batch.
    @Test func duplicateSeqs() throws {
        let dir = TempDirectory("replica-dup")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir)
        func refused(_ batch: [SequencedRecord]) -> ReplicaError? {
            replicaError { () throws(ReplicaError) in try log.append(batch) }
        }
        #expect(refused([records[10], records[4]]) == .duplicate(seq: 5), "already received")
        #expect(refused([records[9]]) == .duplicate(seq: 10), "the last one received")
        #expect(refused([records[10], records[11], records[10]]) == .duplicate(seq: 11), "twice in a batch")
        try log.append([records[12]])  // 13 waits behind 11, 12
        #expect(refused([records[11], records[12]]) == .duplicate(seq: 13), "already waiting")
        #expect(log.received == 10 && log.waiting == 1)
        #expect(ReplicaError.duplicate(seq: 13).description == "replicated record seq 13 is already held")

        try log.append([records[10], records[11]])
        #expect(log.received == 13 && log.waiting == 0)
        try log.close()
        let recovered = try Self.recover(dir)
        #expect(recovered.recordsRead == 13 && recovered.state.lastSeq == 13, "no refused batch was written")
    }

    /// More than `maxPending` records behind a gap are refused (nothing
    /// written); the count is the one after the batch, so a batch that fills
    /// its own gap may be any size.
    @Test func tooFarAhead() throws {
        let dir = TempDirectory("replica-ahead")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir, maxPending: 4)
        try log.append(Array(records[11..<15]))  // 12...15 wait: 4, the limit
        #expect(log.waiting == 4)
        #expect(replicaError { () throws(ReplicaError) in try log.append([records[15]]) }
                == .tooFarAhead(waiting: 5, limit: 4))
        try log.append([records[10]])
        #expect(log.received == 15 && log.waiting == 0)
        try log.append(Array(records[15..<27].reversed()))  // 16...27 backwards: 11 wait on the way, none after
        #expect(log.received == 27)
        let got = replicaError { () throws(ReplicaError) in try log.append(Array(records[28..<34])) }
        #expect(got == .tooFarAhead(waiting: 6, limit: 4))
        #expect(got?.description == "6 replicated records would wait behind a gap (limit 4)")
        try log.close()
        let recovered = try Self.recover(dir)
        #expect(recovered.highestSeqSeen == 27 && recovered.recordsRead == 27)
    }

    /// The shadow state is applied on the log's own thread while appends go on (nothing reads it
    /// between batches here, unlike `streamedInAnyOrder`): with an apply queue of one record (every
    /// append waits for the batch before), a small one and the default, the state at the end is
    /// recovery's of the same records, in order, and a sync never waits for the applier.
    @Test(arguments: [1, 64, ReplicaLog.defaultMaxQueuedRecords])
    func appliedOffTheAppendPath(maxQueued: Int) throws {
        let dir = TempDirectory("replica-applier"), reference = TempDirectory("replica-applier-ref")
        defer { dir.remove(); reference.remove() }
        let records = Self.history(3000, seed: 0x5EED_00A0 + UInt64(maxQueued))
        let arrival = shuffledInWindows(records, window: 48, seed: UInt64(maxQueued))
        let log = try Self.open(dir, maxQueuedRecords: maxQueued)
        var rng = SplitMix64(seed: UInt64(maxQueued))
        var i = 0
        while i < arrival.count {
            let n = min(arrival.count - i, 1 + Int(rng.next(below: 200)))
            try log.append(Array(arrival[i..<(i + n)]))
            i += n
            if rng.next(below: 4) == 0 { _ = try log.sync() }
        }
        #expect(try log.sync() == 3000 && log.received == 3000)
        try log.applyDeferred()
        try writeJournal(arrival, to: reference.path, segmentBytes: 4096, maxBatch: 16, seed: 1)
        let expected = try Recovery.run(dataDirectory: reference.path, nowWallMs: 0, fateLimit: Self.fateLimit)
        #expect(differences(log.state, expected.state) == [] && log.state == expected.state)
        #expect(log.lastTimeMs == records.map(\.timeMs).max()!)
        try log.close()
        #expect(log.state == expected.state, "the state stays readable after close")
    }

    // MARK: - records that do not apply

    /// A record of another history — a confirm of a token this state never
    /// had — is refused by the shadow state when it is applied (after the
    /// ack: `applyDeferred`), which stays as it was; the log takes nothing
    /// more. The record is on disk and counted received (the ack went first),
    /// so recovery stops at it until the journal is cut back before it.
    @Test func doesNotApplyLeavesTheStateAsItWas() throws {
        let dir = TempDirectory("replica-noapply")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir)
        let before = log.state
        let sku = before.skus[0].sku
        let stranger = SequencedRecord(seq: 11, timeMs: records[10].timeMs,
                                       record: .confirmed(token: Token(slot: 999_999, generation: 1, secret: 42),
                                                          sku: sku, quantity: 1, returned: 0, orderReference: .empty))
        try log.append([stranger])
        let got = replicaError { () throws(ReplicaError) in try log.applyDeferred() }
        guard case let .doesNotApply(seq, reason) = got else {
            Issue.record("expected doesNotApply, got \(String(describing: got))")
            return
        }
        #expect(seq == 11 && reason.contains("unknown token"), "\(reason)")
        #expect(log.state == before && log.received == 11 && log.lastEpoch == before.currentEpoch)
        #expect(replicaError { () throws(ReplicaError) in try log.append([records[10]]) } == got,
                "the log takes nothing after a refusal")
        #expect(replicaError { () throws(ReplicaError) in try log.close() } == got, "nor closes as if sound")

        let stopped = journalError { _ = try Self.recover(dir) }
        guard case .replay(11, _) = stopped else {
            Issue.record("expected recovery to stop at seq 11, got \(String(describing: stopped))")
            return
        }
        _ = try Truncation.run(dataDirectory: dir.path, keepingThrough: 10)
        #expect(try Self.recover(dir).state == before)
    }

    /// A record behind a gap is judged when the gap fills: the state keeps
    /// everything before it, including the record that filled the gap.
    @Test func doesNotApplyBehindAGap() throws {
        let dir = TempDirectory("replica-noapply-gap")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir)
        let bad = SequencedRecord(seq: 12, timeMs: 0,
                                  record: .stockAdjusted(sku: SKU("NO-SUCH-SKU")!, delta: 1, reason: 0))
        try log.append([bad, records[12]])  // 12 (bad), 13 wait
        #expect(log.waiting == 2)
        try log.append([records[10]])
        #expect(log.waiting == 0 && log.received == 13, "written gap-free through 13")
        let got = replicaError { () throws(ReplicaError) in try log.applyDeferred() }
        #expect(got == .doesNotApply(seq: 12, reason: "unknown SKU NO-SUCH-SKU"))
        let eleven = try replay(records[0..<11])
        #expect(log.state == eleven)
    }

    /// Mid-batch: the records before the refused one apply, none after it.
    @Test func doesNotApplyMidBatch() throws {
        let dir = TempDirectory("replica-noapply-mid")
        defer { dir.remove() }
        let (records, log) = try Self.replicaWithTen(dir)
        let bad = SequencedRecord(seq: 12, timeMs: 0, record: .extended(token: Token(slot: 1, generation: 9, secret: 9),
                                                                        deadlineWallMs: 1))
        try log.append([records[10], bad, records[12]])
        let got = replicaError { () throws(ReplicaError) in try log.applyDeferred() }
        guard case .doesNotApply(12, _) = got else {
            Issue.record("expected doesNotApply at 12, got \(String(describing: got))")
            return
        }
        let eleven = try replay(records[0..<11])
        #expect(log.received == 13 && log.state == eleven)
    }

    /// A term start that is not after the current epoch is another history's:
    /// refused, and the epoch stays.
    @Test func olderTermStartDoesNotApply() throws {
        let dir = TempDirectory("replica-noapply-term")
        defer { dir.remove() }
        let (_, log) = try Self.replicaWithTen(dir)
        let node = ShortBytes("node-x")!
        try log.append([SequencedRecord(seq: 11, timeMs: 0, record: .termStarted(epoch: 7_000, node: node))])
        #expect(log.lastEpoch == 7_000 && log.received == 11)
        let before = log.state
        try log.append([SequencedRecord(seq: 12, timeMs: 0, record: .termStarted(epoch: 6_999, node: node))])
        let got = replicaError { () throws(ReplicaError) in try log.applyDeferred() }
        #expect(got == .doesNotApply(seq: 12, reason: "term start of epoch 6999 not after epoch 7000"))
        #expect(log.lastEpoch == 7_000 && log.state == before)
        #expect(got?.description
                == "replicated record seq 12 does not apply: term start of epoch 6999 not after epoch 7000")
    }
}

/// The `ReplicaError` `body` throws (nil if it returns).
func replicaError(_ body: () throws(ReplicaError) -> Void) -> ReplicaError? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

extension ReplicaLog {
    /// Appends `records`, encoded back to back, as one batch.
    func append(_ records: [SequencedRecord]) throws(ReplicaError) {
        try append(records.flatMap { RecordCodec.encode($0) }, count: records.count)
    }

    /// Appends raw `bytes` said to hold `count` records.
    func append(_ bytes: [UInt8], count: Int) throws(ReplicaError) {
        try bytes.withUnsafeBytes { b in
            Result { () throws(ReplicaError) in try append(records: b, count: count) }
        }.get()
    }
}
