import Foundation
import Glibc
import StockClient
import StockProtocol
import Testing
import TestSupport

// The failing-disk test: a real, kernel-enforced write failure under a live
// load, without mounting anything (so it runs unprivileged).
//
// The failure is a file-size limit (RLIMIT_FSIZE, what `ulimit -f` sets): a
// write that would take a file past it fails with EFBIG (stockd ignores the
// SIGXFSZ that comes with it). The limit is per file, not a process total, so
// starting stockd under it does not make a record write fail: with segments
// smaller than the limit every segment fits (each new one starts at offset 0),
// with segments larger than it the zero-filled preallocation of the first
// segment fails before any record is written. Instead the test starts stockd
// without a limit, lets the first reserve open the (preallocated) segment, and
// then lowers the running process's limit with prlimit(2): the first record
// write that reaches past that offset of the open segment fails, whether the
// segment grows as records arrive or was zero-filled in advance. The
// background preparation of the next segment fails under the limit too; by
// design that alone changes nothing. Startup (snapshot, LOCK, port file) runs
// without the limit.

/// Setting a process's file-size limit (RLIMIT_FSIZE) from outside it.
enum FileSizeLimit {
    private typealias PrlimitFn = @convention(c) (pid_t, Int32, UnsafePointer<rlimit>?, UnsafeMutablePointer<rlimit>?)
        -> Int32

    /// glibc's `prlimit` (not visible through the Glibc module: it is a GNU extension).
    private static func prlimitFunction() -> PrlimitFn? {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "prlimit") else { return nil }  // RTLD_DEFAULT
        return unsafeBitCast(sym, to: PrlimitFn.self)
    }

    /// Sets the soft and hard limit of `pid` to `bytes`: through prlimit(2), else util-linux `prlimit --pid`.
    static func set(pid: pid_t, bytes: UInt64) throws {
        if let prlimit = prlimitFunction() {
            var limit = rlimit(rlim_cur: rlim_t(bytes), rlim_max: rlim_t(bytes))
            guard prlimit(pid, Int32(RLIMIT_FSIZE.rawValue), &limit, nil) == 0 else {
                throw HarnessError("prlimit(\(pid), RLIMIT_FSIZE, \(bytes)): \(String(cString: strerror(errno)))")
            }
        } else {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            p.arguments = ["--pid", "\(pid)", "--fsize=\(bytes):\(bytes)"]
            try p.run()
            guard StockdProcess.waitForExit(p, timeout: 5), p.terminationStatus == 0 else {
                throw HarnessError("prlimit --pid \(pid) --fsize=\(bytes) failed")
            }
        }
        let now = try get(pid: pid)
        guard now == bytes else { throw HarnessError("RLIMIT_FSIZE of \(pid) is \(now), wanted \(bytes)") }
    }

    /// The soft limit of `pid`, from /proc (works whichever way it was set).
    static func get(pid: pid_t) throws -> UInt64 {
        let text = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Max file size") }) else {
            throw HarnessError("no 'Max file size' in /proc/\(pid)/limits")
        }
        let soft = line.dropFirst("Max file size".count).split(separator: " ").first.map(String.init) ?? ""
        return soft == "unlimited" ? .max : UInt64(soft) ?? 0
    }
}

/// What the load was told.
final class FaultLedger: @unchecked Sendable {
    private let lock = NSLock()
    /// Reserves answered OK, in the order the answers arrived.
    var acknowledged: [Reservation] = []
    /// Reserves that ended with a transport failure: their outcome is unknown.
    var unknown = 0
    /// Reserves answered STORAGE_FAILED.
    var refused = 0
    /// Anything else (a failure of the test).
    var unexpected: [String] = []
    /// Set by the first task that sees the load end; the others stop too.
    var stop = false

    func with<R>(_ body: (FaultLedger) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(self)
    }
}

