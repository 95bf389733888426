import Foundation
import StockBenchRedis
import StockClient
#if canImport(Glibc)
import Glibc
#endif

// MARK: servers stockbench started are stopped even on Ctrl-C

/// PIDs of the servers stockbench started (0: free slot). A fixed block, so
/// the signal handler only reads memory and calls kill(2) and _exit(2).
nonisolated(unsafe) private let childPIDs: UnsafeMutablePointer<Int32> = {
    let p = UnsafeMutablePointer<Int32>.allocate(capacity: 16)
    p.initialize(repeating: 0, count: 16)
    return p
}()

func registerChild(_ pid: Int32) {
    for i in 0..<16 where childPIDs[i] == 0 {
        childPIDs[i] = pid
        return
    }
}

func unregisterChild(_ pid: Int32) {
    for i in 0..<16 where childPIDs[i] == pid { childPIDs[i] = 0 }
}

/// SIGINT / SIGTERM: stop every server stockbench started, then exit 130.
func installInterruptHandler() {
    _ = childPIDs
    let handler: @convention(c) (Int32) -> Void = { _ in
        for i in 0..<16 where childPIDs[i] > 0 { kill(childPIDs[i], SIGTERM) }
        _exit(130)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
}

/// Which server a run drives.
enum BackendKind: String, CaseIterable, Sendable {
    case stockd, redis
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A stockd that stockbench started itself (release binary next to stockbench).
final class ManagedStockd {
    let process = Process()
    let port: Int
    private let dir: String

    /// `sync`: "none" (in memory) or "always" (journal in a temporary directory).
    init(workers: Int, maxTokens: Int?, sync: String) throws {
        let exe = try ManagedStockd.binary()
        dir = NSTemporaryDirectory() + "stockbench-stockd-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let portFile = dir + "/port"
        var args = ["--host", "127.0.0.1", "--port", "0", "--port-file", portFile, "--workers", "\(workers)",
                    "--log-level", "warning", "--sync", sync]
        if sync == "always" { args += ["--data-dir", dir + "/data"] }
        if let maxTokens { args += ["--max-tokens", "\(maxTokens)"] }
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = args
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        let errPath = dir + "/stderr.log"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        try process.run()
        registerChild(process.processIdentifier)
        let deadline = Date().addingTimeInterval(10)
        var found = 0
        while found == 0 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), text.hasSuffix("\n"),
               let p = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                found = p
            } else if !process.isRunning || Date() > deadline {
                let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
                stopProcess(process)
                throw BenchError("stockd did not start: \(err.split(separator: "\n").last ?? "no output")")
            } else {
                usleep(10_000)
            }
        }
        port = found
    }

    /// `stockd` next to this executable (both are products of one build).
    static func binary() throws -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let path = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("stockd").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw BenchError("no stockd next to stockbench (\(path)): build it with `swift build -c release`, "
                             + "or pass --server")
        }
        return path
    }

    func stop() {
        stopProcess(process)
        unregisterChild(process.processIdentifier)
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { stop() }
}

/// SIGTERM, then SIGKILL after 3 s.
func stopProcess(_ p: Process) {
    guard p.isRunning else { return }
    kill(p.processIdentifier, SIGTERM)
    let deadline = Date().addingTimeInterval(3)
    while p.isRunning && Date() < deadline { usleep(5_000) }
    if p.isRunning {
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }
}

/// A server of one backend, started here or given by address, with the
/// off-hot-path calls a run needs: stage stock, read counts, sweep.
final class BackendTarget: @unchecked Sendable {
    let kind: BackendKind
    let host: String
    let port: Int
    private var stockd: ManagedStockd?
    private var redis: RedisServer?
    private var redisDir: String?
    private(set) var scripts: (reserve: String, confirm: String, release: String, sweep: String)?
    let persistence: RedisServer.Persistence
    /// How the stockd that stockbench started journals (nil: not started here).
    private(set) var stockdSync: String?

