/// The result of `JournalVerifier.verify`: counts, and one finding per line.
public struct VerifyReport: Sendable, CustomStringConvertible {
    /// How bad a finding is; any `.error` makes the report not ok.
    public enum Severity: String, Sendable {
        case info, warning, error
    }

    /// One line of the report.
    public struct Finding: Sendable, CustomStringConvertible {
        public let severity: Severity
        public let message: String
        public var description: String { "\(severity.rawValue): \(message)" }
    }

    public var dataDirectory: String
    public var findings: [Finding] = []
    public var snapshotsFound = 0
    public var snapshotsValid = 0
    /// The snapshot a recovery would start from.
    public var snapshotUsed: SnapshotFile?
    public var segments = 0
    /// Valid records read.
    public var records = 0
    /// Smallest and largest seq in the segments (nil when there are no records).
    public var seqRange: ClosedRange<UInt64>?
    /// Missing seqs above the snapshot's, up to the largest seq found.
    public var gaps: [ClosedRange<UInt64>] = []
    /// The torn tail a recovery would cut (not repaired here).
    public var tornTail: TornTail?
    /// Zero bytes after the last record, all segments: unused preallocated
    /// space (normal, not a finding beyond an info line).
    public var zeroTailBytes: Int64 = 0
    /// Leftover prepared segment files (`SegmentFiles.isPrepared`): never
    /// used, ignored by the replay, removed by recovery.
    public var preparedFiles: [String] = []
    /// Corruption found (`JournalError.corrupt`, one per damaged segment).
    public var corruption: [JournalError] = []
    /// The seq the replay reached (the snapshot's plus the contiguous records).
    public var replayedTo: UInt64 = 0
    /// Why the replay stopped early, if it did (a record that does not apply, a duplicate, a broken invariant).
    public var replayError: JournalError?
    /// The epoch history the replay reached (snapshot's plus the term start records replayed).
    public var epochs: [TermStart] = []

    /// Whether nothing is wrong beyond what a recovery repairs by itself.
    public var ok: Bool { !findings.contains { $0.severity == .error } }

    public var description: String {
        (findings.map(\.description) + ["verify \(dataDirectory): " + (ok ? "OK" : "FAILED")])
            .joined(separator: "\n")
    }

    mutating func note(_ severity: Severity, _ message: String) {
        findings.append(Finding(severity: severity, message: message))
    }
}

/// Offline, read-only check of a data directory (`stockd verify --data-dir DIR`).
///
/// Does what recovery does without changing anything: a torn tail is
/// reported, not cut; corruption in one segment is reported and the next
/// segment is still read, so one run lists every damaged file. Torn tails,
/// gaps and bad snapshots the journal covers are warnings (recovery handles
/// them); corruption, a replay that does not add up, and a bad snapshot the
/// journal does not cover are errors. Zeros after the last record of a
/// segment (preallocated space) and leftover prepared segment files are
/// normal: info lines.
public enum JournalVerifier {
    public static func verify(dataDirectory: String) -> VerifyReport {
        var report = VerifyReport(dataDirectory: dataDirectory)
        do throws(JournalError) {
            guard try DataDirectory(dataDirectory).exists() else {
                report.note(.error, "\(dataDirectory): no such directory")
                return report
            }
            let loaded = try checkSnapshots(dataDirectory, &report)
            var replayer = Replayer(state: loaded.state)
            let seqs = try readSegments(dataDirectory, &replayer, &report)
            checkSequence(seqs, replayer: replayer, &report)
            checkReplay(replayer, loaded: loaded, &report)
        } catch {
            report.note(.error, "\(error)")
        }
        return report
    }

    /// Loads every snapshot (each is reported) and returns what recovery would start from.
    private static func checkSnapshots(_ dir: String, _ report: inout VerifyReport) throws(JournalError) -> Snapshots.Loaded {
        let files = try Snapshots.list(in: dir)
        report.snapshotsFound = files.count
        for file in files {
            do throws(JournalError) {
                let (_, h) = try Snapshots.load(file)
                report.snapshotsValid += 1
                report.note(.info, "\(file.path): valid, seq \(h.seq), \(h.skuCount) SKUs, \(h.tokenCount) tokens")
            } catch {
                report.note(.warning, "\(error)")
            }
        }
        let loaded = try Snapshots.loadNewestValid(in: dir)
        report.snapshotUsed = loaded.file
        if files.isEmpty { report.note(.info, "no snapshot: replay starts from an empty state") }
        return loaded
    }

