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
pin() { # cpu-list command... : runs the command on those CPUs when a list is given
    local cpus=$1; shift
    if [[ -n "$cpus" ]]; then taskset -c "$cpus" "$@"; else "$@"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'BENCH-HOT,1000000000\n' > "$tmp/catalog.csv"

run_one() { # label stockd
    local label=$1 stockd=$2
    rm -f "$tmp/port"
    pin "${SERVER_CPU:-}" "$stockd" --workers 1 --sync none --catalog "$tmp/catalog.csv" --log-level warning \
        --port 0 --port-file "$tmp/port" 2>"$tmp/server.err" &
    local pid=$!
    for _ in $(seq 50); do [[ -s "$tmp/port" ]] && break; sleep 0.1; done
    PORT=$(cat "$tmp/port") LABEL=$label pin "${DRIVER_CPU:-}" bench/stockbench-lite/run-matrix.sh | tee -a "$tmp/lines"
    kill -TERM "$pid"; wait "$pid" || true
}

for _ in $(seq "$ROUNDS"); do
    run_one A "$A"
    run_one B "$B"
done

python3 - "$tmp/lines" <<'EOF'
import json, sys, collections
runs = collections.defaultdict(lambda: {"A": [], "B": []})
for line in open(sys.argv[1]):
    side, js = line.split(" ", 1)
    r = json.loads(js)
    runs[(r["op"], r["connections"], r["depth"])][side].append(r)
print(f"medians over {len(next(iter(runs.values()))['A'])} rounds per side")
print("op               conns depth      A req/s      B req/s   B/A   A p99 us  B p99 us")
ratios = []
for key, sides in runs.items():
    def median(side, f):
        v = sorted(r[f] for r in sides[side])
        return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
    a, b = median("A", "requests_per_sec"), median("B", "requests_per_sec")
    ratios.append(b / a)
    print(f"{key[0]:16} {key[1]:5} {key[2]:5} {a:12.0f} {b:12.0f} {b / a:5.3f} {median('A', 'p99_us'):9.1f} {median('B', 'p99_us'):9.1f}")
geo = 1.0
for r in ratios: geo *= r
print(f"geometric mean of B/A over {len(ratios)} configurations: {geo ** (1 / len(ratios)):.3f}")
EOF
