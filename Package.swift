// swift-tools-version:6.2
// stockd — a stock-reservation server for live shopping.
// One module per layer; arrows in README.md "Architecture". Nothing imports upward.
//
// Two audiences, one manifest. This repository's own builds enable the default trait "Server"
// (stockd, the tools, the benchmarks and the tests). A checkout service that depends on the
// client asks for no traits:
//     .package(url: "https://…/stockd.git", from: "0.2.0", traits: [])
// and then resolves only this package and swift-log: every other dependency below is used only
// under "Server", and SwiftPM does not fetch what a disabled trait alone uses
// (clients/StockClient/README.md; `make consumer-check` proves it with a throwaway package).
import PackageDescription

// Warnings are errors in this repository's debug builds. A safe setting (an unsafe flag would make
// every product unusable as a versioned dependency); SwiftPM ignores it for dependencies.
let strict: [SwiftSetting] = [
    .treatAllWarnings(as: .error, .when(configuration: .debug)),
]

/// A product of a dependency that only the server side and the tools use.
func server(_ name: String, _ package: String) -> Target.Dependency {
    .product(name: name, package: package, condition: .when(traits: ["Server"]))
}

let package = Package(
    name: "stockd",
    products: [
        // For checkout services: the client and the wire types it speaks (no traits needed).
        .library(name: "StockProtocol", targets: ["StockProtocol"]),
        .executable(name: "stockd", targets: ["stockd"]),
        .library(name: "StockClient", targets: ["StockClient"]),
        .executable(name: "stock-hooks", targets: ["stock-hooks"]),
        .executable(name: "stock-agent", targets: ["stock-agent"]),
    ],
    traits: [
        .trait(name: "Server", description: "stockd, stockctl, stock-hooks, the benchmarks and the tests"),
        .default(enabledTraits: ["Server"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        // stockbench only (latency histograms); stockd does not link it.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        // stock-hooks only (HTTP delivery and HMAC signatures); stockd does not link them.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        // CommandSupport's CSV reading (stockctl's files, stockd's --catalog): RFC 4180.
        .package(url: "https://github.com/yaslab/CSV.swift.git", from: "2.5.2"),
    ],
    targets: [
        // Debian's libuv1-dev through pkg-config. Used by the server layer.
        .systemLibrary(
            name: "CLibUV",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),
        // Wire protocol: frames <-> typed values. Standard library only.
        .target(name: "StockProtocol", swiftSettings: strict),
        // Counters, tokens, timing wheel. No I/O; the clock is a parameter.
        .target(
            name: "StockCore",
            dependencies: ["StockProtocol", server("Atomics", "swift-atomics")],
            swiftSettings: strict
        ),
        // Loopback benchmarks of the server layer (bench/stockd-echo, bench/stockbench-lite).
        .target(
            name: "BenchSupport",
            dependencies: ["StockProtocol", "CLibUV"],
            path: "bench/BenchSupport",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stockd-echo",
            dependencies: ["StockProtocol", "CLibUV", "BenchSupport"],
            path: "bench/stockd-echo",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stockbench-lite",
            dependencies: ["StockProtocol", "CLibUV", "BenchSupport", "CommandSupport"],
            path: "bench/stockbench-lite",
            exclude: ["run-matrix.sh"],
            swiftSettings: strict
        ),
        // CRC32C (Castagnoli) for journal records: SSE4.2 when the CPU has it, a table otherwise.
        .target(name: "CCRC32C", path: "Sources/CCRC32C"),
        // The journal: record codec, segment files, snapshots, recovery. File I/O, no libuv.
        .target(
            name: "StockJournal",
            dependencies: ["StockProtocol", "CCRC32C"],
            swiftSettings: strict
        ),
        // The server layer: libuv loops, connections, dispatch, limits, stats.
        .target(
            name: "StockServer",
            dependencies: [
                "StockCore", "StockProtocol", "StockJournal", "CLibUV",
                server("Atomics", "swift-atomics"),
                server("Logging", "swift-log"),
            ],
            swiftSettings: strict
        ),
        // What every binary's command line shares: the one duration parser, --version with the
        // git commit, the one RFC 4180 reading of operators' CSV files (CSV.swift).
        .target(
            name: "CommandSupport",
            dependencies: [server("ArgumentParser", "swift-argument-parser"), server("CSV", "csv.swift")],
            swiftSettings: strict,
            plugins: ["BuildInfoPlugin"]
        ),
        // Writes the git commit into CommandSupport before each build (a prebuild command running
        // /bin/sh and git; "unknown" without a git checkout). No unsafe flags.
        .plugin(name: "BuildInfoPlugin", capability: .buildTool(), path: "Plugins/BuildInfoPlugin"),
        // The executable: flags, catalog file, logging, signals.
        .executableTarget(
            name: "stockd",
            dependencies: [
                "StockServer", "StockCore", "StockProtocol", "StockJournal", "CommandSupport",
                server("ArgumentParser", "swift-argument-parser"),
                server("Logging", "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The Swift client library for checkout services and tools.
        // Its closure is StockProtocol and swift-log, nothing else (see the top of this file).
        .target(
            name: "StockClient",
            dependencies: ["StockProtocol", .product(name: "Logging", package: "swift-log")],
            path: "clients/StockClient",
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // stockctl: the operator CLI.
        .executableTarget(
            name: "stockctl",
            dependencies: [
                "StockClient", "CommandSupport", "StockCluster",
                server("ArgumentParser", "swift-argument-parser"),
            ],
            path: "clients/stockctl",
            swiftSettings: strict
        ),
        // stock-hooks: the event feed bridged to a warehouse / OMS webhook (signed HTTP POSTs).
        .executableTarget(
            name: "stock-hooks",
            dependencies: [
                "StockClient", "CommandSupport",
                server("ArgumentParser", "swift-argument-parser"),
                server("AsyncHTTPClient", "async-http-client"),
                server("Crypto", "swift-crypto"),
            ],
            path: "clients/stock-hooks",
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // StockCluster: a node's coordination (docs/replication.md §6) — etcd over its v3 JSON gateway
        // (a small blocking HTTP/1.1 client), the agent's decisions (campaign, ISR changes, fencing
        // deadlines) as functions over a state and a clock. Foundation only; stockd never links it.
        .target(name: "StockCluster", dependencies: ["StockProtocol"], swiftSettings: strict),
        // stock-agent: one per node, the Patroni pattern: etcd decides, the agent drives its stockd
        // through admin opcodes (ROLE, FENCE, ISR_SET, CLUSTER_STATUS) on loopback.
        .executableTarget(
            name: "stock-agent",
            dependencies: [
                "StockCluster", "StockProtocol", "CommandSupport",
                server("ArgumentParser", "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Benchmarks (bench/): print figures, never assert speed.
        .target(name: "CMallocCounter", path: "bench/CMallocCounter"),
        .executableTarget(
            name: "stockcore-bench",
            dependencies: ["StockCore", "CMallocCounter", server("Atomics", "swift-atomics")],
            path: "bench/stockcore-bench"
        ),
        // stockjournal-bench: record encoding and append + fdatasync latency (make bench-journal).
        .executableTarget(
            name: "stockjournal-bench",
            dependencies: ["StockJournal", "StockProtocol", "CMallocCounter"],
            path: "bench/stockjournal-bench",
            swiftSettings: strict
        ),
        // stockbench: the flash-sale load generator, stockd and the Redis baseline side by side.
        .target(
            name: "StockBenchRedis",
            dependencies: ["BenchSupport"],
            path: "bench/StockBenchRedis",
            exclude: ["README.md"],
            resources: [.copy("reserve.lua"), .copy("confirm.lua"), .copy("release.lua"), .copy("sweep.lua")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stockbench",
            dependencies: [
                "BenchSupport", "StockBenchRedis", "StockProtocol", "StockClient", "CLibUV", "CommandSupport",
                server("ArgumentParser", "swift-argument-parser"),
                server("Histogram", "hdrhistogram-swift"),
            ],
            path: "bench/stockbench",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stockproto-bench",
            dependencies: ["StockProtocol"],
            path: "bench/stockproto-bench",
            swiftSettings: strict
        ),
        // stockd-fuzz: libFuzzer entry points over the frame decoder and the server's dispatch
        // (`make fuzz`, fuzz/README.md). Without the fuzzer runtime it builds as a replayer of inputs.
        .executableTarget(
            name: "stockd-fuzz",
            dependencies: [
                "StockServer", "StockCore", "StockProtocol",
                server("Logging", "swift-log"),
            ],
            path: "fuzz/stockd-fuzz",
            swiftSettings: strict
        ),
        .testTarget(
            name: "StockCoreTests",
            dependencies: ["StockCore", "TestSupport"],
            swiftSettings: strict
        ),
        // What the test targets share: seeded randomness, temporary directories, a real stockd process
        // (StockdProcess), the raw-frame client (RawClient), running the built tools (runTool, CtlFixture), the
        // traits that keep test bodies off the cooperative pool (TestThreadTraits),
        // the fake webhook receiver. Foundation, Testing and StockProtocol only.
        .target(name: "TestSupport", dependencies: ["StockProtocol"], path: "Tests/TestSupport", swiftSettings: strict),
        // One test target per program. The executables a target's tests run are among its
        // dependencies, so SwiftPM builds them next to the test bundle (the tests find them through
        // /proc/self/exe's directory).
        // stockd over TCP: every opcode and status, limits, auth, journal, feed, crash, ops endpoints; the
        // README example and walkthrough (which runs stockctl, stock-hooks and stockbench too).
        .testTarget(
            name: "StockdTests",
            dependencies: [
                "StockProtocol", "StockClient", "StockCluster", "TestSupport", "stockd", "stockctl", "stock-hooks",
                "stockbench", "stock-agent",
            ],
            swiftSettings: strict
        ),
        // StockCluster's decisions with a fake clock, and its etcd client against a real etcd (started by the tests).
        .testTarget(
            name: "StockClusterTests",
            dependencies: ["StockCluster", "StockProtocol", "TestSupport"],
            swiftSettings: strict
        ),
        // A StockServer in the test process: Connection and JournalPipeline over loopback TCP, no stockd binary.
        .testTarget(
            name: "StockServerInProcessTests",
            dependencies: [
                "StockServer", "StockCore", "StockJournal", "StockProtocol", "TestSupport",
                server("Logging", "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The StockClient library against a real stockd and against a scripted fake server.
        .testTarget(
            name: "StockClientTests",
            dependencies: ["StockClient", "TestSupport", "stockd"],
            swiftSettings: strict
        ),
        // The stockctl binary against a real stockd (CLIConventionTests checks --version of stock-hooks and
        // stockbench as well; StockJournal writes data directories with records stockd does not journal yet).
        .testTarget(
            name: "StockctlTests",
            dependencies: [
                "StockClient", "StockJournal", "TestSupport", "stockd", "stockctl", "stock-hooks", "stockbench",
            ],
            swiftSettings: strict
        ),
        // The stock-hooks binary against a real stockd and a faulty HTTP receiver (signatures checked with Crypto).
        .testTarget(
            name: "StockHooksTests",
            dependencies: ["StockClient", "TestSupport", "stockd", "stock-hooks", server("Crypto", "swift-crypto")],
            swiftSettings: strict
        ),
        // The stockbench binary: both backends (it starts stockd and redis-server itself), the hostile suite.
        .testTarget(
            name: "StockbenchTests",
            dependencies: ["TestSupport", "stockd", "stockbench"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StockJournalTests",
            dependencies: ["StockJournal", "StockProtocol", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StockBenchRedisTests",
            dependencies: ["StockBenchRedis", "BenchSupport", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CommandSupportTests",
            dependencies: ["CommandSupport", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StockProtocolTests",
            dependencies: ["StockProtocol", "TestSupport"],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
