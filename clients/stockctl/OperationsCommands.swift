import ArgumentParser

/// The live-show operations commands (issue 9), registered by `Stockctl`.
enum OperationsCommands {
    static let all: [any ParsableCommand.Type] = [StageCommand.self, BackupCommand.self, AuditCommand.self,
                                                  DrillCommand.self]
}
