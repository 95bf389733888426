#if canImport(Glibc)
import Glibc
#endif

/// Unguessable 64-bit token secrets from the kernel's CSPRNG (glibc's
/// `arc4random_buf`, backed by `getrandom`),
/// fetched 4 KiB at a time so the cost is one system call per 512 tokens.
/// A non-cryptographic generator would let a client that sees its own
/// tokens predict other clients' secrets.
struct SecretSource {
    private var buffer: UnsafeMutablePointer<UInt64>
    private var next = SecretSource.batch
    static let batch = 512

    init() {
        buffer = .allocate(capacity: SecretSource.batch)
        buffer.initialize(repeating: 0, count: SecretSource.batch)
    }

    func deallocate() { buffer.deallocate() }

    @inline(__always)
    mutating func draw() -> UInt64 {
        if next == SecretSource.batch { refill() }
        defer { next += 1 }
        return buffer[next]
    }

    private mutating func refill() {
        // glibc's arc4random_buf draws from getrandom(2) and never fails.
        arc4random_buf(UnsafeMutableRawPointer(buffer), SecretSource.batch * 8)
        next = 0
    }
}
