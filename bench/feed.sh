#!/usr/bin/env bash
# The event-feed benchmark (make bench-feed), one run, one machine:
#  1. the feed's cost on reservations: durable stockd (1 worker, as bench-durable),
#     reserve+confirm, 16 connections at depth 32, with no subscriber / one subscriber to
#     confirmed events / one to every event (A B C A B C, 3 rounds, medians). The subscriber
#     is `stockbench feed`, which counts frames without decoding them, so the figures are
#     the server's cost and the feed's delivery rate, not a consumer's;
#  2. catch-up read speed: one subscriber reading the retained journal from the oldest offset;
#  3. memory of a stalled subscriber: stockd's RSS before and after a load while a
#     subscriber holds credit but never reads.
# Needs the release build (make bench-feed does it).
set -euo pipefail
cd "$(dirname "$0")/.."
B=.build/release
tmp=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
alive() {  # stockd must survive every step; if not, show why
  kill -0 $stockd 2>/dev/null && return 0
  echo "stockd died; the end of its log:"; tail -20 "$tmp/stockd.log"; exit 1
}

$B/stockd --port 0 --port-file "$tmp/port" --workers 1 --data-dir "$tmp/data" --log-level info 2> "$tmp/stockd.log" &
stockd=$!
for i in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
export STOCKD_SERVER=127.0.0.1:$(cat "$tmp/port")

echo "== 1. reservation throughput with and without feed subscribers (durable stockd, depth 32)"
for round in 1 2 3; do
  for mode in none confirmed all; do
    sub=""
    case $mode in
      confirmed) $B/stockbench feed --server "$STOCKD_SERVER" --kind confirmed --duration 5.5s --json \
                   > "$tmp/sub-$mode-$round.json" & sub=$! ;;
      all) $B/stockbench feed --server "$STOCKD_SERVER" --duration 5.5s --json > "$tmp/sub-$mode-$round.json" & sub=$! ;;
    esac
    sleep 0.3
    $B/stockbench throughput --server "$STOCKD_SERVER" --connections 16 --pipeline 32 --duration 4s --warmup 1s \
      --json > "$tmp/feed-$mode-$round.json"
    [ -n "$sub" ] && { wait $sub || true; }
  done
done
alive
python3 - "$tmp" <<'PY'
import json, sys, glob, statistics
d = sys.argv[1]
m = {}
for mode in ("none", "confirmed", "all"):
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/feed-{mode}-*.json"))]
    assert all(r["oversold"] == 0 and r["accounting_mismatches"] == 0 for r in runs)
    m[mode] = {k: statistics.median(r[k] for r in runs) for k in ("ops_per_sec", "p50_us", "p99_us")}
    label = {"none": "no subscriber", "confirmed": "1 subscriber, confirmed only", "all": "1 subscriber, every event"}[mode]
    print(f"  {label:<30}: {m[mode]['ops_per_sec']/1e3:8.1f}k req/s  p50 {m[mode]['p50_us']:7.1f} µs"
          f"  p99 {m[mode]['p99_us']:7.1f} µs  (medians of 3)")
for mode in ("confirmed", "all"):
    print(f"  throughput with subscriber ({mode}) / without = {m[mode]['ops_per_sec']/m['none']['ops_per_sec']:.2f}")
for mode in ("confirmed", "all"):
    subs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/sub-{mode}-*.json"))]
    rate = statistics.median(s["events_per_sec"] for s in subs)
    print(f"  feed delivery ({mode}): {rate/1e3:.1f}k events/s to the subscriber (median of 3, over its 5.5 s)")
PY

echo
echo "== 2. catch-up: one subscriber reads the retained journal from the oldest offset"
$B/stockbench feed --server "$STOCKD_SERVER" --from oldest --until-end | sed 's/^/  every event: /'
$B/stockbench feed --server "$STOCKD_SERVER" --from oldest --until-end --kind confirmed | sed 's/^/  confirmed only: /'

alive
echo
echo "== 3. a stalled subscriber (credit, never reads) during a 4 s load"
python3 - "$STOCKD_SERVER" > "$tmp/stall.log" 2>&1 <<'PY' &
import socket, struct, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
# SUBSCRIBE from now, credit 1,048,576, every kind: header (length, opcode 0x40, flags, status, reserved, id) + payload.
payload = struct.pack("<QIHB", 2**64 - 1, 1 << 20, 0, 0)
s.sendall(struct.pack("<IBBBBI", 8 + len(payload), 0x40, 0, 0, 0, 1) + payload)
time.sleep(30)  # never reads
PY
stall=$!
sleep 0.5
rss() { awk '/VmRSS/ {print $2}' /proc/$stockd/status; }
before=$(rss)
$B/stockbench throughput --server "$STOCKD_SERVER" --connections 16 --pipeline 32 --duration 4s --warmup 1s \
  --json > "$tmp/stall.json"
after=$(rss)
python3 - "$tmp/stall.json" "$before" "$after" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  reservations meanwhile: {r['ops_per_sec']/1e3:.1f}k req/s, p99 {r['p99_us']:.0f} µs")
print(f"  stockd RSS {int(sys.argv[2])/1024:.1f} MiB before, {int(sys.argv[3])/1024:.1f} MiB after")
PY
alive
$B/stockctl stats | grep '^feed\.' | sed 's/^/  /'
kill $stall 2>/dev/null || true
kill -TERM $stockd; wait $stockd 2>/dev/null || true
