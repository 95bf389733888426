/// Encodes and decodes request payloads (`protocol/PROTOCOL.md` §4).
///
/// Decoding checks structure first — every field present, no trailing
/// bytes, else `.malformed` — then values in field order, so one input has
/// exactly one defined error whatever else is wrong with it.
public enum RequestCodec {
    /// Decodes a request frame. Throws the status the server answers with.
    public static func decode(header: FrameHeader, payload: UnsafeRawBufferPointer) throws(Status) -> Request {
        guard header.isWellFormedRequest else { throw .malformed }
        guard let op = Opcode(rawValue: header.opcode) else { throw .unknownOpcode }
        var r = ByteReader(payload)
        switch op {
        case .hello: return .hello(try decodeHello(&r))
        case .ping: try r.finish(); return .ping
        case .reserve: return .reserve(try decodeReserve(&r))
        case .reserveBundle: return .reserveBundle(try decodeBundle(&r))
        case .confirm: return .confirm(try decodeConfirm(&r))
        case .release:
            let t = try r.readToken()
            try r.finish()
            return .release(t)
        case .extend:
            let t = try r.readToken()
            let ttl = try r.readU32()
            try r.finish()
            try checkTTL(ttl)
            return .extend(Extend(token: t, ttlMs: ttl))
        case .stockSet: return .stockSet(try decodeStockSet(&r))
        case .stockAdjust: return .stockAdjust(try decodeStockAdjust(&r))
        case .stockGet:
            let sku = try r.readBytes(Int(try r.readU8()))
            try r.finish()
            return .stockGet(try sku8(sku))
        case .stockList:
            let cursor = try r.readU32()
            let limit = try r.readU16()
            try r.finish()
            guard limit <= Limits.maxListPage else { throw .invalidArgument }
            return .stockList(StockList(cursor: cursor, limit: limit))
        case .backupRelease, .backupHold:
            let quantity = try r.readU64()
            let sku = try r.readBytes(Int(try r.readU8()))
            try r.finish()
            // A release of 0 means "all"; holding 0 units means nothing.
            guard quantity <= Limits.maxStock, op == .backupRelease || quantity > 0 else { throw .quantityInvalid }
            let move = BackupMove(sku: try sku8(sku), quantity: quantity)
            return op == .backupRelease ? .backupRelease(move) : .backupHold(move)
        case .stage: return .stage(try decodeStage(&r))
        case .stats: try r.finish(); return .stats
        case .subscribe: return .subscribe(try decodeSubscribe(&r))
        case .credit:
            let n = try r.readU32()
            try r.finish()
            guard n >= 1, n <= Limits.maxFeedCredit else { throw .invalidArgument }
            return .credit(n)
        case .replHello: return .replHello(try decodeReplHello(&r))
        case .replAck:
            let ack = ReplAck(epoch: try r.readU64(), durable: try r.readU64())
            try r.finish()
            guard ack.epoch >= 1 else { throw .invalidArgument }  // only a primary of some epoch is acked
            return .replAck(ack)
        case .role: return .role(try decodeRole(&r))
        case .fence:
            let until = try r.readU64()
            try r.finish()
            return .fence(untilNs: until)
        case .isrSet: return .isrSet(try decodeISRSet(&r))
        case .clusterStatus: try r.finish(); return .clusterStatus
        case .event, .replRound, .replSnapshot: throw .unknownOpcode  // server to client only
        }
    }

    // MARK: per-opcode entry points for servers (no `Request` enum on the hot path)

    /// Decodes a RESERVE payload (the header was checked by the caller).
    @inlinable
    public static func decodeReserve(payload: UnsafeRawBufferPointer) throws(Status) -> Reserve {
        var r = ByteReader(payload)
        return try decodeReserve(&r)
    }

    /// Decodes a RELEASE payload.
    @inlinable
    public static func decodeRelease(payload: UnsafeRawBufferPointer) throws(Status) -> Token {
        var r = ByteReader(payload)
        let t = try r.readToken()
        try r.finish()
        return t
    }

    /// Decodes a CONFIRM payload.
    @inlinable
    public static func decodeConfirm(payload: UnsafeRawBufferPointer) throws(Status) -> Confirm {
        var r = ByteReader(payload)
        return try decodeConfirm(&r)
    }

    // MARK: field checks (after structure)

    @usableFromInline
    static func sku8(_ b: UnsafeRawBufferPointer) throws(Status) -> SKU {
        guard b.count > 0, b.count <= Limits.maxSKULength, ShortBytes.isValidText(b) else { throw .invalidSKU }
        return SKU(b)
    }

    @usableFromInline
    static func short8(_ b: UnsafeRawBufferPointer) throws(Status) -> ShortBytes {
        guard b.count <= Limits.maxShortBytes else { throw .invalidArgument }
        return ShortBytes(b)
    }

