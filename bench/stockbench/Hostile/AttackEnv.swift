import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What every attack thread shares.
struct AttackEnv: Sendable {
    var setup: HostileSetup
    var control: RunControl
    var startNs: UInt64
    /// Attacks are spread over this span (a little less than the phase).
    var spanNs: UInt64

    var address: LoopbackAddress { setup.address }

    /// Waits for item `i` of `count` on an even schedule; false when aborted.
    func waitTurn(_ i: Int, of count: Int) -> Bool {
        let due = startNs + UInt64(Double(spanNs) * Double(i) / Double(max(count, 1)))
        while true {
            if control.aborted { return false }
            let now = monoNs()
            if now >= due { return true }
            usleep(UInt32(min(due - now, 20_000_000) / 1000))
        }
    }

    /// Sleeps until the phase is over (or aborted).
    func holdUntilPhaseEnd() {
        while !control.phaseOver { usleep(10_000) }
    }

    /// The attacker's (wrong) credential when the server has auth, else none.
    var wrongCredential: [UInt8] { setup.authOn ? Array("not-a-credential-\(setup.seed)".utf8) : [] }
}
