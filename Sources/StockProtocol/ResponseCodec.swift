/// Encodes and decodes response payloads (`protocol/PROTOCOL.md` §4, §5).
///
/// An OK payload is laid out by opcode; a failure payload by status
/// (the `ErrorDetail` table), whatever the opcode.
public enum ResponseCodec {
    /// Decodes a response frame. Throws `.malformed` if it does not follow the spec.
    public static func decode(header: FrameHeader, payload: UnsafeRawBufferPointer) throws(Status) -> Response {
        guard header.isWellFormedResponse else { throw .malformed }
        guard let status = Status(rawValue: header.status) else { throw .malformed }
        var r = ByteReader(payload)
        let body: ResponseBody
        if status != .ok {
            body = .failure(status, try decodeDetail(status, &r))
        } else {
            guard let op = Opcode(rawValue: header.opcode) else { throw .malformed }
            body = try decodeOK(op, &r)
        }
        try r.finish()
        return Response(requestID: header.requestID, opcode: header.opcode, body: body)
    }

    static func decodeDetail(_ status: Status, _ r: inout ByteReader) throws(Status) -> ErrorDetail {
        switch status {
        case .outOfStock: return .outOfStock(line: try r.readU8(), available: try r.readU64())
        case .unknownSKU: return .unknownSKU(line: try r.readU8())
        case .customerLimit: return .customerLimit(line: try r.readU8(), remaining: try r.readU64())
        case .stockChanged: return .stockChanged(current: try r.readU64())
        case .insufficientAvailable: return .insufficientAvailable(available: try r.readU64())
        case .ttlTooLong: return .ttlTooLong(maxTTLMs: try r.readU32())
        case .frameTooLarge: return .frameTooLarge(maxFrame: try r.readU32())
        case .unsupportedVersion: return .unsupportedVersion(min: try r.readU16(), max: try r.readU16())
        case .offsetCompacted: return .offsetCompacted(oldest: try r.readU64())
        case .insufficientBackup: return .insufficientBackup(backup: try r.readU64())
        case .notPrimary: return .notPrimary(epoch: try r.readU64(), primary: try readName(&r, min: 0))
        case .notEnoughReplicas: return .notEnoughReplicas(inSync: try r.readU8(), required: try r.readU8())
        case .staleEpoch: return .staleEpoch(epoch: try r.readU64())
        case .truncateTo: return .truncateTo(seq: try r.readU64())
        case .configMismatch: return .configMismatch(field: try readName(&r, min: 1))
        case .stageRefused:
            let n = Int(try r.readU16())
            guard n >= 1, n <= Limits.maxStageLines else { throw .malformed }
            var refused = [StageRefusal]()
            refused.reserveCapacity(n)
            for _ in 0..<n {
                let line = try r.readU16()
                let status = Status(rawValue: try r.readU8())
                // Only these two refuse a stage line (PROTOCOL.md STAGE).
                guard status == .insufficientAvailable || status == .atCapacity, let status else { throw .malformed }
                refused.append(StageRefusal(line: line, status: status, value: try r.readU64()))
            }
            return .stageRefused(refused)
        default: return .none
        }
    }

