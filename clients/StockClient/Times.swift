#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import StockProtocol

// The wire carries times as Unix milliseconds and durations as milliseconds;
// these give them as `Date` and `Duration` next to the raw fields (which stay
// the exact values). FoundationEssentials where the toolchain has it: `Date`
// without the rest of Foundation.

extension StockClient {
    /// A `Date` from Unix milliseconds, as the server sends deadlines and event times.
    public static func date(unixMs: UInt64) -> Date {
        Date(timeIntervalSince1970: Double(unixMs) / 1000)
    }
}

extension Reservation {
    /// When the hold expires unless confirmed, released or extended (`expiresAtMs`).
    public var expiresAt: Date { StockClient.date(unixMs: expiresAtMs) }
}

extension BundleReservation {
    /// When the hold expires unless confirmed, released or extended (`expiresAtMs`).
    public var expiresAt: Date { StockClient.date(unixMs: expiresAtMs) }
}

extension FeedEvent {
    /// When the server recorded the event (`timeMs`).
    public var time: Date { StockClient.date(unixMs: timeMs) }
}

extension HelloReply {
    /// The longest hold the server grants (`maxTTLMs`).
    public var maxTTL: Duration { .milliseconds(Int64(maxTTLMs)) }
    /// The hold a RESERVE without a TTL gets (`defaultTTLMs`).
    public var defaultTTL: Duration { .milliseconds(Int64(defaultTTLMs)) }
}
