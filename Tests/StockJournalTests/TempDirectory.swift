import Foundation

/// A fresh directory under the system temp directory, removed by `remove()`
/// (tests call it in `defer`).
struct TempDirectory {
    let url: URL
    var path: String { url.path }

    init(_ label: String = "journal") {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("stockjournal-\(label)-\(UUID().uuidString)", isDirectory: true)
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(at: url) }

    /// The path of `name` inside.
    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Names of the entries, sorted.
    func names() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    func read(_ name: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: file(name)) ?? Data()) }

    func write(_ name: String, _ bytes: [UInt8]) {
        try! Data(bytes).write(to: url.appendingPathComponent(name))
    }
}