    @usableFromInline
    static func text8(_ b: UnsafeRawBufferPointer) throws(Status) -> ShortBytes {
        guard b.count <= Limits.maxShortBytes, ShortBytes.isValidText(b) else { throw .invalidArgument }
        return ShortBytes(b)
    }

    @usableFromInline
    static func checkQuantity(_ q: UInt32) throws(Status) {
        guard q > 0, q <= Limits.maxQuantity else { throw .quantityInvalid }
    }

    @usableFromInline
    static func checkTTL(_ ttl: UInt32) throws(Status) {
        guard ttl <= Limits.maxTTLCeilingMs else { throw .ttlTooLong }
    }

    static func checkStock(_ v: UInt64) throws(Status) {
        guard v <= Limits.maxStock else { throw .quantityInvalid }
    }

    // MARK: per-opcode decoders

    /// A node id or cluster name: 1...64 bytes of text (the SKU's rules; a bad one is
    /// INVALID_ARGUMENT, not INVALID_SKU: it names no SKU).
    static func nodeName(_ b: UnsafeRawBufferPointer) throws(Status) -> ShortBytes {
        guard b.count > 0, b.count <= Limits.maxNodeName, ShortBytes.isValidText(b) else { throw .invalidArgument }
        return ShortBytes(b)
    }

    static func decodeReplHello(_ r: inout ByteReader) throws(Status) -> ReplHello {
        let fingerprint = try r.readU64()
        let highest = try r.readU64()
        let lastEpoch = try r.readU64()
        let lastSeq = try r.readU64()
        let node = try r.readBytes(Int(try r.readU8()))
        let cluster = try r.readBytes(Int(try r.readU8()))
        try r.finish()
        return ReplHello(fingerprint: fingerprint, highestEpoch: highest, lastEpoch: lastEpoch, lastSeq: lastSeq,
                         node: try nodeName(node), cluster: try nodeName(cluster))
    }

    static func decodeRole(_ r: inout ByteReader) throws(Status) -> RoleChange {
        let raw = try r.readU8()
        let epoch = try r.readU64()
        let primary = try r.readBytes(Int(try r.readU8()))
        try r.finish()
        guard let role = NodeRole(rawValue: raw), role != .standalone, epoch >= 1 else { throw .invalidArgument }
        let address = try text8(primary)
        // A primary names no primary; a standby must name the one it follows.
        guard (role == .primary) == address.isEmpty else { throw .invalidArgument }
        return RoleChange(role: role, epoch: epoch, primary: address)
    }

    static func decodeISRSet(_ r: inout ByteReader) throws(Status) -> ISRSet {
        let epoch = try r.readU64()
        let count = Int(try r.readU8())
        let start = r.offset
        for _ in 0..<count { _ = try r.readBytes(Int(try r.readU8())) }  // structure first
        try r.finish()
        guard epoch >= 1, count <= Limits.maxStandbys else { throw .invalidArgument }
        r.rewind(to: start)
        var nodes = [ShortBytes]()
        nodes.reserveCapacity(count)
        for _ in 0..<count {
            let node = try nodeName(try r.readBytes(Int(try r.readU8())))
            guard !nodes.contains(node) else { throw .invalidArgument }
            nodes.append(node)
        }
        return ISRSet(epoch: epoch, nodes: nodes)
    }

    static func decodeHello(_ r: inout ByteReader) throws(Status) -> Hello {
        let version = try r.readU16()
        let name = try r.readBytes(Int(try r.readU8()))
        let credential = try r.readBytes(Int(try r.readU8()))
        try r.finish()
        guard name.count <= Limits.maxShortBytes, ShortBytes.isValidText(name) else { throw .invalidArgument }
        return Hello(version: version, clientName: Array(name), credential: Array(credential))
    }

    @usableFromInline
    static func decodeReserve(_ r: inout ByteReader) throws(Status) -> Reserve {
        let quantity = try r.readU32()
        let ttl = try r.readU32()
        let sku = try r.readBytes(Int(try r.readU8()))
        let customer = try r.readBytes(Int(try r.readU8()))
        let key = try r.readBytes(Int(try r.readU8()))
        try r.finish()
        try checkQuantity(quantity)
        try checkTTL(ttl)
        return Reserve(sku: try sku8(sku), quantity: quantity, ttlMs: ttl,
                       customer: try short8(customer), idempotencyKey: try short8(key))
    }

