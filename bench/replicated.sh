#!/usr/bin/env bash
# The replication benchmark (make bench-replicated), one run, one machine, everything on loopback:
#  1. reserve+confirm at depth 32 and depth 1 (16 connections), A B C A B C: a single durable node
#     (--sync always, no cluster), a primary with one standby, a primary with two standbys (each node
#     with its stock-agent, one real etcd); throughput ratio to the single node, p50/p99, records per
#     journal round and per replication round, send-to-ack latency of a round;
#  2. failover: three nodes, kill -9 of the primary's stockd and agent (its machine), ROUNDS times;
#     the time from the kill to the first RESERVE answered OK by a survivor, as a distribution,
#     against the lease TTL (the killed node is restarted and rejoins before the next round).
# Needs the release build (make bench-replicated does it) and etcd (Debian's etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."
export B=.build/release
export ROUNDS=${ROUNDS:-10}
export PAIRS=${PAIRS:-2}
export DURATION=${DURATION:-4s}
export LEASE_TTL=${LEASE_TTL:-2}
exec python3 - <<'PY'
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

B = os.environ["B"]
ROUNDS = int(os.environ["ROUNDS"])
PAIRS = int(os.environ["PAIRS"])
DURATION = os.environ["DURATION"]
TTL = int(os.environ["LEASE_TTL"])
tmp = tempfile.mkdtemp(prefix="bench-repl.")
procs = []

def cleanup():
    # Every process started here, whatever ended the run (a failed check exits through sys.exit).
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
    shutil.rmtree(tmp, ignore_errors=True)

import atexit
atexit.register(cleanup)

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

def start(args, log):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    procs.append(p)
    return p

def kill(p):
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()

