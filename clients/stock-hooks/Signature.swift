import Crypto
import StockClient

/// `Stockd-Signature`: `v1=` + lower-case hex of
/// HMAC-SHA256(key: secret, message: "<Stockd-Timestamp>.<body>").
///
/// The timestamp is inside the signed message so a receiver that rejects
/// old timestamps (five minutes is usual) also rejects replayed requests.
struct Signer: Sendable {
    private let key: SymmetricKey

    init(secret: [UInt8]) { key = SymmetricKey(data: secret) }

    /// The header value for `body` sent at `timestamp` (Unix seconds).
    func signature(timestamp: UInt64, body: [UInt8]) -> String {
        var message = [UInt8]()
        message.reserveCapacity(body.count + 24)
        message.append(contentsOf: String(timestamp).utf8)
        message.append(UInt8(ascii: "."))
        message.append(contentsOf: body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: key)
        return "v1=" + Hex.encode(mac)
    }
}