@Suite(.ownThread, .serialized) struct DiskFaultTests {
    static let sku = "FAULT-A"
    static let onHand: UInt64 = 1_000_000
    /// The journal segment may not grow past this offset once the limit is set
    /// (not a multiple of a record's size: the write that fails leaves part of a record behind).
    /// About 250 reserve records: every one waits for an fdatasync (group commit), and on a machine whose
    /// disk is busy (builds next to the suite) those took ~100 ms each: 426 reserves in 40 s were seen,
    /// so 1,000 (64 KiB) was not always reached inside the budget; 4,000 never was under the parallel suite.
    static let limitBytes: UInt64 = (16 << 10) + 37
    static let ttl = Duration.seconds(600)
    /// Per call: a transport failure counts as "the journal failed" (unknown), so a call that is merely
    /// slow must not time out. 30 s, because the whole suite runs in parallel on two cores.
    static let callTimeout = Duration.seconds(30)

    @Test("a failed journal write (EFBIG): STORAGE_FAILED for changes, reads still answered, one critical log line, nothing acknowledged lost")
    func fileSizeLimitHitUnderLoad() async throws {
        let data = try TempDirectory(prefix: "stockd-diskfault")
        defer { data.remove() }
        let dir = data.path("d")
        let catalog = "\(Self.sku),\(Self.onHand)\n"
        let ledger = FaultLedger()

        // 1. Start unlimited; two reserves open the segment and measure one record. Segments
        // of 64 MiB: the limit is reached inside the first one, by a record write, not by a rotation.
        let server = try StockdProcess(["--data-dir", dir, "--workers", "2", "--segment-size", "64"], catalog: catalog)
        let admin = StockClient(port: server.port, connections: 1, timeout: Self.callTimeout)
        defer { admin.close() }
        let first = try await admin.reserve(sku: Self.sku, quantity: 1, ttl: Self.ttl)
        let bytesAfterOne = try await Self.stat(admin, "journal.bytes")
        let second = try await admin.reserve(sku: Self.sku, quantity: 1, ttl: Self.ttl)
        let recordBytes = try await Self.stat(admin, "journal.bytes") - bytesAfterOne
        ledger.acknowledged = [first, second]
        #expect(recordBytes > 0 && recordBytes < 200, "one RESERVE record is \(recordBytes) bytes")

        // 2. Lower the running stockd's file-size limit, then reserve until the journal hits it.
        try FileSizeLimit.set(pid: server.pid, bytes: Self.limitBytes)
        let client = StockClient(port: server.port, connections: 4, timeout: Self.callTimeout)
        let t0 = monotonicSeconds()
        let loadDeadline = t0 + 40  // bounded; the limit is normally hit in under a second, but a parallel test run can starve this one
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<16 { group.addTask { await Self.reserveUntilRefused(client, ledger, deadline: loadDeadline) } }
        }
        let loadSeconds = monotonicSeconds() - t0
        client.close()
        let (acked, unknown, refused, unexpected) = ledger.with { ($0.acknowledged, $0.unknown, $0.refused, $0.unexpected) }
        #expect(unexpected.isEmpty, "unexpected outcomes: \(unexpected.prefix(5))")
        try #require(refused + unknown > 0,
                     "the journal never hit the \(Self.limitBytes)-byte limit in \(loadSeconds) s (\(acked.count) reserves acknowledged); stderr: \(server.diagnostics)")
        print("disk fault: limit hit after \(String(format: "%.2f", loadSeconds)) s: \(acked.count) reserves acknowledged "
              + "(\(recordBytes) bytes each), \(refused) STORAGE_FAILED, \(unknown) unknown (connection lost)")

        // 3. The refusing state: every change is STORAGE_FAILED, reads are answered.
        let failedStats = try await admin.stats()
        func value(_ name: String) -> UInt64? { failedStats.first { $0.name == name }?.value }
        #expect(value("journal.failed") == 1, "STATS journal.failed after the write failure")
        let journalRecords = try #require(value("journal.records"))
        let journalBytes = try #require(value("journal.bytes"))
        // Every acknowledged record was written and synced below the limit.
        #expect(journalRecords >= UInt64(acked.count), "\(acked.count) acknowledged, \(journalRecords) records synced")
        #expect(journalBytes <= Self.limitBytes, "\(journalBytes) bytes synced under a \(Self.limitBytes)-byte limit")
        #expect(UInt64(acked.count) * recordBytes <= Self.limitBytes,
                "\(acked.count) acknowledged reserves of \(recordBytes) bytes cannot all be below the limit")

        let tokens = (acked[0].token, acked[1].token, acked[acked.count - 1].token)
        try await Self.expectStorageFailed("RESERVE") { _ = try await admin.reserve(sku: Self.sku, quantity: 1, ttl: Self.ttl) }
        try await Self.expectStorageFailed("CONFIRM") { _ = try await admin.confirm(tokens.0) }
        try await Self.expectStorageFailed("RELEASE") { _ = try await admin.release(tokens.1) }
        try await Self.expectStorageFailed("EXTEND") { _ = try await admin.extend(tokens.2, ttl: .seconds(900)) }
        try await Self.expectStorageFailed("STOCK_SET") { _ = try await admin.setStock(Self.sku, onHand: 5) }
        try await Self.expectStorageFailed("STOCK_ADJUST") { _ = try await admin.adjustStock(Self.sku, delta: 10, reason: .restock) }
        try await Self.expectStorageFailed("RESERVE_BUNDLE") {
            _ = try await admin.reserveBundle([(sku: Self.sku, quantity: 1)], ttl: Self.ttl)
        }
        try await admin.ping()
        let inMemory = try await admin.stock(Self.sku)
        #expect(inMemory.onHand == Self.onHand && inMemory.confirmed == 0, "refusing server: \(inMemory)")
        #expect(inMemory.onHand == inMemory.available + inMemory.reserved + inMemory.confirmed, "refusing server: \(inMemory)")
        #expect(inMemory.reserved >= UInt64(acked.count) && inMemory.reserved <= UInt64(acked.count + unknown),
                "refusing server: \(inMemory), \(acked.count) acknowledged, \(unknown) unknown")
        // Refused again after the reads: the state is sticky, the connection still usable.
        try await Self.expectStorageFailed("RESERVE (again)") { _ = try await admin.reserve(sku: Self.sku, quantity: 1, ttl: Self.ttl) }
        #expect(try await Self.stat(admin, "journal.failed") == 1)

        let critical = server.stderrText.split(separator: "\n").filter { $0.contains("journal write failed") }
        #expect(critical.count == 1, "one log line about the failed journal write; stderr: \(server.diagnostics)")
        if let line = critical.first {
            print("disk fault: stockd logged: \(line)")
            #expect(line.contains("critical"), "logged at critical: \(line)")
            #expect(line.contains("errno \(EFBIG)"), "names the cause (EFBIG): \(line)")
            // The write that failed went to the open segment, journal-<first seq>.log.
            #expect(line.contains("\(dir)/journal-0") && line.contains(".log:"), "names the segment file: \(line)")
        }
        admin.close()

        // 4. SIGTERM still stops it (no snapshot over a failed journal; the exit code is not asserted).
        let stopped = try #require(server.terminate(timeout: 10), "stockd did not stop after SIGTERM; stderr: \(server.diagnostics)")
        #expect(!stopped.signaled, "stop after the failure: \(stopped)")
        #expect(!stopped.stderr.contains("snapshot at seq"), "no shutdown snapshot over a failed journal: \(stopped.stderr)")

        // 5. Restart without the limit on the same directory: what was acknowledged is there.
        let restarted = try StockdProcess(["--data-dir", dir, "--workers", "2"], catalog: catalog)
        let check = StockClient(port: restarted.port, connections: 4, timeout: .seconds(10))
        defer { check.close() }
        let info = try await check.stock(Self.sku)
        print("disk fault: after restart \(info.reserved) reserved (\(acked.count) acknowledged + \(unknown) unknown); "
              + "stop after the failure: exit \(stopped.code)")
        #expect(info.onHand == Self.onHand && info.confirmed == 0, "after restart: \(info)")
        #expect(info.onHand == info.available + info.reserved + info.confirmed, "after restart: \(info)")
        #expect(info.reserved >= UInt64(acked.count),
                "after restart \(info.reserved) reserved, but \(acked.count) reserves were acknowledged")
        #expect(info.reserved <= UInt64(acked.count + unknown),
                "after restart \(info.reserved) reserved, more than \(acked.count) acknowledged + \(unknown) unknown")
        // Each acknowledged hold by its token, with its deadline (EXTEND never shortens: 1 ms only reads it).
        let lost = await Self.missingHolds(check, acked)
        #expect(lost.isEmpty, "\(lost.count) of \(acked.count) acknowledged holds missing after restart, e.g. \(lost.prefix(3))")
        // The restarted server accepts changes again.
        let fresh = try await check.reserve(sku: Self.sku, quantity: 1, ttl: Self.ttl)
        #expect(try await check.release(fresh.token) == 1)
        check.close()

        // 6. Clean stop, then the directory verifies.
        let final = try #require(restarted.terminate(timeout: 10), "restarted stockd did not stop; stderr: \(restarted.diagnostics)")
        #expect(!final.signaled && final.code == 0, "clean stop after restart: \(final)")
        // From an empty working directory, so a ./stockd-data there cannot stand in for `dir`.
        let verify = try Self.runStockd(["verify", "--data-dir", dir], in: data.path("cwd"))
        #expect(verify.code == 0 && verify.stdout.contains("verify \(dir): OK"), "stockd verify --data-dir \(dir): \(verify)")
    }

    /// Runs the stockd binary with `args` in working directory `cwd` (created), at most 20 s.
    static func runStockd(_ args: [String], in cwd: String) throws -> ToolRun {
        try FileManager.default.createDirectory(atPath: cwd, withIntermediateDirectories: true)
        let outPath = cwd + "/verify.out", errPath = cwd + "/verify.err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        guard let out = FileHandle(forWritingAtPath: outPath), let err = FileHandle(forWritingAtPath: errPath) else {
            throw HarnessError("cannot open output files in \(cwd)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try StockdBinary.path())
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        guard StockdProcess.waitForExit(p, timeout: 20) else {
            Glibc.kill(p.processIdentifier, SIGKILL)
            _ = StockdProcess.waitForExit(p, timeout: 5)
            throw HarnessError("stockd \(args.joined(separator: " ")) did not exit within 20 s")
        }
        try? out.close()
        try? err.close()
        return ToolRun(code: p.terminationStatus,
                       stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    /// One task of the load: RESERVE 1 unit until the server refuses or the connection drops.
    static func reserveUntilRefused(_ client: StockClient, _ ledger: FaultLedger, deadline: Double) async {
        while monotonicSeconds() < deadline, !ledger.with({ $0.stop }) {
            do {
                let r = try await client.reserve(sku: sku, quantity: 1, ttl: ttl)
                ledger.with { $0.acknowledged.append(r) }
            } catch .rejected(.storageFailed) {
                ledger.with { l in
                    l.refused += 1
                    l.stop = true
                }
                return
            } catch let e where e.isServerRejection {
                ledger.with { l in
                    l.unexpected.append("\(e)")
                    l.stop = true
                }
                return
            } catch {
                // In flight when the journal failed: the server closed the connection. Applied or not, unknown.
                ledger.with { l in
                    l.unknown += 1
                    l.stop = true
                }
                return
            }
        }
    }

    /// `body` must fail with STORAGE_FAILED.
    static func expectStorageFailed(_ what: String, _ body: () async throws -> Void) async throws {
        do {
            try await body()
            Issue.record("\(what) succeeded on a server whose journal failed")
        } catch StockError.rejected(.storageFailed) {
            // refused, as it must be
        } catch {
            Issue.record("\(what) on a server whose journal failed: \(error), expected STORAGE_FAILED")
        }
    }

    /// A named STATS counter.
    static func stat(_ client: StockClient, _ name: String) async throws -> UInt64 {
        let stats = try await client.stats()
        return try #require(stats.first { $0.name == name }?.value, "STATS has no \(name)")
    }

    /// The acknowledged holds that are not live with (at least) their acknowledged deadline.
    static func missingHolds(_ client: StockClient, _ holds: [Reservation]) async -> [String] {
        let lanes = 8
        return await withTaskGroup(of: [String].self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    var missing: [String] = []
                    for i in stride(from: lane, to: holds.count, by: lanes) {
                        let h = holds[i]
                        do {
                            let at = try await client.extend(h.token, ttl: .milliseconds(1))
                            if at + 2 < h.expiresAtMs { missing.append("\(h.token): deadline \(at) before \(h.expiresAtMs)") }
                        } catch {
                            missing.append("\(h.token): \(error)")
                        }
                    }
                    return missing
                }
            }
            var all: [String] = []
            for await m in group { all += m }
            return all
        }
    }
}