def ctl(port, *args):
    r = subprocess.run([f"{B}/stockctl", "--server", f"127.0.0.1:{port}", "--json", "--timeout", "1s", *args],
                       capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else None

def wait_for(what, seconds, fn):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    sys.exit(f"bench-replicated: not within {seconds} s: {what} (logs in {tmp})")

class Etcd:
    def __init__(self, d):
        self.client, peer = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.client}"
        self.p = start(["etcd", "--name", "bench", "--data-dir", f"{d}/etcd", "--listen-client-urls", self.endpoint,
                        "--advertise-client-urls", self.endpoint, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-cluster", f"bench=http://127.0.0.1:{peer}"], f"{d}/etcd.log")
        wait_for("etcd", 10, lambda: subprocess.run(["curl", "-sf", "-X", "POST", f"{self.endpoint}/v3/kv/range",
                                                     "-d", '{"key":"AA=="}'], capture_output=True).returncode == 0)

class Node:
    def __init__(self, d, node, etcd, catalog):
        self.d, self.id, self.etcd, self.catalog = d, node, etcd, catalog
        self.port = free_port()
        self.start()

    def start(self):
        self.stockd = start([f"{B}/stockd", "--cluster", "bench", "--node-id", self.id, "--port", str(self.port),
                             "--data-dir", f"{self.d}/{self.id}", "--workers", "1", "--catalog", self.catalog,
                             "--log-level", "notice"], f"{self.d}/{self.id}.log")
        wait_for(f"stockd {self.id}", 10, lambda: ctl(self.port, "cluster", "status"))
        self.agent = start([f"{B}/stock-agent", "--etcd", self.etcd.endpoint, "--cluster", "bench", "--node-id", self.id,
                            "--stockd", f"127.0.0.1:{self.port}", "--lease-ttl", str(TTL)],
                           f"{self.d}/agent-{self.id}.log")

    def kill(self):
        kill(self.agent)
        kill(self.stockd)

def settled(nodes):
    """The primary once every other node is in its wait set."""
    for n in nodes:
        s = ctl(n.port, "cluster", "status")
        if s and s["role"] == "primary" and sum(1 for b in s["standbys"] if b["in_sync"]) == len(nodes) - 1:
            return n
    return None

def stats(port):
    r = ctl(port, "stats")
    return r or {}

def logs(d):
    out = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".log") and not name.startswith("etcd"):
            lines = open(os.path.join(d, name), errors="replace").read().splitlines()
            out.append(f"--- {name}: " + " | ".join(lines[-12:]))
    return "\n".join(out)

def throughput(port, depth, what="", d=None):
    r = subprocess.run([f"{B}/stockbench", "throughput", "--server", f"127.0.0.1:{port}", "--connections", "16",
                        "--pipeline", str(depth), "--mix", "2:2:0:0", "--duration", DURATION, "--warmup", "1s", "--json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"stockbench failed ({what}, depth {depth}): {r.stderr[-2000:]}\n{r.stdout[-3000:]}\n"
                 + (logs(d) if d else ""))
    j = json.loads(r.stdout)
    assert j["oversold"] == 0 and j["accounting_mismatches"] == 0, j
    return j

names = ["single durable node", "primary + 1 standby", "primary + 2 standbys"]

def run_config(kind, depth):
    d = tempfile.mkdtemp(dir=tmp)
    catalog = f"{d}/catalog.csv"
    open(catalog, "w").write("WARMUP,1\n")
    try:
        if kind == 0:
            port = free_port()
            p = start([f"{B}/stockd", "--port", str(port), "--data-dir", f"{d}/single", "--workers", "1",
                       "--catalog", catalog, "--log-level", "warning"], f"{d}/single.log")
            wait_for("stockd", 10, lambda: ctl(port, "stats"))
            j = throughput(port, depth, names[0], d)
            st = stats(port)
            kill(p)
        else:
            etcd = Etcd(d)
            nodes = [Node(d, n, etcd, catalog) for n in "abc"[:kind + 1]]
            primary = wait_for("a settled primary", 30, lambda: settled(nodes))
            j = throughput(primary.port, depth, names[kind], d)
            st = stats(primary.port)
            for n in nodes:
                n.kill()
            kill(etcd.p)
        return j, st
    finally:
        shutil.rmtree(d, ignore_errors=True)

print(f"== 1. reserve+confirm, 16 connections, {DURATION} per run, A B C x {PAIRS} (medians)")
for depth in (32, 1):
    runs = {k: [] for k in range(3)}
    for _ in range(PAIRS):
        for kind in range(3):
            runs[kind].append(run_config(kind, depth))
    base = statistics.median(j["ops_per_sec"] for j, _ in runs[0])
    for kind in range(3):
        js = [j for j, _ in runs[kind]]
        sts = [s for _, s in runs[kind]]
        ops = statistics.median(j["ops_per_sec"] for j in js)
        p50 = statistics.median(j["p50_us"] for j in js)
        p99 = statistics.median(j["p99_us"] for j in js)
        batch = statistics.median(s.get("journal.batch_records_avg", 0) for s in sts)
        line = (f"  depth {depth:>2} {names[kind]:<21}: {ops/1e3:7.1f}k req/s ({ops/base:4.2f}x single)  "
                f"p50 {p50:7.1f} µs  p99 {p99:8.1f} µs  records/journal round {batch:5.0f}")
        if kind > 0:
            rounds = statistics.median(s.get("replication.rounds_sent", 0) for s in sts) or 1
            recs = statistics.median(s.get("replication.records_sent", 0) for s in sts)
            ack = statistics.median(s.get("replication.ack_us_avg", 0) for s in sts)
            ackmax = max(s.get("replication.ack_us_max", 0) for s in sts)
            line += f"  records/repl round {recs/rounds:5.1f}  round-to-ack avg {ack} µs (max {ackmax} µs)"
        print(line, flush=True)

print(f"\n== 2. failover: 3 nodes, lease TTL {TTL} s, kill -9 of the primary (stockd + agent), {ROUNDS} rounds")
d = tempfile.mkdtemp(dir=tmp)
catalog = f"{d}/catalog.csv"
open(catalog, "w").write("JACKET,100000000\n")
etcd = Etcd(d)
nodes = [Node(d, n, etcd, catalog) for n in "abc"]
times = []
for r in range(ROUNDS):
    primary = wait_for("a settled primary", 30, lambda: settled(nodes))
    # Load on the primary while it dies: stockbench until it loses the server.
    load = subprocess.Popen([f"{B}/stockbench", "throughput", "--server", f"127.0.0.1:{primary.port}", "--connections",
                             "4", "--pipeline", "4", "--mix", "1:1:0:0", "--skus", "1", "--duration", "60s",
                             "--warmup", "0s", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    t0 = time.monotonic()
    primary.kill()
    survivors = [n for n in nodes if n is not primary]
    def first_ok():
        for n in survivors:
            rr = subprocess.run([f"{B}/stockctl", "--server", f"127.0.0.1:{n.port}", "--timeout", "500ms",
                                 "reserve", "JACKET", "1"], capture_output=True)
            if rr.returncode == 0:
                return True
        return False
    wait_for("a survivor answers OK", 30, first_ok)
    dt = time.monotonic() - t0
    times.append(dt)
    load.kill(); load.wait()
    print(f"  round {r + 1:>2}: first OK {dt:5.2f} s after the kill", flush=True)
    primary.start()  # the old primary rejoins as a standby (truncating what was never committed)
times.sort()
def pct(q):
    return times[min(len(times) - 1, int(q * len(times)))]
print(f"  failover: min {times[0]:.2f} s  p50 {statistics.median(times):.2f} s  p99 {pct(0.99):.2f} s  max {times[-1]:.2f} s"
      f"  (lease TTL {TTL} s: p99 / TTL = {pct(0.99) / TTL:.2f})")
for n in nodes:
    n.kill()
kill(etcd.p)
for p in procs:
    kill(p)
shutil.rmtree(tmp, ignore_errors=True)
PY
