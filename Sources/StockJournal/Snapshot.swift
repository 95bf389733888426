#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CCRC32C
import StockProtocol

// # Snapshot format (version 4; versions 1 to 3 are still read)
//
// `snapshot-<20-digit seq>.snap` holds a `JournalState` equal to replaying
// every record up to and including `seq`. Little-endian throughout.
//
// | offset | size | field                                               |
// |-------:|-----:|-----------------------------------------------------|
// |      0 |    8 | magic "STOCKSNP"                                    |
// |      8 |    4 | format version (4)                                  |
// |     12 |    4 | flags (0)                                           |
// |     16 |    8 | seq                                                 |
// |     24 |    8 | wallTimeMs (when written)                           |
// |     32 |    8 | skuCount                                            |
// |     40 |    8 | tokenCount                                          |
// |     48 |    8 | customerSoldCount                                   |
// |     56 |    … | skuCount × SKU, tokenCount × token, customerSoldCount × sold, fates, epochs |
// |  end-4 |    4 | crc32c of every byte before it                      |
//
// SKU:   sku str8, onHand u64, reserved u64, confirmed u64, lowStockThreshold u32, perCustomerLimit u32,
//        backup u64 (not in version 1: backup 0) — in catalog order: a SKU's position is its index below
// token: token (16 bytes), deadlineWallMs u64, customer str8, idempotencyKey str8, flags u8 (bit 0 bundle),
//        lineCount u16, lineCount × (skuIndex u32, quantity u32)
// sold:  customer str8, skuIndex u32, units u64
// fates: decidedCount u64, decidedCount × (token (16 bytes), fate u8 (2 confirmed, 3 released, 4 expired),
//        seq u64) — oldest decision first (not in versions 1 and 2: no decided tokens remembered)
// epochs: termCount u64, termCount × (epoch u64, firstSeq u64, node str8) — the epoch history
//        (JournalState.epochs), oldest term first (not in versions 1 to 3: an empty history, as
//        those builds never journaled a term start record)
//
// Written to `<name>.tmp`, fsynced, renamed, and the directory fsynced, so a
// snapshot file either is whole or does not exist under its final name; the
// checksum catches what the disk does to it later.

/// One snapshot file.
public struct SnapshotFile: Sendable, Equatable, Comparable, CustomStringConvertible {
    public let name: String
    public let path: String
    /// The last seq it covers (from the name).
    public let seq: UInt64

    public static func < (a: SnapshotFile, b: SnapshotFile) -> Bool { a.seq < b.seq }
    public var description: String { path }
}

/// The fixed header of a snapshot.
public struct SnapshotHeader: Sendable, Equatable {
    public var seq: UInt64
    public var wallTimeMs: UInt64
    public var skuCount: UInt64
    public var tokenCount: UInt64
    public var customerSoldCount: UInt64

    public init(seq: UInt64, wallTimeMs: UInt64, skuCount: UInt64, tokenCount: UInt64, customerSoldCount: UInt64) {
        self.seq = seq
        self.wallTimeMs = wallTimeMs
        self.skuCount = skuCount
        self.tokenCount = tokenCount
        self.customerSoldCount = customerSoldCount
    }
}

/// A snapshot passed over for being unreadable or invalid.
public struct SkippedSnapshot: Sendable, Equatable, CustomStringConvertible {
    public let file: SnapshotFile
    public let reason: String
    public var description: String { "\(file.path): \(reason)" }
}

/// Writing, loading and retiring snapshots.
public enum Snapshots {
    static let magic: UInt64 = 0x504E_534B_434F_5453  // "STOCKSNP" read as u64 LE
    static let version: UInt32 = 4
    /// Versions `load` reads: 1 wrote no backup field (backup units came with
    /// version 2), 1 and 2 no decided tokens (version 3), 1 to 3 no epoch
    /// history (version 4).
    static let readableVersions: ClosedRange<UInt32> = 1...4
    static let headerBytes = 56
    static let prefix = "snapshot-"
    static let suffix = ".snap"
    static let tmpSuffix = ".snap.tmp"

