#!/usr/bin/env bash
# `make bench`: fresh Kafka + Postgres, then sluice-bench (COPY limit, backlog drain,
# latency at a fixed rate, drain with fraud scoring off vs on). Writes target/bench/report.json
# and report.svg. Arguments go to sluice-bench (see `sluice-bench --help`), e.g.
# `--scoring-compare-events 0` (or BENCH_SCORING_COMPARE_EVENTS=0 make bench) skips the comparison.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$HACK_DIR/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SLUICE_CACHE/target}
NAME=bench-$$
trap '"$HACK_DIR/kafka.sh" stop "$NAME" >/dev/null 2>&1 || true; "$HACK_DIR/postgres.sh" stop "$NAME" >/dev/null 2>&1 || true' EXIT

"$HACK_DIR/deps.sh"
cd "$ROOT"
cargo build --release --locked -p sluice-worker -p sluice-loadgen
set -a
eval "$("$HACK_DIR/kafka.sh" start "$NAME")"
eval "$("$HACK_DIR/postgres.sh" start "$NAME")"
set +a
"$CARGO_TARGET_DIR/release/sluice-bench" --bin-dir "$CARGO_TARGET_DIR/release" --out "${BENCH_OUT:-$ROOT/target/bench}" "$@"
