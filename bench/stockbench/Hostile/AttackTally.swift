/// One attack's counts and what it observed.
struct AttackTally: Sendable {
    var name: String
    var what: String
    var unit: String
    var planned: Int
    var expected: String
    /// Whether `expected` is checked (else the outcome is only observed).
    var checked: Bool
    var sent = 0
    var connections = 0
    var frames = 0
    var bytes = 0
    var answers: [String: Int] = [:]
    var closesSeen = 0
    var outcomes: [String: Int] = [:]
    var violations = 0
    var firstViolation: String?
    var startNs: UInt64 = 0
    var endNs: UInt64 = 0
    var incomplete = false

    init(_ name: String, _ what: String, unit: String, planned: Int, expected: String, checked: Bool) {
        self.name = name
        self.what = what
        self.unit = unit
        self.planned = planned
        self.expected = expected
        self.checked = checked
    }

    mutating func answer(_ a: Answer) { answers[statusName(a.status), default: 0] += 1 }
    mutating func outcome(_ s: String, _ n: Int = 1) { outcomes[s, default: 0] += n }
    mutating func violate(_ s: String) {
        violations += 1
        if firstViolation == nil { firstViolation = s }
    }
    mutating func closed(_ e: RawError) {
        closesSeen += 1
        outcome(e == .reset ? "closed by the server (reset)" : "closed by the server")
    }
}

/// Merges the lanes of one attack.
func mergeTallies(_ ts: [AttackTally]) -> AttackTally {
    var m = ts[0]
    for t in ts.dropFirst() {
        m.planned += t.planned
        m.sent += t.sent
        m.connections += t.connections
        m.frames += t.frames
        m.bytes += t.bytes
        for (k, v) in t.answers { m.answers[k, default: 0] += v }
        for (k, v) in t.outcomes { m.outcomes[k, default: 0] += v }
        m.closesSeen += t.closesSeen
        m.violations += t.violations
        if m.firstViolation == nil { m.firstViolation = t.firstViolation }
        m.startNs = min(m.startNs, t.startNs)
        m.endNs = max(m.endNs, t.endNs)
        m.incomplete = m.incomplete || t.incomplete
    }
    return m
}
