#!/usr/bin/env bash
# `make fuzz` after the build: seeds, regression replays, then both libFuzzer entry points.
#   fuzz/run.sh BINARY WORK_DIR SECONDS
# SECONDS is the total fuzzing time: a third to the decoder, two thirds to dispatch (the slower,
# stateful target). Exits non-zero on any crash or failed check, naming the input libFuzzer saved.
set -euo pipefail
bin=$1 work=$2 total=${3:-60}
here=$(cd "$(dirname "$0")" && pwd)
# Swift's own crash backtracer would take the fatal signal before libFuzzer's handler, and no
# crash input would be written: leave crashes to libFuzzer (and ASan).
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1}

rm -rf "$work/seeds" "$work/artifacts"
mkdir -p "$work/corpus/decode" "$work/corpus/dispatch" "$work/artifacts"
STOCKD_FUZZ_MODE=seed "$bin" "$here/../protocol/vectors" "$work/seeds"

# Regression inputs: fuzz/regressions/<mode>-<name>.bin must pass; <name>.env, if present, holds
# extra VAR=value settings for it. fuzz/regressions/open/ holds reproducers of bugs not fixed yet:
# replayed and reported, not failing the run (move one up once its fix lands).
replay() {  # replay FILE -> exit status of the replay
  local f=$1 name mode envs=()
  name=$(basename "$f" .bin)
  mode=${name%%-*}
  [ -f "${f%.bin}.env" ] && mapfile -t envs < <(grep -v '^#' "${f%.bin}.env" | grep .)
  env "${envs[@]}" STOCKD_FUZZ_MODE="$mode" "$bin" -runs=1 "$f" >"$work/artifacts/replay-$name.log" 2>&1
}
failed=0
for f in "$here"/regressions/*.bin; do
  [ -e "$f" ] || continue
  if replay "$f"; then echo "fuzz: regression $(basename "$f"): ok"
  else echo "fuzz: regression $(basename "$f") FAILS again (log: $work/artifacts/replay-$(basename "$f" .bin).log)"; failed=1; fi
done
for f in "$here"/regressions/open/*.bin; do
  [ -e "$f" ] || continue
  if replay "$f"; then echo "fuzz: open issue $(basename "$f") no longer reproduces: move it to fuzz/regressions/"
  else echo "fuzz: open issue $(basename "$f") still reproduces (known, see $(basename "$f" .bin).md)"; fi
done
[ "$failed" = 0 ] || exit 1

run() {  # run MODE SECONDS
  local mode=$1 secs=$2 rc=0
  echo "fuzz: $mode for ${secs} s (corpus $work/corpus/$mode)"
  STOCKD_FUZZ_MODE=$mode "$bin" -max_total_time="$secs" -max_len=4096 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$mode-" "$work/corpus/$mode" "$work/seeds/$mode" \
    >"$work/$mode.log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+ +DONE|stat::(number_of_executed_units|average_exec_per_sec|new_units_added))' "$work/$mode.log" \
    | sed "s/^/fuzz: $mode: /" || true
  if [ "$rc" != 0 ]; then
    echo "fuzz: $mode FAILED (exit $rc); the end of $work/$mode.log:"
    tail -n 40 "$work/$mode.log"
    ls "$work/artifacts/$mode-"* 2>/dev/null | sed 's/^/fuzz: input saved: /'
    echo "fuzz: replay with: STOCKD_FUZZ_MODE=$mode SWIFT_BACKTRACE=enable=no $bin FILE;" \
         "keep it as fuzz/regressions/$mode-NAME.bin with a NAME.md note"
    return 1
  fi
}
decode_secs=$(( total / 3 > 0 ? total / 3 : 1 ))
dispatch_secs=$(( total - decode_secs > 0 ? total - decode_secs : 1 ))
run decode "$decode_secs" || failed=1
run dispatch "$dispatch_secs" || failed=1
exit "$failed"
