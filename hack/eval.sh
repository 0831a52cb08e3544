#!/usr/bin/env bash
# `make eval`: the fraud evaluation through the real pipeline. The offline evaluation
# (sluice-eval: simulator → scorer, no I/O) runs first; then on a fresh Kafka + Postgres one
# worker (fraud scoring on, defaults) consumes 1.4M labeled events that sluice-loadgen
# stamps with the simulated event clock (~3 transactions per customer per day, ending a
# little before now), and sluice-eval-e2e scores what the pipeline stored against the
# labels side file. Writes target/eval/{offline.json,labels.jsonl,worker.log,report.json}.
# EVAL_EVENTS, EVAL_WARMUP, EVAL_CUSTOMERS, EVAL_SEED, EVAL_FRAUD_RATE, EVAL_OUT override;
# EVAL_LOADGEN_ARGS adds sluice-loadgen flags (e.g. "--duplicate-ratio 0").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$HACK_DIR/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SLUICE_CACHE/target}
BIN=$CARGO_TARGET_DIR/release
OUT=${EVAL_OUT:-$ROOT/target/eval}
EVENTS=${EVAL_EVENTS:-1400000}
WARMUP=${EVAL_WARMUP:-400000}
CUSTOMERS=${EVAL_CUSTOMERS:-20000}
SEED=${EVAL_SEED:-2}
FRAUD_RATE=${EVAL_FRAUD_RATE:-0.01}
NAME=eval-$$
TOPIC=transactions
WORKER_PID=
cleanup() {
  if [[ -n $WORKER_PID ]]; then kill -TERM "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null || true; fi
  "$HACK_DIR/kafka.sh" stop "$NAME" >/dev/null 2>&1 || true
  "$HACK_DIR/postgres.sh" stop "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$HACK_DIR/deps.sh"
cd "$ROOT"
cargo build --release --locked -p sluice-worker -p sluice-loadgen -p sluice-fraud
mkdir -p "$OUT"

log "offline evaluation: seed $SEED, $CUSTOMERS customers, fraud rate $FRAUD_RATE"
"$BIN/sluice-eval" --seed "$SEED" --customers "$CUSTOMERS" --fraud-rate "$FRAUD_RATE" \
  --events $((EVENTS - WARMUP)) --warmup "$WARMUP" --out "$OUT/offline.json"

log "end to end: starting Kafka and Postgres ($NAME)"
set -a
eval "$("$HACK_DIR/kafka.sh" start "$NAME")"
eval "$("$HACK_DIR/postgres.sh" start "$NAME")"
set +a
KAFKA_NAME=$NAME "$HACK_DIR/kafka.sh" topics --create --topic "$TOPIC" --partitions 8 --replication-factor 1 >&2
SLUICE_PIPELINE=eval SLUICE_KAFKA__BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP SLUICE_KAFKA__TOPIC=$TOPIC \
  SLUICE_KAFKA__GROUP_ID=eval SLUICE_HTTP__LISTEN=127.0.0.1:$(free_port) \
  "$BIN/sluice-worker" >"$OUT/worker.log" 2>&1 &
WORKER_PID=$!

log "producing $EVENTS events on the simulated event clock; labels to $OUT/labels.jsonl"
summary=$("$BIN/sluice-loadgen" --topic "$TOPIC" --rate 0 --count "$EVENTS" --seed "$SEED" \
  --customers "$CUSTOMERS" --fraud-rate "$FRAUD_RATE" --event-clock simulated --per-customer-daily 3 \
  --labels "$OUT/labels.jsonl" --quiet ${EVAL_LOADGEN_ARGS:-})
log "$summary"
produced=$(sed -n 's/.*produced=\([0-9]*\).*/\1/p' <<<"$summary")

log "waiting for the worker to handle $produced records, then evaluating what it stored"
"$BIN/sluice-eval-e2e" --labels "$OUT/labels.jsonl" --warmup "$WARMUP" --expect-handled "$produced" \
  --offline "$OUT/offline.json" --out "$OUT/report.json"
