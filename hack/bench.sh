#!/usr/bin/env bash
# `make bench`: fresh Kafka + Postgres, then sluice-bench (COPY limit, backlog drain,
# latency at 2,000 and 10,000 tx/s after a warm-up, drain with fraud scoring off vs on, the
# scaling curve over workers and partitions). Writes target/bench/report.json and report.svg.
# Arguments go to sluice-bench (see `sluice-bench --help`), e.g. `--scoring-compare-events 0`
# (or BENCH_SCORING_COMPARE_EVENTS=0 make bench) skips the comparison, BENCH_SCALING_EVENTS=0
# the scaling curve, BENCH_LATENCY_RATE_HIGH=0 the 10,000 tx/s phase.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_release -p sluice-worker -p sluice-loadgen
# The run uses its own copy of the binaries: another checkout building into the shared
# CARGO_TARGET_DIR during the run would otherwise swap the worker under the later phases.
BENCH_BIN=$(mktemp -d)
on_exit "rm -rf $(printf %q "$BENCH_BIN")"
cp "$CARGO_TARGET_DIR/release/sluice-worker" "$CARGO_TARGET_DIR/release/sluice-bench" "$BENCH_BIN/"
start_services "bench-$$"
cd "$ROOT"
"$BENCH_BIN/sluice-bench" --bin-dir "$BENCH_BIN" --out "${BENCH_OUT:-$ROOT/target/bench}" "$@"
