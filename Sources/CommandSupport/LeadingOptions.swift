/// Global options written before the subcommand (`stockctl --json reserve X 1`).
///
/// swift-argument-parser gives an `@OptionGroup` to the command that declares it, so options every
/// subcommand declares are unknown to the root, and `stockctl --json reserve X 1` would fail with
/// "Unknown option". This moves the recognised ones (with their values, `--opt value` or
/// `--opt=value`) that come before the first other argument to the end of the arguments, before any
/// `--`, where the subcommand's own parser reads them. Anything else is left exactly where it is, so
/// `--help`, `--version` and unknown options before the subcommand behave as before.
public struct LeadingOptions: Sendable {
    /// Options that take a value (`--server`).
    public let valued: Set<String>
    /// Options that take none (`--json`).
    public let flags: Set<String>

    public init(valued: Set<String>, flags: Set<String>) {
        self.valued = valued
        self.flags = flags
    }

    /// `arguments` (without the program name) with the leading global options moved after the rest.
    public func hoisted(_ arguments: [String]) -> [String] {
        var moved: [String] = []
        var index = arguments.startIndex
        scan: while index < arguments.endIndex {
            let argument = arguments[index]
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            switch true {
            case flags.contains(argument):
                moved.append(argument)
                index += 1
            case valued.contains(name) && argument.contains("="):
                moved.append(argument)
                index += 1
            case valued.contains(argument) && index + 1 < arguments.endIndex:
                moved += [argument, arguments[index + 1]]
                index += 2
            default:
                break scan
            }
        }
        guard !moved.isEmpty else { return arguments }
        var rest = Array(arguments[index...])
        let end = rest.firstIndex(of: "--") ?? rest.endIndex
        rest.insert(contentsOf: moved, at: end)
        return rest
    }
}
