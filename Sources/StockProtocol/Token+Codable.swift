/// A token encodes as its text form, the 32 lower-case hex digits that
/// `description` prints and `init?(hex:)` reads — the form a checkout
/// service stores in its cart or order row, and the one stockctl prints.
/// Standard library only (the single-value container), like the rest of StockProtocol.
extension Token: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let token = Token(hex: text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "a token is 32 hex digits, got \(text.utf8.count) characters")
        }
        self = token
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
