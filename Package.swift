// swift-tools-version:6.0
// stockd — a stock-reservation server for live shopping.
// One module per layer; arrows in README.md "Architecture". Nothing imports upward.
import PackageDescription

let strict: [SwiftSetting] = [
    .unsafeFlags(["-warnings-as-errors"], .when(configuration: .debug)),
]

let package = Package(
    name: "stockd",
    products: [
        .library(name: "StockProtocol", targets: ["StockProtocol"]),
        .library(name: "StockCore", targets: ["StockCore"]),
        .executable(name: "stockd", targets: ["stockd"]),
        .library(name: "StockClient", targets: ["StockClient"]),
        .executable(name: "stock-hooks", targets: ["stock-hooks"]),
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
            dependencies: ["StockProtocol", .product(name: "Atomics", package: "swift-atomics")],
            swiftSettings: strict
        ),
        // Loopback benchmarks of the server layer (bench/echo, bench/driver).
        .target(
            name: "BenchSupport",
            dependencies: ["StockProtocol", "CLibUV"],
            path: "bench/support",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stockd-echo",
            dependencies: ["StockProtocol", "CLibUV", "BenchSupport"],
            path: "bench/echo",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stockbench-lite",
            dependencies: ["StockProtocol", "CLibUV", "BenchSupport"],
            path: "bench/driver",
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
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The executable: flags, catalog file, logging, signals.
        .executableTarget(
            name: "stockd",
            dependencies: [
                "StockServer", "StockCore", "StockProtocol", "StockJournal",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The Swift client library for checkout services and tools.
        .target(
            name: "StockClient",
            dependencies: ["StockProtocol"],
            path: "clients/swift",
            swiftSettings: strict
        ),
        // stockctl: the operator CLI.
        .executableTarget(
            name: "stockctl",
            dependencies: [
                "StockClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "clients/cli",
            swiftSettings: strict
        ),
        // stock-hooks: the event feed bridged to a warehouse / OMS webhook (signed HTTP POSTs).
        .executableTarget(
            name: "stock-hooks",
            dependencies: [
                "StockClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "clients/hooks",
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // Benchmarks (bench/): print figures, never assert speed.
        .target(name: "CMallocCounter", path: "bench/malloc-counter"),
        .executableTarget(
            name: "stockcore-bench",
            dependencies: ["StockCore", "CMallocCounter", .product(name: "Atomics", package: "swift-atomics")],
            path: "bench/core"
        ),
        // stockbench: the flash-sale load generator, stockd and the Redis baseline side by side.
        .target(
            name: "StockBenchRedis",
            dependencies: ["BenchSupport"],
            path: "bench/redis",
            exclude: ["README.md"],
            resources: [.copy("reserve.lua"), .copy("confirm.lua"), .copy("release.lua"), .copy("sweep.lua")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stockbench",
            dependencies: [
                "BenchSupport", "StockBenchRedis", "StockProtocol", "StockClient", "CLibUV",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "bench/stockbench",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stockproto-bench",
            dependencies: ["StockProtocol"],
            path: "bench/decode",
            swiftSettings: strict
        ),
        // stockd-fuzz: libFuzzer entry points over the frame decoder and the server's dispatch
        // (`make fuzz`, fuzz/README.md). Without the fuzzer runtime it builds as a replayer of inputs.
        .executableTarget(
            name: "stockd-fuzz",
            dependencies: [
                "StockServer", "StockCore", "StockProtocol",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "fuzz/stockd-fuzz",
            swiftSettings: strict
        ),
        .testTarget(
            name: "StockCoreTests",
            dependencies: ["StockCore", "TestSupport"],
            swiftSettings: strict
        ),
        // Helpers shared by the test targets (seeded randomness).
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(
            name: "StockServerTests",
            dependencies: [
                "StockProtocol", "StockClient", "stockd", "stockctl", "stockbench", "stock-hooks", "TestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StockJournalTests",
            dependencies: ["StockJournal", "StockProtocol", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StockBenchRedisTests",
            dependencies: ["StockBenchRedis", "BenchSupport"],
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