    static func decodeOK(_ op: Opcode, _ r: inout ByteReader) throws(Status) -> ResponseBody {
        switch op {
        case .hello:
            let version = try r.readU16()
            guard let role = Role(rawValue: try r.readU8()) else { throw .malformed }
            return .hello(HelloReply(
                version: version, role: role, maxFrame: try r.readU32(), maxTTLMs: try r.readU32(),
                defaultTTLMs: try r.readU32(), maxBundleLines: try r.readU16(), maxSKULength: try r.readU16(),
                maxInflight: try r.readU32(), serverName: try r.readArray8()))
        case .ping: return .pong
        case .reserve:
            return .reserved(Reservation(token: try r.readToken(), expiresAtMs: try r.readU64(),
                                         available: try r.readU64()))
        case .reserveBundle:
            return .bundleReserved(BundleReservation(token: try r.readToken(), expiresAtMs: try r.readU64()))
        case .confirm: return .confirmed(ConfirmReply(confirmed: try r.readU32(), returned: try r.readU32()))
        case .release: return .released(units: try r.readU32())
        case .extend: return .extended(expiresAtMs: try r.readU64())
        case .stockSet, .stockAdjust, .stockGet, .backupRelease, .backupHold: return .stock(try readInfo(&r))
        case .stage: return .staged(StageReply(lines: try r.readU16(), created: try r.readU16()))
        case .stockList:
            let next = try r.readU32()
            let n = Int(try r.readU16())
            var entries = [StockEntry]()
            entries.reserveCapacity(min(n, Int(Limits.maxListPage)))
            for _ in 0..<n {
                let sku = try r.readShort(tooLong: .malformed)
                entries.append(StockEntry(sku: sku, info: try readInfo(&r)))
            }
            return .stockPage(StockPage(nextCursor: next, entries: entries))
        case .stats:
            let n = Int(try r.readU16())
            var entries = [StatEntry]()
            for _ in 0..<n {
                let name = try r.readShort(tooLong: .malformed)
                entries.append(StatEntry(name: name, value: try r.readU64()))
            }
            return .stats(entries)
        case .subscribe: return .subscribed(FeedStart(start: try r.readU64(), end: try r.readU64()))
        case .event: return .event(try FeedEvent.decode(&r))
        case .credit, .replAck: throw .malformed  // never answered
        case .replHello:
            return .replStarted(ReplStart(epoch: try r.readU64(), start: try r.readU64(), committed: try r.readU64()))
        case .replRound:
            let epoch = try r.readU64(), end = try r.readU64(), count = try r.readU16()
            return .replRound(ReplRound(epoch: epoch, end: end, count: count,
                                        records: Array(try r.readBytes(r.remaining))))
        case .replSnapshot:
            let epoch = try r.readU64(), seq = try r.readU64(), offset = try r.readU64(), total = try r.readU64()
            return .replSnapshot(ReplSnapshotChunk(epoch: epoch, snapshotSeq: seq, offset: offset, total: total,
                                                   chunk: Array(try r.readBytes(r.remaining))))
        case .role:
            guard let role = NodeRole(rawValue: try r.readU8()) else { throw .malformed }
            return .role(RoleReply(role: role, epoch: try r.readU64(), lastSeq: try r.readU64()))
        case .fence, .isrSet: return .committed(try r.readU64())
        case .clusterStatus: return .clusterStatus(try readClusterStatus(&r))
        }
    }

    /// A node id, cluster name or address in an answer: `min`...64 bytes of text, else MALFORMED.
    static func readName(_ r: inout ByteReader, min: Int) throws(Status) -> ShortBytes {
        let b = try r.readBytes(Int(try r.readU8()))
        guard b.count >= min, b.count <= Limits.maxNodeName, ShortBytes.isValidText(b) else { throw .malformed }
        return ShortBytes(b)
    }

    static func readClusterStatus(_ r: inout ByteReader) throws(Status) -> ClusterStatus {
        guard let role = NodeRole(rawValue: try r.readU8()) else { throw .malformed }
        var status = ClusterStatus(role: role, epoch: try r.readU64(), durable: try r.readU64(),
                                   committed: try r.readU64(), node: try readName(&r, min: 0),
                                   primary: try readName(&r, min: 0))
        let count = Int(try r.readU8())
        guard count <= Limits.maxStandbys else { throw .malformed }
        for _ in 0..<count {
            let node = try readName(&r, min: 1)
            let acked = try r.readU64(), lag = try r.readU32(), flags = try r.readU8()
            guard flags & ~1 == 0 else { throw .malformed }
            status.standbys.append(StandbyStatus(node: node, acked: acked, lagMs: lag, inWaitSet: flags & 1 == 1))
        }
        return status
    }

    static func readInfo(_ r: inout ByteReader) throws(Status) -> StockInfo {
        StockInfo(onHand: try r.readU64(), available: try r.readU64(), reserved: try r.readU64(),
                  confirmed: try r.readU64(), lowStockThreshold: try r.readU32(), perCustomerLimit: try r.readU32(),
                  reservations: try r.readU64(), backup: try r.readU64())
    }

