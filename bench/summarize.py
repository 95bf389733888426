#!/usr/bin/env python3
"""Turns bench/server.sh output (LABEL {json} lines) into a Markdown table,
with stockd's RESERVE+RELEASE as a share of the echo ceiling of the same run."""
import json
import sys

rows = {}
for line in sys.stdin:
    label, _, rest = line.partition(" ")
    if not rest.startswith("{"):
        continue
    r = json.loads(rest)
    rows[(label, r["op"], r["connections"], r["depth"])] = r

labels = sorted({k[0] for k in rows}, key=lambda l: (l.startswith("stockd"), l))
print("| server | op | conns | depth | req/s | p50 µs | p99 µs |")
print("|---|---|---|---|---|---|---|")
for (label, op, c, d), r in sorted(rows.items(), key=lambda kv: (labels.index(kv[0][0]), kv[0][1], kv[0][2], kv[0][3])):
    print(f"| {label} | {op} | {c} | {d} | {r['requests_per_sec']:,} | {r['p50_us']:.0f} | {r['p99_us']:.0f} |")

print()
print("| comparison (same run) | value |")
print("|---|---|")
echo_best = max((r["requests_per_sec"] for (l, op, c, d), r in rows.items() if l.startswith("echo") and d == 32), default=0)
for label in labels:
    if not label.startswith("stockd"):
        continue
    rr = max((r["requests_per_sec"] for (l, op, c, d), r in rows.items()
              if l == label and op == "reserve-release" and d == 32), default=0)
    if echo_best:
        print(f"| {label} RESERVE+RELEASE depth 32 / best echo depth 32 | {rr:,} / {echo_best:,} = {rr / echo_best:.0%} |")
    workers = label.split("-")[1]
    echo = rows.get((f"echo-{workers}", "ping", 16, 1)), rows.get((f"echo-{workers}", "ping", 1, 1))
    for conns in (1, 16, 64):
        e = rows.get((f"echo-{workers}", "ping", conns, 1))
        s = rows.get((label, "reserve-release", conns, 1))
        if e and s:
            print(f"| {label} depth-1 p50, {conns} conn(s): RESERVE+RELEASE / echo | "
                  f"{s['p50_us']:.0f} / {e['p50_us']:.0f} µs = {s['p50_us'] / e['p50_us']:.2f}× |")
