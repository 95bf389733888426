import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `host:port` of a stockd on this machine (IPv4 loopback only).
struct LoopbackAddress: Sendable, CustomStringConvertible {
    let host: String
    let port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init(_ text: String) throws {
        guard let colon = text.lastIndex(of: ":"), let p = Int(text[text.index(after: colon)...]),
              (1...65535).contains(p) else {
            throw ValidationError("--server '\(text)': expected host:port")
        }
        var h = String(text[..<colon])
        if h == "localhost" { h = "127.0.0.1" }
        var a = in_addr()
        guard inet_pton(AF_INET, h, &a) == 1, UInt32(bigEndian: a.s_addr) >> 24 == 127 else {
            throw ValidationError("--server '\(text)': hostile runs only against a loopback IPv4 address (127.x.x.x)")
        }
        host = h
        port = p
    }

    var description: String { "\(host):\(port)" }
}