    static func decodeBundle(_ r: inout ByteReader) throws(Status) -> ReserveBundle {
        let ttl = try r.readU32()
        let customer = try r.readBytes(Int(try r.readU8()))
        let key = try r.readBytes(Int(try r.readU8()))
        let n = Int(try r.readU8())
        // Structure first: walk every line before judging any value.
        let linesStart = r.offset
        for _ in 0..<n {
            _ = try r.readU32()
            _ = try r.readBytes(Int(try r.readU8()))
        }
        try r.finish()
        try checkTTL(ttl)
        let customerBytes = try short8(customer)
        let keyBytes = try short8(key)
        guard n >= 1, n <= Limits.maxBundleLines else { throw .invalidArgument }
        var lines = [BundleLine]()
        lines.reserveCapacity(n)
        var again = r
        again.rewind(to: linesStart)
        for _ in 0..<n {
            let q = try again.readU32()
            let sku = try again.readBytes(Int(try again.readU8()))
            try checkQuantity(q)
            let s = try sku8(sku)
            // A SKU may appear once: two lines on one SKU would make a partial
            // failure ambiguous and double-count the customer limit.
            guard !lines.contains(where: { $0.sku == s }) else { throw .invalidArgument }
            lines.append(BundleLine(sku: s, quantity: q))
        }
        return ReserveBundle(lines: lines, ttlMs: ttl, customer: customerBytes, idempotencyKey: keyBytes)
    }

    @usableFromInline
    static func decodeConfirm(_ r: inout ByteReader) throws(Status) -> Confirm {
        let token = try r.readToken()
        let quantity = try r.readU32()
        let order = try r.readBytes(Int(try r.readU8()))
        try r.finish()
        guard quantity <= Limits.maxQuantity else { throw .quantityInvalid }
        return Confirm(token: token, quantity: quantity, orderReference: try text8(order))
    }

    static func decodeStockSet(_ r: inout ByteReader) throws(Status) -> StockSet {
        let flags = try r.readU8()
        let onHand = try r.readU64()
        let expected = try r.readU64()
        let threshold = try r.readU32()
        let limit = try r.readU32()
        let sku = try r.readBytes(Int(try r.readU8()))
        try r.finish()
        // Values in layout order. A field whose flag is clear must be zero:
        // one value, one encoding.
        guard flags & ~StockSet.knownFlags == 0 else { throw .invalidArgument }
        try checkStock(onHand)
        guard flags & StockSet.flagExpected != 0 || expected == 0 else { throw .invalidArgument }
        try checkStock(expected)
        guard flags & StockSet.flagThreshold != 0 || threshold == 0,
              flags & StockSet.flagLimit != 0 || limit == 0 else { throw .invalidArgument }
        return StockSet(
            sku: try sku8(sku), onHand: onHand,
            expectedOnHand: flags & StockSet.flagExpected != 0 ? expected : nil,
            lowStockThreshold: flags & StockSet.flagThreshold != 0 ? threshold : nil,
            perCustomerLimit: flags & StockSet.flagLimit != 0 ? limit : nil)
    }

    static func decodeStockAdjust(_ r: inout ByteReader) throws(Status) -> StockAdjust {
        let delta = try r.readI64()
        let reasonByte = try r.readU8()
        let sku = try r.readBytes(Int(try r.readU8()))
        try r.finish()
        guard delta != 0, delta.magnitude <= Limits.maxStock else { throw .quantityInvalid }
        guard let reason = AdjustReason(rawValue: reasonByte) else { throw .invalidArgument }
        return StockAdjust(sku: try sku8(sku), delta: delta, reason: reason)
    }

    static func decodeStage(_ r: inout ByteReader) throws(Status) -> Stage {
        let n = Int(try r.readU16())
        // Structure first: walk every line before judging any value.
        let linesStart = r.offset
        for _ in 0..<n {
            _ = try r.readBytes(24)
            _ = try r.readBytes(Int(try r.readU8()))
        }
        try r.finish()
        guard n >= 1, n <= Limits.maxStageLines else { throw .invalidArgument }
        var again = r
        again.rewind(to: linesStart)
        var lines = [StageLine]()
        lines.reserveCapacity(n)
        var seen = Set<SKU>(minimumCapacity: n)
        for _ in 0..<n {
            let onHand = try again.readU64()
            let backup = try again.readU64()
            let threshold = try again.readU32()
            let limit = try again.readU32()
            let skuBytes = try again.readBytes(Int(try again.readU8()))
            try checkStock(onHand)
            guard backup <= onHand else { throw .quantityInvalid }
            let sku = try sku8(skuBytes)
            guard seen.insert(sku).inserted else { throw .invalidArgument }  // one line per SKU
            lines.append(StageLine(sku: sku, onHand: onHand, backup: backup, lowStockThreshold: threshold,
                                   perCustomerLimit: limit))
        }
        return Stage(lines: lines)
    }

