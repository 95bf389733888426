import ArgumentParser
import CommandSupport
import Foundation
import StockClient

/// `stockctl audit WMS.csv [--apply]`: stockd's on-hand per SKU against the
/// warehouse's physical count, and (with `--apply`) the repair by
/// compare-and-set.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Compare stockd's on-hand with the warehouse's physical counts (sku,counted CSV); --apply repairs.",
        discussion: """
            The file holds sku,counted lines (RFC 4180 CSV: quoted fields, doubled quotes, CRLF, a UTF-8 BOM); \
            an optional first line sku,counted is a header; blank lines and # comments are skipped. Every bad line is reported as FILE:LINE: reason and nothing \
            is compared (exit 2). Statuses: 'differs', 'missing in stockd' (counted, unknown to stockd), \
            'missing in WMS' (stockd holds units the file does not list). A SKU absent on one side and 0 on the \
            other is not a discrepancy. Exit 1 when any discrepancy, 0 otherwise.

            With --apply, each differing SKU is set to its counted value by compare-and-set against the on-hand \
            just read (a concurrent change is reported as STOCK_CHANGED, never overwritten), SKUs missing in \
            stockd are created (compare-and-set against 0), and SKUs missing in the WMS file are only reported. \
            A count below reserved + confirmed is refused by the server (INSUFFICIENT_AVAILABLE). Exit 0 only \
            if every discrepancy was repaired.
            """)

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The warehouse count: sku,counted lines.") var file: String
    @Flag(help: "Set stockd to the counted values (compare-and-set; creates SKUs missing in stockd).")
    var apply = false

    /// One `sku,counted` line.
    struct Count: Equatable {
        let sku: String
        let counted: UInt64
    }

    enum Status: String {
        case missingInStockd = "missing in stockd"
        case missingInWMS = "missing in WMS"
        case differs = "differs"
    }

    /// One SKU whose two sides disagree.
    struct Discrepancy {
        let sku: String
        /// nil: stockd does not know the SKU.
        let onHand: UInt64?
        /// nil: the WMS file does not list the SKU.
        let counted: UInt64?
        let status: Status
        /// Reserved + confirmed units when read: on-hand cannot go below them.
        var held: UInt64 = 0

        /// counted − on-hand, a missing side read as 0.
        var difference: Int64 { Int64(counted ?? 0) - Int64(onHand ?? 0) }
    }

    /// What `--apply` did to one discrepancy.
    enum Outcome {
        case fixed(String)
        case notTouched
        case failed(String)

        var isFixed: Bool { if case .fixed = self { true } else { false } }

        var text: String {
            switch self {
            case .fixed(let s): s
            case .notTouched: "not touched (missing in the WMS file)"
            case .failed(let s): s
            }
        }
    }

    /// The counts, or every bad line as `LINE: reason` (the parsing rules of `stock import`).
    static func parse(_ text: String) -> (counts: [Count], errors: [(line: Int, reason: String)]) {
        var counts: [Count] = []
        let csv = csvRecords(text, isHeader: { $0.map { $0.lowercased() } == ["sku", "counted"] })
        var errors: [(line: Int, reason: String)] = csv.errors
        var seen: [String: Int] = [:]
        for (lineNo, fields) in csv.records {
            guard fields.count == 2 else {
                errors.append((lineNo, "expected sku,counted, got \(fields.count) field\(fields.count == 1 ? "" : "s")"))
                continue
            }
            guard let sku = SKU(fields[0]), sku.isValidSKU else {
                errors.append((lineNo, "SKU '\(fields[0])' must be 1-64 bytes of UTF-8 without control characters"))
                continue
            }
            if let first = seen[fields[0]] {
                errors.append((lineNo, "SKU '\(fields[0])' already on line \(first)"))
                continue
            }
            seen[fields[0]] = lineNo
            guard let counted = UInt64(fields[1]), counted <= Limits.maxStock else {
                errors.append((lineNo, "counted '\(fields[1])' must be a whole number 0...\(Limits.maxStock)"))
                continue
            }
            counts.append(Count(sku: fields[0], counted: counted))
        }
        return (counts, errors)
    }

    /// The discrepancies between stockd's on-hand and the counts, by SKU,
    /// and how many distinct SKUs the two sides hold together.
    static func compare(stockd: [(sku: String, onHand: UInt64, held: UInt64)], counts: [Count])
        -> (discrepancies: [Discrepancy], compared: Int) {
        var onHand: [String: UInt64] = [:]
        var held: [String: UInt64] = [:]
        for e in stockd {
            onHand[e.sku] = e.onHand
            held[e.sku] = e.held
        }
        var counted: [String: UInt64] = [:]
        for c in counts { counted[c.sku] = c.counted }
        let skus = Set(onHand.keys).union(counted.keys).sorted()
        var found: [Discrepancy] = []
        for sku in skus {
            switch (onHand[sku], counted[sku]) {
            case let (have?, count?) where have != count:
                found.append(Discrepancy(sku: sku, onHand: have, counted: count, status: .differs, held: held[sku] ?? 0))
            case let (nil, count?) where count > 0:
                found.append(Discrepancy(sku: sku, onHand: nil, counted: count, status: .missingInStockd))
            case let (have?, nil) where have > 0:
                found.append(Discrepancy(sku: sku, onHand: have, counted: nil, status: .missingInWMS, held: held[sku] ?? 0))
            default:
                break
            }
        }
        return (found, skus.count)
    }

    func run() async throws {
        let (counts, errors) = Self.parse(try readOperatorFile(file))
        try rejectBadLines(file, errors, nothing: "compared")
        let client = try options.makeClient()
        defer { client.close() }
        let entries = try await client.listAllStock()
        let (found, compared) = Self.compare(stockd: entries.map { ($0.sku.string, $0.info.onHand, $0.info.reserved + $0.info.confirmed) }, counts: counts)

        var outcomes: [Outcome] = []
        if apply {
            for d in found { outcomes.append(await repair(d, client)) }
        }
        print(apply ? render(found, outcomes, compared) : render(found, nil, compared))

        if found.isEmpty { return }
        if apply {
            let unfixed = outcomes.filter { !$0.isFixed }.count
            if unfixed == 0 { return }
            throw CLIError("\(unfixed) of \(found.count) discrepanc\(found.count == 1 ? "y" : "ies") not repaired",
                           code: ExitStatus.failure)
        }
        throw CLIError("\(found.count) discrepanc\(found.count == 1 ? "y" : "ies") in \(compared) SKUs",
                       code: ExitStatus.failure)
    }

    /// Sets one SKU to its counted value by compare-and-set against the
    /// on-hand read (0 for a SKU stockd does not know).
    func repair(_ d: Discrepancy, _ client: StockClient) async -> Outcome {
        guard let counted = d.counted else { return .notTouched }
        do {
            try await client.setStock(d.sku, onHand: counted, expected: d.onHand ?? 0)
            return .fixed(d.onHand == nil ? "created with on-hand \(counted)" : "set to \(counted)")
        } catch {
            return .failed(Self.failure(error, d))
        }
    }

    /// `STATUS_NAME: what happened`, e.g. `STOCK_CHANGED: on-hand changed concurrently (now 9); not overwritten`.
    static func failure(_ error: StockError, _ d: Discrepancy) -> String {
        switch error {
        case .stockChanged(let current):
            "STOCK_CHANGED: on-hand changed concurrently (now \(current)); not overwritten"
        case .insufficientAvailable(let available):
            "INSUFFICIENT_AVAILABLE: counted \(d.counted ?? 0) is below reserved + confirmed "
                + "(\(d.held) when read; \(available) available now)"
        default:
            "\(error)"
        }
    }

    func render(_ found: [Discrepancy], _ outcomes: [Outcome]?, _ compared: Int) -> String {
        if options.json {
            let items: [JSON] = found.enumerated().map { i, d in
                var fields: [(String, JSON)] = [
                    ("sku", .string(d.sku)),
                    ("on_hand", d.onHand.map { .uint($0) } ?? .null),
                    ("counted", d.counted.map { .uint($0) } ?? .null),
                    ("difference", .int(d.difference)),
                    ("status", .string(d.status.rawValue)),
                ]
                if let outcomes {
                    fields.append(("applied", .bool(outcomes[i].isFixed)))
                    fields.append(("result", .string(outcomes[i].text)))
                }
                return .object(fields)
            }
            var doc: [(String, JSON)] = [("discrepancies", .array(items)), ("skus_compared", .int(Int64(compared)))]
            if let outcomes {
                doc.append(("repaired", .int(Int64(outcomes.filter(\.isFixed).count))))
            }
            return JSON.object(doc).rendered
        }
        if found.isEmpty { return "no discrepancies (\(compared) SKUs)" }
        var headers = ["SKU", "ON_HAND", "COUNTED", "DIFFERENCE", "STATUS"]
        if outcomes != nil { headers.append("RESULT") }
        let rows: [[String]] = found.enumerated().map { i, d in
            var row = [d.sku, d.onHand.map { "\($0)" } ?? "-", d.counted.map { "\($0)" } ?? "-",
                       d.difference > 0 ? "+\(d.difference)" : "\(d.difference)", d.status.rawValue]
            if let outcomes { row.append(outcomes[i].text) }
            return row
        }
        var lines = formatTable(headers, rows, leftColumns: [0, 4, 5])
        lines.append("\(found.count) discrepanc\(found.count == 1 ? "y" : "ies") in \(compared) SKUs"
                     + (outcomes.map { ", \($0.filter(\.isFixed).count) repaired" } ?? ""))
        return lines.joined(separator: "\n")
    }
}
