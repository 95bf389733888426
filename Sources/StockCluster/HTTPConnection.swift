import Foundation
import Glibc

// A small blocking HTTP/1.1 client: one POST per connection (Connection: close), every step bounded
// by one deadline. It exists because the agent runs a plain synchronous loop and etcd's v3 JSON
// gateway is all it talks to: no TLS, no redirects, no keep-alive, IPv4 literals or `localhost` only.

/// What can go wrong between us and an HTTP server. Everything here is caused by the network or
/// the peer, never by a bug of ours (those are preconditions).
public enum HTTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The URL is not `http://<IPv4 or localhost>[:port][/path]`.
    case badURL(String)
    /// The TCP connection could not be made (refused, unreachable, no socket).
    case connect(String)
    /// The deadline passed; the string names the step (connect, send, receive).
    case timeout(String)
    /// The peer closed (or reset) the connection before a complete response.
    case closed(String)
    /// The response is not HTTP/1.1 as we read it, or exceeds our size limits.
    case malformed(String)
    /// A complete response whose status is not 2xx, with its body.
    case status(code: Int, body: [UInt8])

    public var description: String {
        switch self {
        case .badURL(let s): "bad URL: \(s)"
        case .connect(let s): "connect failed: \(s)"
        case .timeout(let s): "timed out: \(s)"
        case .closed(let s): "connection closed: \(s)"
        case .malformed(let s): "malformed response: \(s)"
        case .status(let code, let body): "HTTP \(code): \(String(decoding: body.prefix(512), as: UTF8.self))"
        }
    }
}

/// `http://host:port/path`, parsed. Only what we can connect to without a resolver.
public struct HTTPURL: Sendable, Equatable, CustomStringConvertible {
    /// A dotted IPv4 address (`localhost` becomes 127.0.0.1).
    public let host: String
    public let port: UInt16
    /// Starts with "/"; "/" when the URL had none.
    public let path: String

    public init(_ text: String) throws(HTTPError) {
        guard text.hasPrefix("http://") else { throw .badURL("\(text): only http:// is supported") }
        let rest = text.dropFirst("http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        path = slash == rest.endIndex ? "/" : String(rest[slash...])
        let (hostPart, portPart) = HTTPURL.split(authority)
        let name = hostPart == "localhost" ? "127.0.0.1" : String(hostPart)
        var addr = in_addr()
        guard inet_pton(AF_INET, name, &addr) == 1 else {
            throw .badURL("\(text): the host must be an IPv4 address or localhost")
        }
        host = name
        if let portPart {
            guard let p = UInt16(portPart), p > 0 else { throw .badURL("\(text): bad port") }
            port = p
        } else {
            port = 80
        }
    }

    /// The same server with another path.
    public func with(path: String) -> HTTPURL {
        precondition(path.hasPrefix("/"), "an HTTP path starts with /")
        return HTTPURL(host: host, port: port, path: path)
    }

    public var description: String { "http://\(host):\(port)\(path)" }

    private init(host: String, port: UInt16, path: String) {
        self.host = host
        self.port = port
        self.path = path
    }

    private static func split(_ authority: Substring) -> (Substring, Substring?) {
        guard let colon = authority.lastIndex(of: ":") else { return (authority, nil) }
        return (authority[..<colon], authority[authority.index(after: colon)...])
    }
}

/// A complete (or, for a stream, first-chunk) response with a 2xx status.
public struct HTTPResponse: Sendable, Equatable {
    public let status: Int
    /// Header names lower-cased; a repeated header keeps its last value.
    public let headers: [String: String]
    public let body: [UInt8]
}

/// One POST, blocking the calling thread until the response or the deadline.
public enum HTTPConnection {
    /// Limits on what a peer can make us buffer.
    public static let maxHeaderBytes = 16 * 1024
    public static let maxBodyBytes = 4 * 1024 * 1024

