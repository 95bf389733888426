import Atomics
import CLibUV
import Glibc
import Logging
import StockJournal
import StockProtocol

/// The primary's replication sender (docs/replication.md §2): one thread
/// that streams the journal to every connected standby and reads their acks.
///
/// A REPL_HELLO is answered on a worker's connection like any request; once
/// that answer is out the worker hands the socket over here (`adopt`), as a
/// SUBSCRIBE goes to the event feed. Each standby gets its own `StandbyLink`,
/// which reads the segment files from the standby's next seq (`FeedReader`)
/// up to the journal's *written* end — so a round reaches the standbys while
/// the primary's own fdatasync of it runs — and sends the records in seq order.
///
/// Why poll(2) on one plain thread and not a libuv loop: a handful of
/// sockets (`--max-standbys`), each with one long-lived stream, and the
/// journal thread's wake-up is an eventfd write; the loop is short enough to
/// read at once. Sockets are non-blocking; nothing here waits on a standby.
final class ReplicationHub: @unchecked Sendable {
    struct Adoption {
        let fd: Int32
        let requestID: UInt32
        let node: String
        /// The first seq to send (REPL_HELLO's answer said it).
        let start: UInt64
        /// Bytes the standby sent after REPL_HELLO (its first acks).
        let leftover: [UInt8]
    }

    let journal: JournalPipeline
    let gate: CommitGate
    let config: ClusterConfig
    let epoch: UInt64
    let maxFrame: Int
    let logger: Logger
    /// A pipe: the journal thread writes a byte, poll(2) wakes (read end non-blocking, drained each turn).
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var adoptions: [Adoption] = []
    /// Node ids connected or on their way (under `lock`): one link per node.
    private var connected: Set<String> = []
    private var stopping = false
    private var thread = pthread_t()
    private var started = false
    private let hubThread = OwningThread()
    /// Hub thread only.
    private var links: [StandbyLink] = []
    /// What CLUSTER_STATUS shows per link (under `lock`, refreshed by the hub thread).
    private var status: [String: LinkStatus] = [:]

    // Statistics (hub thread writes, STATS reads): acks that moved a standby's durable end, and the
    // time from sending a round to the ack that covered it.
    let acks = ManagedAtomic<UInt64>(0)
    let ackNanosTotal = ManagedAtomic<UInt64>(0)
    let ackNanosMax = ManagedAtomic<UInt64>(0)
    let roundsSent = ManagedAtomic<UInt64>(0)
    let recordsSent = ManagedAtomic<UInt64>(0)

    func recordAck(latencyNs: UInt64) {
        acks.wrappingIncrement(ordering: .relaxed)
        ackNanosTotal.wrappingIncrement(by: latencyNs, ordering: .relaxed)
        if latencyNs > ackNanosMax.load(ordering: .relaxed) { ackNanosMax.store(latencyNs, ordering: .relaxed) }
    }

    struct LinkStatus {
        var acked: UInt64
        var lastAckNs: UInt64
        /// StandbyLink.oldestUnackedNs.
        var oldestUnackedNs: UInt64
    }

    /// poll(2) timeout: heartbeats and the silence check run at least this often (ms).
    static let pollMs: Int32 = 20

    init(journal: JournalPipeline, gate: CommitGate, config: ClusterConfig, epoch: UInt64, maxFrame: Int,
         logger: Logger) {
        precondition(epoch >= 1, "a primary's epoch is an etcd revision, from 1")
        self.journal = journal
        self.gate = gate
        self.config = config
        self.epoch = epoch
        self.maxFrame = maxFrame
        self.logger = logger
        var ends: [Int32] = [-1, -1]
        precondition(pipe(&ends) == 0, "pipe failed: errno \(errno)")
        for fd in ends {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = ends[0]
        wakeWrite = ends[1]
        pthread_mutex_init(lock, nil)
    }

    deinit {
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    func start() {
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let hub = Unmanaged<ReplicationHub>.fromOpaque(arg!).takeRetainedValue()
            hub.run()
            return nil
        }, context)
        precondition(rc == 0, "cannot start the replication thread")
        started = true
    }

