# stockd — the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libuv1-dev pkg-config
# The tests and `make bench` run the Redis baseline against a real redis-server.
APT_TEST_PACKAGES := redis-server

.PHONY: run test deps test-deps build release bench bench-durable bench-feed bench-metrics bench-core bench-decode bench-server tsan clean

# Installs the Debian packages the build needs when they are missing.
deps:
	@if ! pkg-config --exists libuv 2>/dev/null; then \
		echo "make: installing $(APT_PACKAGES) with apt-get"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi

# redis-server, for the stockbench tests and `make bench` (only the binary is
# used: stockbench starts its own instances on loopback ports).
test-deps: deps
	@if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then \
		echo "make: installing $(APT_TEST_PACKAGES) with apt-get"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(APT_TEST_PACKAGES); \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Builds and runs every test (Swift Testing and XCTest).
test: test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Builds stockd (release; only what it links) and starts it on 127.0.0.1:7878 with the demo drop.
run: deps
	$(SWIFT) build -c release --product stockd
	.build/release/stockd --host 127.0.0.1 --port 7878 --catalog demo/catalog.csv

# stockd vs the Redis/Lua baseline, same generator, same machine, same run
# (stockbench compare: A B A B, 3 rounds each): throughput at depth 32 and 1,
# and the flash sale. Both servers are started on loopback ports of their own
# and stopped afterwards; Redis runs with persistence off (stockd is in-memory
# until the journal lands). Then the bare-Redis reference points (INCR with
# redis-benchmark). Bounded to 5 minutes.
bench: test-deps
	$(SWIFT) build -c release --product stockd
	$(SWIFT) build -c release --product stockbench
	timeout 300 bash -c '\
	  set -e; B=.build/release/stockbench; \
	  echo "== throughput, reserve+confirm, 16 connections x depth 32, one hot SKU"; \
	  $$B compare throughput --connections 16 --pipeline 32 --duration 5s --warmup 1s; \
	  echo; echo "== throughput, unpipelined: 16 connections x depth 1, one hot SKU"; \
	  $$B compare throughput --connections 16 --pipeline 1 --duration 5s --warmup 1s; \
	  echo; echo "== flash sale: 20 SKUs x 500 units, a stampede of 20,000 buyers within 200 ms (100k/s), mix 10:7:2:1, ttl 1 s"; \
	  $$B compare flash-sale --skus 20 --stock 500 --buyers 20000 --within 200ms; \
	  echo; bench/redis-baseline.sh'

# Durability: --sync always vs none, durable stockd vs Redis with AOF, and the
# recovery time of 1,000,000 journal records (bench/durability.sh; ~3 minutes).
bench-durable: test-deps
	$(SWIFT) build -c release --product stockd
	$(SWIFT) build -c release --product stockbench
	timeout 600 bench/durability.sh

# The event feed's cost on reservations, catch-up speed, a stalled subscriber (bench/feed.sh).
bench-feed: deps
	$(SWIFT) build -c release --product stockd
	$(SWIFT) build -c release --product stockbench
	$(SWIFT) build -c release --product stockctl
	timeout 600 bench/feed.sh

# Scraping GET /metrics every 100 ms vs not: reservation throughput and p99 (bench/metrics.sh).
bench-metrics: deps
	$(SWIFT) build -c release --product stockd
	$(SWIFT) build -c release --product stockbench
	timeout 300 bench/metrics.sh

# Core micro-benchmarks (release): reserve+release pairs/s, allocations/op, bytes/token.
bench-core: deps
	$(SWIFT) run -c release stockcore-bench

# Decode throughput of 1M pipelined frames (release).
bench-decode: deps
	$(SWIFT) run -c release stockproto-bench

# Server throughput and latency: the echo ceiling and stockd, same driver, same run
# (bench/server.sh; about 4 minutes).
bench-server: deps
	$(SWIFT) build -c release --scratch-path .build-bench
	bench/server.sh

# The core's concurrency tests under ThreadSanitizer (a report fails the run).
tsan: deps
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan --filter StockCoreTests

clean:
	rm -rf .build .build-*