    /// How much of a chunked body to read.
    public enum ChunkedBody: Sendable {
        /// Until the last chunk (a unary answer that happened to be chunked, e.g. etcd's errors).
        case complete
        /// Only the first non-empty chunk, then close: a server stream such as /v3/lease/keepalive,
        /// which writes one message per chunk and may never end the body.
        case firstChunk
    }

    /// POSTs `body` as `application/json` to `url`. Connecting, sending and the whole response share
    /// one deadline of `timeoutMs`. Throws `.status` for a complete non-2xx response.
    public static func post(_ url: HTTPURL, body: [UInt8], timeoutMs: Int,
                            chunked: ChunkedBody = .complete) throws(HTTPError) -> HTTPResponse {
        precondition(timeoutMs > 0, "an HTTP request needs a positive timeout")
        let deadline = Deadline(afterMs: timeoutMs)
        let socket = try Socket.connect(to: url, deadline: deadline)
        defer { socket.close() }
        try socket.send(request(url, body: body), deadline: deadline)
        var reader = ResponseReader(socket: socket, deadline: deadline)
        let response = try reader.read(chunked: chunked)
        guard (200..<300).contains(response.status) else {
            throw .status(code: response.status, body: response.body)
        }
        return response
    }

    static func request(_ url: HTTPURL, body: [UInt8]) -> [UInt8] {
        let head = "POST \(url.path) HTTP/1.1\r\n"
            + "Host: \(url.host):\(url.port)\r\n"
            + "Content-Type: application/json\r\n"
            + "Accept: application/json\r\n"
            + "Content-Length: \(body.count)\r\n"
            + "Connection: close\r\n\r\n"
        return Array(head.utf8) + body
    }
}

/// A point on the monotonic clock.
struct Deadline {
    let nanoseconds: UInt64

    init(afterMs ms: Int) {
        nanoseconds = Deadline.now() + UInt64(ms) * 1_000_000
    }

    /// Milliseconds left for poll(2), rounded up so a wait never ends just short of the deadline;
    /// 0 once it passed.
    var remainingMs: Int32 {
        let now = Deadline.now()
        guard now < nanoseconds else { return 0 }
        return Int32(clamping: (nanoseconds - now + 999_999) / 1_000_000)
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// A non-blocking TCP socket used as a blocking one: every wait is a poll(2) bounded by a deadline.
struct Socket {
    let fd: Int32

    static func connect(to url: HTTPURL, deadline: Deadline) throws(HTTPError) -> Socket {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = Glibc.socket(AF_INET, type, 0)
        guard fd >= 0 else { throw .connect("socket: \(errnoText())") }
        let socket = Socket(fd: fd)
        do throws(HTTPError) {
            try socket.startConnect(url)
            try socket.finishConnect(url, deadline: deadline)
        } catch {
            socket.close()
            throw error
        }
        return socket
    }

    private func startConnect(_ url: HTTPURL) throws(HTTPError) {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = url.port.bigEndian
        // HTTPURL checked the address; a second parse cannot fail.
        precondition(inet_pton(AF_INET, url.host, &addr.sin_addr) == 1, "HTTPURL holds an IPv4 address")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 || errno == EINPROGRESS else { throw .connect("\(url.host):\(url.port): \(errnoText())") }
    }

    private func finishConnect(_ url: HTTPURL, deadline: Deadline) throws(HTTPError) {
        guard try wait(for: Int16(POLLOUT), deadline: deadline) else {
            throw .timeout("connecting to \(url.host):\(url.port)")
        }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 else {
            throw .connect("\(url.host):\(url.port): getsockopt: \(errnoText())")
        }
        guard err == 0 else { throw .connect("\(url.host):\(url.port): \(String(cString: strerror(err)))") }
    }

    func send(_ bytes: [UInt8], deadline: Deadline) throws(HTTPError) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                guard try wait(for: Int16(POLLOUT), deadline: deadline) else { throw .timeout("sending the request") }
            } else {
                throw .closed("sending the request: \(errnoText())")
            }
        }
    }

