import Foundation
import StockProtocol
import Testing
import TestSupport

// MARK: - 8. Many connections racing for one hot SKU

extension StockServerTests {
    @Test("500 concurrent connections reserving one unit at a time: exactly on_hand granted",
          arguments: ["reuseport", "handoff"])
    func hotSKUStampede(accept: String) throws {
        let onHand = 1_000
        let threads = 5
        let perThread = 100
        let server = try StockdProcess(["--workers", "2", "--max-connections", "1000", "--accept", accept],
                                       catalog: "HOT,\(onHand)\n")
        let port = server.port

        struct Outcome: Sendable {
            var tokens: [Token] = []
            var soldOutConnections = 0
            var errors: [String] = []
        }
        let outcome = Locked(Outcome())
        let connected = Locked(0)
        let finished = runThreads(threads, timeout: 60) { t in
            var clients: [RawClient] = []
            do {
                for _ in 0..<perThread { clients.append(try RawClient(port: port, timeout: 10)) }
            } catch {
                outcome.update { $0.errors.append("thread \(t) connect: \(error)") }
            }
            // Every connection is open before anyone reserves.
            connected.update { $0 += 1 }
            let barrier = monotonicSeconds() + 20
            while connected.get() < threads && monotonicSeconds() < barrier { sleepSeconds(0.005) }

            var active = Array(clients.indices)
            var tokens: [Token] = []
            var soldOut = 0
            var errors: [String] = []
            let deadline = monotonicSeconds() + 40
            var round = 0
            while !active.isEmpty && errors.isEmpty && monotonicSeconds() < deadline {
                round += 1
                var sent: [(Int, UInt32)] = []
                for i in active {
                    do { sent.append((i, try clients[i].sendRequest(.reserve(Reserve(sku: sku("HOT"), quantity: 1))))) } catch {
                        errors.append("thread \(t) conn \(i) round \(round) send: \(error)")
                    }
                }
                var next: [Int] = []
                for (i, id) in sent {
                    do {
                        let r = try clients[i].readResponse(timeout: 10)
                        if r.requestID != id {
                            errors.append("thread \(t) conn \(i): answer id \(r.requestID) for \(id)")
                        } else if let res = r.reservation {
                            tokens.append(res.token)
                            next.append(i)
                        } else if r.status == .outOfStock {
                            soldOut += 1
                        } else {
                            errors.append("thread \(t) conn \(i): \(r.status.name) \(r.body)")
                        }
                    } catch {
                        errors.append("thread \(t) conn \(i) round \(round) read: \(error)")
                    }
                }
                active = next
            }
            if !active.isEmpty && errors.isEmpty { errors.append("thread \(t): \(active.count) connections not done in time") }
            outcome.update {
                $0.tokens += tokens
                $0.soldOutConnections += soldOut
                $0.errors += errors
            }
            for c in clients { c.close() }
        }
        #expect(finished, "client threads still running after 60 s")
        let o = outcome.get()
        #expect(o.errors.isEmpty, "\(o.errors.prefix(10)) — stockd: \(server.diagnostics)")
        #expect(o.tokens.count == onHand, "granted \(o.tokens.count) of \(onHand)")
        #expect(Set(o.tokens).count == o.tokens.count, "duplicate tokens handed out")
        #expect(o.soldOutConnections == threads * perThread)

        let c = try server.connect()
        let info = try c.info("HOT")
        #expect(info == StockInfo(onHand: UInt64(onHand), available: 0, reserved: UInt64(onHand), confirmed: 0,
                                  reservations: UInt64(onHand)))
        #expect(info.balances)
        let stats = try c.stats()
        #expect(stats["tokens.live"] == UInt64(onHand))
        #expect((stats["connections.total"] ?? 0) >= UInt64(threads * perThread + 1))

        // Selling a few and releasing a few keeps the books balanced.
        for t in o.tokens.prefix(10) { #expect(try c.confirm(t).status == .ok) }
        for t in o.tokens.dropFirst(10).prefix(10) { #expect(try c.release(t).status == .ok) }
        #expect(try c.info("HOT") == StockInfo(onHand: UInt64(onHand), available: 10, reserved: UInt64(onHand - 20),
                                              confirmed: 10, reservations: UInt64(onHand)))
    }
}
