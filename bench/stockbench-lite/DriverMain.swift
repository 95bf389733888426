// stockbench-lite: a closed-loop, pipelined loopback load generator for the
// stockd binary protocol. Each connection keeps `depth` requests outstanding;
// every answer sends the next request. Reports answers/s over the measured
// window (after warmup) and latency percentiles from send to answer.

import BenchSupport
import CLibUV
import StockProtocol
#if canImport(Glibc)
import Glibc
#endif

@main
enum DriverMain {
    static func main() {
        programName = "stockbench-lite"
        let o = Options.parse(CommandLine.arguments.dropFirst())
        signal(SIGPIPE, SIG_IGN)
        guard let sku = SKU(o.sku), sku.count > 0 else { fatal("--sku: 1 to 64 bytes") }

        let ping = Template(.ping)
        let reserve = Template(.reserve(Reserve(sku: sku, quantity: 1, ttlMs: 0)))
        let release = Template(.release(Token(slot: 0, generation: 0, secret: 0)))

        // Connection i goes to thread i % threads.
        var workers: [UnsafeMutablePointer<Worker>] = []
        for t in 0..<o.threads {
            let loop = UnsafeMutablePointer<uv_loop_t>.allocate(capacity: 1)
            check(uv_loop_init(loop), "uv_loop_init")
            let statusCounts = UnsafeMutablePointer<UInt64>.allocate(capacity: 256)
            statusCounts.initialize(repeating: 0, count: 256)
            let w = UnsafeMutablePointer<Worker>.allocate(capacity: 1)
            w.initialize(to: Worker(
                loop: loop, readBuffer: .allocate(byteCount: readBufferBytes, alignment: 64),
                operation: o.operation, depth: o.depth, ping: ping, reserve: reserve, release: release,
                warmupMs: UInt64(o.warmupSeconds * 1000), durationMs: UInt64(o.durationSeconds * 1000),
                warmupTimer: .allocate(capacity: 1), endTimer: .allocate(capacity: 1),
                statusCounts: statusCounts))
            loop.pointee.data = UnsafeMutableRawPointer(w)
            let share = o.connections / o.threads + (t < o.connections % o.threads ? 1 : 0)
            w.start(port: o.port, connections: share)
            workers.append(w)
        }

        var threads: [pthread_t] = []
        for w in workers.dropFirst() {
            var thread = pthread_t()
            guard pthread_create(&thread, nil, driverThread, UnsafeMutableRawPointer(w)) == 0 else {
                fatal("pthread_create failed")
            }
            threads.append(thread)
        }
        workers[0].run()
        for thread in threads { pthread_join(thread, nil) }

        let answered = report(o, workers)
        exit(answered > 0 ? 0 : 1)
    }

    /// Prints the human line (and the JSON line); returns the answers counted.
    static func report(_ o: Options, _ workers: [UnsafeMutablePointer<Worker>]) -> UInt64 {
        var histogram = Histogram()
        var answered: UInt64 = 0
        var rate = 0.0
        var errors = 0
        var protocolErrors = 0
        var statuses = [UInt64](repeating: 0, count: 256)
        for w in workers {
            histogram.merge(w.pointee.histogram)
            answered += w.pointee.answered
            // Each thread timed its own window; the rates add up.
            let seconds = Double(w.pointee.windowEndNs &- w.pointee.windowStartNs) / 1e9
            if w.pointee.windowStartNs > 0 && seconds > 0 { rate += Double(w.pointee.answered) / seconds }
            errors += w.pointee.connectionErrors
            protocolErrors += w.pointee.protocolErrors
            for s in 0..<256 { statuses[s] += w.pointee.statusCounts[s] }
        }
        let us = { (q: Double) in histogram.value(atQuantile: q) / 1000 }
        let nonOK = statuses.dropFirst().reduce(0, +)
        let outOfStock = statuses[Int(Status.outOfStock.rawValue)]
        var named: [(String, UInt64)] = []
        for s in 1..<256 where statuses[s] > 0 {
            named.append((Status(rawValue: UInt8(s))?.name ?? "STATUS_\(s)", statuses[s]))
        }

        let rps = Int(rate.rounded())
        print("\(o.operation.rawValue) connections=\(o.connections) depth=\(o.depth) threads=\(o.threads): "
              + "\(rps) req/s  p50 \(fixed(us(0.5))) µs  p90 \(fixed(us(0.9))) µs  p99 \(fixed(us(0.99))) µs  "
              + "p99.9 \(fixed(us(0.999))) µs  max \(fixed(Double(histogram.maxValue) / 1000)) µs  "
              + "answers \(answered)  non-OK \(nonOK)  errors \(errors)  protocol errors \(protocolErrors)")
        if o.json {
            let statusJSON = named.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",")
            print("{\"op\":\"\(o.operation.rawValue)\",\"connections\":\(o.connections),\"depth\":\(o.depth),"
                  + "\"threads\":\(o.threads),\"duration_s\":\(fixed(o.durationSeconds)),"
                  + "\"warmup_s\":\(fixed(o.warmupSeconds)),\"requests\":\(answered),\"requests_per_sec\":\(rps),"
                  + "\"p50_us\":\(fixed(us(0.5))),\"p90_us\":\(fixed(us(0.9))),\"p99_us\":\(fixed(us(0.99))),"
                  + "\"p999_us\":\(fixed(us(0.999))),\"max_us\":\(fixed(Double(histogram.maxValue) / 1000)),"
                  + "\"non_ok\":\(nonOK),\"out_of_stock\":\(outOfStock),\"statuses\":{\(statusJSON)},"
                  + "\"errors\":\(errors),\"protocol_errors\":\(protocolErrors)}")
        }
        fflush(nil)
        return answered
    }

    /// `x` with one decimal, without Foundation.
    static func fixed(_ x: Double) -> String {
        let tenths = Int((x * 10).rounded())
        return "\(tenths / 10).\(abs(tenths % 10))"
    }
}
