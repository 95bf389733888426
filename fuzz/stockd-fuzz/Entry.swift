import Glibc

// stockd-fuzz: libFuzzer entry points over the wire protocol (`make fuzz`, fuzz/README.md).
//
//   STOCKD_FUZZ_MODE=decode    FrameDecoder in several chunkings, both codecs, round trips (DecodeFuzz.swift)
//   STOCKD_FUZZ_MODE=dispatch  the bytes sent to an in-process StockServer over loopback TCP, then
//                              liveness (PING) and the core's invariants (DispatchFuzz.swift)
//   STOCKD_FUZZ_MODE=seed      `stockd-fuzz VECTORS_DIR OUT_DIR` writes the seed corpora (Seeds.swift)
//
// Built with `-sanitize=fuzzer,address` and `-D STOCKD_LIBFUZZER`, libFuzzer provides `main`. In any
// other build (plain `swift build`) the `main` below replays the inputs named on the command line,
// so the target always links and a crash file can be replayed without the fuzzer runtime.

/// The libFuzzer callback: one input, any crash or failed check aborts the process.
@_cdecl("LLVMFuzzerTestOneInput")
public func stockdFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size)
    switch FuzzMode.current {
    case .decode: DecodeFuzz.run(input)
    case .dispatch: DispatchFuzz.run(input)
    case .seed: fuzzFail("STOCKD_FUZZ_MODE=seed takes VECTORS_DIR OUT_DIR, not inputs")
    }
    return 0
}

/// Called by libFuzzer before it parses its flags: the seed mode writes the corpora and exits.
@_cdecl("LLVMFuzzerInitialize")
public func stockdFuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    if FuzzMode.current == .seed { seedFromArguments() }
    return 0
}

func seedFromArguments() -> Never {
    let args = CommandLine.arguments
    guard args.count == 3 else { fuzzFail("usage: STOCKD_FUZZ_MODE=seed stockd-fuzz VECTORS_DIR OUT_DIR") }
    Seeds.write(vectors: args[1], out: args[2])
}

/// Which entry point runs: `STOCKD_FUZZ_MODE` (default `decode`).
enum FuzzMode: String {
    case decode, dispatch, seed

    static let current: FuzzMode = {
        guard let raw = getenv("STOCKD_FUZZ_MODE") else { return .decode }
        guard let mode = FuzzMode(rawValue: String(cString: raw)) else {
            fuzzFail("STOCKD_FUZZ_MODE must be decode, dispatch or seed, not \(String(cString: raw))")
        }
        return mode
    }()
}

/// Writes one line to stderr (the C `stderr` global is not concurrency-safe in Swift 6).
func fuzzLog(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { b in _ = write(2, b.baseAddress, b.count) }
}

/// A failed check: say what, then abort, so libFuzzer saves the input as a crash artifact.
func fuzzFail(_ message: String) -> Never {
    fuzzLog("stockd-fuzz: CHECK FAILED: \(message)")
    abort()
}

#if !STOCKD_LIBFUZZER
/// Replay without libFuzzer: `stockd-fuzz FILE...` runs each input once (mode from `STOCKD_FUZZ_MODE`).
@main
enum ReplayMain {
    static func main() {
        if FuzzMode.current == .seed { seedFromArguments() }
        let files = CommandLine.arguments.dropFirst()
        if files.isEmpty {
            fuzzLog("usage: STOCKD_FUZZ_MODE=decode|dispatch stockd-fuzz FILE... (built without libFuzzer: replay only;"
                    + " `make fuzz` builds the fuzzer)")
            exit(2)
        }
        for path in files {
            guard let bytes = readWholeFile(path) else { fuzzFail("cannot read \(path)") }
            bytes.withUnsafeBufferPointer { b in _ = stockdFuzzTestOneInput(b.baseAddress, b.count) }
            fuzzLog("stockd-fuzz: \(path): ok (\(bytes.count) bytes, mode \(FuzzMode.current.rawValue))")
        }
    }

    static func readWholeFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return nil }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
        }
    }
}
#endif
