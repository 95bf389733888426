/// Protocol-level limits (`protocol/PROTOCOL.md` §7).
///
/// These are the hard bounds of protocol version 1: a decoder rejects
/// anything beyond them whatever the server is configured to. A server may
/// announce tighter values in its HELLO answer (`max_frame`, `max_ttl_ms`).
public enum Limits {
    /// The protocol version this codec speaks.
    public static let protocolVersion: UInt16 = 1
    /// Bytes in a frame header, length prefix included.
    public static let headerSize = 12
    /// Bytes of the length prefix.
    public static let lengthPrefixSize = 4
    /// The smallest valid length field: the header after the prefix (opcode, flags, reserved, id),
    /// with an empty payload, `headerSize - lengthPrefixSize`. A smaller length is `lengthTooSmall`.
    /// A literal, so the decoder's inlined check needs no lazy initialisation (LimitsTests checks it).
    public static let minLengthField: UInt32 = 8
    /// Default maximum frame size in bytes (prefix included); servers may configure it.
    public static let defaultMaxFrame = 64 * 1024
    /// The largest maximum frame a server may configure (16 MiB).
    public static let maxFrameCeiling = 16 * 1024 * 1024
    /// The smallest maximum frame a server may configure (fits HELLO and its answer, and a STOCK_LIST page of one).
    public static let maxFrameFloor = 1024
    /// Maximum bytes in a SKU (UTF-8, no control characters, not empty).
    public static let maxSKULength = 64
    /// Maximum bytes of a customer id, an idempotency key, an order reference and a client name.
    public static let maxShortBytes = 64
    /// Maximum bytes of a HELLO credential.
    public static let maxCredentialLength = 255
    /// Maximum lines in one RESERVE_BUNDLE.
    public static let maxBundleLines = 16
    /// Maximum units in one reservation line or confirm.
    public static let maxQuantity: UInt32 = 1_000_000
    /// Maximum TTL any server accepts: one hour, in milliseconds.
    public static let maxTTLCeilingMs: UInt32 = 3_600_000
    /// Maximum entries in one STOCK_LIST page; 0 in a request asks for `defaultListPage`.
    public static let maxListPage: UInt16 = 1000
    /// Entries in a STOCK_LIST page when the request says 0.
    public static let defaultListPage: UInt16 = 100
    /// STOCK_LIST cursor meaning "no more entries".
    public static let listEnd: UInt32 = 0xFFFF_FFFF
    /// Maximum absolute value of a STOCK_ADJUST delta, and maximum on-hand of a SKU (2^40).
    public static let maxStock: UInt64 = 1 << 40
    /// Lines in one STAGE (the frame must hold them too: see PROTOCOL.md STAGE).
    public static let maxStageLines = 4096
    /// Most credit one SUBSCRIBE or CREDIT frame may grant (2^20 events).
    public static let maxFeedCredit: UInt32 = 1 << 20
    /// Most credit a feed connection may hold in total; grants beyond it saturate.
    public static let maxFeedCreditTotal: UInt64 = 1 << 24
    /// SUBSCRIBE `from`: the oldest offset the feed still holds.
    public static let feedFromOldest: UInt64 = 0
    /// SUBSCRIBE `from`: only events after the current end.
    public static let feedFromNow: UInt64 = .max
    /// Most nodes an ISR_SET or a CLUSTER_STATUS lists (PROTOCOL.md §10); `--max-standbys` is at most this.
    public static let maxStandbys = 16
    /// Longest node id, cluster name and primary address (`host:port`), bytes of text.
    public static let maxNodeName = 64
}
