#!/usr/bin/env bash
# The server benchmark (make bench-server): the libuv frame echo (the ceiling)
# and stockd, driven by the same loopback driver in the same run, with 1 and 2
# workers, and stockd's two accept modes. One JSON line per run, prefixed by
# its label. Needs the release build in .build-bench (make bench-server does it).
set -u
cd "$(dirname "$0")/.."
B=.build-bench/release
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'BENCH-HOT,1000000000\n' > "$tmp/catalog.csv"
run_server() { # label cmd...
  local label=$1; shift
  rm -f "$tmp/port"
  "$@" --port 0 --port-file "$tmp/port" 2>"$tmp/server.err" &
  local pid=$!
  for i in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
  PORT=$(cat "$tmp/port") LABEL=$label OPS="${OPS}" bench/stockbench-lite/run-matrix.sh
  kill -TERM $pid; wait $pid
}
OPS=ping run_server echo-w1 $B/stockd-echo --workers 1
OPS="ping reserve-release" run_server stockd-w1 $B/stockd --workers 1 --sync none --catalog "$tmp/catalog.csv" --log-level warning
OPS=ping run_server echo-w2 $B/stockd-echo --workers 2
OPS="ping reserve-release" run_server stockd-w2 $B/stockd --workers 2 --sync none --catalog "$tmp/catalog.csv" --log-level warning
OPS="ping reserve-release" run_server stockd-w2-handoff $B/stockd --workers 2 --accept handoff --sync none --catalog "$tmp/catalog.csv" --log-level warning
