#!/usr/bin/env bash
# The bare Redis reference points for stockbench's comparison: INCR (the
# cheapest atomic counter update Redis has) with redis-benchmark, 16 clients,
# at depth 32 and at depth 1, on a redis-server of its own (persistence off).
# stockd's full reservation is measured against these as a "moonshot".
set -euo pipefail
REDIS=$(command -v redis-server || echo /usr/bin/redis-server)
DIR=$(mktemp -d)
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
for attempt in 1 2 3 4 5; do
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  "$REDIS" --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" --daemonize yes \
    --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
done
echo "redis bare INCR (redis-benchmark -c 16, one key):"
echo -n "  depth 32: "; redis-benchmark -p "$PORT" -c 16 -P 32 -n 3000000 -t incr -q | sed 's/\r/\n/g' | grep 'requests per second' | tail -1
echo -n "  depth 1:  "; redis-benchmark -p "$PORT" -c 16 -P 1 -n 300000 -t incr -q | sed 's/\r/\n/g' | grep 'requests per second' | tail -1