    // MARK: encoding

    /// Appends the frame of `response` to `w`.
    public static func encode(_ response: Response, into w: inout ByteWriter) {
        if case .failure(let status, let detail) = response.body {
            precondition(status != .ok && detail.fits(status), "failure detail does not match its status")
        }
        let start = w.beginFrame(opcode: response.opcode, requestID: response.requestID, response: true,
                                 status: response.status.rawValue)
        encodeBody(response.body, into: &w)
        w.endFrame(start)
    }

    /// Appends a failure frame without building a `Response` (server hot path).
    public static func encodeFailure(opcode: UInt8, requestID: UInt32, status: Status, detail: ErrorDetail,
                                     into w: inout ByteWriter) {
        precondition(status != .ok && detail.fits(status), "failure detail does not match its status")
        let start = w.beginFrame(opcode: opcode, requestID: requestID, response: true, status: status.rawValue)
        encodeDetail(detail, into: &w)
        w.endFrame(start)
    }

    /// Appends the payload of `body` (after a `beginFrame` whose status matches it).
    public static func encodeBody(_ body: ResponseBody, into w: inout ByteWriter) {
        switch body {
        case .hello(let h):
            w.writeU16(h.version)
            w.writeU8(h.role.rawValue)
            w.writeU32(h.maxFrame)
            w.writeU32(h.maxTTLMs)
            w.writeU32(h.defaultTTLMs)
            w.writeU16(h.maxBundleLines)
            w.writeU16(h.maxSKULength)
            w.writeU32(h.maxInflight)
            w.writeArray8(h.serverName)
        case .pong: break
        case .reserved(let r): encodeReserved(r, into: &w)
        case .bundleReserved(let b):
            w.writeToken(b.token)
            w.writeU64(b.expiresAtMs)
        case .confirmed(let c): encodeConfirmed(c, into: &w)
        case .released(let units): encodeReleased(units: units, into: &w)
        case .extended(let at): w.writeU64(at)
        case .stock(let info): writeInfo(info, into: &w)
        case .staged(let s):
            w.writeU16(s.lines)
            w.writeU16(s.created)
        case .stockPage(let page):
            w.writeU32(page.nextCursor)
            w.writeU16(UInt16(page.entries.count))
            for e in page.entries {
                w.writeShort(e.sku)
                writeInfo(e.info, into: &w)
            }
        case .stats(let entries):
            w.writeU16(UInt16(entries.count))
            for e in entries {
                w.writeShort(e.name)
                w.writeU64(e.value)
            }
        case .subscribed(let f):
            w.writeU64(f.start)
            w.writeU64(f.end)
        case .event(let e):
            e.encodePayload(into: &w)
        case .replStarted(let s):
            w.writeU64(s.epoch)
            w.writeU64(s.start)
            w.writeU64(s.committed)
        case .replRound(let round):
            encodeRoundHeader(epoch: round.epoch, end: round.end, count: round.count, into: &w)
            round.records.withUnsafeBytes { w.writeBytes($0) }
        case .replSnapshot(let c):
            w.writeU64(c.epoch)
            w.writeU64(c.snapshotSeq)
            w.writeU64(c.offset)
            w.writeU64(c.total)
            c.chunk.withUnsafeBytes { w.writeBytes($0) }
        case .role(let r):
            w.writeU8(r.role.rawValue)
            w.writeU64(r.epoch)
            w.writeU64(r.lastSeq)
        case .committed(let seq):
            w.writeU64(seq)
        case .clusterStatus(let s):
            encodeClusterStatus(s, into: &w)
        case .failure(_, let detail):
            encodeDetail(detail, into: &w)
        }
    }

    /// A REPL_ROUND's fields before its records (the primary's sender writes the records after it
    /// straight from the journal round's buffer).
    @inlinable
    public static func encodeRoundHeader(epoch: UInt64, end: UInt64, count: UInt16, into w: inout ByteWriter) {
        w.writeU64(epoch)
        w.writeU64(end)
        w.writeU16(count)
    }