    /// The file name of the snapshot covering up to `seq`.
    public static func name(seq: UInt64) -> String { prefix + twentyDigits(seq) + suffix }

    /// The snapshots in `directory`, oldest first (`.tmp` files are not snapshots).
    public static func list(in directory: String) throws(JournalError) -> [SnapshotFile] {
        let dir = DataDirectory(directory)
        var out: [SnapshotFile] = []
        for name in try dir.names() {
            if let seq = parseTwentyDigits(name, prefix: prefix, suffix: suffix) {
                out.append(SnapshotFile(name: name, path: dir.file(name), seq: seq))
            }
        }
        return out.sorted()
    }

    // MARK: - writing

    /// Writes `state` as the snapshot covering up to `state.lastSeq`, durably
    /// (tmp file, fsync, rename, directory fsync). Replaces a file of the same name.
    @discardableResult
    public static func write(_ state: JournalState, wallTimeMs: UInt64, directory: String)
        throws(JournalError) -> SnapshotFile
    {
        let dir = DataDirectory(directory)
        let name = name(seq: state.lastSeq)
        let tmp = name + ".tmp"
        let f = try PosixFile.open(dir.file(tmp), O_WRONLY | O_CREAT | O_TRUNC)
        do throws(JournalError) {
            var out = ChecksummedOutput(file: f)
            try encode(state, wallTimeMs: wallTimeMs, into: &out)
            try out.finish()
            try f.syncAll()
            try f.close()
        } catch {
            f.closeQuietly()
            try? dir.remove(tmp)
            throw error
        }
        try dir.rename(tmp, to: name)
        try dir.sync()
        return SnapshotFile(name: name, path: dir.file(name), seq: state.lastSeq)
    }

    private static func encode(_ state: JournalState, wallTimeMs: UInt64, into out: inout ChecksummedOutput)
        throws(JournalError)
    {
        var skuIndex: [SKU: UInt32] = [:]
        skuIndex.reserveCapacity(state.skus.count)
        try out.put(Snapshots.headerBytes) { w in
            w.u64(magic); w.u32(version); w.u32(0); w.u64(state.lastSeq); w.u64(wallTimeMs)
            w.u64(UInt64(state.skus.count)); w.u64(UInt64(state.tokens.count)); w.u64(UInt64(state.customerSold.count))
        }
        for (i, s) in state.skus.enumerated() {
            skuIndex[s.sku] = UInt32(i)
            try out.put(65 + 40) { w in
                w.str8(s.sku); w.u64(UInt64(s.onHand)); w.u64(UInt64(s.reserved)); w.u64(UInt64(s.confirmed))
                w.u32(s.lowStockThreshold); w.u32(s.perCustomerLimit); w.u64(UInt64(s.backup))
            }
        }
        for t in state.tokens.values {
            precondition(t.lines.count <= Int(UInt16.max), "token with more lines than a snapshot holds")
            try out.put(16 + 8 + 65 + 65 + 1 + 2 + 8 * t.lines.count) { w in
                w.token(t.token); w.u64(t.deadlineWallMs); w.str8(t.customer); w.str8(t.idempotencyKey)
                w.u8(t.bundle ? 1 : 0)
                w.u16(UInt16(t.lines.count))
                for line in t.lines { w.u32(skuIndex[line.sku]!); w.u32(line.quantity) }
            }
        }
        for (k, units) in state.customerSold {
            try out.put(65 + 12) { w in w.str8(k.customer); w.u32(skuIndex[k.sku]!); w.u64(units) }
        }
        let decided = state.fates.oldestFirst
        try out.put(8) { w in w.u64(UInt64(decided.count)) }
        for d in decided {
            try out.put(16 + 1 + 8) { w in w.token(d.token); w.u8(d.fate.rawValue); w.u64(d.seq) }
        }
        try out.put(8) { w in w.u64(UInt64(state.epochs.count)) }
        for t in state.epochs {
            try out.put(8 + 8 + 65) { w in w.u64(t.epoch); w.u64(t.firstSeq); w.str8(t.node) }
        }
    }