    /// Starts a server unless `address` names one.
    init(kind: BackendKind, address: String?, stockdWorkers: Int, maxTokens: Int?,
         persistence: RedisServer.Persistence, stockdSync: String) throws {
        self.kind = kind
        self.persistence = persistence
        if let address {
            guard let colon = address.lastIndex(of: ":"), let p = Int(address[address.index(after: colon)...]),
                  (1...65535).contains(p) else {
                throw BenchError("--server '\(address)': expected host:port")
            }
            host = String(address[..<colon])
            port = p
        } else {
            host = "127.0.0.1"
            switch kind {
            case .stockd:
                let s = try ManagedStockd(workers: stockdWorkers, maxTokens: maxTokens, sync: stockdSync)
                self.stockdSync = stockdSync
                stockd = s
                port = s.port
            case .redis:
                let dir = NSTemporaryDirectory() + "stockbench-redis-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                let r = try RedisServer(persistence: persistence, dataDir: dir)
                registerChild(r.pid)
                redis = r
                redisDir = dir
                port = r.port
            }
        }
        if kind == .redis {
            let admin = try RedisAdmin(host: host, port: port, timeoutMs: 5000)
            defer { admin.close() }
            scripts = try admin.loadScripts()
        }
    }

    var managed: Bool { stockd != nil || redis != nil }

    func stop() {
        stockd?.stop()
        stockd = nil
        if let redis {
            redis.stop()
            unregisterChild(redis.pid)
        }
        redis = nil
        if let redisDir { try? FileManager.default.removeItem(atPath: redisDir) }
        redisDir = nil
    }

    /// Sets every SKU's stock to `units` (fresh names each run, so nothing is left over).
    func stage(_ skus: [String], units: Int64) async throws {
        switch kind {
        case .stockd:
            let client = StockClient(host: host, port: port, connections: 4, clientName: "stockbench")
            defer { client.close() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0
                func add() {
                    let sku = skus[next]
                    next += 1
                    group.addTask { _ = try await client.setStock(sku, onHand: UInt64(units)) }
                }
                for _ in 0..<min(256, skus.count) { add() }
                while try await group.next() != nil { if next < skus.count { add() } }
            }
        case .redis:
            let admin = try RedisAdmin(host: host, port: port, timeoutMs: 10_000)
            defer { admin.close() }
            try admin.stage(skus: skus, stock: units)
        }
    }

    /// Per SKU: the counts as the server sees them.
    func counts(_ skus: [String]) async throws -> [SKUCounts] {
        switch kind {
        case .stockd:
            let client = StockClient(host: host, port: port, connections: 4, clientName: "stockbench")
            defer { client.close() }
            var out: [SKUCounts] = []
            out.reserveCapacity(skus.count)
            for sku in skus {
                let i = try await client.stock(sku)
                out.append(SKUCounts(available: Int64(i.available), held: Int64(i.reserved), sold: Int64(i.confirmed),
                                     backup: Int64(i.backup)))
            }
            return out
        case .redis:
            let admin = try RedisAdmin(host: host, port: port, timeoutMs: 10_000)
            defer { admin.close() }
            return try skus.map {
                let c = try admin.counts(sku: $0)
                return SKUCounts(available: c.available, held: c.held, sold: c.sold, backup: 0)  // no backup in the Lua model
            }
        }
    }
}

extension RedisServer.Persistence {
    /// As printed and in JSON.
    var label: String {
        switch self {
        case .off: "off"
        case .appendfsyncEverysec: "appendfsync everysec"
        case .appendfsyncAlways: "appendfsync always"
        }
    }
}

/// One SKU's counts on a server.
struct SKUCounts: Sendable {
    var available: Int64
    var held: Int64
    var sold: Int64
    /// Units held back from sale (stockd's backup; 0 for Redis).
    var backup: Int64
}
