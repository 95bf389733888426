import Foundation

/// A fresh private directory under the system temp directory, removed by
/// `remove()` (tests call it in `defer`). One type for every test target:
/// the journal tests name it by a label, the process tests by a prefix.
public struct TempDirectory: Sendable {
    public let url: URL
    /// The directory's path.
    public var path: String { url.path }

    /// `stockjournal-<label>-<uuid>`; creating it cannot fail in a test environment worth running.
    public init(_ label: String = "journal") {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("stockjournal-\(label)-\(UUID().uuidString)", isDirectory: true)
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// `<prefix>-<pid>-<uuid>`.
    public init(prefix: String) throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(getpid())-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func remove() { try? FileManager.default.removeItem(at: url) }

    /// The path of `name` inside.
    public func file(_ name: String) -> String { url.appendingPathComponent(name).path }
    /// The path of `name` inside (the process tests' spelling).
    public func path(_ name: String) -> String { file(name) }

    /// Names of the entries, sorted.
    public func names() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    public func read(_ name: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: file(name)) ?? Data()) }

    public func write(_ name: String, _ bytes: [UInt8]) {
        try! Data(bytes).write(to: url.appendingPathComponent(name))
    }

    /// Writes `text` to `name` inside; returns its path.
    public func write(_ name: String, _ text: String) throws -> String {
        let p = file(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: p))
        return p
    }
}