    // MARK: - loading

    /// Loads and checks one snapshot: size, magic, version, checksum, then
    /// the state's own invariants. Any failure is `.badSnapshot` (or `.io`).
    public static func load(_ file: SnapshotFile) throws(JournalError) -> (JournalState, SnapshotHeader) {
        let bytes = try readWhole(file.path)
        // Array.withUnsafeBytes rethrows untyped errors: carry the typed one out in a Result.
        let decoded = bytes.withUnsafeBytes { b in
            Result { () throws(RecordCorruption) in try decode(b, file: file) }
        }
        switch decoded {
        case .success(let loaded): return loaded
        case .failure(let error): throw .badSnapshot(path: file.path, reason: error.description)
        }
    }

    /// What `loadNewestValid` found.
    public struct Loaded: Sendable {
        /// The state (empty at seq 0 when no snapshot is valid).
        public var state: JournalState
        /// The snapshot used, nil when none.
        public var file: SnapshotFile?
        public var header: SnapshotHeader?
        /// Newer snapshots that were passed over, newest first.
        public var skipped: [SkippedSnapshot]
    }

    /// The newest snapshot that loads, skipping bad ones (listed in
    /// `skipped`; whether skipping them is safe is for the caller to decide,
    /// see `Recovery`). Never throws for a bad snapshot, only for a
    /// directory that cannot be listed.
    public static func loadNewestValid(in directory: String) throws(JournalError) -> Loaded {
        var skipped: [SkippedSnapshot] = []
        for file in try list(in: directory).reversed() {
            do throws(JournalError) {
                let (state, header) = try load(file)
                precondition(state.lastSeq == file.seq && header.seq == file.seq, "a snapshot holds the state its name says")
                return Loaded(state: state, file: file, header: header, skipped: skipped)
            } catch {
                skipped.append(SkippedSnapshot(file: file, reason: "\(error)"))
            }
        }
        return Loaded(state: JournalState(), file: nil, header: nil, skipped: skipped)
    }

    private static func readWhole(_ path: String) throws(JournalError) -> [UInt8] {
        let f = try PosixFile.open(path, O_RDONLY)
        defer { f.closeQuietly() }
        let size = Int(try f.size())
        guard size > 0 else { throw .badSnapshot(path: path, reason: "empty file") }
        var failure: JournalError?
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buf, count in
            do throws(JournalError) { count = try f.read(into: buf.baseAddress!, count: size, at: 0) } catch {
                failure = error
                count = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    private static func decode(_ b: UnsafeRawBufferPointer, file: SnapshotFile)
        throws(RecordCorruption) -> (JournalState, SnapshotHeader)
    {
        guard b.count >= headerBytes + 4 else { throw .badField("\(b.count) bytes, shorter than a header") }
        let stored = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: b.count - 4, as: UInt32.self))
        let computed = ccrc32c_extend(0, b.baseAddress!, b.count - 4)
        guard stored == computed else { throw .badChecksum(stored: stored, computed: computed) }
        var r = RawReader(UnsafeRawBufferPointer(rebasing: b[0..<(b.count - 4)]), at: 0)
        guard try r.u64() == magic else { throw .badField("magic") }
        let v = try r.u32()
        guard readableVersions.contains(v) else { throw .badField("format version \(v)") }
        _ = try r.u32()
        let h = SnapshotHeader(seq: try r.u64(), wallTimeMs: try r.u64(), skuCount: try r.u64(),
                               tokenCount: try r.u64(), customerSoldCount: try r.u64())
        guard h.seq == file.seq else { throw .badField("seq \(h.seq) but the name says \(file.seq)") }
        // Counts come from a file: bound them by the bytes left before trusting them with memory.
        guard h.skuCount <= UInt64(r.remaining / 30), h.tokenCount <= UInt64(r.remaining / 29),
              h.customerSoldCount <= UInt64(r.remaining / 13)
        else { throw .badField("counts larger than the file") }
        let skus = try decodeSKUs(&r, count: Int(h.skuCount), withBackup: v >= 2)
        let tokens = try decodeTokens(&r, count: Int(h.tokenCount), skus: skus)
        let sold = try decodeSold(&r, count: Int(h.customerSoldCount), skus: skus)
        let decided = v >= 3 ? try decodeDecided(&r) : []
        let epochs = v >= 4 ? try decodeEpochs(&r) : []
        guard r.remaining == 0 else { throw .badField("\(r.remaining) bytes after the body") }
        do throws(JournalError) {
            // Everything the file holds is kept; recovery lowers the limit to the core's.
            // checkInvariants judges the history too (order, first seqs up to h.seq).
            let state = try JournalState(skus: skus, tokens: tokens, customerSold: sold, lastSeq: h.seq,
                                         decided: decided, fateLimit: max(FateMemory.defaultLimit, decided.count),
                                         epochs: epochs)
            try state.checkInvariants()
            return (state, h)
        } catch {
            throw .badField("\(error)")
        }
    }

