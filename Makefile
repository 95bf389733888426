# stockd — the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libuv1-dev pkg-config
# The tests and `make bench` run the Redis baseline against a real redis-server; the failover
# tests start a real etcd (Debian's etcd-server) on loopback.
APT_TEST_PACKAGES := redis-server etcd-server

.PHONY: run tools docs install consumer-check ops-check test deps test-deps build release bench bench-durable bench-replicated bench-feed bench-metrics bench-hostile bench-core bench-journal bench-decode bench-server tsan asan fuzz clean

# Installs the Debian packages the build needs when they are missing.
deps:
	@if ! pkg-config --exists libuv 2>/dev/null; then \
		echo "make: installing $(APT_PACKAGES) with apt-get"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi

# redis-server, for the stockbench tests and `make bench`, and etcd, for the failover tests (only
# the binaries are used: the tests start their own instances on loopback ports).
test-deps: deps
	@if { ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; } \
		|| { ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; }; then \
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
	$(SWIFT) test --skip-build --skip WalkthroughTests --skip FailoverTests --skip ReplicationTests
	@# The README walkthrough drives a 3,000-buyer flash sale through the debug tools, and the cluster
	@# suites run three stockd nodes, their agents and an etcd each: run apart, so they neither starve the
	@# other suites' bounded waits nor are starved by them.
	$(SWIFT) test --skip-build --filter 'ReplicationTests|FailoverTests'
	$(SWIFT) test --skip-build --filter WalkthroughTests

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
	  echo; bench/StockBenchRedis-baseline.sh'

# The operator tools the README's walkthrough calls, release builds next to stockd in
# .build/release (README, "A show, end to end": `export PATH="$$PWD/.build/release:$$PATH"`).
TOOLS := stockctl stock-hooks stockbench
tools: deps
	$(SWIFT) build -c release --product stockd
	for p in $(TOOLS); do $(SWIFT) build -c release --product $$p || exit 1; done
	@echo "make tools: stockd $(TOOLS) are in $(CURDIR)/.build/release"

# Man pages and shell completions from the release binaries (scripts/gen-man-and-completions.sh).
docs: tools
	scripts/gen-man-and-completions.sh -b .build/release -o .build/share

# Installs the four binaries into $(PREFIX)/bin, their man pages and completions into
# $(PREFIX)/share (default /usr/local; DESTDIR for packaging).
PREFIX ?= /usr/local
install: tools docs
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share
	for p in stockd $(TOOLS); do install -m 0755 .build/release/$$p $(DESTDIR)$(PREFIX)/bin/$$p || exit 1; done
	cp -R .build/share/. $(DESTDIR)$(PREFIX)/share/
	@echo "make install: stockd $(TOOLS) in $(DESTDIR)$(PREFIX)/bin, man pages and completions in $(DESTDIR)$(PREFIX)/share"

# A throwaway package depends on StockClient by version (a tag on a clean clone, `traits: []`),
# resolves only this package and swift-log, builds, and reserves against a real stockd.
consumer-check: deps
	$(SWIFT) build --product stockd
	.ci/consumer-check.sh $(CURDIR)/.build/debug/stockd

# The ops files against a live stockd: promtool check rules (ops/prometheus) and check metrics on a
# real scrape, /ready, the Grafana dashboard's JSON (ops/check.sh). Needs promtool (apt: prometheus).
ops-check: deps
	$(SWIFT) build --product stockd
	ops/check.sh $(CURDIR)/.build/debug/stockd

# Durability: --sync always vs none, durable stockd vs Redis with AOF, and the
# recovery time of 1,000,000 journal records (bench/durability.sh; ~3 minutes).
bench-durable: test-deps
	$(SWIFT) build -c release --product stockd
	$(SWIFT) build -c release --product stockbench
	timeout 600 bench/durability.sh

# Replication (docs/replication.md): a single durable node vs a primary with one and with two
# standbys (each node with its stock-agent, one real etcd), then kill -9 failover rounds.
bench-replicated: test-deps
	$(SWIFT) build -c release --product stockd
	$(SWIFT) build -c release --product stock-agent
	$(SWIFT) build -c release --product stockctl
	$(SWIFT) build -c release --product stockbench
	timeout 900 bench/replicated.sh

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

# The hostile-client suite: a checkout client's latency alone and beside bounded attackers
# (garbage, oversized/zero lengths, unknown opcodes, HELLO floods, connect cycles, half-open
# sockets, clients that never read, forged tokens), exact counts and stockd's RSS checked.
# The p99 ratio is printed, not checked.
bench-hostile: deps
	$(SWIFT) build -c release --product stockd
	$(SWIFT) build -c release --product stockbench
	timeout 300 .build/release/stockbench hostile --duration 10s

# Core micro-benchmarks (release): reserve+release pairs/s, allocations/op, bytes/token.
bench-core: deps
	$(SWIFT) run -c release stockcore-bench

