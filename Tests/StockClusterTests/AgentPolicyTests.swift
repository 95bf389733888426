import StockCluster
import StockProtocol
import Testing
import TestSupport

/// The agent's rules (docs/replication.md §3–§5) on made-up inputs.
@Suite(.ownThread) struct AgentPolicyTests {
    static func standby(_ node: String, lagMs: UInt32 = 0, waiting: Bool = true, acked: UInt64 = 10) -> StandbyStatus {
        StandbyStatus(node: ShortBytes(node)!, acked: acked, lagMs: lagMs, inWaitSet: waiting)
    }

    @Test func theFencingDeadlineEndsBeforeTheLeaseCountedFromTheRenewalSent() {
        // 3 s: margin 300 ms (a tenth); 1 s would be 100 ms, the floor.
        #expect(Fencing.deadline(sentNs: 1_000, ttlSeconds: 3) == 1_000 + 3_000_000_000 - 300_000_000)
        #expect(Fencing.deadline(sentNs: 0, ttlSeconds: 1) == 1_000_000_000 - 100_000_000)
        #expect(Fencing.deadline(sentNs: 5, ttlSeconds: 60) == 5 + 60_000_000_000 - 6_000_000_000)
    }

    @Test func onlyAnISRMemberCampaignsAndOnlyWhenTheKeyIsFree() {
        let isr = ISRRecord(epoch: 7, members: ["b", "c"])
        #expect(CampaignPolicy.mayCampaign(node: "b", leaderPresent: false, isr: isr))
        #expect(!CampaignPolicy.mayCampaign(node: "a", leaderPresent: false, isr: isr), "not in sync: it may lack commits")
        #expect(!CampaignPolicy.mayCampaign(node: "b", leaderPresent: true, isr: isr))
        #expect(CampaignPolicy.mayCampaign(node: "a", leaderPresent: false, isr: nil), "a new cluster: anyone starts it")
        #expect(!CampaignPolicy.mayCampaign(node: "a", leaderPresent: false, isr: ISRRecord(epoch: 7, members: [])),
                "an empty ISR: nobody is known to hold every commit")
        #expect(CampaignPolicy.startingISR(node: "b", previous: isr) == ["c"])
        #expect(CampaignPolicy.startingISR(node: "a", previous: nil) == [])
    }

    @Test func aLaggingOrMissingMemberLeavesTheISRFirst() {
        let timeout: UInt64 = 1000
        #expect(ISRPolicy.next(isr: ["b", "c"], standbys: [Self.standby("b"), Self.standby("c")], replTimeoutMs: timeout) == nil)
        #expect(ISRPolicy.next(isr: ["b", "c"], standbys: [Self.standby("b"), Self.standby("c", lagMs: 1001)],
                               replTimeoutMs: timeout) == .remove("c"))
        #expect(ISRPolicy.next(isr: ["b", "c"], standbys: [Self.standby("b")], replTimeoutMs: timeout) == .remove("c"),
                "stockd no longer lists it")
        #expect(ISRPolicy.next(isr: ["b"], standbys: [Self.standby("b", waiting: false)], replTimeoutMs: timeout)
                == .remove("b"), "in etcd but not waited for: the ISR must be a subset of the wait set")
        // Removal before addition: a lagging member holds every commit back.
        #expect(ISRPolicy.next(isr: ["b"], standbys: [Self.standby("b", lagMs: 5000), Self.standby("c")],
                               replTimeoutMs: timeout) == .remove("b"))
    }

    @Test func aCaughtUpWaitSetMemberJoinsTheISRAndAStaleOneLeavesTheWaitSet() {
        let timeout: UInt64 = 1000
        #expect(ISRPolicy.next(isr: ["b"], standbys: [Self.standby("b"), Self.standby("c")], replTimeoutMs: timeout)
                == .add("c"))
        #expect(ISRPolicy.next(isr: [], standbys: [Self.standby("c", waiting: false)], replTimeoutMs: timeout) == nil,
                "connected but not caught up: stockd admits it first")
        #expect(ISRPolicy.next(isr: [], standbys: [Self.standby("c", lagMs: 2000)], replTimeoutMs: timeout)
                == .dropFromWaitSet("c"))
        let standbys = [Self.standby("b"), Self.standby("c"), Self.standby("d", waiting: false)]
        #expect(ISRPolicy.waitSet(after: .remove("c"), standbys: standbys) == ["b"])
        #expect(ISRPolicy.waitSet(after: .add("c"), standbys: standbys) == ["b", "c"])
    }

    @Test func recordsRoundTripAsSortedJSON() {
        let isr = ISRRecord(epoch: 42, members: ["b", "c"])
        let bytes = ClusterJSON.encode(isr)
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"epoch":42,"members":["b","c"]}"#)
        #expect(ClusterJSON.decode(ISRRecord.self, bytes) == isr)
        #expect(ClusterJSON.decode(ISRRecord.self, Array("{".utf8)) == nil)
        let leader = LeaderRecord(node: "a", address: "127.0.0.1:7878")
        #expect(ClusterJSON.decode(LeaderRecord.self, ClusterJSON.encode(leader)) == leader)
        #expect(ClusterKeys(cluster: "show").leader == "/stockd/show/leader")
        #expect(ClusterKeys(cluster: "show").member("b") == "/stockd/show/members/b")
    }

    @Test func aHandoverNamesAnInSyncTargetAndEndsOnlyWhenDrained() {
        let timeout: UInt64 = 1000
        let standbys = [Self.standby("b", acked: 90), Self.standby("c", acked: 100), Self.standby("d", waiting: false)]
        #expect(HandoverPolicy.target(requested: "b", isr: ["b", "c"], standbys: standbys, replTimeoutMs: timeout)
                == .success("b"))
        #expect(HandoverPolicy.target(requested: "", isr: ["b", "c"], standbys: standbys, replTimeoutMs: timeout)
                == .success("c"), "none named: the member furthest ahead")
        #expect(HandoverPolicy.target(requested: "d", isr: ["b", "c"], standbys: standbys, replTimeoutMs: timeout)
                == .failure(HandoverRefusal("d is not in the in-sync set [\"b\", \"c\"]")))
        let lagging = [Self.standby("b", lagMs: 1500)]
        if case .success = HandoverPolicy.target(requested: "b", isr: ["b"], standbys: lagging, replTimeoutMs: timeout) {
            Issue.record("a lagging member is no target")
        }
        if case .success = HandoverPolicy.target(requested: "", isr: [], standbys: standbys, replTimeoutMs: timeout) {
            Issue.record("an empty ISR has no target")
        }
        // Drained: every record written is committed and on the target.
        #expect(HandoverPolicy.drained(written: 100, committed: 100, target: "c", standbys: standbys))
        #expect(!HandoverPolicy.drained(written: 100, committed: 100, target: "b", standbys: standbys), "b has 90")
        #expect(!HandoverPolicy.drained(written: 101, committed: 100, target: "c", standbys: standbys), "one in flight")
        #expect(!HandoverPolicy.drained(written: 100, committed: 100, target: "x", standbys: standbys))
    }

    @Test func theOtherStandbysLeaveTheKeyToTheNamedNodeForAWindow() {
        let isr = ISRRecord(epoch: 7, members: ["b", "c"])
        let toB = HandoverRecord(epoch: 7, to: "b")
        #expect(CampaignPolicy.yieldsToHandover(node: "c", isr: isr, handover: toB, seenForNs: 0, windowNs: 100))
        #expect(!CampaignPolicy.yieldsToHandover(node: "c", isr: isr, handover: toB, seenForNs: 100, windowNs: 100),
                "after the window: b may be dead")
        #expect(!CampaignPolicy.yieldsToHandover(node: "b", isr: isr, handover: toB, seenForNs: 0, windowNs: 100))
        #expect(!CampaignPolicy.yieldsToHandover(node: "c", isr: ISRRecord(epoch: 9, members: ["c"]), handover: toB,
                                                 seenForNs: 0, windowNs: 100), "a later term began: stale")
        #expect(!CampaignPolicy.yieldsToHandover(node: "c", isr: isr, handover: nil, seenForNs: 0, windowNs: 100))
        #expect(!CampaignPolicy.yieldsToHandover(node: "c", isr: isr, handover: HandoverRecord(epoch: 7, to: ""),
                                                 seenForNs: 0, windowNs: 100), "not named yet")
        #expect(ClusterKeys(cluster: "show").handover == "/stockd/show/handover")
    }
}