    private static func decodeSKUs(_ r: inout RawReader, count: Int, withBackup: Bool)
        throws(RecordCorruption) -> [SKUState]
    {
        var skus: [SKUState] = []
        skus.reserveCapacity(count)
        for _ in 0..<count {
            skus.append(SKUState(sku: try r.sku(), onHand: try r.i64(), reserved: try r.i64(), confirmed: try r.i64(),
                                 lowStockThreshold: try r.u32(), perCustomerLimit: try r.u32(),
                                 backup: withBackup ? try r.i64() : 0))
        }
        return skus
    }

    private static func decodeTokens(_ r: inout RawReader, count: Int, skus: [SKUState])
        throws(RecordCorruption) -> [Token: LiveToken]
    {
        var tokens: [Token: LiveToken] = [:]
        tokens.reserveCapacity(count)
        for _ in 0..<count {
            let token = try r.token(), deadline = try r.u64(), customer = try r.str8(), key = try r.str8()
            let flags = try r.u8()
            guard flags & ~1 == 0 else { throw .badField("token flags \(flags)") }
            let n = Int(try r.u16())
            var lines: [TokenLine] = []
            lines.reserveCapacity(n)
            for _ in 0..<n {
                let i = Int(try r.u32())
                guard i < skus.count else { throw .badField("SKU index \(i) of \(skus.count)") }
                lines.append(TokenLine(sku: skus[i].sku, quantity: try r.u32()))
            }
            let t = LiveToken(token: token, lines: lines, deadlineWallMs: deadline, customer: customer,
                              idempotencyKey: key, bundle: flags == 1)
            guard tokens.updateValue(t, forKey: token) == nil else { throw .badField("token \(token) twice") }
        }
        return tokens
    }

    private static func decodeSold(_ r: inout RawReader, count: Int, skus: [SKUState])
        throws(RecordCorruption) -> [CustomerSKU: UInt64]
    {
        var sold: [CustomerSKU: UInt64] = [:]
        sold.reserveCapacity(count)
        for _ in 0..<count {
            let customer = try r.str8()
            let i = Int(try r.u32())
            guard i < skus.count else { throw .badField("SKU index \(i) of \(skus.count)") }
            let key = CustomerSKU(customer: customer, sku: skus[i].sku)
            guard sold.updateValue(try r.u64(), forKey: key) == nil else { throw .badField("customer entry twice") }
        }
        return sold
    }

    private static func decodeDecided(_ r: inout RawReader) throws(RecordCorruption) -> [DecidedToken] {
        let count = try r.u64()
        guard count <= UInt64(r.remaining / 25) else { throw .badField("decided count larger than the file") }
        var out: [DecidedToken] = []
        out.reserveCapacity(Int(count))
        for _ in 0..<count {
            let token = try r.token(), raw = try r.u8(), seq = try r.u64()
            guard let fate = DecidedFate(rawValue: raw) else { throw .badField("token fate \(raw)") }
            guard out.last.map({ $0.seq < seq }) ?? true else { throw .badField("decided tokens out of seq order") }
            out.append(DecidedToken(token: token, fate: fate, seq: seq))
        }
        return out
    }