# Decode throughput of 1M pipelined frames (release).
bench-decode: deps
	$(SWIFT) run -c release stockproto-bench

# The journal alone (release): the encode hot path (records/s, allocations/record) and append +
# fdatasync latency of ~3 KB batches with and without preallocated segments, on the disk of TMPDIR
# (default /tmp; STOCKJOURNAL_LATENCY_BATCHES and STOCKJOURNAL_LATENCY_SEGMENT_MIB scale it).
bench-journal: deps
	$(SWIFT) run -c release stockjournal-bench

# Server throughput and latency: the echo ceiling and stockd, same driver, same run
# (bench/server.sh; about 4 minutes).
bench-server: deps
	$(SWIFT) build -c release --scratch-path .build-bench
	bench/server.sh

# The concurrency tests under ThreadSanitizer: the core's (threads in the test process), then the
# server's, which start the TSan-built stockd next to the test bundle, one test at a time (their
# load deadlines assume the machine to themselves). Every process writes its reports to
# $(TSAN_SCRATCH)/tsan-reports; any report fails the run. Left out: StockHooksTests and the
# stalled-subscriber RSS test (README, "Sanitizers and fuzzing": toolchain false positives; RSS under TSan).
TSAN_SCRATCH ?= .build-tsan
TSAN_SERVER := hotSKUStampede|pipelined10k|slowReaderQueuedWrites|oneByteAtATime|disconnectMidFrame|sigtermDuringLoad|ttlExpiresOverTheWire|idleTimeout|busy|atCapacity
TSAN_FEED := orderAndFields|filters|resumeAcrossRestarts|autoResume|compactedOffset|badInput
TSAN_SERVER_TESTS := StockdTests\.(StockServerTests/($(TSAN_SERVER))|FeedTests/($(TSAN_FEED))|DiskFaultTests|MetricsTests/scrape)|StockClientTests\.ClientTests/clientConcurrency
tsan: deps
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path $(TSAN_SCRATCH)
	@rm -rf $(TSAN_SCRATCH)/tsan-reports && mkdir -p $(TSAN_SCRATCH)/tsan-reports
	export TSAN_OPTIONS="halt_on_error=1 log_path=$(abspath $(TSAN_SCRATCH))/tsan-reports/tsan"; status=0; \
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path $(TSAN_SCRATCH) --filter StockCoreTests || status=1; \
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path $(TSAN_SCRATCH) --no-parallel \
	  --filter '$(TSAN_SERVER_TESTS)' || status=1; \
	if [ -n "$$(ls $(TSAN_SCRATCH)/tsan-reports)" ]; then cat $(TSAN_SCRATCH)/tsan-reports/*; \
	  echo "make tsan: ThreadSanitizer reports above (one file per process in $(TSAN_SCRATCH)/tsan-reports)"; exit 1; fi; \
	exit $$status

# The codec and journal tests under AddressSanitizer, leaks included (a report fails the run).
# One suppression: libXCTest.so itself leaks 144 bytes (XCTMainMisc, XCTestSuiteRun) in every
# run, even with no XCTest test selected; it is the toolchain's, not ours.
ASAN_SCRATCH ?= .build-asan
asan: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path $(ASAN_SCRATCH)
	@printf 'leak:libXCTest.so\n' > $(ASAN_SCRATCH)/lsan.supp
	ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 LSAN_OPTIONS=suppressions=$(abspath $(ASAN_SCRATCH))/lsan.supp \
	  $(SWIFT) test --skip-build --sanitize=address --scratch-path $(ASAN_SCRATCH) \
	  --filter 'StockProtocolTests|StockJournalTests'

# libFuzzer over the frame decoder and over the server's dispatch against a live core, seeded
# from protocol/vectors (fuzz/README.md): replays fuzz/regressions, then fuzzes FUZZ_SECONDS in
# total (a third decoding, two thirds dispatch). A crash or failed check fails the run.
# Only the fuzz product is built (release, libFuzzer + ASan). `--sanitize fuzzer` tells SwiftPM
# that libFuzzer provides `main`; the -Xswiftc list then instruments for both (two --sanitize
# flags reach the compiler separately and the last wins, losing coverage); lld, because gold
# prints ~140 "Cannot export local symbol __asan_check_*" warnings.
FUZZ_SECONDS ?= 60
FUZZ_SCRATCH ?= .build-fuzz
fuzz: deps
	$(SWIFT) build -c release --product stockd-fuzz --scratch-path $(FUZZ_SCRATCH) --sanitize fuzzer \
	  -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld -Xswiftc -DSTOCKD_LIBFUZZER
	fuzz/run.sh $(FUZZ_SCRATCH)/release/stockd-fuzz $(FUZZ_SCRATCH)/fuzz $(FUZZ_SECONDS)

clean:
	rm -rf .build .build-*