    /// Closes every link and joins the thread.
    func stop() {
        guard started else { return }
        pthread_mutex_lock(lock)
        stopping = true
        pthread_mutex_unlock(lock)
        wake()
        pthread_join(thread, nil)
        started = false
    }

    // MARK: other threads

    /// The journal's written end moved (journal thread), or an adoption waits.
    func wake() {
        var one: UInt8 = 1
        _ = Glibc.write(wakeWrite, &one, 1)  // a full pipe (EAGAIN) already holds a wake-up
    }

    /// Whether `node` may open a link now: not connected already, below `--max-standbys`.
    /// Reserves its place (given back by `release` if the hand-off does not happen).
    func reserve(_ node: String) -> Bool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        guard !stopping, !connected.contains(node), connected.count < config.maxStandbys else { return false }
        connected.insert(node)
        return true
    }

    func release(_ node: String) {
        pthread_mutex_lock(lock)
        connected.remove(node)
        status[node] = nil
        pthread_mutex_unlock(lock)
    }

    /// Takes a standby's socket (its place reserved); from a worker thread.
    func adopt(_ a: Adoption) {
        pthread_mutex_lock(lock)
        let open = !stopping
        if open { adoptions.append(a) }
        pthread_mutex_unlock(lock)
        if open {
            wake()
        } else {
            Glibc.close(a.fd)
            release(a.node)
        }
    }

    /// The connected standbys, for CLUSTER_STATUS (any thread).
    func linkStatus() -> [(node: String, status: LinkStatus)] {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return status.map { ($0.key, $0.value) }.sorted { $0.node < $1.node }
    }

    // MARK: hub thread

    private func run() {
        hubThread.claim("the replication thread runs once")
        var fds: [pollfd] = []
        var drained = [UInt8](repeating: 0, count: 64)  // the wake pipe's bytes, read and dropped
        while true {
            pthread_mutex_lock(lock)
            let done = stopping
            let taken = adoptions
            adoptions.removeAll()
            pthread_mutex_unlock(lock)
            if done { break }
            for a in taken { open(a) }
            for link in links { link.pump() }
            sweep()
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            for link in links {
                fds.append(pollfd(fd: link.fd, events: Int16(POLLIN) | (link.hasOutput ? Int16(POLLOUT) : 0), revents: 0))
            }
            _ = poll(&fds, nfds_t(fds.count), Self.pollMs)
            while Glibc.read(wakeRead, &drained, drained.count) > 0 {}
            for (i, link) in links.enumerated() where fds[i + 1].revents != 0 { link.onReady() }
            sweep()
        }
        for link in links { link.close(reason: "the primary is stopping") }
        sweep()
        for a in adoptions {
            Glibc.close(a.fd)
            release(a.node)
        }
    }

    private func open(_ a: Adoption) {
        assert(hubThread.isCurrent, "link opened off the replication thread")
        let reader: FeedReader
        do { reader = try FeedReader(directory: journal.directory, from: a.start, raw: true) } catch {
            logger.error("replication: cannot read the journal for \(a.node): \(error)")
            Glibc.close(a.fd)
            release(a.node)
            return
        }
        let link = StandbyLink(hub: self, adoption: a, reader: reader)
        links.append(link)
        logger.info("replication: standby \(a.node) connected, streaming from seq \(a.start) (epoch \(epoch))")
        a.leftover.withUnsafeBytes { link.takeInput($0) }
    }

    /// Drops closed links and publishes every link's ack for CLUSTER_STATUS.
    private func sweep() {
        assert(hubThread.isCurrent, "links swept off the replication thread")
        let gone = links.filter(\.closed)
        links.removeAll(where: \.closed)
        pthread_mutex_lock(lock)
        for link in gone {
            connected.remove(link.node)
            status[link.node] = nil
        }
        for link in links {
            status[link.node] = LinkStatus(acked: link.acked, lastAckNs: link.lastHeardNs, oldestUnackedNs: link.oldestUnackedNs)
        }
        pthread_mutex_unlock(lock)
    }
}
