import CLibUV
#if canImport(Glibc)
import Glibc
#endif

// Small libuv helpers shared by the echo and the driver (target `BenchSupport`).

@inline(__always) public func handle<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_handle_t.self)
}

@inline(__always) public func stream<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_stream_t> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_stream_t.self)
}

/// Queues `count` bytes from `bytes` with one uv_write: the request and a copy
/// of the bytes share one heap block, which `onWrite` frees with `free(req)`;
/// `req.data` holds the byte count. Returns false if libuv refused the write.
public func queueWrite(_ s: UnsafeMutablePointer<uv_stream_t>, _ bytes: UnsafeRawPointer, _ count: Int,
                       onWrite: uv_write_cb) -> Bool {
    let header = MemoryLayout<uv_write_t>.stride
    let block = malloc(header + count)!
    let req = block.bindMemory(to: uv_write_t.self, capacity: 1)
    let data = block + header
    data.copyMemory(from: bytes, byteCount: count)
    req.pointee.data = UnsafeMutableRawPointer(bitPattern: count)
    var buf = uv_buf_init(data.assumingMemoryBound(to: CChar.self), UInt32(count))
    guard uv_write(req, s, &buf, 1, onWrite) == 0 else {
        free(block)
        return false
    }
    return true
}

public func freeHandle(_ h: UnsafeMutablePointer<uv_handle_t>?) { h?.deallocate() }

public func check(_ result: Int32, _ what: @autoclosure () -> String) {
    if result < 0 { fatal("\(what()): \(String(cString: uv_strerror(result)))") }
}

/// The program name `fatal` prefixes its message with.
nonisolated(unsafe) public var programName = "bench"

/// Prints `programName: message` on stderr and exits 2.
public func fatal(_ message: String) -> Never {
    let line = Array("\(programName): \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

public func writeFile(_ path: String, _ text: String) {
    guard let f = fopen(path, "w") else { fatal("cannot write \(path)") }
    fputs(text, f)
    fclose(f)
}
