#!/usr/bin/env bash
# The durability benchmark (make bench-durable), one run, one machine:
#  1. stockd --sync always vs --sync none (A B A B, 3 rounds, medians), reserve+confirm,
#     16 connections at depth 32 and at depth 1;
#  2. durable stockd vs Redis+Lua with appendfsync everysec, then always (stockbench compare);
#  3. recovery time of a data directory holding 1,000,000 journal records (kill -9, restart).
# Needs the release build (make bench-durable does it).
set -euo pipefail
cd "$(dirname "$0")/.."
B=.build/release
tmp=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

echo "== 1. stockd durable (--sync always) vs in-memory (--sync none), reserve+confirm, one hot SKU"
for depth in 32 1; do
  for round in 1 2 3; do
    for sync in none always; do
      $B/stockbench throughput --stockd-sync $sync --connections 16 --pipeline $depth --duration 4s --warmup 1s --json \
        > "$tmp/sync-$depth-$sync-$round.json"
    done
  done
done
python3 - "$tmp" <<'PY'
import json, sys, glob, statistics
d = sys.argv[1]
for depth in (32, 1):
    m = {}
    for sync in ("none", "always"):
        runs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/sync-{depth}-{sync}-*.json"))]
        m[sync] = {k: statistics.median(r[k] for r in runs) for k in ("ops_per_sec", "p50_us", "p99_us", "p999_us")}
        assert all(r["oversold"] == 0 and r["accounting_mismatches"] == 0 for r in runs)
        print(f"  depth {depth:>2} --sync {sync:<6}: {m[sync]['ops_per_sec']/1e3:8.1f}k req/s  p50 {m[sync]['p50_us']:7.1f} µs"
              f"  p99 {m[sync]['p99_us']:7.1f} µs  p99.9 {m[sync]['p999_us']:7.1f} µs  (medians of 3)")
    print(f"  depth {depth:>2}: durable / in-memory throughput = {m['always']['ops_per_sec']/m['none']['ops_per_sec']:.2f}")
PY

echo
echo "== 2. durable stockd vs Redis+Lua with AOF"
for p in everysec always; do
  echo "-- redis appendfsync $p, depth 32"
  $B/stockbench compare throughput --stockd-sync always --redis-persistence $p --connections 16 --pipeline 32 \
    --duration 4s --warmup 1s | tail -4
done
echo "-- redis appendfsync everysec, depth 1"
$B/stockbench compare throughput --stockd-sync always --redis-persistence everysec --connections 16 --pipeline 1 \
  --duration 4s --warmup 1s | tail -4

echo
echo "== 3. recovery of 1,000,000 journal records"
printf 'RECOVERY-HOT,1000000000\n' > "$tmp/catalog.csv"
$B/stockd --port 0 --port-file "$tmp/port" --workers 1 --data-dir "$tmp/data" --catalog "$tmp/catalog.csv" \
  --log-level warning 2> "$tmp/first.log" &
pid=$!
for i in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
# 500,000 reserve+confirm pairs: 1,000,000 records (plus the catalog's one).
$B/stockbench throughput --server 127.0.0.1:$(cat "$tmp/port") --connections 16 --pipeline 32 --requests 1000000 \
  --skus 1 --json > "$tmp/load.json" || true
kill -9 $pid; wait $pid 2>/dev/null || true
du -sh "$tmp/data" | sed 's/^/  data dir: /'
rm -f "$tmp/port"
start=$(date +%s.%N)
$B/stockd --port 0 --port-file "$tmp/port" --workers 1 --data-dir "$tmp/data" --log-level info 2> "$tmp/second.log" &
pid=$!
for i in $(seq 600); do [ -s "$tmp/port" ] && break; sleep 0.01; done
end=$(date +%s.%N)
grep -o 'recovery: .*' "$tmp/second.log" | head -1 | sed 's/^/  /'
python3 -c "print(f'  restart to listening: {($end - $start)*1000:.0f} ms (process start, recovery, snapshot, bind)')"
kill -TERM $pid; wait $pid 2>/dev/null || true