    /// Up to `max` bytes; empty at end of stream.
    func receive(max: Int, deadline: Deadline) throws(HTTPError) -> [UInt8] {
        precondition(max > 0, "a receive asks for at least one byte")
        while true {
            var buffer = [UInt8](repeating: 0, count: max)
            let n = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n >= 0 { return Array(buffer[0..<n]) }
            guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else {
                throw .closed("receiving the response: \(errnoText())")
            }
            guard try wait(for: Int16(POLLIN), deadline: deadline) else { throw .timeout("waiting for the response") }
        }
    }

    /// True when the socket is ready for `events` (or has an error or hang-up to report through the
    /// next call), false when the deadline passed first.
    private func wait(for events: Int16, deadline: Deadline) throws(HTTPError) -> Bool {
        while true {
            let remaining = deadline.remainingMs
            guard remaining > 0 else { return false }
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&pfd, 1, remaining)
            if rc > 0 { return true }
            if rc < 0 && errno != EINTR { throw .closed("poll: \(errnoText())") }
        }
    }

    func close() { _ = Glibc.close(fd) }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// Reads one HTTP/1.1 response from a socket: the head, then the body by its framing.
struct ResponseReader {
    let socket: Socket
    let deadline: Deadline
    /// Received and not yet consumed.
    private var buffer: [UInt8] = []
    private var start = 0
    private var ended = false

    init(socket: Socket, deadline: Deadline) {
        self.socket = socket
        self.deadline = deadline
    }

    mutating func read(chunked mode: HTTPConnection.ChunkedBody) throws(HTTPError) -> HTTPResponse {
        var head = try readHead()
        // 1xx answers (100 Continue) precede the real one; we never ask for them but may get them.
        while (100..<200).contains(head.status) { head = try readHead() }
        let body = try readBody(head, mode: mode)
        return HTTPResponse(status: head.status, headers: head.headers, body: body)
    }

