import Foundation
import Glibc

/// A TCP socket bound to 127.0.0.1 on a port the kernel picked, listening when `backlog` is given:
/// its descriptor and port. The fakes (FakeStockd, HooksReceiver) and `unusedPort` share it.
public func loopbackSocket(listening backlog: Int32? = nil, reuseAddress: Bool = false) throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket failed: \(String(cString: strerror(errno)))") }
    if reuseAddress {
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0, backlog.map({ listen(fd, $0) == 0 }) ?? true else {
        let reason = String(cString: strerror(errno))
        close(fd)
        throw HarnessError("bind/listen on 127.0.0.1 failed: \(reason)")
    }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    guard named == 0 else {
        close(fd)
        throw HarnessError("getsockname failed")
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// The per-call timeout of the tests' StockClients where the test is not about timeouts. A call's
/// deadline runs from the moment it is made, and the whole suite runs in parallel on two cores, where
/// the synchronous tests can hold both cooperative threads for seconds: 5 s was too tight.
public let testCallTimeout: Duration = .seconds(30)

/// A port nobody listens on: bound, read, closed.
public func unusedPort() throws -> Int {
    let (fd, port) = try loopbackSocket()
    close(fd)
    return port
}
