# stockd — the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libuv1-dev pkg-config

.PHONY: run test deps build release bench-core bench-decode bench-server tsan clean

# Installs the Debian packages the build needs when they are missing.
deps:
	@if ! pkg-config --exists libuv 2>/dev/null; then \
		echo "make: installing $(APT_PACKAGES) with apt-get"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Builds and runs every test (Swift Testing and XCTest).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Builds release and starts stockd on 127.0.0.1:7878 with the demo drop.
run: release
	.build/release/stockd --host 127.0.0.1 --port 7878 --catalog demo/catalog.csv

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
