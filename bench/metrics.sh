#!/usr/bin/env bash
# Scraping's cost (make bench-metrics), one run, one machine: durable stockd (1 worker) with
# --metrics-port and 1,000 SKUs in its catalog; reserve+confirm, 16 connections at depth 32,
# without a scraper, with one scraping GET /metrics every second (an aggressive Prometheus
# setting; 15 s is usual), and every 100 ms (a stress case), A B C A B C, 3 rounds, medians.
set -euo pipefail
cd "$(dirname "$0")/.."
B=.build/release
tmp=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
python3 -c "print('\n'.join(f'METRICS-{i:04d},1000000' for i in range(1000)))" > "$tmp/catalog.csv"
$B/stockd --port 0 --port-file "$tmp/port" --workers 1 --data-dir "$tmp/data" --catalog "$tmp/catalog.csv" \
  --metrics-port 0 --metrics-port-file "$tmp/mport" --log-level warning 2> "$tmp/stockd.log" &
for i in $(seq 100); do [ -s "$tmp/mport" ] && break; sleep 0.1; done
S=127.0.0.1:$(cat "$tmp/port"); M=http://127.0.0.1:$(cat "$tmp/mport")/metrics
curl -s "$M" | wc -lc | awk '{print "  one scrape: " $1 " lines, " $2 " bytes"}'
for round in 1 2 3; do
  for mode in none 1 0.1; do
    scraper=""
    if [ $mode != none ]; then
      # One long-lived scraper process (as Prometheus is), not a process per scrape.
      python3 -c "
import time, urllib.request, sys
while True:
    urllib.request.urlopen(sys.argv[1]).read(); time.sleep(float(sys.argv[2]))" "$M" $mode & scraper=$!
    fi
    $B/stockbench throughput --server "$S" --connections 16 --pipeline 32 --duration 4s --warmup 1s --json \
      > "$tmp/m-$mode-$round.json"
    [ -n "$scraper" ] && { kill $scraper; wait $scraper 2>/dev/null || true; }
  done
done
python3 - "$tmp" <<'PY'
import json, sys, glob, statistics
d = sys.argv[1]
m = {}
for mode in ("none", "1", "0.1"):
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/m-{mode}-*.json"))]
    m[mode] = {k: statistics.median(r[k] for r in runs) for k in ("ops_per_sec", "p50_us", "p99_us")}
    label = {"none": "no scraper", "1": "GET /metrics every 1 s", "0.1": "GET /metrics every 100 ms"}[mode]
    print(f"  {label:<26}: {m[mode]['ops_per_sec']/1e3:8.1f}k req/s  p50 {m[mode]['p50_us']:7.1f} µs  p99 {m[mode]['p99_us']:7.1f} µs  (medians of 3)")
for mode in ("1", "0.1"):
    print(f"  every {mode} s / not: throughput {m[mode]['ops_per_sec']/m['none']['ops_per_sec']:.2f}, p99 {m[mode]['p99_us']/m['none']['p99_us']:.2f}")
PY
