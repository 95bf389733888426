import Foundation
import StockClient

struct HostileReport: Codable {
    struct Phase: Codable {
        var requests: UInt64
        var ops_per_sec: Double
        var checkouts: UInt64
        var checkouts_per_sec: Double
        var reserves_ok: UInt64
        var confirms_ok: UInt64
        var errors: Int
        var error_kinds: [String: Int]
        var p50_us: Double
        var p99_us: Double
        var p999_us: Double
        var max_us: Double
        var seconds: Double

        init(_ g: GoodPhase) {
            let h = g.histogram
            let us = { (p: Double) in h.totalCount > 0 ? Double(h.valueAtPercentile(p)) / 1000 : 0 }
            requests = g.requests
            ops_per_sec = g.seconds > 0 ? Double(g.requests) / g.seconds : 0
            checkouts = g.confirms
            checkouts_per_sec = g.seconds > 0 ? Double(g.confirms) / g.seconds : 0
            reserves_ok = g.reserves
            confirms_ok = g.confirms
            errors = g.errorCount
            error_kinds = g.errors
            p50_us = us(50)
            p99_us = us(99)
            p999_us = us(99.9)
            max_us = h.totalCount > 0 ? Double(h.max) / 1000 : 0
            seconds = g.seconds
        }
    }

    struct Attack: Codable {
        var name: String
        var what: String
        var unit: String
        var planned: Int
        var sent: Int
        var per_second: Double
        var connections: Int
        var frames: Int
        var bytes: Int
        var seconds: Double
        var answers: [String: Int]
        var closes_seen: Int
        var outcomes: [String: Int]
        var expected: String
        var checked: Bool
        var as_expected: Bool
        var violations: Int
        var first_violation: String?
        var incomplete: Bool
    }

    struct Volume: Codable {
        var connections_per_sec: Double
        var frames_per_sec: Double
        var bytes_per_sec: Double
    }

    struct RSS: Codable {
        var measured: Bool
        var pid: Int32?
        var before_mib: Double?
        var peak_mib: Double?
        var after_mib: Double?
        var samples: Int
        var max_mib: Int
        var note: String?
    }

    struct Counts: Codable {
        var on_hand: UInt64
        var available: UInt64
        var reserved: UInt64
        var confirmed: UInt64
        var backup: UInt64
        var confirmed_before: UInt64
    }

    struct Check: Codable {
        var ok: Bool
        var skipped: Bool
        var detail: String
    }

    var scenario = "hostile"
    var server: String
    var started_here: Bool
    var stockd_workers: Int?
    var stockd_sync: String?
    var auth: Bool
    var attacker_credential: String
    var sku: String
    var connections: Int
    var duration_s: Double
    var baseline: Phase
    var under_attack: Phase
    var p99_ratio: Double
    var max_p99_ratio: Double
    var attacks: [Attack]
    var attack_volume: Volume
    var attack_span_s: Double
    var rss: RSS
    var final_counts: Counts?
    var checks: [String: Check]
    var ok: Bool

    static let checkOrder = ["server_up", "good_client_no_errors", "counts_exact", "forged_tokens_refused",
                             "rss_bound", "attack_answers_as_specified", "p99_ratio"]

