import StockProtocol

/// Which role each request needs (PROTOCOL.md §4, the "role" column). The
/// roles are ordered none < viewer < checkout < admin, each allowed what the
/// ones below it are:
/// - viewer (read-only monitors such as `stockctl watch`): read stock, read
///   STATS, follow the feed — nothing that changes stock or holds units;
/// - checkout services: also reserve, confirm, release, extend;
/// - operators (admin): also change stock (set, adjust, backup, stage).
/// HELLO, PING and opcodes that are not requests need nothing (an unknown
/// opcode is answered UNKNOWN_OPCODE whoever sends it). Compare the result with
/// the session's role by rank (`needed > role`), never by wire value: viewer's
/// wire value (3) is above admin's (2).
enum Permissions {
    @inline(__always)
    static func minimum(_ opcode: UInt8) -> Role {
        switch opcode {
        case Opcode.stockGet.rawValue, Opcode.stockList.rawValue, Opcode.stats.rawValue, Opcode.subscribe.rawValue,
             Opcode.credit.rawValue:
            return .viewer
        case Opcode.reserve.rawValue, Opcode.reserveBundle.rawValue, Opcode.confirm.rawValue, Opcode.release.rawValue,
             Opcode.extend.rawValue:
            return .checkout
        case Opcode.stockSet.rawValue, Opcode.stockAdjust.rawValue, Opcode.backupRelease.rawValue,
             Opcode.backupHold.rawValue, Opcode.stage.rawValue:
            return .admin
        default:
            return .none
        }
    }
}
