#!/usr/bin/env python3
"""A stand-in for the OMS's webhook endpoint, for the README walkthrough ("A show, end to end").

Listens on 127.0.0.1, verifies each stock-hooks POST's HMAC signature (clients/stock-hooks/README.md,
"Verifying a request") on the raw body, drops a delivery it has already stored (Stockd-Event-Id
is the idempotency key), appends every new event to --log as one JSON line, and prints one line
per event. Answers 204 once stored, 401 for a bad or stale signature, 400 for a body that is not
JSON. GET /healthz answers 200 (what `stockctl drill --webhook-check` probes).

    python3 demo/hook-receiver.py --port 9099 --secret-file hooks.secret --log hooks-received.jsonl
"""
import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20          # stock-hooks bodies are a few hundred bytes; refuse anything absurd
MAX_SKEW_SECONDS = 300      # an older signature is treated as a replay


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9099)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--log", default="hooks-received.jsonl")
    args = parser.parse_args()
    try:
        with open(args.secret_file, "rb") as f:
            secret = f.read().rstrip(b"\n")        # stock-hooks trims one trailing newline too
    except OSError as e:
        print(f"hook-receiver: --secret-file {args.secret_file}: {e.strerror}", file=sys.stderr)
        return 2
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):           # one line per event below, not per request
            pass

        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= MAX_BODY:
                return self.answer(400)
            body = self.rfile.read(length)
            ts = self.headers.get("Stockd-Timestamp", "")
            signature = self.headers.get("Stockd-Signature", "")
            expected = "v1=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            if not ts.isdigit() or abs(time.time() - int(ts)) > MAX_SKEW_SECONDS \
                    or not hmac.compare_digest(expected, signature):
                return self.answer(401)
            try:
                event = json.loads(body)
            except ValueError:
                return self.answer(400)
            event_id = self.headers.get("Stockd-Event-Id", "")
            with lock:
                if event_id not in seen:
                    seen.add(event_id)
                    with open(args.log, "ab") as log:
                        log.write(body + b"\n")
                    print(f"hook-receiver: {event.get('kind')} {event.get('sku')} "
                          f"x{event.get('quantity')} order={event.get('order')} offset={event_id}", flush=True)
            self.answer(204)

        def answer(self, status: int):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"hook-receiver: listening on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
