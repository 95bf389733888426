#!/usr/bin/env bash
# Runs the stockbench-lite matrix against a server already listening on
# 127.0.0.1:$PORT and prints one JSON line per run, prefixed by "$LABEL ":
#   ops {ping, reserve-release} x connections {1, 16, 64} x depth {1, 32},
#   3-second runs after a 1-second warmup (12 runs, about 50 s).
#
# usage: PORT=7878 LABEL=stockd-w2 bench/stockbench-lite/run-matrix.sh
#    or: bench/stockbench-lite/run-matrix.sh PORT LABEL
# Optional environment: DRIVER (path to stockbench-lite; default: the release
# build under .build-bench, else .build), THREADS (driver loops, default 1),
# SKU (default BENCH-HOT; the server's catalog must hold it for reserve-release),
# DURATION (default 3s), WARMUP (default 1s), OPS, CONNECTIONS, DEPTHS (space-separated lists).
# Build first: swift build -c release --scratch-path .build-bench --product stockbench-lite
set -euo pipefail

PORT="${1:-${PORT:-}}"
LABEL="${2:-${LABEL:-}}"
if [[ -z "$PORT" || -z "$LABEL" ]]; then
    echo "usage: PORT=N LABEL=name $0   (or: $0 PORT LABEL)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${DRIVER:-}" ]]; then
    for candidate in "$root/.build-bench/release/stockbench-lite" "$root/.build/release/stockbench-lite"; do
        if [[ -x "$candidate" ]]; then DRIVER="$candidate"; break; fi
    done
fi
if [[ -z "${DRIVER:-}" || ! -x "$DRIVER" ]]; then
    echo "$0: stockbench-lite not built (swift build -c release --scratch-path .build-bench --product stockbench-lite)" >&2
    exit 2
fi

THREADS="${THREADS:-1}"
SKU="${SKU:-BENCH-HOT}"
DURATION="${DURATION:-3s}"
WARMUP="${WARMUP:-1s}"
OPS="${OPS:-ping reserve-release}"
CONNECTIONS="${CONNECTIONS:-1 16 64}"
DEPTHS="${DEPTHS:-1 32}"

status=0
for op in $OPS; do
    for c in $CONNECTIONS; do
        for d in $DEPTHS; do
            # The driver exits non-zero when nothing was answered; print its figures anyway.
            out="$("$DRIVER" --port "$PORT" --op "$op" --connections "$c" --depth "$d" \
                        --duration "$DURATION" --warmup "$WARMUP" --threads "$THREADS" --sku "$SKU" --json)" || status=1
            if json="$(grep '^{' <<<"$out")"; then
                echo "$LABEL $json"
            else
                echo "$0: no result: op=$op connections=$c depth=$d" >&2
                status=1
            fi
        done
    done
done
exit $status
