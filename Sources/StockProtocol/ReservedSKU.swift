/// SKU names that belong to stockd's own tooling, not to a show.
///
/// `stockctl drill` runs the order-to-dispatch path on a throwaway SKU named `DRILL-<unix ms>`.
/// Such a SKU is a real SKU to the server (it is staged, reserved, confirmed and journaled like
/// any other), but no operator screen or export counts it: `stock list`, `watch`, `report`,
/// the next show's suggestion and the per-SKU metrics leave it out unless asked
/// (`--include-drill`). PROTOCOL.md §4 (field rules) reserves the prefix.
public enum ReservedSKU {
    /// The prefix of every drill SKU, ASCII upper case.
    public static let drillPrefix = "DRILL-"
    /// The prefix as bytes, for callers that hold a SKU as bytes.
    public static let drillPrefixBytes: [UInt8] = Array(drillPrefix.utf8)

    /// Whether `sku` is a drill SKU (exact, case-sensitive prefix match).
    @inlinable
    public static func isDrill(_ sku: String) -> Bool {
        sku.utf8.starts(with: drillPrefixBytes)
    }

    /// Whether the SKU bytes are a drill SKU.
    @inlinable
    public static func isDrill<C: Collection>(bytes sku: C) -> Bool where C.Element == UInt8 {
        sku.starts(with: drillPrefixBytes)
    }
}
