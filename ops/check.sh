#!/usr/bin/env bash
# The ops files against a real stockd (CI: `make ops-check`).
#
#   ops/check.sh path/to/stockd
#
# Starts stockd on 127.0.0.1 (--port 0, a free metrics port, a temporary data directory), waits for
# GET /ready, then checks: /healthz and /ready answer 200; a scrape of /metrics passes
# `promtool check metrics`; `promtool check rules` passes on ops/prometheus/stockd-alerts.yml; the
# Grafana dashboard is valid JSON (python3 -m json.tool); and every stockd_* metric the alerts and the
# dashboard use is one the scrape declares. Exit 0 when all pass, 1 on any failure (each named on
# stderr), 2 on bad usage. stockd is stopped on every exit path.
set -euo pipefail

# Bounds: a debug build on a loaded CI machine starts in well under this.
READY_TIMEOUT_S=30

here=$(cd "$(dirname "$0")" && pwd)
rules="$here/prometheus/stockd-alerts.yml"
dashboard="$here/grafana/stockd-show.json"

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: ops/check.sh PATH_TO_STOCKD (an executable stockd binary)" >&2
    exit 2
fi
stockd=$1
for tool in curl promtool python3; do
    command -v "$tool" >/dev/null || { echo "ops/check.sh: $tool not found (promtool: apt-get install prometheus)" >&2; exit 1; }
done

tmp=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
fail() { echo "ops/check.sh: FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ops/check.sh: ok: $*"; }

# A free metrics port, chosen by the kernel (bound and released just before stockd takes it;
# --metrics-port-file reports the port stockd really bound either way).
free_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
printf 'OPS-CHECK-A,10\nDRILL-1,1\n' > "$tmp/catalog.csv"
"$stockd" --host 127.0.0.1 --port 0 --port-file "$tmp/port" \
    --metrics-port "$free_port" --metrics-port-file "$tmp/mport" \
    --data-dir "$tmp/data" --segment-size 4 --catalog "$tmp/catalog.csv" 2> "$tmp/stderr.log" &
pid=$!

deadline=$((SECONDS + READY_TIMEOUT_S))
mport=""
while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "ops/check.sh: FAIL: stockd exited before it was ready:" >&2
        cat "$tmp/stderr.log" >&2
        exit 1
    fi
    if [ -z "$mport" ] && [ -s "$tmp/mport" ]; then mport=$(tr -d '\n' < "$tmp/mport"); fi
    if [ -n "$mport" ] && curl -fsS --max-time 2 "http://127.0.0.1:$mport/ready" >/dev/null 2>&1; then break; fi
    if [ $SECONDS -ge $deadline ]; then
        echo "ops/check.sh: FAIL: GET /ready not 200 within ${READY_TIMEOUT_S}s:" >&2
        [ -n "$mport" ] && curl -sS --max-time 2 "http://127.0.0.1:$mport/ready" >&2 || true
        cat "$tmp/stderr.log" >&2
        exit 1
    fi
    sleep 0.1
done
base="http://127.0.0.1:$mport"
pass "stockd ready on metrics port $mport"

# One PING over the binary protocol (PROTOCOL.md §2: PING, request id 7), so the per-operation
# latency histogram has a series for promtool to check.
port=$(tr -d '\n' < "$tmp/port")
if python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(bytes.fromhex("080000000200000007000000"))
answer = b""
while len(answer) < 12:
    chunk = s.recv(12 - len(answer))
    if not chunk: sys.exit(1)
    answer += chunk
sys.exit(0 if answer[4] == 2 and answer[5] == 1 and answer[6] == 0 else 1)
PY
then pass "PING answered"; else fail "PING over the protocol port $port"; fi

[ "$(curl -fsS --max-time 5 "$base/healthz")" = "ok" ] && pass "GET /healthz: ok" || fail "GET /healthz is not 200 ok"
[ "$(curl -fsS --max-time 5 "$base/ready")" = "ready" ] && pass "GET /ready: ready" || fail "GET /ready is not 200 ready"

if curl -fsS --max-time 5 "$base/metrics" > "$tmp/scrape.txt"; then
    if promtool check metrics < "$tmp/scrape.txt" > "$tmp/promtool-metrics.txt" 2>&1; then
        pass "promtool check metrics ($(grep -c -v '^#' "$tmp/scrape.txt") samples)"
    else
        fail "promtool check metrics:"; cat "$tmp/promtool-metrics.txt" >&2
    fi
    grep -q '^stockd_build_info{' "$tmp/scrape.txt" && pass "stockd_build_info present" || fail "no stockd_build_info in the scrape"
    grep -q '^stockd_request_duration_seconds_count{op="PING"} [1-9]' "$tmp/scrape.txt" \
        && pass "per-operation request histogram (op=\"PING\")" || fail "no stockd_request_duration_seconds series for the PING"
    if grep -q 'sku="DRILL-' "$tmp/scrape.txt"; then fail "a drill SKU has per-SKU series"; else pass "no per-SKU series for drill SKUs"; fi
else
    fail "GET /metrics"
fi

if promtool check rules "$rules" > "$tmp/promtool-rules.txt" 2>&1; then
    pass "promtool check rules: $(grep -o '[0-9]* rules found' "$tmp/promtool-rules.txt")"
else
    fail "promtool check rules $rules:"; cat "$tmp/promtool-rules.txt" >&2
fi

if python3 -m json.tool "$dashboard" > /dev/null 2> "$tmp/json.txt"; then
    pass "Grafana dashboard is valid JSON"
else
    fail "$dashboard is not valid JSON:"; cat "$tmp/json.txt" >&2
fi

# Every stockd_* name in the alerts and the dashboard must be a family the scrape declares
# (a histogram's _bucket/_sum/_count belong to it): a renamed metric breaks CI, not a show.
declared=$(awk '$1 == "#" && $2 == "TYPE" { print $3 }' "$tmp/scrape.txt" | sort -u)
missing=0
for name in $(cat "$rules" "$dashboard" | grep -o 'stockd_[a-z0-9_]*' | sort -u); do
    family=$name
    if ! grep -qx "$family" <<< "$declared"; then family=$(sed -E 's/_(bucket|sum|count)$//' <<< "$name"); fi
    grep -qx "$family" <<< "$declared" || { fail "$name is used by the alerts or the dashboard but stockd does not export it"; missing=1; }
done
[ $missing -eq 0 ] && pass "every metric the alerts and the dashboard use is exported"

if [ $failures -ne 0 ]; then
    echo "ops/check.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "ops/check.sh: all checks passed"
