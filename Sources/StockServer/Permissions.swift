import StockProtocol

/// Which role each request needs (PROTOCOL.md §4, the "role" column):
/// checkout services reserve, confirm, release, extend, read stock and
/// follow the feed; only operators (admin) change stock or read STATS.
/// HELLO, PING and opcodes that are not requests need nothing (an unknown
/// opcode is answered UNKNOWN_OPCODE whoever sends it).
enum Permissions {
    @inline(__always)
    static func minimum(_ opcode: UInt8) -> Role {
        switch opcode {
        case Opcode.reserve.rawValue, Opcode.reserveBundle.rawValue, Opcode.confirm.rawValue, Opcode.release.rawValue,
             Opcode.extend.rawValue, Opcode.stockGet.rawValue, Opcode.stockList.rawValue, Opcode.subscribe.rawValue,
             Opcode.credit.rawValue:
            return .checkout
        case Opcode.stockSet.rawValue, Opcode.stockAdjust.rawValue, Opcode.backupRelease.rawValue,
             Opcode.backupHold.rawValue, Opcode.stage.rawValue, Opcode.stats.rawValue:
            return .admin
        default:
            return .none
        }
    }
}