    static func make(_ cmd: Hostile, setup s: HostileSetup, outcome o: HostileOutcome, base: StockInfo,
                     final f: StockInfo?, finalError: String?, serverUp: Bool, pingDetail: String,
                     managed: Bool) -> HostileReport {
        let baseline = Phase(o.baseline)
        let underAttack = Phase(o.attack)
        let ratio = baseline.p99_us > 0 ? underAttack.p99_us / baseline.p99_us : 0
        let span = max(o.attackSpanSeconds, 0.001)
        let attacks = o.attacks.map { t in
            let secs = Double(t.endNs &- t.startNs) / 1e9
            return Attack(name: t.name, what: t.what, unit: t.unit, planned: t.planned, sent: t.sent,
                          per_second: Double(t.sent) / span, connections: t.connections, frames: t.frames,
                          bytes: t.bytes, seconds: secs, answers: t.answers, closes_seen: t.closesSeen,
                          outcomes: t.outcomes, expected: t.expected, checked: t.checked,
                          as_expected: !t.checked || (t.violations == 0 && !t.incomplete), violations: t.violations,
                          first_violation: t.firstViolation, incomplete: t.incomplete)
        }
        let volume = Volume(connections_per_sec: Double(attacks.map(\.connections).reduce(0, +)) / span,
                            frames_per_sec: Double(attacks.map(\.frames).reduce(0, +)) / span,
                            bytes_per_sec: Double(attacks.map(\.bytes).reduce(0, +)) / span)

        var checks: [String: Check] = [:]
        checks["server_up"] = Check(ok: serverUp, skipped: false, detail: pingDetail
                                    + (serverUp ? "" : " (or the stockd process is gone)"))
        let errs = baseline.errors + underAttack.errors
        var errDetail = "baseline \(baseline.errors), under attack \(underAttack.errors) errors; "
            + "\(o.baseline.reserves + o.attack.reserves) RESERVE OK, \(o.baseline.confirms + o.attack.confirms) CONFIRM OK"
        let kinds = o.baseline.errors.merging(o.attack.errors, uniquingKeysWith: +)
        if !kinds.isEmpty { errDetail += "; " + kinds.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ") }
        let goodOK = errs == 0 && o.baseline.reserves == o.baseline.confirms && o.attack.reserves == o.attack.confirms
            && o.baseline.confirms > 0 && o.attack.confirms > 0
        checks["good_client_no_errors"] = Check(ok: goodOK, skipped: false, detail: errDetail)

        let goodConfirms = o.baseline.confirms + o.attack.confirms
        var counts: Counts?
        if let f {
            counts = Counts(on_hand: f.onHand, available: f.available, reserved: f.reserved, confirmed: f.confirmed,
                            backup: f.backup, confirmed_before: base.confirmed)
            let sold = f.confirmed &- base.confirmed
            let balanced = f.onHand == f.available + f.reserved + f.confirmed + f.backup
            let ok = sold == goodConfirms && f.reserved == 0 && balanced && f.confirmed >= base.confirmed
            checks["counts_exact"] = Check(
                ok: ok, skipped: false,
                detail: "confirmed \(f.confirmed)" + (base.confirmed > 0 ? " (\(sold) in this run)" : "")
                    + " vs the good client's \(goodConfirms) confirms; reserved \(f.reserved); on_hand \(f.onHand) "
                    + (balanced ? "==" : "!=") + " available \(f.available) + reserved \(f.reserved) + confirmed "
                    + "\(f.confirmed) + backup \(f.backup)")
        } else {
            checks["counts_exact"] = Check(ok: false, skipped: false, detail: "STOCK_GET failed: \(finalError ?? "?")")
        }

        let forged = o.attacks.first { $0.name == "forged_tokens" }
        let want = s.authOn ? "UNAUTHENTICATED" : "TOKEN_UNKNOWN"
        if let forged {
            let answered = forged.answers.values.reduce(0, +)
            let refused = forged.answers[want] ?? 0
            let others = forged.answers.filter { $0.key != want }.sorted { $0.key < $1.key }
                .map { "\($0.key) ×\($0.value)" }
            let ok = forged.sent == s.forgedTokens && answered == forged.sent && refused == answered
            checks["forged_tokens_refused"] = Check(
                ok: ok, skipped: false,
                detail: "\(forged.sent) of \(s.forgedTokens) sent, \(answered) answered, \(refused) \(want)"
                    + (others.isEmpty ? "" : "; other answers: " + others.joined(separator: ", ")))
        } else {
            checks["forged_tokens_refused"] = Check(ok: true, skipped: true, detail: "--forged-tokens 0")
        }

        let mib = { (k: Int?) in k.map { Double($0) / 1024 } }
        var rss = RSS(measured: s.pid != nil && o.rssPeakKiB != nil, pid: s.pid, before_mib: mib(o.rssBeforeKiB),
                      peak_mib: mib(o.rssPeakKiB), after_mib: mib(o.rssAfterKiB), samples: o.rssSamples,
                      max_mib: cmd.maxRssMib, note: nil)
        if let peak = rss.peak_mib, rss.measured {
            checks["rss_bound"] = Check(ok: peak < Double(cmd.maxRssMib), skipped: false,
                                        detail: String(format: "peak %.1f MiB (%d samples every 100 ms) vs bound %d MiB",
                                                       peak, o.rssSamples, cmd.maxRssMib))
        } else {
            rss.note = s.pid == nil ? "not measured: stockd was not started here (give --stockd-pid to sample it)"
                : "not measured: /proc/\(s.pid!)/status unreadable"
            checks["rss_bound"] = Check(ok: true, skipped: true, detail: rss.note!)
        }

        let bad = attacks.filter { !$0.as_expected }
        checks["attack_answers_as_specified"] = Check(
            ok: bad.isEmpty && !o.overran, skipped: false,
            detail: bad.isEmpty && !o.overran
                ? "\(attacks.filter(\.checked).count) attacks with a specified answer, all as specified"
                : (o.overran ? "attackers stopped after the grace period; " : "")
                    + bad.map { "\($0.name): \($0.violations) off" + ($0.incomplete ? " (incomplete)" : "")
                        + ($0.first_violation.map { ", first: \($0)" } ?? "") }.joined(separator: "; "))

        if cmd.maxP99Ratio > 0 {
            checks["p99_ratio"] = Check(ok: ratio <= cmd.maxP99Ratio, skipped: false,
                                        detail: String(format: "%.2f× vs --max-p99-ratio %.2f", ratio, cmd.maxP99Ratio))
        } else {
            checks["p99_ratio"] = Check(ok: true, skipped: true,
                                        detail: String(format: "%.2f× (measured, not checked: --max-p99-ratio off)", ratio))
        }

        return HostileReport(
            server: s.address.description, started_here: managed, stockd_workers: managed ? cmd.stockdWorkers : nil,
            stockd_sync: managed ? cmd.stockdSync : nil, auth: s.authOn,
            attacker_credential: s.authOn ? "none (wrong credential in HELLO)" : "none (server has no auth)",
            sku: s.sku, connections: s.connections, duration_s: Double(s.durationNs) / 1e9, baseline: baseline,
            under_attack: underAttack, p99_ratio: ratio, max_p99_ratio: cmd.maxP99Ratio, attacks: attacks,
            attack_volume: volume, attack_span_s: span, rss: rss, final_counts: counts, checks: checks,
            ok: checks.values.allSatisfy { $0.ok || $0.skipped })
    }

    func printHuman() {
        let where_ = started_here
            ? "started here: --workers \(stockd_workers ?? 1) --sync \(stockd_sync ?? "?")" : "given by --server"
        print("stockbench hostile: stockd \(server) (\(where_)), auth \(auth ? "on" : "off"); SKU \(sku); "
              + "\(connections) connections × depth 1 (RESERVE 1 + CONFIRM), \(formatSeconds(duration_s)) per phase")
        print("")
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count) }
        print(pad("phase", 14) + pad("requests", 10) + pad("req/s", 10) + pad("checkouts/s", 12) + pad("p50 µs", 9)
              + pad("p99 µs", 9) + pad("p99.9 µs", 10) + pad("max µs", 10) + "errors")
        for (name, p) in [("baseline", baseline), ("under attack", under_attack)] {
            print(pad(name, 14) + pad("\(p.requests)", 10) + pad(formatRate(p.ops_per_sec).replacingOccurrences(of: "/s", with: ""), 10)
                  + pad(formatRate(p.checkouts_per_sec).replacingOccurrences(of: "/s", with: ""), 12)
                  + pad(String(format: "%.1f", p.p50_us), 9) + pad(String(format: "%.1f", p.p99_us), 9)
                  + pad(String(format: "%.1f", p.p999_us), 10) + pad(String(format: "%.1f", p.max_us), 10) + "\(p.errors)")
        }
        print(String(format: "p99 under attack / baseline: %.2f×", p99_ratio)
              + (max_p99_ratio > 0 ? String(format: " (bound %.2f×)", max_p99_ratio) : " (measured and reported; not a check)"))
        print("")
        print(pad("attack", 18) + pad("sent", 20) + pad("per s", 8) + pad("closes", 8) + "answers / outcomes")
        for a in attacks {
            let answers = a.answers.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let outcomes = a.outcomes.sorted { $0.value > $1.value }.map { "\($0.key): \($0.value)" }.joined(separator: "; ")
            print(pad(a.name, 18) + pad("\(a.sent) \(a.unit)", 20) + pad(String(format: "%.0f", a.per_second), 8)
                  + pad("\(a.closes_seen)", 8) + (answers.isEmpty ? "-" : answers))
            if !outcomes.isEmpty { print(String(repeating: " ", count: 18) + "  " + outcomes) }
            let verdict = a.checked ? (a.as_expected ? "as specified" : "NOT as specified (\(a.violations))") : "observed"
            print(String(repeating: " ", count: 18) + "  expected: \(a.expected) — \(verdict)"
                  + (a.first_violation.map { "; first: \($0)" } ?? ""))
        }
        print(String(format: "attack volume beside the good client: %.0f connections/s, %.0f frames/s, %.0f KiB/s "
                     + "(per s: over the %.1f s attack span; half_open and never_read open theirs in its first tenth)",
                     attack_volume.connections_per_sec, attack_volume.frames_per_sec, attack_volume.bytes_per_sec / 1024,
                     attack_span_s))
        print("")
        if rss.measured {
            print(String(format: "stockd RSS (pid %d): before %.1f MiB, peak %.1f MiB (%d samples every 100 ms), "
                         + "after %.1f MiB; bound %d MiB", rss.pid ?? 0, rss.before_mib ?? 0, rss.peak_mib ?? 0,
                         rss.samples, rss.after_mib ?? 0, rss.max_mib))
        } else {
            print("stockd RSS: \(rss.note ?? "not measured")")
        }
        if let f = final_counts {
            print("final counts of \(sku): on_hand \(f.on_hand), available \(f.available), reserved \(f.reserved), "
                  + "confirmed \(f.confirmed), backup \(f.backup)")
        }
        print("")
        print("checks:")
        for name in Self.checkOrder {
            guard let c = checks[name] else { continue }
            print("  \(c.skipped ? "SKIP" : c.ok ? "PASS" : "FAIL")  \(name): \(c.detail)")
        }
        print(ok ? "hostile: all checks passed" : "hostile: CHECKS FAILED")
    }
}
