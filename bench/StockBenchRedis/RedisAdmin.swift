import Foundation

#if canImport(Glibc)
import Glibc
#endif

// A small blocking RESP2 client for the work off stockbench's hot path:
// loading the scripts, staging stock, reading counters, sweeping, INFO.
// Every wait is bounded by `timeoutMs`. Thread-safe: each round trip
// (`command`, `pipeline`) holds a lock, so a sweeper thread and a reporting
// thread may share one client (their round trips take turns).

/// One RESP2 reply.
public enum RespValue: Equatable, Sendable, CustomStringConvertible {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    /// A null bulk string (`$-1`) or a null array (`*-1`).
    case null
    case array([RespValue])

    /// A simple string, or a bulk string as UTF-8.
    public var string: String? {
        switch self {
        case .simple(let s): return s
        case .bulk(let b): return String(decoding: b, as: UTF8.self)
        default: return nil
        }
    }

    /// An integer, or a simple/bulk string holding one.
    public var integer: Int64? {
        switch self {
        case .integer(let v): return v
        case .simple, .bulk: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    public var array: [RespValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var description: String {
        switch self {
        case .simple(let s): return "+\(s)"
        case .error(let s): return "-\(s)"
        case .integer(let v): return ":\(v)"
        case .bulk(let b): return "\"\(String(decoding: b, as: UTF8.self))\""
        case .null: return "(nil)"
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        }
    }
}

/// What went wrong talking to Redis.
public enum RedisAdminError: Error, Equatable, CustomStringConvertible {
    /// The host name did not resolve to an IPv4 address.
    case resolve(host: String, message: String)
    /// The TCP connection could not be made (refused, timed out, ...).
    case connect(endpoint: String, message: String)
    /// A read or write waited longer than the timeout.
    case timeout(endpoint: String, operation: String, timeoutMs: Int)
    /// The server closed the connection.
    case connectionClosed(endpoint: String)
    /// Another socket error.
    case io(endpoint: String, operation: String, message: String)
    /// The bytes received are not RESP.
    case protocolError(endpoint: String, message: String)
    /// The server answered the command with an error reply (`-ERR ...`).
    case reply(command: String, message: String)
    /// The server answered, but not in the shape the call expects.
    case unexpectedReply(command: String, reply: String)
    /// A bundled .lua file is missing from the resource bundle.
    case missingScript(name: String)
    /// `counts(sku:)` of a SKU that was never staged.
    case unknownSKU(String)
    /// The client was closed.
    case closed

    public var description: String {
        switch self {
        case let .resolve(host, message): return "redis: cannot resolve \(host): \(message)"
        case let .connect(endpoint, message): return "redis: cannot connect to \(endpoint): \(message)"
        case let .timeout(endpoint, operation, ms): return "redis: \(operation) on \(endpoint) timed out after \(ms) ms"
        case let .connectionClosed(endpoint): return "redis: \(endpoint) closed the connection"
        case let .io(endpoint, operation, message): return "redis: \(operation) on \(endpoint) failed: \(message)"
        case let .protocolError(endpoint, message): return "redis: bad reply from \(endpoint): \(message)"
        case let .reply(command, message): return "redis: \(command) failed: \(message)"
        case let .unexpectedReply(command, reply): return "redis: unexpected reply to \(command): \(reply)"
        case let .missingScript(name): return "redis: bundled script \(name).lua not found in the resource bundle"
        case let .unknownSKU(sku): return "redis: SKU \(sku) is not staged (no \(RedisKeys.avail(sku)) key)"
        case .closed: return "redis: the admin connection is closed"
        }
    }
}

/// The Lua scripts shipped with this module (SwiftPM resources).
public enum RedisScripts {
    public static let names = ["reserve", "confirm", "release", "sweep"]

    /// The text of `name`.lua.
    public static func source(_ name: String) throws -> String {
        guard let url = Bundle.module.url(forResource: name, withExtension: "lua"),
              let text = try? String(contentsOf: url, encoding: .utf8)
        else { throw RedisAdminError.missingScript(name: name) }
        return text
    }
}

/// A blocking RESP2 client over one TCP connection.
public final class RedisAdmin: @unchecked Sendable {  // mutable state only under `lock`
    public let host: String
    public let port: Int
    public let timeoutMs: Int
    private let lock = NSLock()
    private var fd: Int32 = -1
    /// `close()` was called: no reconnecting.
    private var closedByUser = false
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var readPos = 0
    private var writePos = 0
    private var endpoint: String { "\(host):\(port)" }

    /// Connects to `host:port` (IPv4); `timeoutMs` bounds the connect and
    /// every later read and write. A call that fails on the transport (a
    /// timeout, a reset, bad RESP) drops the connection; the next call
    /// reconnects.
    public init(host: String = "127.0.0.1", port: Int, timeoutMs: Int = 5000) throws {
        self.host = host
        self.port = port
        self.timeoutMs = max(1, timeoutMs)
        fd = try Self.connect(host: host, port: port, timeoutMs: self.timeoutMs)
    }

    deinit { close() }

    /// Closes the connection for good (idempotent): later calls throw `.closed`.
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        closedByUser = true
        closeLocked()
    }

    private func closeLocked() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
        readPos = 0
        writePos = 0
    }

    /// Runs one round trip under the lock. A transport or protocol failure
    /// leaves the connection out of step with the server (a reply half
    /// read), so it is dropped and the next call connects afresh — a
    /// long-lived sweeper survives a timeout or a server restart.
    private func roundTrip<T>(_ body: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        if fd < 0 {
            guard !closedByUser else { throw RedisAdminError.closed }
            fd = try Self.connect(host: host, port: port, timeoutMs: timeoutMs)
        }
        do {
            return try body()
        } catch {
            closeLocked()
            throw error
        }
    }

    // MARK: Commands

    /// Sends one command and returns its reply; an error reply throws
    /// `RedisAdminError.reply`.
    @discardableResult
    public func command(_ args: [String]) throws -> RespValue {
        precondition(!args.isEmpty, "RedisAdmin.command: no arguments")
        var out: [UInt8] = []
        Self.append(args, to: &out)
        let reply = try roundTrip {
            try send(out)
            return try readValue()
        }
        if case .error(let message) = reply { throw RedisAdminError.reply(command: args[0].uppercased(), message: message) }
        return reply
    }

    /// Sends several commands in one write and returns their replies in
    /// order; error replies are returned as `.error`, not thrown.
    public func pipeline(_ commands: [[String]]) throws -> [RespValue] {
        var out: [UInt8] = []
        for args in commands { Self.append(args, to: &out) }
        return try roundTrip {
            try send(out)
            var replies: [RespValue] = []
            replies.reserveCapacity(commands.count)
            for _ in commands { replies.append(try readValue()) }
            return replies
        }
    }

    /// `PING`; true when the server answered PONG.
    public func ping() throws -> Bool {
        try command(["PING"]) == .simple("PONG")
    }

    /// `SCRIPT LOAD`s the four bundled scripts and returns their SHA1s.
    public func loadScripts() throws -> (reserve: String, confirm: String, release: String, sweep: String) {
        var shas: [String] = []
        for name in RedisScripts.names {
            let reply = try command(["SCRIPT", "LOAD", try RedisScripts.source(name)])
            guard let sha = reply.string, sha.utf8.count == 40 else {
                throw RedisAdminError.unexpectedReply(command: "SCRIPT LOAD \(name).lua", reply: reply.description)
            }
            shas.append(sha)
        }
        return (shas[0], shas[1], shas[2], shas[3])
    }

    /// Stages a sale in one MULTI/EXEC: every SKU gets `avail = stock`,
    /// `held = 0`, `sold = 0`, and the `deadlines` set is deleted. Tokens
    /// left by an earlier run (`tok:{…}` keys) are unlinked first, since
    /// without `deadlines` nothing would ever sweep them.
    public func stage(skus: [String], stock: Int64) throws {
        precondition(stock >= 0, "RedisAdmin.stage: negative stock")
        try unlinkTokens()
        var commands: [[String]] = [["MULTI"], ["DEL", RedisKeys.deadlines]]
        let value = String(stock)
        var chunk: [String] = []
        for sku in skus {
            chunk += [RedisKeys.avail(sku), value, RedisKeys.held(sku), "0", RedisKeys.sold(sku), "0"]
            if chunk.count >= 3000 {
                commands.append(["MSET"] + chunk)
                chunk.removeAll(keepingCapacity: true)
            }
        }
        if !chunk.isEmpty { commands.append(["MSET"] + chunk) }
        commands.append(["EXEC"])
        let replies = try pipeline(commands)
        for (args, reply) in zip(commands, replies) {
            if case .error(let message) = reply { throw RedisAdminError.reply(command: args[0], message: message) }
        }
        guard let results = replies.last?.array, results.count == commands.count - 2 else {
            throw RedisAdminError.unexpectedReply(command: "EXEC (stage)", reply: replies.last?.description ?? "none")
        }
        for result in results {
            if case .error(let message) = result { throw RedisAdminError.reply(command: "EXEC (stage)", message: message) }
        }
    }

    /// SCAN + UNLINK of every `tok:{…}` key.
    private func unlinkTokens() throws {
        var cursor = "0"
        repeat {
            let reply = try command(["SCAN", cursor, "MATCH", "tok:{*", "COUNT", "1000"])
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array else {
                throw RedisAdminError.unexpectedReply(command: "SCAN", reply: reply.description)
            }
            let names = keys.compactMap(\.string)
            if !names.isEmpty { try command(["UNLINK"] + names) }
            cursor = next
        } while cursor != "0"
    }

    /// One SKU's counters (on hand = available + held + sold).
    public func counts(sku: String) throws -> (available: Int64, held: Int64, sold: Int64) {
        let reply = try command(["MGET", RedisKeys.avail(sku), RedisKeys.held(sku), RedisKeys.sold(sku)])
        guard let parts = reply.array, parts.count == 3 else {
            throw RedisAdminError.unexpectedReply(command: "MGET", reply: reply.description)
        }
        if parts[0] == .null { throw RedisAdminError.unknownSKU(sku) }
        func value(_ v: RespValue) throws -> Int64 {
            if v == .null { return 0 }
            guard let n = v.integer else { throw RedisAdminError.unexpectedReply(command: "MGET", reply: reply.description) }
            return n
        }
        return (try value(parts[0]), try value(parts[1]), try value(parts[2]))
    }

    /// One call of sweep.lua (`sha` from `loadScripts()`): expires up to
    /// `limit` due reservations. A sweeper calls it again at once while
    /// `examined == limit`.
    public func sweep(sha: String, limit: Int) throws -> (expired: Int, examined: Int) {
        let reply = try command(["EVALSHA", sha, "1", RedisKeys.deadlines, String(limit)])
        guard let parts = reply.array, parts.count == 2, let expired = parts[0].integer, let examined = parts[1].integer else {
            throw RedisAdminError.unexpectedReply(command: "EVALSHA sweep", reply: reply.description)
        }
        return (Int(expired), Int(examined))
    }

    /// The text of `INFO` (or `INFO section`).
    public func info(section: String? = nil) throws -> String {
        let reply = try command(["INFO"] + (section.map { [$0] } ?? []))
        guard let text = reply.string else { throw RedisAdminError.unexpectedReply(command: "INFO", reply: reply.description) }
        return text
    }

    // MARK: RESP

    private static func append(_ args: [String], to out: inout [UInt8]) {
        out.append(contentsOf: "*\(args.count)\r\n".utf8)
        for arg in args {
            out.append(contentsOf: "$\(arg.utf8.count)\r\n".utf8)
            out.append(contentsOf: arg.utf8)
            out.append(13)
            out.append(10)
        }
    }

    private func readValue() throws -> RespValue {
        let type = try readByte()
        switch type {
        case UInt8(ascii: "+"): return .simple(String(decoding: try readLine(), as: UTF8.self))
        case UInt8(ascii: "-"): return .error(String(decoding: try readLine(), as: UTF8.self))
        case UInt8(ascii: ":"): return .integer(try readInteger())
        case UInt8(ascii: "$"):
            let n = try readInteger()
            if n == -1 { return .null }
            guard n >= 0, n <= 512 * 1024 * 1024 else { throw protocolError("bulk length \(n)") }
            let bytes = try readExact(Int(n))
            guard try readExact(2) == [13, 10] else { throw protocolError("bulk string not followed by CRLF") }
            return .bulk(bytes)
        case UInt8(ascii: "*"):
            let n = try readInteger()
            if n == -1 { return .null }
            guard n >= 0 else { throw protocolError("array length \(n)") }
            var items: [RespValue] = []
            items.reserveCapacity(Int(min(n, 1 << 16)))
            for _ in 0..<n { items.append(try readValue()) }
            return .array(items)
        default:
            throw protocolError("unknown reply type byte 0x\(String(type, radix: 16))")
        }
    }

    private func protocolError(_ message: String) -> RedisAdminError {
        .protocolError(endpoint: endpoint, message: message)
    }

    private func readInteger() throws -> Int64 {
        let line = String(decoding: try readLine(), as: UTF8.self)
        guard let v = Int64(line) else { throw protocolError("not an integer: \(line.prefix(40))") }
        return v
    }

    /// Bytes up to CRLF (not included).
    private func readLine() throws -> [UInt8] {
        var line: [UInt8] = []
        while true {
            let b = try readByte()
            if b == 13 {
                guard try readByte() == 10 else { throw protocolError("CR not followed by LF") }
                return line
            }
            line.append(b)
        }
    }

    private func readByte() throws -> UInt8 {
        if readPos == writePos { try fill() }
        let b = buffer[readPos]
        readPos += 1
        return b
    }

    private func readExact(_ n: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(n)
        while out.count < n {
            if readPos == writePos { try fill() }
            let take = min(n - out.count, writePos - readPos)
            out.append(contentsOf: buffer[readPos..<(readPos + take)])
            readPos += take
        }
        return out
    }

    private func fill() throws {
        guard fd >= 0 else { throw RedisAdminError.closed }
        readPos = 0
        writePos = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                writePos = n
                return
            }
            if n == 0 { throw RedisAdminError.connectionClosed(endpoint: endpoint) }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK {
                throw RedisAdminError.timeout(endpoint: endpoint, operation: "read", timeoutMs: timeoutMs)
            }
            throw RedisAdminError.io(endpoint: endpoint, operation: "read", message: Self.describe(e))
        }
    }

    private func send(_ bytes: [UInt8]) throws {
        guard fd >= 0 else { throw RedisAdminError.closed }
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
                continue
            }
            let e = errno
            if n < 0 && e == EINTR { continue }
            if n < 0 && (e == EAGAIN || e == EWOULDBLOCK) {
                throw RedisAdminError.timeout(endpoint: endpoint, operation: "write", timeoutMs: timeoutMs)
            }
            throw RedisAdminError.io(endpoint: endpoint, operation: "write", message: Self.describe(e))
        }
    }

    // MARK: Socket

    static func describe(_ e: Int32) -> String { "\(String(cString: strerror(e))) (errno \(e))" }

    private static func connect(host: String, port: Int, timeoutMs: Int) throws -> Int32 {
        let endpoint = "\(host):\(port)"
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let info = list else {
            throw RedisAdminError.resolve(host: host, message: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(list) }

        // CLOEXEC: a redis-server started later must not inherit this socket.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RedisAdminError.connect(endpoint: endpoint, message: "socket: " + describe(errno)) }
        do {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

            // Non-blocking connect bounded by poll, then back to blocking.
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 {
                let e = errno
                guard e == EINPROGRESS || e == EINTR else {
                    throw RedisAdminError.connect(endpoint: endpoint, message: describe(e))
                }
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                var ready: Int32
                repeat { ready = poll(&pfd, 1, Int32(timeoutMs)) } while ready < 0 && errno == EINTR
                if ready == 0 {
                    throw RedisAdminError.connect(endpoint: endpoint, message: "timed out after \(timeoutMs) ms")
                }
                var soError: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                if ready < 0 || soError != 0 {
                    throw RedisAdminError.connect(endpoint: endpoint, message: describe(ready < 0 ? errno : soError))
                }
            }
            _ = fcntl(fd, F_SETFL, flags)
            return fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }
}