    private mutating func readHead() throws(HTTPError) -> ResponseHead {
        let terminator: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            if let end = find(terminator, limit: HTTPConnection.maxHeaderBytes) {
                let text = String(decoding: buffer[start..<end], as: UTF8.self)
                start = end + terminator.count
                return try ResponseHead(parsing: text)
            }
            guard unread < HTTPConnection.maxHeaderBytes else {
                throw .malformed("response head larger than \(HTTPConnection.maxHeaderBytes) bytes")
            }
            try fill(reading: "the response head")
        }
    }

    private mutating func readBody(_ head: ResponseHead, mode: HTTPConnection.ChunkedBody) throws(HTTPError) -> [UInt8] {
        // Responses that have no body whatever their headers say (RFC 9112 §6.3).
        if head.status == 204 || head.status == 304 { return [] }
        switch head.framing {
        case .chunked: return try readChunked(mode)
        case .length(let n): return try readExactly(n, what: "the body")
        case .untilClose: return try readToEnd()
        }
    }

    private mutating func readChunked(_ mode: HTTPConnection.ChunkedBody) throws(HTTPError) -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let size = try readChunkSize()
            // The last chunk; its trailers do not matter to us (the connection is closed after).
            if size == 0 { return body }
            guard body.count + size <= HTTPConnection.maxBodyBytes else {
                throw .malformed("chunked body larger than \(HTTPConnection.maxBodyBytes) bytes")
            }
            body += try readExactly(size, what: "a chunk")
            guard try readExactly(2, what: "a chunk's end") == [13, 10] else {
                throw .malformed("a chunk not followed by CRLF")
            }
            if mode == .firstChunk { return body }
        }
    }

    private mutating func readChunkSize() throws(HTTPError) -> Int {
        let line = try readLine(limit: 1024, what: "a chunk size")
        // Extensions after ';' are allowed and ignored.
        let digits = line.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)[0]
            .trimmingCharacters(in: .whitespaces)
        guard !digits.isEmpty, digits.count <= 8, let size = Int(digits, radix: 16) else {
            throw .malformed("bad chunk size \"\(line.prefix(40))\"")
        }
        return size
    }

    private mutating func readLine(limit: Int, what: String) throws(HTTPError) -> String {
        let crlf: [UInt8] = [13, 10]
        while true {
            if let end = find(crlf, limit: limit) {
                let line = String(decoding: buffer[start..<end], as: UTF8.self)
                start = end + 2
                return line
            }
            guard unread < limit else { throw .malformed("\(what) line longer than \(limit) bytes") }
            try fill(reading: what)
        }
    }

    private mutating func readExactly(_ n: Int, what: String) throws(HTTPError) -> [UInt8] {
        precondition(n <= HTTPConnection.maxBodyBytes, "the caller checked the body size")
        while unread < n { try fill(reading: what) }
        let bytes = Array(buffer[start..<start + n])
        start += n
        return bytes
    }

    private mutating func readToEnd() throws(HTTPError) -> [UInt8] {
        repeat {
            guard unread <= HTTPConnection.maxBodyBytes else {
                throw .malformed("body larger than \(HTTPConnection.maxBodyBytes) bytes")
            }
            if !ended { try fill(reading: nil) }
        } while !ended || unread > HTTPConnection.maxBodyBytes
        let bytes = Array(buffer[start...])
        start = buffer.count
        return bytes
    }

    private var unread: Int { buffer.count - start }

    /// The index where `needle` starts among the first `limit` unread bytes.
    private func find(_ needle: [UInt8], limit: Int) -> Int? {
        let end = min(buffer.count, start + limit + needle.count)
        guard end - start >= needle.count else { return nil }
        var i = start
        while i + needle.count <= end {
            if buffer[i] == needle[0] && buffer[i..<i + needle.count].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// Receives more bytes. End of stream is an error while `reading` something, the body's end
    /// for a body framed by the close (`reading` nil).
    private mutating func fill(reading what: String?) throws(HTTPError) {
        // Drop what was consumed so the buffer holds at most one unread window.
        if start > 64 * 1024 {
            buffer.removeFirst(start)
            start = 0
        }
        let bytes = try socket.receive(max: 64 * 1024, deadline: deadline)
        if bytes.isEmpty {
            ended = true
            if let what { throw .closed("the server closed the connection while sending \(what)") }
        }
        buffer += bytes
    }
}

/// The status line and headers of a response.
struct ResponseHead {
    enum Framing: Equatable {
        case chunked
        case length(Int)
        case untilClose
    }

    let status: Int
    let headers: [String: String]
    let framing: Framing

    init(parsing text: String) throws(HTTPError) {
        let lines = text.components(separatedBy: "\r\n")
        status = try ResponseHead.status(lines[0])
        var headers: [String: String] = [:]
        var lengths: Set<String> = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                  !line.hasPrefix(" "), !line.hasPrefix("\t")
            else { throw .malformed("bad header line \"\(line.prefix(80))\"") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "content-length" { lengths.insert(value) }
            headers[name] = value
        }
        self.headers = headers
        framing = try ResponseHead.framing(headers: headers, lengths: lengths)
    }

    private static func status(_ line: String) throws(HTTPError) -> Int {
        let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0] == "HTTP/1.1" || parts[0] == "HTTP/1.0",
              parts[1].count == 3, let code = Int(parts[1]), (100..<600).contains(code)
        else { throw .malformed("bad status line \"\(line.prefix(80))\"") }
        return code
    }

    private static func framing(headers: [String: String], lengths: Set<String>) throws(HTTPError) -> Framing {
        if let te = headers["transfer-encoding"] {
            // chunked must be the last coding, and we decode no other (gzip etc.).
            guard te.lowercased() == "chunked" else { throw .malformed("unsupported transfer-encoding \"\(te)\"") }
            return .chunked
        }
        guard let text = lengths.first else { return .untilClose }
        guard lengths.count == 1, let n = Int(text), n >= 0 else {
            throw .malformed("bad content-length \"\(lengths.sorted().joined(separator: ", "))\"")
        }
        guard n <= HTTPConnection.maxBodyBytes else {
            throw .malformed("body of \(n) bytes is larger than \(HTTPConnection.maxBodyBytes)")
        }
        return .length(n)
    }
}