    static func encodeClusterStatus(_ s: ClusterStatus, into w: inout ByteWriter) {
        precondition(s.standbys.count <= Limits.maxStandbys, "CLUSTER_STATUS lists at most 16 standbys")
        w.writeU8(s.role.rawValue)
        w.writeU64(s.epoch)
        w.writeU64(s.durable)
        w.writeU64(s.committed)
        w.writeShort(s.node)
        w.writeShort(s.primary)
        w.writeU8(UInt8(s.standbys.count))
        for standby in s.standbys {
            w.writeShort(standby.node)
            w.writeU64(standby.acked)
            w.writeU32(standby.lagMs)
            w.writeU8(standby.inWaitSet ? 1 : 0)
        }
    }

    // The checkout answers, one function each: the general path above and
    // the server's fast paths (RESERVE, CONFIRM, RELEASE without the
    // `Response` enum) encode through the same code. Inlinable so a fast
    // path compiles to the stores themselves.

    /// RESERVE's OK body: token, expiry (wall ms), available (32 bytes).
    @inlinable
    public static func encodeReserved(_ r: Reservation, into w: inout ByteWriter) {
        w.writeToken(r.token)
        w.writeU64(r.expiresAtMs)
        w.writeU64(r.available)
    }

    /// CONFIRM's OK body: units confirmed, units returned (8 bytes).
    @inlinable
    public static func encodeConfirmed(_ c: ConfirmReply, into w: inout ByteWriter) {
        w.writeU32(c.confirmed)
        w.writeU32(c.returned)
    }

    /// RELEASE's OK body: units returned (4 bytes).
    @inlinable
    public static func encodeReleased(units: UInt32, into w: inout ByteWriter) {
        w.writeU32(units)
    }

    /// Appends a StockInfo's 56 bytes.
    public static func writeInfo(_ i: StockInfo, into w: inout ByteWriter) {
        w.writeU64(i.onHand)
        w.writeU64(i.available)
        w.writeU64(i.reserved)
        w.writeU64(i.confirmed)
        w.writeU32(i.lowStockThreshold)
        w.writeU32(i.perCustomerLimit)
        w.writeU64(i.reservations)
        w.writeU64(i.backup)
    }

    static func encodeDetail(_ d: ErrorDetail, into w: inout ByteWriter) {
        switch d {
        case .none: break
        case .outOfStock(let line, let available):
            w.writeU8(line)
            w.writeU64(available)
        case .unknownSKU(let line): w.writeU8(line)
        case .customerLimit(let line, let remaining):
            w.writeU8(line)
            w.writeU64(remaining)
        case .stockChanged(let current): w.writeU64(current)
        case .insufficientAvailable(let available): w.writeU64(available)
        case .ttlTooLong(let max): w.writeU32(max)
        case .frameTooLarge(let max): w.writeU32(max)
        case .offsetCompacted(let oldest): w.writeU64(oldest)
        case .insufficientBackup(let backup): w.writeU64(backup)
        case .stageRefused(let refused):
            precondition(!refused.isEmpty && refused.count <= Limits.maxStageLines, "STAGE_REFUSED lists 1...4096 lines")
            w.writeU16(UInt16(refused.count))
            for r in refused {
                w.writeU16(r.line)
                w.writeU8(r.status.rawValue)
                w.writeU64(r.value)
            }
        case .unsupportedVersion(let lo, let hi):
            w.writeU16(lo)
            w.writeU16(hi)
        case .notPrimary(let epoch, let primary):
            w.writeU64(epoch)
            w.writeShort(primary)
        case .notEnoughReplicas(let inSync, let required):
            w.writeU8(inSync)
            w.writeU8(required)
        case .staleEpoch(let epoch): w.writeU64(epoch)
        case .truncateTo(let seq): w.writeU64(seq)
        case .configMismatch(let field): w.writeShort(field)
        }
    }
}