    private static func decodeEpochs(_ r: inout RawReader) throws(RecordCorruption) -> [TermStart] {
        let count = try r.u64()
        // An entry is at least 18 bytes (a 1-byte node id).
        guard count <= UInt64(r.remaining / 18) else { throw .badField("term count larger than the file") }
        var out: [TermStart] = []
        out.reserveCapacity(Int(count))
        for _ in 0..<count {
            let epoch = try r.u64(), firstSeq = try r.u64(), node = try r.str8()
            guard !node.isEmpty else { throw .badField("term start of epoch \(epoch) without a node id") }
            out.append(TermStart(epoch: epoch, firstSeq: firstSeq, node: node))
        }
        return out
    }

    // MARK: - retiring

    /// What `removeCovered` deleted.
    public struct Removed: Sendable, Equatable {
        public var segments: [String] = []
        public var snapshots: [String] = []
    }

    /// Deletes what a durable snapshot at `seq` makes redundant: snapshots
    /// (and leftover `.tmp` files) below `seq`, and segments whose records
    /// are all ≤ `seq`. Call only once that snapshot is durable (`write`
    /// returned). Never deletes the newest segment, which the writer may be
    /// appending to; finding a segment's largest seq reads it (checksums
    /// only), so run this off the journal thread.
    /// With `segments: false` only snapshots go (the caller decides which
    /// covered segments the event feed keeps: Retention.swift).
    @discardableResult
    public static func removeCovered(upTo seq: UInt64, in directory: String, segments: Bool = true)
        throws(JournalError) -> Removed
    {
        let dir = DataDirectory(directory)
        var removed = Removed()
        let names = try dir.names()
        precondition(seq == 0 || names.contains(name(seq: seq)), "removeCovered runs only once the snapshot of seq is on disk")
        for name in names {
            let s = parseTwentyDigits(name, prefix: prefix, suffix: suffix)
                ?? parseTwentyDigits(name, prefix: prefix, suffix: tmpSuffix)
            if let s, s < seq {
                try dir.remove(name)
                removed.snapshots.append(dir.file(name))
            }
        }
        for segment in try segments ? SegmentFiles.list(in: directory).dropLast() : []
        where try JournalReader.maxSeq(of: segment) <= seq {
            try dir.remove(segment.name)
            removed.segments.append(segment.path)
        }
        if !removed.segments.isEmpty || !removed.snapshots.isEmpty { try dir.sync() }
        return removed
    }
}

/// Writes a snapshot through a 1 MiB buffer, extending the checksum over
/// each flushed chunk so the whole state is never encoded in memory at once.
private struct ChecksummedOutput {
    let file: PosixFile
    let buffer = RecordBuffer(capacity: 1 << 20)
    var crc: UInt32 = 0

    init(file: PosixFile) { self.file = file }

    /// Appends an item of at most `maxBytes`, written by `body`.
    mutating func put(_ maxBytes: Int, _ body: (inout RawWriter) -> Void) throws(JournalError) {
        if buffer.count + maxBytes > 1 << 20 { try flush() }
        var w = RawWriter(buffer.reserve(maxBytes), at: 0)
        body(&w)
        precondition(w.at <= maxBytes, "snapshot item larger than announced")
        buffer.commitBytes(w.at)
    }

    mutating func flush() throws(JournalError) {
        try buffer.withUnsafeBytes { (b) throws(JournalError) in
            if b.count > 0 { crc = ccrc32c_extend(crc, b.baseAddress!, b.count) }
            try file.writeAll(b)
        }
        buffer.reset()
    }

    /// Flushes and appends the checksum.
    mutating func finish() throws(JournalError) {
        try flush()
        var trailer = crc.littleEndian
        try withUnsafeBytes(of: &trailer) { (b) throws(JournalError) in try file.writeAll(b) }
    }
}
