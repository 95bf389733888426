import Foundation
import Glibc
import StockClient
import StockProtocol
import Testing
import TestSupport

// The event feed against a real stockd: order and offsets, resuming after a
// reconnect and after restarts (clean and kill -9), compacted offsets,
// filters, a subscriber that stalls, and the bad inputs of PROTOCOL.md §9.

/// Reads `feed` until its position reaches `offset` (or `timeout`), returning the events.
func collect(_ feed: EventFeed, through offset: UInt64, timeout: Double = 10) async throws -> [FeedEvent] {
    var events: [FeedEvent] = []
    if feed.position >= offset { return events }
    let deadline = monotonicSeconds() + timeout
    let watchdog = Task {
        while monotonicSeconds() < deadline && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }
        if !Task.isCancelled { feed.close() }
    }
    defer { watchdog.cancel() }
    for try await e in feed {
        if e.kind != .progress { events.append(e) }
        if feed.position >= offset { break }
    }
    guard feed.position >= offset else {
        throw HarnessError("feed stopped at \(feed.position) before \(offset) (\(events.count) events)")
    }
    return events
}

/// The journal's last offset, from STATS.
func durableOffset(_ client: StockClient) async throws -> UInt64 {
    let stats = try await client.stats()
    return stats.first { $0.name == "journal.durable_seq" }?.value ?? 0
}

