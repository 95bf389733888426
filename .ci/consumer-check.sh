#!/usr/bin/env bash
# Proves that a checkout service can depend on StockClient by version (issue 17 item 1):
# a throwaway consumer package depends on a clean clone of this repository, tagged, with
# `traits: []`, resolves, builds, and runs a client call against a real stockd.
# Fails when the consumer resolves anything but this package and swift-log, when a product
# carries unsafe flags (SwiftPM refuses those in a versioned dependency), or when it does not build.
# Usage: .ci/consumer-check.sh [path-to-stockd-binary]   (the binary is optional: without it the
# consumer is built but not run).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
stockd_bin="${1:-}"
version="$(sed -n 's/.*static let version = "\([0-9][0-9.]*\)".*/\1/p' "$root/Sources/CommandSupport/BuildInfo.swift" | head -1)"
version="${version:-0.2.0}"
work="$(mktemp -d /tmp/stockd-consumer.XXXXXX)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The dependency: what is committed at HEAD, tagged as a release would be.
git clone -q --no-hardlinks "$root" "$work/stockd"
git -C "$work/stockd" -c user.name=ci -c user.email=ci@localhost tag -a "$version" -m "consumer check"

mkdir -p "$work/checkout/Sources/checkout"
cat > "$work/checkout/Package.swift" <<MANIFEST
// swift-tools-version:6.2
import PackageDescription
let package = Package(
    name: "checkout",
    dependencies: [
        .package(url: "file://$work/stockd", from: "$version", traits: []),
    ],
    targets: [
        .executableTarget(name: "checkout", dependencies: [.product(name: "StockClient", package: "stockd")]),
    ]
)
MANIFEST
cat > "$work/checkout/Sources/checkout/main.swift" <<'SWIFT'
import StockClient

// One reservation and its release, as a checkout service makes them.
let arguments = CommandLine.arguments
guard arguments.count == 3, let port = Int(arguments[2]) else {
    print("checkout: built (pass SKU PORT to run against a stockd)")
    exit(0)
}
let client = StockClient(port: port, connections: 1)
let hold = try await client.reserve(sku: arguments[1], quantity: 1, customer: "consumer-check")
try await client.release(hold.token)
let info = try await client.stock(arguments[1])
print("checkout: reserved and released \(hold.token); available \(info.available)")
client.close()
SWIFT
# `exit` needs Glibc; keep the consumer free of Foundation.
sed -i '1i #if canImport(Glibc)\nimport Glibc\n#endif' "$work/checkout/Sources/checkout/main.swift"

cd "$work/checkout"
start=$(date +%s)
swift package resolve >"$work/resolve.log" 2>&1 || { cat "$work/resolve.log"; exit 1; }
resolved="$(ls .build/checkouts | sort | tr '\n' ' ')"
echo "consumer-check: resolved: $resolved"
[ "$resolved" = "stockd swift-log " ] || { echo "consumer-check: expected only stockd and swift-log" >&2; exit 1; }
swift build >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
echo "consumer-check: resolve + build in $(( $(date +%s) - start )) s; $(du -sh .build | cut -f1) in .build"
if [ -n "$stockd_bin" ]; then
    printf 'sku,on_hand\nCONSUMER-1,3\n' > "$work/catalog.csv"
    "$stockd_bin" --host 127.0.0.1 --port 0 --port-file "$work/port" --data-dir "$work/data" \
        --catalog "$work/catalog.csv" 2>"$work/stockd.log" &
    server_pid=$!
    for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
    [ -s "$work/port" ] || { cat "$work/stockd.log"; echo "consumer-check: stockd did not start" >&2; exit 1; }
    out="$(.build/debug/checkout CONSUMER-1 "$(cat "$work/port")")"
    echo "$out"
    [[ "$out" == *"available 3"* ]] || { echo "consumer-check: unexpected answer" >&2; exit 1; }
fi
echo "consumer-check: ok"
