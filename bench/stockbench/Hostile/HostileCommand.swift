// `stockbench hostile`: the hostile-client suite. A well-behaved checkout
// client runs a steady RESERVE + CONFIRM load (depth 1) alone, then again
// while attackers run beside it on their own threads and connections:
// garbage bytes, a 4 GiB length prefix, zero-length frames, unknown opcodes,
// HELLO floods, connect/disconnect cycles, half-open sockets, clients that
// never read, and forged tokens. Each attack is bounded in count and paced,
// so what is measured is how the server isolates clients, not a saturated
// machine. The good client's latency in both phases and their ratio are
// reported (measured, not a pass/fail check unless --max-p99-ratio is given);
// the checks are about correctness: the server is up, the good client saw no
// error, the SKU's counts are exact, no forged token did anything, stockd's
// RSS stayed bounded, and the attacks were answered as PROTOCOL.md §3-§6 say.

import ArgumentParser
import Foundation
import StockClient
#if canImport(Glibc)
import Glibc
#endif

struct Hostile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hostile",
        abstract: "Hostile-client suite: a checkout client's latency alone and beside bounded attackers, "
            + "and the server's answers to them.",
        discussion: """
            Phase 1 (baseline): --connections closed loops of RESERVE 1 unit + CONFIRM (depth 1) for \
            --duration. Phase 2 (under attack): the same load for the same time while attackers run: \
            random bytes, a 0xFFFFFFFF length prefix, zero-length frames, unknown opcodes, pipelined HELLOs \
            and one-HELLO connections, --cycles connect/disconnect cycles, --half-open sockets stuck mid-frame, \
            --never-read clients pipelining STOCK_LIST/STOCK_GET, and --forged-tokens random tokens at CONFIRM \
            and RELEASE. Attackers never have a credential. Exit 1 if a check fails: server up, zero good-client \
            errors, exact counts, every forged token refused, RSS under --max-rss-mib (when measured), attacks \
            answered as specified. The p99 ratio is reported, and checked only with --max-p99-ratio.
            """)

    @Option(help: "stockd host:port on loopback (default: start one).") var server: String?
    @Option(help: "The good client's credential (sent in HELLO); attackers never have one.") var token = ""
    @Option(help: "Credential for staging the SKU (default: --token).") var adminToken: String?
    @Option(help: ArgumentHelp("Use this SKU as the server has it instead of staging a fresh one "
                               + "(no holds on it; its stock must last both phases).", valueName: "SKU"))
    var sku: String?
    @Option(help: "Length of each phase (default: 10s).", transform: Seconds.parse) var duration = Seconds(10)
    @Option(help: "Good-client connections (each a closed loop at depth 1).") var connections = 4
    @Option(help: "Connect/disconnect cycles during the attack phase.") var cycles = 10_000
    @Option(help: "Random tokens thrown at CONFIRM and RELEASE during the attack phase.") var forgedTokens = 100_000
    @Option(help: "Sockets left mid-frame until the phase ends.") var halfOpen = 200
    @Option(help: "Connections that pipeline requests and never read an answer.") var neverRead = 20
    @Option(help: "Bound on stockd's RSS in MiB (sampled every 100 ms in phase 2; needs a local pid).")
    var maxRssMib = 512
    @Option(help: "Fail when p99 under attack / p99 baseline exceeds this (0: off; timing is reported, not checked).")
    var maxP99Ratio: Double = 0
    @Option(help: "pid of the stockd behind --server, to sample its RSS (default: only a stockd started here).")
    var stockdPid: Int32?
    @Option(help: "stockd worker threads when stockbench starts stockd.") var stockdWorkers = 1
    @Option(help: "stockd journaling when stockbench starts stockd: always (fdatasync, temp data dir) or none.")
    var stockdSync = "always"
    @Option(help: ArgumentHelp("Only these attacks, comma-separated (default: all): "
                               + HostileSetup.attackNames.joined(separator: ","), valueName: "names"))
    var attacks: String?
    @Option(help: "Seed of the attackers' random bytes and tokens.") var seed: UInt64 = 42
    @Flag(help: "One JSON document on stdout.") var json = false

    func validate() throws {
        if let server { _ = try LoopbackAddress(server) }
        guard duration.value >= 0.5, duration.value <= 600 else { throw ValidationError("--duration must be 500ms...10m") }
        guard (1...64).contains(connections) else { throw ValidationError("--connections must be 1...64") }
        guard (0...1_000_000).contains(cycles) else { throw ValidationError("--cycles must be 0...1000000") }
        guard (0...10_000_000).contains(forgedTokens) else { throw ValidationError("--forged-tokens must be 0...10000000") }
        guard (0...2000).contains(halfOpen) else { throw ValidationError("--half-open must be 0...2000") }
        guard (0...200).contains(neverRead) else { throw ValidationError("--never-read must be 0...200") }
        guard maxRssMib >= 1 else { throw ValidationError("--max-rss-mib must be positive") }
        guard maxP99Ratio >= 0, maxP99Ratio.isFinite else { throw ValidationError("--max-p99-ratio must be >= 0") }
        guard (1...64).contains(stockdWorkers) else { throw ValidationError("--stockd-workers must be 1...64") }
        guard ["none", "always"].contains(stockdSync) else { throw ValidationError("--stockd-sync must be none or always") }
        if let sku, SKU(sku).map({ !$0.isValidSKU }) ?? true { throw ValidationError("--sku: not a valid SKU") }
        if server == nil && stockdPid != nil { throw ValidationError("--stockd-pid goes with --server") }
        for name in selectedAttacks where !HostileSetup.attackNames.contains(name) {
            throw ValidationError("--attacks: unknown attack '\(name)'")
        }
    }

    var selectedAttacks: [String] {
        attacks.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? HostileSetup.attackNames
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        installInterruptHandler()

        // The target: given, or a stockd of our own.
        let managed: ManagedStockd?
        let address: LoopbackAddress
        if let server {
            address = try LoopbackAddress(server)
            managed = nil
        } else {
            let s = try ManagedStockd(workers: stockdWorkers, maxTokens: nil, sync: stockdSync)
            managed = s
            address = LoopbackAddress(host: "127.0.0.1", port: s.port)
        }
        defer { managed?.stop() }
        let pid: Int32? = managed?.process.processIdentifier ?? stockdPid

        // Is authentication on? A STOCK_GET before any HELLO says.
        let authOn = try probeAuth(address)
        if authOn && token.isEmpty {
            throw BenchError("stockd at \(address) requires a credential: give the good client --token")
        }

        // The SKU: staged fresh, or as the server has it.
        let skuName: String
        if let sku {
            skuName = sku
        } else {
            skuName = "hostile-\(UInt32.random(in: 0...UInt32.max) % 1_000_000)-\(getpid())"
            let admin = StockClient(host: address.host, port: address.port, connections: 1,
                                    credential: adminToken ?? token, clientName: "stockbench-hostile")
            defer { admin.close() }
            do {
                _ = try await admin.setStock(skuName, onHand: Self.stagedUnits)
            } catch {
                throw BenchError("staging \(skuName) failed: \(error)"
                                 + (authOn ? " (staging needs an admin credential: --admin-token, or give --sku)" : ""))
            }
        }
        let reader = StockClient(host: address.host, port: address.port, connections: 1, credential: token,
                                 clientName: "stockbench-hostile")
        defer { reader.close() }
        let base: StockInfo
        do { base = try await reader.stock(skuName) } catch { throw BenchError("STOCK_GET \(skuName): \(error)") }
        guard base.reserved == 0 else {
            throw BenchError("\(skuName) has \(base.reserved) units held: use a SKU with no holds")
        }

        let setup = HostileSetup(
            address: address, authOn: authOn, credential: Array(token.utf8), sku: skuName,
            connections: connections, durationNs: UInt64(duration.value * 1e9), cycles: cycles,
            forgedTokens: forgedTokens, halfOpen: halfOpen, neverRead: neverRead, seed: seed, pid: pid,
            attacks: Set(selectedAttacks))
        let outcome = try runHostilePhases(setup, progress: !json && isatty(STDERR_FILENO) == 1)

        // Afterwards: alive, and the books.
        let up = pingOnce(address)
        let processAlive = managed.map { $0.process.isRunning } ?? (pid.map { kill($0, 0) == 0 } ?? true)
        var final: StockInfo?
        var finalError: String?
        do { final = try await reader.stock(skuName) } catch { finalError = "\(error)" }

        let report = HostileReport.make(
            self, setup: setup, outcome: outcome, base: base, final: final, finalError: finalError,
            serverUp: up && processAlive, pingDetail: up ? "PING answered" : "PING not answered",
            managed: managed != nil)
        if json {
            print(encodeJSON(report))
        } else {
            report.printHuman()
        }
        fflush(nil)
        if !report.ok { throw ExitCode(1) }
    }

    /// Units staged on a fresh SKU: more than any run can reserve.
    static let stagedUnits: UInt64 = 1_000_000_000
}
