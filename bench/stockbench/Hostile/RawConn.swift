import Foundation
import StockClient
#if canImport(Glibc)
import Glibc
#endif

enum RawError: Error, Equatable, CustomStringConvertible {
    case eof, reset, timeout, failed(Int32), protocolError(String)

    var description: String {
        switch self {
        case .eof: "connection closed by the server"
        case .reset: "connection reset"
        case .timeout: "timed out"
        case .failed(let e): String(cString: strerror(e))
        case .protocolError(let s): "protocol error: \(s)"
        }
    }

    /// The server ended the connection.
    var isClose: Bool {
        switch self {
        case .eof, .reset: true
        default: false
        }
    }
}

/// One answer frame, without copying its payload (the first 16 bytes are kept: a token).
struct Answer {
    var opcode: UInt8
    var status: UInt8
    var id: UInt32
    var payloadCount: Int
    var head0: UInt64 = 0
    var head1: UInt64 = 0
}

/// A TCP connection to stockd with blocking reads and writes (timeouts via
/// SO_RCVTIMEO / SO_SNDTIMEO). Used by one thread at a time.
final class RawConn: @unchecked Sendable {
    let fd: Int32
    private static let capacity = 1 << 18
    private let buffer = UnsafeMutableRawPointer.allocate(byteCount: RawConn.capacity, alignment: 16)
    private var lo = 0
    private var hi = 0
    private var closed = false

    private init(fd: Int32) { self.fd = fd }

    deinit {
        close()
        buffer.deallocate()
    }

    /// Connects (bounded by `timeoutMs`), TCP_NODELAY, blocking with the given timeouts unless `nonBlocking`.
    static func open(_ a: LoopbackAddress, timeoutMs: Int32 = 2000, receiveBuffer: Int32 = 0,
                     nonBlocking: Bool = false) throws -> RawConn {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(a.port).bigEndian)
        guard inet_pton(AF_INET, a.host, &addr.sin_addr) == 1 else { throw RawError.failed(EINVAL) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RawError.failed(errno) }
        if receiveBuffer > 0 {
            var v = receiveBuffer
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, socklen_t(MemoryLayout<Int32>.size))
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            let e = errno
            guard e == EINPROGRESS else {
                Glibc.close(fd)
                throw RawError.failed(e)
            }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, timeoutMs) == 1 else {
                Glibc.close(fd)
                throw RawError.timeout
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                Glibc.close(fd)
                throw RawError.failed(err)
            }
        }
        if !nonBlocking { _ = fcntl(fd, F_SETFL, flags) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let c = RawConn(fd: fd)
        c.setTimeouts(ms: 5000)
        return c
    }

    func setTimeouts(ms: Int) {
        var tv = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
            if n > 0 {
                off += n
                continue
            }
            let e = errno
            if n < 0 && e == EINTR { continue }
            if n < 0 && (e == EAGAIN || e == EWOULDBLOCK) { throw RawError.timeout }
            if e == ECONNRESET || e == EPIPE { throw RawError.reset }
            throw RawError.failed(e)
        }
    }

    func send(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try send($0) } }

    /// The next answer frame.
    func next() throws -> Answer {
        while true {
            let view = UnsafeRawBufferPointer(start: buffer + lo, count: hi - lo)
            switch FrameParser.parse(view, maxFrame: RawConn.capacity) {
            case .frame(let h, let range):
                var a = Answer(opcode: h.opcode, status: h.status, id: h.requestID, payloadCount: range.count)
                if range.count >= 16 {
                    a.head0 = view.loadUnaligned(fromByteOffset: range.lowerBound, as: UInt64.self)
                    a.head1 = view.loadUnaligned(fromByteOffset: range.lowerBound + 8, as: UInt64.self)
                }
                lo += h.frameLength
                if lo == hi { lo = 0; hi = 0 }
                return a
            case .lengthTooSmall(let l):
                throw RawError.protocolError("answer with length \(l)")
            case .tooLarge(let l, _):
                throw RawError.protocolError("answer of \(l) bytes")
            case .needMore:
                if lo > 0 {
                    (buffer).copyMemory(from: buffer + lo, byteCount: hi - lo)
                    hi -= lo
                    lo = 0
                }
                let n = recv(fd, buffer + hi, RawConn.capacity - hi, 0)
                if n > 0 {
                    hi += n
                    continue
                }
                if n == 0 { throw RawError.eof }
                let e = errno
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK { throw RawError.timeout }
                if e == ECONNRESET || e == EPIPE { throw RawError.reset }
                throw RawError.failed(e)
            }
        }
    }

    /// Whether the server has closed its side (checked without reading).
    func peerClosed() -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN) | 0x2000 /* POLLRDHUP */, revents: 0)
        guard poll(&p, 1, 0) == 1 else { return false }
        return p.revents & (Int16(POLLHUP) | Int16(POLLERR) | 0x2000) != 0
    }

    /// A close that resets the connection (SO_LINGER 0) instead of FIN.
    func abort() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }
}
