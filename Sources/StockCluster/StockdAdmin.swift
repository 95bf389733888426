import Foundation
import StockProtocol
#if canImport(Glibc)
import Glibc
#endif

/// The agent's connection to its own stockd (loopback): HELLO with an admin
/// credential, then one request at a time — ROLE, FENCE, ISR_SET,
/// CLUSTER_STATUS. Blocking, every wait bounded by `timeoutMs`.
public final class StockdAdmin {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    private let fd: Int32
    private let timeoutMs: Int
    private var nextID: UInt32 = 1
    private var input: [UInt8] = []

    public init(address: String, credential: [UInt8], timeoutMs: Int) throws(Failure) {
        self.timeoutMs = timeoutMs
        fd = try Self.connect(address, timeoutMs: timeoutMs)
        do throws(Failure) {
            let answer = try request(.hello(Hello(clientName: Array("stock-agent".utf8), credential: credential)))
            guard case .hello(let reply) = answer.body else { throw Failure("HELLO answered \(answer.status.name)") }
            guard reply.role == .admin else { throw Failure("the credential's role is \(reply.role), the agent needs admin") }
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    deinit { Glibc.close(fd) }

    /// One request and its answer (any status: the caller judges).
    public func request(_ r: Request) throws(Failure) -> Response {
        let id = nextID
        nextID &+= 1
        var w = ByteWriter(capacity: 256)
        RequestCodec.encode(r, requestID: id, into: &w)
        let bytes = w.bytes
        try send(bytes)
        while true {
            if let answer = try nextResponse() {
                guard answer.requestID == id else { throw Failure("an answer to request \(answer.requestID), not \(id)") }
                return answer
            }
            try receive()
        }
    }

    public func clusterStatus() throws(Failure) -> ClusterStatus {
        let r = try request(.clusterStatus)
        guard case .clusterStatus(let s) = r.body else { throw Failure("CLUSTER_STATUS answered \(r.status.name)") }
        return s
    }

    private func nextResponse() throws(Failure) -> Response? {
        let parsed = input.withUnsafeBytes { FrameParser.parse($0, maxFrame: Limits.maxFrameCeiling) }
        switch parsed {
        case .needMore: return nil
        case .lengthTooSmall, .tooLarge: throw Failure("a broken frame from stockd")
        case .frame(let header, let range):
            let decoded = input.withUnsafeBytes { b in
                Result { () throws(Status) in try ResponseCodec.decode(header: header, payload: UnsafeRawBufferPointer(rebasing: b[range])) }
            }
            input.removeFirst(range.upperBound)
            switch decoded {
            case .success(let r): return r
            case .failure(let s): throw Failure("a malformed answer from stockd (\(s.name))")
            }
        }
    }

    private func send(_ bytes: [UInt8]) throws(Failure) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { b in Glibc.send(fd, b.baseAddress! + sent, b.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n } else if errno != EINTR { throw Failure("send: \(String(cString: strerror(errno)))") }
        }
    }

    private func receive() throws(Failure) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeoutMs)) > 0 else { throw Failure("stockd did not answer within \(timeoutMs) ms") }
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw Failure(n == 0 ? "stockd closed the connection" : "recv: \(String(cString: strerror(errno)))") }
        input.append(contentsOf: buffer[0..<n])
    }

    /// A blocking connection (connect bounded by poll; SO_RCVTIMEO/SO_SNDTIMEO bound the rest).
    static func connect(_ address: String, timeoutMs: Int) throws(Failure) -> Int32 {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
            throw Failure("\(address) is not host:port")
        }
        var host = String(address[..<colon])
        if host == "localhost" { host = "127.0.0.1" }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &a.sin_addr) == 1 else { throw Failure("\(host) is not an IPv4 address") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: Int((timeoutMs % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw Failure("connect to stockd at \(address): \(String(cString: strerror(e)))")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }
}