    /// Reads every segment without repairing, feeding the replay until it
    /// fails; returns every seq read.
    private static func readSegments(_ dir: String, _ replayer: inout Replayer, _ report: inout VerifyReport)
        throws(JournalError) -> [UInt64]
    {
        let segments = try SegmentFiles.list(in: dir)
        report.segments = segments.count
        let directory = DataDirectory(dir)
        for name in try directory.names().sorted() where SegmentFiles.isPrepared(name) {
            let size = try directory.size(of: name) ?? 0
            report.preparedFiles.append(directory.file(name))
            report.note(.info, "\(directory.file(name)): prepared segment, never used (\(size) bytes): "
                            + "ignored, recovery removes it")
        }
        var seqs: [UInt64] = []
        for (i, segment) in segments.enumerated() {
            do throws(JournalError) {
                let s = try JournalReader.read(segment, isLast: i == segments.count - 1, repairTornTail: false) {
                    (r, offset) throws(JournalError) in
                    seqs.append(r.seq)
                    guard report.replayError == nil else { return }
                    do throws(JournalError) { try replayer.offer(r, path: segment.path, offset: offset) } catch { report.replayError = error }
                }
                let range = s.records == 0 ? "no records" : "\(s.records) records, seq \(s.minSeq)...\(s.maxSeq)"
                let unused = s.zeroTailBytes == 0 ? "" : ", \(s.zeroTailBytes) unused (zero) bytes after them"
                report.zeroTailBytes += s.zeroTailBytes
                report.note(.info, "\(segment.path): \(range)\(unused)")
                if let torn = s.tornTail {
                    report.tornTail = torn
                    report.note(.warning, "\(torn) — recovery will truncate it")
                }
            } catch {
                report.corruption.append(error)
                report.note(.error, "\(error)")
            }
        }
        report.records = seqs.count
        return seqs
    }

    /// Seq range and the missing numbers above the snapshot.
    private static func checkSequence(_ unsorted: [UInt64], replayer: Replayer, _ report: inout VerifyReport) {
        let seqs = unsorted.sorted()
        guard let first = seqs.first, let last = seqs.last else {
            report.note(.info, "no records in the journal")
            return
        }
        report.seqRange = first...last
        report.note(.info, "\(seqs.count) records in \(report.segments) segments, seq \(first)...\(last)")
        var expected = replayer.base + 1
        for s in seqs where s >= expected {
            if s > expected { report.gaps.append(expected...(s - 1)) }
            expected = s + 1
        }
        for g in report.gaps.prefix(10) {
            report.note(.warning, g.count == 1 ? "seq \(g.lowerBound) missing"
                                               : "seq \(g.lowerBound)...\(g.upperBound) missing (\(g.count) records)")
        }
        if report.gaps.count > 10 { report.note(.warning, "… \(report.gaps.count - 10) more gaps") }
    }

    /// The replay's outcome: where it stopped and whether the state adds up.
    private static func checkReplay(_ replayer: Replayer, loaded: Snapshots.Loaded, _ report: inout VerifyReport) {
        let state = replayer.state
        report.replayedTo = state.lastSeq
        report.epochs = state.epochs
        if let current = state.epochs.last {
            // Term start records change no counts; the history is what a standby's divergence check reads.
            report.note(.info, "epoch history: \(state.epochs.count) terms; current epoch \(current.epoch) "
                            + "(node \(current.node), from seq \(current.firstSeq))")
        }
        if let bad = loaded.skipped.first {
            let covered = bad.file.seq <= state.lastSeq
            report.note(covered ? .warning : .error,
                        "\(bad.file.path) is bad and "
                            + (covered ? "the journal covers it (recovery falls back to an older state)"
                                       : "the journal reaches only seq \(state.lastSeq): recovery will refuse"))
        }
        if let error = report.replayError {
            report.note(.error, "replay stopped: \(error)")
            return
        }
        if let gap = replayer.gapAt {
            let why = report.corruption.isEmpty ? "never acknowledged if the seq was lost in a crash"
                                                : "possibly lost to the corruption above"
            report.note(.warning, "replay stops at missing seq \(gap): \(replayer.droppedAfterGap) later records "
                            + "would be dropped (\(why))")
        }
        do throws(JournalError) {
            try state.checkInvariants()
            report.note(.info, "replay to seq \(state.lastSeq): \(replayer.replayed) records applied, "
                            + "\(state.skuCount) SKUs, \(state.tokenCount) live tokens; invariants hold")
        } catch {
            report.replayError = error
            report.note(.error, "after replay to seq \(state.lastSeq): \(error)")
        }
    }
}
