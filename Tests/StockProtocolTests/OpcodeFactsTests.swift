import Foundation
import StockProtocol
import Testing

/// The per-opcode facts table (`Opcode.facts`) against PROTOCOL.md §4: the spec's role column is
/// read from the document itself, so the table and the spec cannot drift apart.
@Suite struct OpcodeFactsTests {
    /// `opcode byte -> role name` from the §4 table (`| `0x10` | RESERVE | checkout | …`).
    static func specRoles() throws -> [UInt8: String] {
        let spec = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("protocol/PROTOCOL.md")
        let text = try String(contentsOf: spec, encoding: .utf8)
        var roles: [UInt8: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `0x") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 3, let byte = UInt8(cells[0].dropFirst(3).dropLast(), radix: 16) else { continue }
            roles[byte] = cells[2]
        }
        return roles
    }

    @Test("every opcode's role is the one PROTOCOL.md §4 gives it")
    func rolesMatchTheSpec() throws {
        let spec = try Self.specRoles()
        #expect(Set(spec.keys) == Set(Opcode.allCases.map(\.rawValue)), "the §4 table lists every opcode once")
        for op in Opcode.allCases {
            let expected: Role = switch spec[op.rawValue] {
            case "any", "—": .none
            case "viewer": .viewer
            case "checkout": .checkout
            case "admin": .admin
            default: .admin  // an unknown word in the spec fails below
            }
            #expect(["any", "—", "viewer", "checkout", "admin"].contains(spec[op.rawValue] ?? ""), "\(op.name)")
            #expect(op.facts.role == expected, "\(op.name): table \(op.facts.role.name), spec \(spec[op.rawValue] ?? "-")")
        }
    }

    @Test("exactly the ten state-changing requests need the journal; unassigned bytes need nothing")
    func changesStateAndUnknownBytes() {
        let changing = Opcode.allCases.filter(\.facts.changesState).map(\.name)
        #expect(Set(changing) == ["RESERVE", "RESERVE_BUNDLE", "CONFIRM", "RELEASE", "EXTEND", "STOCK_SET",
                                  "STOCK_ADJUST", "BACKUP_RELEASE", "BACKUP_HOLD", "STAGE"])
        // Whoever changes state is at least checkout: a viewer can never reach the journal.
        for op in Opcode.allCases where op.facts.changesState { #expect(op.facts.role >= .checkout, "\(op.name)") }
        for raw in 0...255 where Opcode(rawValue: UInt8(raw)) == nil {
            #expect(Opcode.facts(UInt8(raw)) == OpcodeFacts(role: .none, changesState: false), "byte \(raw)")
        }
        for op in Opcode.allCases { #expect(Opcode.facts(op.rawValue) == op.facts) }
    }
}