    static func decodeSubscribe(_ r: inout ByteReader) throws(Status) -> Subscribe {
        let from = try r.readU64()
        let credit = try r.readU32()
        let kinds = try r.readU16()
        let prefix = try r.readBytes(Int(try r.readU8()))
        try r.finish()
        guard credit <= Limits.maxFeedCredit else { throw .invalidArgument }
        guard kinds & ~EventKind.allKindsMask == 0 else { throw .invalidArgument }
        return Subscribe(from: from, credit: credit, kinds: kinds, skuPrefix: try text8(prefix))
    }

    // MARK: encoding

    /// Appends the frame of `request` with `requestID` to `w`.
    public static func encode(_ request: Request, requestID: UInt32, into w: inout ByteWriter) {
        let start = w.beginFrame(opcode: request.opcode.rawValue, requestID: requestID, response: false)
        encodePayload(request, into: &w)
        w.endFrame(start)
    }

    static func encodePayload(_ request: Request, into w: inout ByteWriter) {
        switch request {
        case .hello(let h):
            w.writeU16(h.version)
            w.writeArray8(h.clientName)
            w.writeArray8(h.credential)
        case .ping, .stats:
            break
        case .reserve(let q):
            w.writeU32(q.quantity)
            w.writeU32(q.ttlMs)
            w.writeShort(q.sku)
            w.writeShort(q.customer)
            w.writeShort(q.idempotencyKey)
        case .reserveBundle(let b):
            w.writeU32(b.ttlMs)
            w.writeShort(b.customer)
            w.writeShort(b.idempotencyKey)
            precondition(b.lines.count <= 255, "a bundle holds at most 255 lines on the wire")
            w.writeU8(UInt8(b.lines.count))
            for line in b.lines {
                w.writeU32(line.quantity)
                w.writeShort(line.sku)
            }
        case .confirm(let c):
            w.writeToken(c.token)
            w.writeU32(c.quantity)
            w.writeShort(c.orderReference)
        case .release(let t):
            w.writeToken(t)
        case .extend(let e):
            w.writeToken(e.token)
            w.writeU32(e.ttlMs)
        case .stockSet(let s):
            var flags: UInt8 = 0
            if s.expectedOnHand != nil { flags |= StockSet.flagExpected }
            if s.lowStockThreshold != nil { flags |= StockSet.flagThreshold }
            if s.perCustomerLimit != nil { flags |= StockSet.flagLimit }
            w.writeU8(flags)
            w.writeU64(s.onHand)
            w.writeU64(s.expectedOnHand ?? 0)
            w.writeU32(s.lowStockThreshold ?? 0)
            w.writeU32(s.perCustomerLimit ?? 0)
            w.writeShort(s.sku)
        case .stockAdjust(let a):
            w.writeI64(a.delta)
            w.writeU8(a.reason.rawValue)
            w.writeShort(a.sku)
        case .stockGet(let sku):
            w.writeShort(sku)
        case .stockList(let l):
            w.writeU32(l.cursor)
            w.writeU16(l.limit)
        case .backupRelease(let m), .backupHold(let m):
            w.writeU64(m.quantity)
            w.writeShort(m.sku)
        case .stage(let s):
            precondition(s.lines.count <= Int(UInt16.max), "a stage holds at most 65535 lines on the wire")
            w.writeU16(UInt16(s.lines.count))
            for line in s.lines {
                w.writeU64(line.onHand)
                w.writeU64(line.backup)
                w.writeU32(line.lowStockThreshold)
                w.writeU32(line.perCustomerLimit)
                w.writeShort(line.sku)
            }
        case .subscribe(let s):
            w.writeU64(s.from)
            w.writeU32(s.credit)
            w.writeU16(s.kinds)
            w.writeShort(s.skuPrefix)
        case .credit(let n):
            w.writeU32(n)
        case .replHello(let h):
            w.writeU64(h.fingerprint)
            w.writeU64(h.highestEpoch)
            w.writeU64(h.lastEpoch)
            w.writeU64(h.lastSeq)
            w.writeShort(h.node)
            w.writeShort(h.cluster)
        case .replAck(let a):
            w.writeU64(a.epoch)
            w.writeU64(a.durable)
        case .role(let c):
            w.writeU8(c.role.rawValue)
            w.writeU64(c.epoch)
            w.writeShort(c.primary)
        case .fence(let until):
            w.writeU64(until)
        case .isrSet(let set):
            precondition(set.nodes.count <= 255, "a count u8 holds at most 255 nodes")
            w.writeU64(set.epoch)
            w.writeU8(UInt8(set.nodes.count))
            for node in set.nodes { w.writeShort(node) }
        case .clusterStatus:
            break
        }
    }
}

extension ByteReader {
    /// Moves the read position back to `offset` (a second pass over a payload).
    mutating func rewind(to offset: Int) {
        precondition(offset <= self.offset)
        self.offset = offset
    }
}
