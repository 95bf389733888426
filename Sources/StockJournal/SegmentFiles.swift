/// One journal segment file: `journal-<20-digit first seq>.log`.
///
/// The name carries the sequence number of the first record written to the
/// file (raised, if need be, above the previous segment's: the writer never
/// names a segment below an earlier one), so listing the directory orders
/// segments by creation and the last one listed is the open one. It is not
/// a bound on the file's contents: records reach the journal slightly out of
/// order (each worker hands over its own buffer), so a segment may hold
/// numbers below its successor's first. Readers sort by seq; nothing relies
/// on segment names beyond their order.
public struct SegmentFile: Sendable, Equatable, Comparable, CustomStringConvertible {
    /// The file name.
    public let name: String
    /// The full path.
    public let path: String
    /// Sequence number of the file's first record (from the name).
    public let firstSeq: UInt64

    public static func < (a: SegmentFile, b: SegmentFile) -> Bool { a.firstSeq < b.firstSeq }

    public var description: String { path }
}

/// Naming and listing of segment files.
public enum SegmentFiles {
    static let prefix = "journal-"
    static let suffix = ".log"

    /// The name under which `JournalWriter` prepares its next segment
    /// (zero-filled and synced, then renamed to the segment's real name).
    /// Not a segment: readers ignore it; `Recovery.finish` removes leftovers.
    public static let preparedName = "journal-next.prep"
    static let preparedSuffix = ".prep"

    /// Whether `name` is a prepared (not yet used) segment file.
    public static func isPrepared(_ name: String) -> Bool {
        name.hasPrefix(prefix) && name.hasSuffix(preparedSuffix)
    }

    /// The file name of a segment whose first record is `firstSeq`.
    public static func name(firstSeq: UInt64) -> String { prefix + twentyDigits(firstSeq) + suffix }

    /// The segments in `directory`, oldest first. Other files are ignored.
    public static func list(in directory: String) throws(JournalError) -> [SegmentFile] {
        let dir = DataDirectory(directory)
        var out: [SegmentFile] = []
        for name in try dir.names() {
            if let seq = parseTwentyDigits(name, prefix: prefix, suffix: suffix) {
                out.append(SegmentFile(name: name, path: dir.file(name), firstSeq: seq))
            }
        }
        return out.sorted()
    }
}
