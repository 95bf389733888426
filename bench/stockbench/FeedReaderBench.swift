import ArgumentParser
import Foundation
import Glibc
import StockProtocol

/// `stockbench feed`: a minimal event-feed consumer that counts events as
/// fast as stockd sends them — frames are parsed, not decoded, and credit is
/// granted in batches — so it measures the feed, not a consumer's own work.
struct FeedBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "feed",
        abstract: "Consume the event feed as fast as possible and report events/s.",
        discussion: """
            With --until-end, reads from --from to the feed's end at subscription and stops (catch-up \
            speed); otherwise reads for --duration (a live subscriber beside a load).
            """)

    @Option(help: "Server host:port.") var server = "127.0.0.1:7878"
    @Option(help: "First offset: a number, oldest or now.") var from = "now"
    @Option(help: "Only this kind (repeatable), e.g. confirmed.") var kind: [String] = []
    @Option(help: "Credit granted at a time.") var credit = 65_536
    @Option(help: "How long to read (ignored with --until-end; default: 5s).", transform: Seconds.parse)
    var duration = Seconds(5)
    @Flag(help: "Stop at the feed's end when subscribed.") var untilEnd = false
    @Flag(help: "One JSON document on stdout.") var json = false

    func run() throws {
        let parts = server.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--server host:port") }
        let fromValue: UInt64 = switch from {
        case "oldest": Limits.feedFromOldest
        case "now": Limits.feedFromNow
        default: UInt64(from) ?? 1
        }
        var mask: UInt16 = 0
        for k in kind {
            guard let e = EventKind(name: k) else { throw ValidationError("--kind \(k): unknown") }
            mask |= e.bit
        }
        let seconds = duration.value
        let fd = try connect(host: String(parts[0]), port: port)
        defer { close(fd) }
        var w = ByteWriter(capacity: 256)
        RequestCodec.encode(.subscribe(Subscribe(from: fromValue, credit: UInt32(credit), kinds: mask)),
                            requestID: 1, into: &w)
        try send(fd, w)

        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var filled = 0
        var events = 0
        var sinceGrant = 0
        var lastOffset: UInt64 = 0
        var end: UInt64 = .max
        let t0 = Date()
        var first: Date?
        loop: while true {
            if !untilEnd && Date().timeIntervalSince(t0) >= seconds { break }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + filled, $0.count - filled, 0) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            if n <= 0 { break }
            filled += n
            var used = 0
            while true {
                let parsed = buffer.withUnsafeBytes { FrameParser.parse(UnsafeRawBufferPointer(rebasing: $0[used..<filled]), maxFrame: 1 << 20) }
                guard case .frame(let header, let range) = parsed else { break }
                let payload = used + range.lowerBound
                if header.status != 0 { throw ValidationError("feed ended with status \(header.status)") }
                if header.opcode == Opcode.subscribe.rawValue {
                    end = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: payload + 8, as: UInt64.self) }
                    first = Date()
                    if untilEnd && end == 0 { break loop }
                } else {
                    let offset = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: payload, as: UInt64.self) }
                    lastOffset = offset
                    if buffer[payload + 16] != 0 {  // not a progress marker
                        events += 1
                        sinceGrant += 1
                    }
                    if untilEnd && offset >= end { used += header.frameLength; break loop }
                }
                used += header.frameLength
            }
            if used > 0 {
                buffer.withUnsafeMutableBytes { b in b.baseAddress!.copyMemory(from: b.baseAddress! + used, byteCount: filled - used) }
                filled -= used
            }
            if sinceGrant >= credit / 2 {
                var g = ByteWriter(capacity: 16)
                RequestCodec.encode(.credit(UInt32(sinceGrant)), requestID: 1, into: &g)
                try send(fd, g)
                sinceGrant = 0
            }
        }
        let elapsed = Date().timeIntervalSince(first ?? t0)
        let rate = elapsed > 0 ? Double(events) / elapsed : 0
        if json {
            print("{\"events\":\(events),\"seconds\":\(String(format: "%.3f", elapsed)),\"events_per_sec\":\(Int(rate)),\"last_offset\":\(lastOffset)}")
        } else {
            print(String(format: "%d events in %.2f s: %.0f events/s (last offset %llu)", events, elapsed, rate, lastOffset))
        }
    }

    private func connect(host: String, port: Int) throws -> Int32 {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { throw ValidationError("--server: IPv4 address") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw ValidationError("cannot connect to \(host):\(port)")
        }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)  // wake up to check --duration
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    private func send(_ fd: Int32, _ w: ByteWriter) throws {
        let ok = w.withUnsafeBytes { b -> Bool in
            var off = 0
            while off < b.count {
                let n = Glibc.send(fd, b.baseAddress! + off, b.count - off, Int32(MSG_NOSIGNAL))
                if n <= 0 { return false }
                off += n
            }
            return true
        }
        if !ok { throw ValidationError("send failed") }
    }
}
