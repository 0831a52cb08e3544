#!/usr/bin/env bash
# `make bench`: fresh Kafka + Postgres, then sluice-bench (COPY limit, backlog drain,
# latency at a fixed rate, drain with fraud scoring off vs on). Writes target/bench/report.json
# and report.svg. Arguments go to sluice-bench (see `sluice-bench --help`), e.g.
# `--scoring-compare-events 0` (or BENCH_SCORING_COMPARE_EVENTS=0 make bench) skips the comparison.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_release -p sluice-worker -p sluice-loadgen
start_services "bench-$$"
cd "$ROOT"
"$CARGO_TARGET_DIR/release/sluice-bench" --bin-dir "$CARGO_TARGET_DIR/release" --out "${BENCH_OUT:-$ROOT/target/bench}" "$@"
