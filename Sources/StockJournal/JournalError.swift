#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything the journal layer can fail with. The server treats any of
/// them from the writer as "stop accepting changes" (read-only); recovery
/// and verification report them to the operator.
public enum JournalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A system call failed: `operation` on `path` with `errno`.
    case io(operation: String, path: String, errno: Int32)
    /// Bytes at `offset` of `path` are not a valid record (and not a torn tail).
    case corrupt(path: String, offset: Int64, reason: String)
    /// Two records carry the same sequence number.
    case duplicateSeq(seq: UInt64, path: String, offset: Int64)
    /// A record does not apply to the state (unknown SKU or token, broken invariant).
    case replay(seq: UInt64, reason: String)
    /// The state breaks an invariant outside any particular record.
    case invariant(String)
    /// A snapshot file is unreadable or fails its checks.
    case badSnapshot(path: String, reason: String)
    /// The newest snapshot(s) are bad and the journal no longer holds the
    /// records between the newest valid one (`usableSeq`, 0: none) and
    /// `badSeq`: recovering would silently lose acknowledged changes.
    case snapshotGap(badSnapshot: String, badSeq: UInt64, usableSeq: UInt64, journalReached: UInt64)
    /// The data directory is not usable (not a directory, …).
    case badDirectory(path: String, reason: String)
    /// The writer failed earlier and refuses further use (`cause` is the first failure).
    indirect case writerFailed(cause: JournalError)

    /// Whether this is (or was caused by) a full disk or an exhausted quota.
    public var isNoSpace: Bool {
        switch self {
        case .io(_, _, let e): e == ENOSPC || e == EDQUOT
        case .writerFailed(let cause): cause.isNoSpace
        default: false
        }
    }

    /// The errno of an I/O failure, if this is one.
    public var errno: Int32? {
        switch self {
        case .io(_, _, let e): e
        case .writerFailed(let cause): cause.errno
        default: nil
        }
    }

    public var description: String {
        switch self {
        case let .io(op, path, e): "\(op) \(path): \(String(cString: strerror(e))) (errno \(e))"
        case let .corrupt(path, offset, reason): "\(path) at byte \(offset): corrupt record: \(reason)"
        case let .duplicateSeq(seq, path, offset): "\(path) at byte \(offset): duplicate seq \(seq)"
        case let .replay(seq, reason): "record seq \(seq): \(reason)"
        case let .invariant(reason): "invariant broken: \(reason)"
        case let .badSnapshot(path, reason): "\(path): bad snapshot: \(reason)"
        case let .snapshotGap(bad, badSeq, usable, reached):
            "\(bad) (seq \(badSeq)) is bad and the journal from the newest valid snapshot (seq \(usable)) "
                + "reaches only seq \(reached): acknowledged changes would be lost"
        case let .badDirectory(path, reason): "\(path): \(reason)"
        case let .writerFailed(cause): "journal writer stopped after: \(cause)"
        }
    }
}
