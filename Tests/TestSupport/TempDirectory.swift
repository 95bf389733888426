import Foundation
import Glibc

/// A private temporary directory, removed by `remove()` (tests call it in `defer`).
///
/// Two spellings, one type: the process tests' `try TempDirectory(prefix: "auth")`
/// (`<prefix>-<pid>-<uuid>`, throws when the directory cannot be made) and the journal
/// tests' `TempDirectory("label")` (`stockjournal-<label>-<uuid>`, traps when it cannot).
public struct TempDirectory: Sendable {
    public let url: URL

    /// The directory itself.
    public var path: String { url.path }

    /// `<tmp>/<prefix>-<pid>-<uuid>`.
    public init(prefix: String = "stockd-test") throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// `<tmp>/stockjournal-<label>-<uuid>`.
    public init(_ label: String) {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("stockjournal-\(label)-\(UUID().uuidString)", isDirectory: true)
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func remove() { try? FileManager.default.removeItem(at: url) }

    /// The path of `name` inside.
    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// The path of `name` inside (the journal tests' spelling of `path(_:)`).
    public func file(_ name: String) -> String { path(name) }

    /// Writes `text` to `name` inside; returns its path.
    public func write(_ name: String, _ text: String) throws -> String {
        let p = path(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// Writes `bytes` to `name` inside.
    public func write(_ name: String, _ bytes: [UInt8]) {
        try! Data(bytes).write(to: url.appendingPathComponent(name))
    }

    /// Names of the entries, sorted.
    public func names() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    /// The bytes of `name` inside (empty when it cannot be read).
    public func read(_ name: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: file(name)) ?? Data()) }
}
