import CLibUV
import Glibc
import StockProtocol

// Failed authentications: counted (STATS `auth.failures`, `status.AUTH_FAILED`)
// and logged without the secret — at most one line per second per worker,
// with the number of failures the quiet period swallowed, so a flood of bad
// HELLOs cannot flood the log.

extension LoopWorker {
    func authFailed(client: [UInt8], peer: String) {
        server.authFailures.wrappingIncrement(ordering: .relaxed)
        let now = uv_now(loop)
        if authLog.lastMs != 0 && now &- authLog.lastMs < 1000 {
            authLog.suppressed += 1
            return
        }
        let name = String(decoding: client.prefix(64), as: UTF8.self)
        let more = authLog.suppressed > 0 ? " (\(authLog.suppressed) more failed since the last line)" : ""
        server.logger.warning("authentication failed: wrong credential in HELLO from \(peer) client '\(name)'\(more)")
        authLog = (now, 0)
    }
}

extension Connection {
    /// `a.b.c.d:port` of the client (for logs), or `?`.
    var peerAddress: String {
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(tcp, $0, &len) }
        }
        guard rc == 0, storage.ss_family == sa_family_t(AF_INET) else { return "?" }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var buf = [UInt8](repeating: 0, count: Int(INET_ADDRSTRLEN))
                var addr = sin.pointee.sin_addr
                let ok = buf.withUnsafeMutableBufferPointer {
                    inet_ntop(AF_INET, &addr, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self),
                              socklen_t($0.count)) != nil
                }
                guard ok else { return "?" }
                let text = String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
                return text + ":" + String(UInt16(bigEndian: sin.pointee.sin_port))
            }
        }
    }
}
