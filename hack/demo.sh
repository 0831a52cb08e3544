#!/usr/bin/env bash
# `make demo`: install what is missing, start Kafka + Postgres, run one worker under about a
# minute of generated load with live progress, then print what landed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$HACK_DIR/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SLUICE_CACHE/target}
NAME=demo
RATE=${DEMO_RATE:-5000}
DURATION=${DEMO_DURATION:-60s}
BIN=$CARGO_TARGET_DIR/release

cleanup() {
  [ -n "${WORKER_PID:-}" ] && kill -TERM "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null || true
  "$HACK_DIR/kafka.sh" stop "$NAME" >/dev/null 2>&1 || true
  "$HACK_DIR/postgres.sh" stop "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$HACK_DIR/deps.sh"
log "building sluice (first time: a few minutes)"
(cd "$ROOT" && cargo build --release --locked -p sluice-worker -p sluice-loadgen)
set -a
eval "$("$HACK_DIR/kafka.sh" start "$NAME")"
eval "$("$HACK_DIR/postgres.sh" start "$NAME")"
set +a

"$BIN/sluice-loadgen" --brokers "$KAFKA_BOOTSTRAP" --topic transactions --rate 1 --count 1 --quiet >/dev/null
PORT=$(free_port)
log "starting sluice-worker (metrics on http://127.0.0.1:$PORT/metrics, log in $SLUICE_RUN/demo-worker.log)"
SLUICE_PIPELINE=demo SLUICE_KAFKA__BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP SLUICE_HTTP__LISTEN=127.0.0.1:$PORT \
  "$BIN/sluice-worker" >"$SLUICE_RUN/demo-worker.log" 2>&1 &
WORKER_PID=$!
wait_for_port 127.0.0.1 "$PORT" 60

log "producing $RATE tx/s for $DURATION"
"$BIN/sluice-loadgen" --brokers "$KAFKA_BOOTSTRAP" --topic transactions --rate "$RATE" --duration "$DURATION" --id-prefix "demo$(date +%s)"
sleep 3

q() { "$HACK_DIR/postgres.sh" psql "$NAME" -X -q -v ON_ERROR_STOP=1 "$@"; }
echo
echo "== what landed in Postgres (schema sluice)"
q -c "SELECT count(*) AS transactions, count(DISTINCT transaction_id) AS distinct_ids,
        round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - kafka_timestamp)) * 1000) AS p50_ms,
        round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - kafka_timestamp)) * 1000) AS p99_ms
      FROM sluice.transactions"
q -c "SELECT reason, count(*) FROM sluice.rejected_transactions GROUP BY 1 ORDER BY 2 DESC"
q -c "SELECT period_start, transaction_count, total_amount, fraud_count FROM sluice.analytics_summaries
      WHERE dimension = 'all' ORDER BY period_start DESC LIMIT 3"
echo "== worker metrics"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^sluice_(transactions_total|quality_score|consumer_lag)' || true
