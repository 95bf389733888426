#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Background work (a standby's shadow state, the primary's snapshots) runs
/// at a lower CPU priority than the threads a commit waits on: on a busy
/// machine the scheduler then gives a core to the journal, replication and
/// worker threads first, and the background thread takes what is left
/// (measured on the 2-core bench machine, where both stockd nodes and the
/// load generator share two cores). It still runs when nothing else wants
/// the CPU, and its queues are bounded, so it cannot fall behind for good.
public enum BackgroundPriority {
    /// The nice value background threads take (0 is the default, 19 the lowest).
    public static let nice: Int32 = 10

    /// Lowers the calling thread's priority to `nice` (Linux: the nice value
    /// is per thread, and PRIO_PROCESS with 0 names the calling thread).
    /// Best effort: a refusal leaves the thread as it was.
    public static func lowerCurrentThread() {
        #if os(Linux)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice)
        #endif
    }
}