@Suite(.ownThread, .serialized) struct FeedTests {
    @Test("events come in journal order with gap-free offsets and every field")
    func orderAndFields() async throws {
        let server = try StockdProcess()
        let client = StockClient(port: server.port, timeout: testCallTimeout)
        defer { client.close() }
        try await client.setStock("FEED-A", onHand: 10, lowStockThreshold: 3)
        try await client.setStock("FEED-B", onHand: 5)
        let a = try await client.reserve(sku: "FEED-A", quantity: 2, customer: "cust-1")
        try await client.confirm(a.token, orderReference: "ORD-1")
        let b = try await client.reserveBundle([("FEED-A", 1), ("FEED-B", 2)], customer: "cust-2")
        try await client.confirm(b.token, orderReference: "ORD-2")
        let c = try await client.reserve(sku: "FEED-B", quantity: 1)
        try await client.release(c.token)
        let d = try await client.reserve(sku: "FEED-A", quantity: 5)  // available 7 -> 2: low stock
        _ = try await client.extend(d.token, ttl: .seconds(120))
        try await client.adjustStock("FEED-A", delta: -2, reason: .damage)  // -> 0: sold out
        try await client.confirm(d.token, quantity: 4, orderReference: "ORD-3")  // 1 back: back in stock

        let feed = try await client.events(from: .oldest)
        #expect(feed.start == 1)
        let events = try await collect(feed, through: feed.end)
        feed.close()
        #expect(events.map(\.offset) == Array(1...feed.end), "gap-free, in order")
        let kinds = events.map(\.kind)
        #expect(kinds == [.stockSet, .stockSet, .reserved, .confirmed, .reserved, .reserved, .confirmed, .confirmed,
                          .reserved, .released, .reserved, .lowStock, .extended, .stockAdjusted, .soldOut,
                          .confirmed, .backInStock], "\(kinds.map(\.name))")
        let confirmed = events.filter { $0.kind == .confirmed }
        #expect(confirmed[0].token == a.token && confirmed[0].sku.string == "FEED-A" && confirmed[0].quantity == 2
                && confirmed[0].order.string == "ORD-1" && confirmed[0].customer.string == "cust-1"
                && confirmed[0].line == 0 && confirmed[0].lines == 1)
        #expect(confirmed[1].token == b.token && confirmed[2].token == b.token)
        #expect(Set(confirmed[1...2].map(\.line)) == [0, 1] && confirmed[1].lines == 2 && confirmed[2].lines == 2)
        #expect(confirmed[1...2].allSatisfy { $0.order.string == "ORD-2" && $0.customer.string == "cust-2" })
        #expect(confirmed[3].quantity == 4 && confirmed[3].aux == 1, "a partial confirm says what went back")
        let adjusted = events.first { $0.kind == .stockAdjusted }!
        #expect(adjusted.quantity == -2 && adjusted.aux == UInt64(AdjustReason.damage.rawValue))
        #expect(events.first { $0.kind == .lowStock }!.quantity == 2)
        #expect(events.first { $0.kind == .extended }!.sku.isEmpty)
        let now = wallClockMs()
        #expect(events.allSatisfy { $0.timeMs <= now && $0.timeMs + 60_000 > now })
    }

    @Test("filters: kinds and SKU prefix; progress markers carry the position past filtered events")
    func filters() async throws {
        let server = try StockdProcess()
        let client = StockClient(port: server.port, timeout: testCallTimeout)
        defer { client.close() }
        try await client.setStock("SHOE-1", onHand: 10)
        try await client.setStock("HAT-1", onHand: 10)
        for sku in ["SHOE-1", "HAT-1", "SHOE-1"] {
            let r = try await client.reserve(sku: sku, quantity: 1)
            try await client.confirm(r.token, orderReference: "O-\(sku)")
        }
        let end = try await durableOffset(client)
        let feed = try await client.events(from: .oldest, filter: EventFilter(kinds: [.confirmed], skuPrefix: "SHOE-"))
        let events = try await collect(feed, through: end)
        feed.close()
        #expect(events.count == 2 && events.allSatisfy { $0.kind == .confirmed && $0.sku.string == "SHOE-1" })
        #expect(feed.position >= end, "a progress marker moved the position past the filtered tail")
    }

    @Test("resume from the last offset: after a reconnect, a clean restart and a kill -9, nothing is missed")
    func resumeAcrossRestarts() async throws {
        let data = try TempDirectory(prefix: "stockd-feed")
        defer { data.remove() }
        let args = ["--data-dir", data.path("d"), "--segment-size", "1"]
        var server = try StockdProcess(args)
        var client = StockClient(port: server.port, timeout: testCallTimeout)
        try await client.setStock("RES-A", onHand: 1000)
        var expected: [UInt64: EventKind] = [:]
        var handled: [UInt64: EventKind] = [:]

        func load(_ n: Int) async throws {
            for i in 0..<n {
                let r = try await client.reserve(sku: "RES-A", quantity: 1, customer: "c\(i % 7)")
                if i % 3 == 0 { try await client.release(r.token) } else {
                    try await client.confirm(r.token, orderReference: "ORD-\(i)")
                }
            }
        }
        /// Reads everything up to the current end from `position + 1`, as a consumer that stores its offset.
        func consume(from position: UInt64) async throws -> UInt64 {
            let end = try await durableOffset(client)
            let feed = try await client.events(from: .offset(position + 1))
            let events = try await collect(feed, through: end)
            feed.close()
            for e in events { #expect(handled.updateValue(e.kind, forKey: e.offset) == nil, "offset \(e.offset) twice") }
            return feed.position
        }

        try await load(40)
        var position = try await consume(from: 0)
        // Reconnect: a new subscription after the stored offset.
        try await load(40)
        position = try await consume(from: position)
        // A clean restart (the stop folds the journal into a snapshot; retention keeps the segments).
        client.close()
        #expect(server.terminate()?.code == 0)
        server = try StockdProcess(args)
        client = StockClient(port: server.port, timeout: testCallTimeout)
        try await load(40)
        position = try await consume(from: position)
        // kill -9 with a hold that expires while stockd is down: its expiry is an event too.
        let doomed = try await client.reserve(sku: "RES-A", quantity: 3, ttl: .milliseconds(300), customer: "late")
        try await load(20)
        client.close()
        server.kill()
        sleepSeconds(0.5)
        server = try StockdProcess(args)
        client = StockClient(port: server.port, timeout: testCallTimeout)
        defer { client.close() }
        try await load(10)
        position = try await consume(from: position)

        // Every offset the journal issued was handed out exactly once.
        let full = try await client.events(from: .oldest)
        let all = try await collect(full, through: position)
        full.close()
        for e in all { expected[e.offset] = e.kind }
        #expect(expected.count == Int(position) && handled == expected)
        let expiry = all.first { $0.kind == .expired && $0.token == doomed.token }
        #expect(expiry?.quantity == 3 && expiry?.customer.string == "late", "the expiry at recovery is in the feed")
        let confirms = all.filter { $0.kind == .confirmed }.count
        let releases = all.filter { $0.kind == .released }.count
        #expect(confirms + releases == 150 && releases == 14 + 14 + 14 + 7 + 4)
        _ = server
    }

    @Test("a feed left open resumes by itself across a stockd restart on the same port")
    func autoResume() async throws {
        let data = try TempDirectory(prefix: "stockd-feed-auto")
        defer { data.remove() }
        var server = try StockdProcess(["--data-dir", data.path("d")])
        let port = server.port
        let client = StockClient(port: port, timeout: .seconds(2))
        defer { client.close() }
        try await client.setStock("AUTO", onHand: 100)
        let interruptions = Locked<[UInt64]>([])
        let feed = try await client.events(from: .oldest, filter: EventFilter(kinds: [.confirmed])) { _, offset in
            interruptions.set(interruptions.get() + [offset])
        }
        defer { feed.close() }
        for i in 0..<5 {
            let r = try await client.reserve(sku: "AUTO", quantity: 1)
            try await client.confirm(r.token, orderReference: "A-\(i)")
        }
        let first = try await collect(feed, through: try await durableOffset(client))
        server.kill()
        server = try StockdProcess(["--data-dir", data.path("d"), "--port", "\(port)"])
        for i in 5..<10 {
            let r = try await client.reserve(sku: "AUTO", quantity: 1)
            try await client.confirm(r.token, orderReference: "A-\(i)")
        }
        let rest = try await collect(feed, through: try await durableOffset(client), timeout: 15)
        #expect((first + rest).map(\.order.string) == (0..<10).map { "A-\($0)" })
        // One drop, resumed right after what had been handed out (progress markers included).
        let resumedAt = interruptions.get()
        #expect(resumedAt.count == 1 && resumedAt[0] > first.last!.offset && resumedAt[0] <= rest.first!.offset,
                "\(resumedAt)")
        _ = server
    }

    @Test("an offset compacted away is OFFSET_COMPACTED with the oldest offset held; from there the feed works")
    func compactedOffset() async throws {
        let server = try StockdProcess(["--segment-size", "1", "--snapshot-every", "2000", "--feed-retention", "0"])
        let client = StockClient(port: server.port, connections: 4, timeout: testCallTimeout)
        defer { client.close() }
        try await client.setStock("CMP", onHand: 1_000_000)
        var floor: UInt64 = 1
        let deadline = monotonicSeconds() + 20
        while floor <= 1 && monotonicSeconds() < deadline {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        for _ in 0..<500 {
                            if let r = try? await client.reserve(sku: "CMP", quantity: 1) { _ = try? await client.release(r.token) }
                        }
                    }
                }
            }
            floor = try await client.stats().first { $0.name == "feed.floor" }?.value ?? 1
        }
        #expect(floor > 1, "compaction never deleted a segment")
        do {
            _ = try await client.events(from: .offset(1))
            Issue.record("offset 1 was served")
        } catch {
            guard case .offsetCompacted(let oldest) = error else { throw error }
            #expect(oldest >= floor)
        }
        let current = try await client.stats().first { $0.name == "feed.floor" }!.value
        let feed = try await client.events(from: .oldest)
        #expect(feed.start >= current)
        let events = try await collect(feed, through: min(feed.end, feed.start + 100))
        feed.close()
        #expect(events.first?.offset == feed.start && events.count == 101)
    }

    @Test("a subscriber that never reads nor grants credit: bounded server memory, reservations unaffected")
    func stalledSubscriber() async throws {
        let server = try StockdProcess()
        let client = StockClient(port: server.port, connections: 4, timeout: testCallTimeout)
        defer { client.close() }
        try await client.setStock("STALL", onHand: 10_000_000)
        // Two stalled feeds: one with credit that never reads, one that reads but never grants.
        let greedy = try RawClient(port: server.port)
        _ = try greedy.sendRequest(.subscribe(Subscribe(from: Limits.feedFromNow, credit: Limits.maxFeedCredit)))
        let stingy = try RawClient(port: server.port)
        _ = try stingy.sendRequest(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 10)))
        func rssKiB() -> Int {
            let status = (try? String(contentsOfFile: "/proc/\(server.pid)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        func burst() async {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        for _ in 0..<1000 {
                            if let r = try? await client.reserve(sku: "STALL", quantity: 1) {
                                _ = try? await client.confirm(r.token, orderReference: "X")
                            }
                        }
                    }
                }
            }
        }
        await burst()
        let rssAfterOne = rssKiB()
        for _ in 0..<4 { await burst() }
        let rssAfterFive = rssKiB()
        let info = try await client.stock("STALL")
        #expect(info.confirmed == 40_000, "every reservation went through while the feeds stalled")
        // 32,000 more events (~3 MB of frames) went to the journal; a feed that buffered them would grow by that much.
        #expect(rssAfterFive - rssAfterOne < 3_000, "RSS grew from \(rssAfterOne) to \(rssAfterFive) KiB")
        let stats = try await client.stats()
        #expect(stats.first { $0.name == "feed.subscribers" }?.value == 2)
        // 80,000 events exist; the greedy feed holds what the socket buffers took, the stingy one 10.
        let sent = stats.first { $0.name == "feed.events_sent" }?.value ?? 0
        #expect(sent >= 10 && sent < 80_000 + 10, "the feeds were paced (\(sent) events sent)")
        // The stingy one got exactly its 10 events after the SUBSCRIBE answer.
        let answer = try stingy.readResponse()
        guard case .subscribed = answer.body else { throw HarnessError("SUBSCRIBE answered \(answer)") }
        var events = 0
        while let frame = try? stingy.readResponseOrEnd(timeout: 0.5) {
            guard case .event(let e) = frame.body else { throw HarnessError("not an event: \(frame)") }
            if e.kind != .progress { events += 1 }
        }
        #expect(events == 10, "credit 10, never granted more: \(events) events")
        // The greedy one finally reads: the writes stockd queued for it complete.
        var drained = 0  // until past the bound, or 5 s without a frame (a loaded machine pauses for seconds)
        while drained <= 10_000, let frame = try? greedy.readResponseOrEnd(timeout: 5) {
            if case .event = frame.body { drained += 1 }
        }
        #expect(drained > 10_000, "drained \(drained) frames")
        let after = try await client.stock("STALL")
        #expect(server.isRunning && after.confirmed == 40_000)
        greedy.close()
        stingy.close()
    }

    @Test("bad input: CREDIT outside a feed, garbage on a feed, offsets beyond the end, --sync none, too many subscribers")
    func badInput() async throws {
        let server = try StockdProcess(["--max-subscribers", "2"])
        let c = try RawClient(port: server.port)
        #expect(try c.request(.credit(5)).status == .invalidArgument)
        #expect(try c.rawRequest(opcode: Opcode.subscribe.rawValue, payload: [1, 2, 3]).status == .malformed)
        let beyond = try c.request(.subscribe(Subscribe(from: 1_000_000, credit: 1)))
        #expect(beyond.status == .invalidArgument)
        let badKinds = try c.request(.subscribe(Subscribe(from: 0, credit: 1, kinds: 1)))
        #expect(badKinds.status == .invalidArgument)
        #expect(try c.ping().body == .pong, "the connection stays usable")

        // Garbage after SUBSCRIBE ends that feed with MALFORMED and closes it.
        let f = try RawClient(port: server.port)
        _ = try f.sendRequest(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 1)))
        guard case .subscribed = try f.readResponse().body else { throw HarnessError("no SUBSCRIBE answer") }
        try f.send(Wire.rawFrame(opcode: Opcode.ping.rawValue, id: 9, payload: []))
        let drain = try f.readUntilClosed(timeout: 3)
        #expect(drain.closed && drain.responses.last?.status == .malformed)

        // Two subscribers at most (once the feed just ended has given its slot back).
        let deadline = monotonicSeconds() + 3
        while try c.stats()["feed.subscribers"] != 0 && monotonicSeconds() < deadline { sleepSeconds(0.01) }
        let s1 = try RawClient(port: server.port)
        _ = try s1.sendRequest(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 1)))
        let s2 = try RawClient(port: server.port)
        _ = try s2.sendRequest(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 1)))
        guard case .subscribed = try s1.readResponse().body, case .subscribed = try s2.readResponse().body else {
            throw HarnessError("two subscribers refused")
        }
        let s3 = try RawClient(port: server.port)
        _ = try s3.sendRequest(.subscribe(Subscribe(from: Limits.feedFromNow, credit: 1)))
        #expect(try s3.readResponse().status == .busy)
        s1.close()
        s2.close()

        let memory = try StockdProcess(["--sync", "none"])
        let m = try RawClient(port: memory.port)
        #expect(try m.request(.subscribe(Subscribe(from: 0, credit: 1))).status == .feedUnavailable)
    }
}
