import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct HostileOutcome {
    var baseline: GoodPhase
    var attack: GoodPhase
    var attacks: [AttackTally]
    var rssBeforeKiB: Int?
    var rssPeakKiB: Int?
    var rssAfterKiB: Int?
    var rssSamples = 0
    var attackSpanSeconds: Double
    /// Attackers still running when the grace period ended (then aborted).
    var overran: Bool
}

func runHostilePhases(_ s: HostileSetup, progress: Bool) throws -> HostileOutcome {
    let seconds = Double(s.durationNs) / 1e9
    func say(_ text: String) { if progress { writeStderr("\r\u{1B}[2K[hostile] \(text)") } }

    let rssBefore = s.pid.flatMap(rssKiB)
    say("baseline: the good client alone for \(formatSeconds(seconds))")
    let baseline = try runGoodClient(s)

    // Phase 2: attackers first (they pace themselves from `start`), then the good client.
    let control = RunControl()
    let start = monoNs()
    let env = AttackEnv(setup: s, control: control, startNs: start, spanNs: s.durationNs * 9 / 10)
    let sampler = s.pid.map { RSSSampler(pid: $0) }
    let tallies = Collector<AttackTally>()
    let attackers = ThreadGroup()
    func launch(_ name: String, _ body: @escaping @Sendable () -> AttackTally) {
        attackers.spawn("attack-\(name)") {
            let t0 = monoNs()
            var t = body()
            t.startNs = t0
            t.endNs = monoNs()
            tallies.add(t)
        }
    }
    // Rates per second of the phase (bounded: the point is isolation, not saturating two cores).
    let scaled = { (rate: Double) in max(1, Int(rate * seconds)) }
    let garbage = scaled(50), huge = scaled(20), zero = scaled(20), opcodes = scaled(500)
    let helloBursts = scaled(2), hellos = scaled(100)
    let on = s.attacks
    if on.contains("garbage") { launch("garbage") { attackGarbage(env, count: garbage) } }
    if on.contains("huge_length") { launch("huge") { attackHugeLength(env, count: huge) } }
    if on.contains("zero_length") { launch("zero") { attackZeroLength(env, count: zero) } }
    if on.contains("unknown_opcode") { launch("opcode") { attackUnknownOpcodes(env, frames: opcodes) } }
    if on.contains("hello_pipelined") {
        launch("hello-pipe") { attackHelloPipelined(env, connections: helloBursts, hellos: 500) }
    }
    if on.contains("hello_connections") { launch("hello-conn") { attackHelloSingle(env, count: hellos) } }
    if on.contains("connect_cycles") && s.cycles > 0 { launch("cycles") { attackCycles(env, count: s.cycles) } }
    if on.contains("half_open") && s.halfOpen > 0 { launch("half-open") { attackHalfOpen(env, count: s.halfOpen) } }
    if on.contains("never_read") && s.neverRead > 0 {
        launch("never-read") { attackNeverRead(env, count: s.neverRead, blocks: 320) }
    }
    let lanes = 4
    if on.contains("forged_tokens") && s.forgedTokens > 0 {
        for lane in 0..<lanes {
            launch("forged-\(lane)") { attackForgedTokens(env, index: lane, of: lanes, total: s.forgedTokens) }
        }
    }
    say("under attack: the good client beside the attackers for \(formatSeconds(seconds))")
    let attack = try runGoodClient(s)
    control.endPhase()
    // Bounded attacks finish their counts; a slow server gets a grace period, then they are stopped.
    say("waiting for the attackers to finish")
    var overran = false
    if !attackers.wait(seconds: max(10, seconds)) {
        overran = true
        control.abort()
        attackers.wait()
    }
    let rss = sampler?.stop()
    usleep(300_000)  // the held sockets are closed: let the server settle
    let rssAfter = s.pid.flatMap(rssKiB)
    if progress { writeStderr("\r\u{1B}[2K") }

    // One entry per attack, lanes merged, in the order of the issue.
    let all = tallies.all
    var merged: [AttackTally] = []
    for name in HostileSetup.attackNames {
        let lanes = all.filter { $0.name == name }
        if !lanes.isEmpty { merged.append(mergeTallies(lanes)) }
    }
    return HostileOutcome(
        baseline: baseline, attack: attack, attacks: merged, rssBeforeKiB: rssBefore,
        rssPeakKiB: rss.map { max($0.peakKiB, rssBefore ?? 0) }, rssAfterKiB: rssAfter, rssSamples: rss?.samples ?? 0,
        attackSpanSeconds: Double(env.spanNs) / 1e9, overran: overran)
}
