import Glibc
import StockProtocol

/// One TCP connection to stockd, shared by any number of concurrent calls.
///
/// Calls write their request frame (under `writeLock`, so frames never
/// interleave) and park on a continuation registered under `stateLock` by
/// request id. A dedicated reader thread decodes answers and resumes the
/// matching continuation; it also fails calls whose deadline passed (it
/// wakes at least every 50 ms) and, when the connection drops, fails every
/// call still waiting with `connectionLost`. Two locks, not one: a sender
/// blocked by server backpressure must never stop the reader from taking
/// the answers that relieve it.
final class ClientConnection: @unchecked Sendable {
    private struct Waiter {
        let continuation: CheckedContinuation<Response, any Error>
        let deadlineNs: UInt64
    }

    private let fd: Int32
    private let stateLock = Mutex()
    private let writeLock = Mutex()
    private var waiters: [UInt32: Waiter] = [:]
    private var nextID: UInt32 = 1
    private var alive = true
    private var closedByUser = false
    /// An unsolicited failure (BUSY, SHUTTING_DOWN) announcing the close.
    private var farewell: Status?
    private var encoder = ByteWriter(capacity: 4096)
    private var thread = pthread_t()

    private init(fd: Int32) { self.fd = fd }

    deinit { Glibc.close(fd) }

    /// Connects (bounded by `timeoutMs`) and starts the reader thread.
    static func open(host: String, port: Int, timeoutMs: Int) throws(StockError) -> ClientConnection {
        let fd = try Socket.connect(host: host, port: port, timeoutMs: timeoutMs)
        let c = ClientConnection(fd: fd)
        let context = Unmanaged.passRetained(c).toOpaque()
        let rc = pthread_create(&c.thread, nil, { arg in
            let conn = Unmanaged<ClientConnection>.fromOpaque(arg!).takeRetainedValue()
            conn.readLoop()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<ClientConnection>.fromOpaque(context).release()
            throw .unreachable("cannot start the reader thread")
        }
        pthread_detach(c.thread)
        return c
    }

    var isAlive: Bool { stateLock.with { alive } }

    /// Sends `request` and waits for its answer (or `timeoutNs`).
    func call(_ request: Request, timeoutNs: UInt64) async throws(StockError) -> Response {
        do {
            return try await withCheckedThrowingContinuation { (k: CheckedContinuation<Response, any Error>) in
                let deadline = Socket.nowNs() + timeoutNs
                let id: UInt32? = stateLock.with {
                    guard alive else { return nil }
                    let id = nextID
                    nextID = nextID == UInt32.max ? 1 : nextID + 1
                    waiters[id] = Waiter(continuation: k, deadlineNs: deadline)
                    return id
                }
                guard let id else {
                    k.resume(throwing: closedByUserError())
                    return
                }
                let sent = writeLock.with { () -> Bool in
                    encoder.removeAll()
                    RequestCodec.encode(request, requestID: id, into: &encoder)
                    return encoder.withUnsafeBytes { Socket.sendAll(fd, $0) }
                }
                if !sent { drop() }
            }
        } catch let e as StockError {
            throw e
        } catch {
            throw .protocolError("\(error)")
        }
    }

    private func closedByUserError() -> StockError {
        stateLock.with { closedByUser ? StockError.closed : .connectionLost }
    }

    /// Closes the connection; waiting calls fail with `closed`.
    func close() {
        stateLock.with { closedByUser = true }
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    // MARK: reader thread

    private func readLoop() {
        var decoder = FrameDecoder(maxFrame: Limits.maxFrameCeiling)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        Socket.setReceiveTimeout(fd, ms: 50)
        while true {
            let n = recv(fd, buffer, 64 * 1024, 0)
            if n > 0 {
                decoder.feed(UnsafeRawBufferPointer(start: buffer, count: n))
                guard deliver(&decoder) else { break }
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                expireWaiters()
            } else {
                break  // EOF or error
            }
        }
        drop()
    }

    /// Hands every complete answer to its caller; false on a framing error.
    private func deliver(_ decoder: inout FrameDecoder) -> Bool {
        while true {
            let next: Result<Response, StockError>?
            do {
                next = try decoder.next { header, payload -> Result<Response, StockError> in
                    do throws(Status) { return .success(try ResponseCodec.decode(header: header, payload: payload)) } catch {
                        return .failure(.protocolError("undecodable \(error.name) answer"))
                    }
                }
            } catch {
                return false
            }
            guard let next else { return true }
            guard case .success(let response) = next else { return false }
            let waiter = stateLock.with { waiters.removeValue(forKey: response.requestID) }
            if let waiter {
                waiter.continuation.resume(returning: response)
            } else if response.requestID == 0, case .failure(let status, _) = response.body {
                stateLock.with { farewell = status }  // BUSY / SHUTTING_DOWN before the close
            }
            // Otherwise: the answer to a call that already timed out.
        }
    }

    private func expireWaiters() {
        let now = Socket.nowNs()
        let expired: [Waiter] = stateLock.with {
            let due = waiters.filter { $0.value.deadlineNs <= now }
            for id in due.keys { waiters.removeValue(forKey: id) }
            return Array(due.values)
        }
        for w in expired { w.continuation.resume(throwing: StockError.timeout) }
    }

    /// Marks the connection dead and fails every waiting call.
    private func drop() {
        let (orphans, error): ([Waiter], StockError) = stateLock.with {
            alive = false
            let all = Array(waiters.values)
            waiters.removeAll()
            let e: StockError = closedByUser ? .closed : farewell.map { .rejected($0) } ?? .connectionLost
            return (all, e)
        }
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        for w in orphans { w.continuation.resume(throwing: error) }
    }
}

/// A pthread mutex (visible to ThreadSanitizer, unlike a futex-based lock).
final class Mutex: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        m = .allocate(capacity: 1)
        pthread_mutex_init(m, nil)
    }

    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }

    func with<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return try body()
    }
}
