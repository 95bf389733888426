#!/usr/bin/env bash
# A/B of two stockd builds in one run on one machine: the same stockbench-lite
# matrix against stockd A, then B, then A, then B (ROUNDS times), one worker,
# --sync none, so a change in the hot path shows as a ratio and not as a
# difference between two days. Prints one JSON line per run prefixed by
# "A " or "B ", then the per-configuration B/A ratio of each side's median
# throughput over its rounds (the median: one disturbed 3-second run on a
# 2-core machine must not decide the ratio).
#
# usage: bench/ab-server.sh STOCKD_A STOCKD_B
# Environment: ROUNDS (default 2), OPS (default "ping reserve-release"),
# CONNECTIONS, DEPTHS, DURATION, WARMUP, DRIVER (see stockbench-lite/run-matrix.sh);
# SERVER_CPU and DRIVER_CPU (taskset CPU lists, e.g. 0 and 1) pin the server and the
# driver to separate cores, so neither's scheduling noise lands on the other.
# Besides throughput, each configuration's server CPU time (/proc/PID/stat) per request is
# reported: the figure a hot-path change moves, and less disturbed by the driver than req/s.
# Build first, for example (A = an older commit in a worktree):
#   git worktree add /tmp/a <commit>; (cd /tmp/a && swift build -c release --scratch-path .build-bench --product stockd)
#   swift build -c release --scratch-path .build-bench --product stockd --product stockbench-lite
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -ne 2 || ! -x "$1" || ! -x "$2" ]]; then
    echo "usage: $0 STOCKD_A STOCKD_B   (two stockd executables)" >&2
    exit 2
fi
A=$1 B=$2
ROUNDS="${ROUNDS:-2}"
export OPS="${OPS:-ping reserve-release}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'BENCH-HOT,1000000000\n' > "$tmp/catalog.csv"

cpu_ticks() { # pid: the process's user + system CPU time so far, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

run_one() { # label stockd: one server, every configuration of the matrix, each with its server CPU time
    local label=$1 stockd=$2
    rm -f "$tmp/port"
    # taskset execs stockd, so $! is the server's own pid (for /proc/PID/stat and the TERM below).
    ${SERVER_CPU:+taskset -c "$SERVER_CPU"} "$stockd" --workers 1 --sync none --catalog "$tmp/catalog.csv" --log-level warning \
        --port 0 --port-file "$tmp/port" 2>"$tmp/server.err" &
    local pid=$!
    for _ in $(seq 50); do [[ -s "$tmp/port" ]] && break; sleep 0.1; done
    local op c d before
    for op in $OPS; do for c in ${CONNECTIONS:-1 16 64}; do for d in ${DEPTHS:-1 32}; do
        before=$(cpu_ticks "$pid")
        PORT=$(cat "$tmp/port") LABEL=$label OPS=$op CONNECTIONS=$c DEPTHS=$d \
            ${DRIVER_CPU:+taskset -c "$DRIVER_CPU"} bench/stockbench-lite/run-matrix.sh | tee -a "$tmp/lines"
        echo "$label $op $c $d $(( $(cpu_ticks "$pid") - before ))" >> "$tmp/cpu"
    done; done; done
    kill -TERM "$pid"; wait "$pid" || true
}

for _ in $(seq "$ROUNDS"); do
    run_one A "$A"
    run_one B "$B"
done

python3 - "$tmp/lines" "$tmp/cpu" "$(getconf CLK_TCK)" "${WARMUP:-1s}" <<'EOF'
import json, sys, collections
runs = collections.defaultdict(lambda: {"A": [], "B": []})
ticks = collections.defaultdict(lambda: {"A": [], "B": []})
for line in open(sys.argv[2]):
    side, op, c, d, t = line.split()
    ticks[(op, int(c), int(d))][side].append(int(t))
hz, warmup = int(sys.argv[3]), float(sys.argv[4].rstrip("s"))
for line in open(sys.argv[1]):
    side, js = line.split(" ", 1)
    r = json.loads(js)
    key = (r["op"], r["connections"], r["depth"])
    # Server CPU per request: the ticks cover warmup + run, the request count the run only, so
    # scale the count by (warmup + run) / run (the warmup runs at the same rate).
    t = ticks[key][side][len(runs[key][side])]
    scaled = r["requests"] * (r["duration_s"] + warmup) / r["duration_s"]
    r["server_ns_per_req"] = t * 1e9 / hz / scaled if scaled else 0
    runs[key][side].append(r)
print(f"medians over {len(next(iter(runs.values()))['A'])} rounds per side")
print("op               conns depth      A req/s      B req/s   B/A   A p99 us  B p99 us  A ns/req  B ns/req  A/B cpu")
ratios, cpu_ratios = [], []
for key, sides in runs.items():
    def median(side, f):
        v = sorted(r[f] for r in sides[side])
        return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
    a, b = median("A", "requests_per_sec"), median("B", "requests_per_sec")
    ca, cb = median("A", "server_ns_per_req"), median("B", "server_ns_per_req")
    ratios.append(b / a)
    cpu_ratios.append(ca / cb if cb else 0)
    print(f"{key[0]:16} {key[1]:5} {key[2]:5} {a:12.0f} {b:12.0f} {b / a:5.3f} {median('A', 'p99_us'):9.1f} "
          f"{median('B', 'p99_us'):9.1f} {ca:9.0f} {cb:9.0f} {ca / cb if cb else 0:8.3f}")
def geomean(v):
    g = 1.0
    for x in v: g *= x
    return g ** (1 / len(v))
print(f"geometric mean of B/A over {len(ratios)} configurations: {geomean(ratios):.3f}")
# Server CPU per request is what a change to the hot path moves; throughput on a shared 2-core
# machine also moves with the driver's and the scheduler's luck. A/B cpu > 1: B spends less per request.
print(f"geometric mean of A/B server CPU per request: {geomean(cpu_ratios):.3f}")
EOF
