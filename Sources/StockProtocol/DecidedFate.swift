/// How a token's fate was decided. The journal remembers decided tokens
/// with it, and a restored core puts them back with it; the raw values are
/// the snapshot's (and the core's state-word fate codes).
public enum DecidedFate: UInt8, Sendable, Equatable {
    case confirmed = 2
    case released = 3
    case expired = 4
}
