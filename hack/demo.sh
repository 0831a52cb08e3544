#!/usr/bin/env bash
# `make demo`: install what is missing, start Kafka + Postgres, start one worker and wait
# until it owns the topic's partitions, run about a minute of realistic load with live
# progress, then summarise what landed: steady-state latency beside start-up, throughput,
# rows against records produced, rejections by reason, fraud flagged against the injected
# labels, and where to look next.
#
# DEMO_RATE (5000/s), DEMO_DURATION (60s), DEMO_DAYS (3.5: simulated days the stream
# spans; sets the population size), DEMO_CUSTOMERS (instead of DEMO_DAYS), DEMO_HISTORY_DAYS
# (1: simulated days of history before the fraud figures count), DEMO_WARMUP_S (10: seconds
# of production reported as start-up), DEMO_KEEP=1 (keep the services and the worker up
# after the summary, until Ctrl-C).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NAME=demo
RATE=${DEMO_RATE:-5000}
DURATION=${DEMO_DURATION:-60s}
WARMUP_S=${DEMO_WARMUP_S:-10}
# Realistic traffic in event time, latency on the wall clock. A real shop taking 5,000 tx/s
# has a few hundred million customers, which cannot be built here; with wall-clock event
# times a population the simulator can build buys many times faster than people do, and
# every customer is new within the minute. So the records carry the simulated event clock instead: each customer
# buys at its own daily rate (the mixed population: median 3 a day, a few a month to
# hundreds a day for business accounts), and the stream replays DEMO_DAYS simulated days of
# a population sized to fit them (RATE x DURATION / (DAYS x its mean daily rate): ~14,000
# customers at the defaults), ending a little before now. Production is still paced at
# RATE/s on the wall clock, and latency is ingested_at - Kafka timestamp (the produce time),
# so event times do not touch it. The first DEMO_HISTORY_DAYS simulated days only build
# history: the fraud figures count what follows.
DAYS=${DEMO_DAYS:-3.5}
HISTORY_DAYS=${DEMO_HISTORY_DAYS:-1}
if [[ -n ${DEMO_CUSTOMERS:-} ]]; then
  POPULATION=(--customers "$DEMO_CUSTOMERS") POPULATION_DESC="$DEMO_CUSTOMERS customers"
else
  POPULATION=(--simulated-days "$DAYS") POPULATION_DESC="~$DAYS simulated days of a population sized to them"
fi
PARTITIONS=8
TOPIC=transactions
BIN=$CARGO_TARGET_DIR/release
LABELS=$SLUICE_RUN/demo-labels.jsonl

on_exit 'rm -f "$LABELS"'

log "building sluice (first time: a few minutes)"
build_release -p sluice-worker -p sluice-loadgen
# Fresh services: the summary counts everything in the demo's topic and tables.
start_services "$NAME"

# The input topic exists (empty) before the worker subscribes.
"$BIN/sluice-loadgen" --brokers "$KAFKA_BOOTSTRAP" --topic "$TOPIC" --partitions "$PARTITIONS" \
  --count 0 --customers 1 --quiet >/dev/null
PORT=$(free_port)
HTTP=http://127.0.0.1:$PORT
log "starting sluice-worker (metrics on $HTTP/metrics, log in $SLUICE_RUN/demo-worker.log)"
on_exit stop_worker
start_worker "$SLUICE_RUN/demo-worker.log" SLUICE_PIPELINE=demo SLUICE_KAFKA__BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" \
  SLUICE_HTTP__LISTEN="127.0.0.1:$PORT"
t0=$SECONDS
wait_for_port 127.0.0.1 "$PORT" 60 || die "the worker did not serve $HTTP (see $SLUICE_RUN/demo-worker.log)"

# Produce only once the worker owns every partition: records sent before its first
# assignment would wait for it, and that wait is start-up, not the pipeline's latency.
# The worker sets sluice_partitions_assigned right after each assignment is in place.
deadline=$((SECONDS + 60))
while :; do
  owned=$(curl -fs "$HTTP/metrics" | sed -n 's/^sluice_partitions_assigned{[^}]*} //p' || true)
  ((${owned:-0} >= PARTITIONS)) && break
  kill -0 "$WORKER_PID" 2>/dev/null || die "the worker exited (see $SLUICE_RUN/demo-worker.log)"
  ((SECONDS < deadline)) || die "the worker owns ${owned:-0} of $PARTITIONS partitions after 60s (see $SLUICE_RUN/demo-worker.log)"
  sleep 0.1
done
log "the worker owns all $PARTITIONS partitions ($((SECONDS - t0))s after it started)"

log "producing $RATE tx/s for $DURATION on the simulated event clock ($POPULATION_DESC; labels in $LABELS)"
produced_line=$("$BIN/sluice-loadgen" --brokers "$KAFKA_BOOTSTRAP" --topic "$TOPIC" --rate "$RATE" \
  --duration "$DURATION" --event-clock simulated "${POPULATION[@]}" --labels "$LABELS" \
  --id-prefix "demo$(date +%s)")
echo "$produced_line"
field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$produced_line"; }
PRODUCED=$(field produced) VALID=$(field valid) INVALID=$(field invalid) DUPLICATES=$(field duplicates)
CUSTOMERS=$(field customers) DAILY=$(field daily_events) SPAN_DAYS=$(field simulated_days)
# Labels of the first HISTORY_DAYS simulated days (a day is DAILY draws, ~1% of them invalid
# and unlabeled): they build the customers' history and are not counted.
FRAUD_WARMUP=$(awk -v d="$DAILY" -v h="$HISTORY_DAYS" -v v="$VALID" 'BEGIN { n = int(d * h); print (n < v ? n : 0) }')

log "waiting until all $PRODUCED records have landed (stored or rejected)"
fraud=$("$BIN/sluice-eval-e2e" --summary --database-url "$DATABASE_URL" --labels "$LABELS" \
  --warmup "$FRAUD_WARMUP" --expect-handled "$PRODUCED" --timeout-secs 300 --stall-secs 30)
# The worker's own view of its batches, while it still runs.
worker_line=$(curl -fs "$HTTP/metrics" | awk '
  /^sluice_batch_records_count/ { batches = $2 } /^sluice_batch_records_sum/ { records = $2 }
  /^sluice_batch_write_seconds_sum/ { write = $2 } /^sluice_profiles_reloaded_total/ { reloaded = $2 }
  END { if (batches > 0) printf "%d batches of %.0f records on average, %.0f ms per batch write and commit on average; %d customer profiles read back after eviction",
          batches, records / batches, 1000 * write / batches, reloaded }' || true)

q() { "$HACK_DIR/postgres.sh" psql "$NAME" -X -q -At -F' ' -v ON_ERROR_STOP=1 -c "$1"; }
num() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }  # 1234567 -> 1,234,567

echo
echo "== demo summary: $RATE tx/s offered for $DURATION, $(num "$CUSTOMERS") customers, one worker"
echo "traffic: replaying ${SPAN_DAYS} simulated days of $(num "$CUSTOMERS") customers (mixed population, $(num "$DAILY") purchases a simulated day) at $(num "$RATE") tx/s;" \
  "event times on the simulated clock, latency on the wall clock; fraud counted after the first $HISTORY_DAYS simulated day$([[ $HISTORY_DAYS == 1 ]] || echo s) of history"
echo "latency per row (ingested_at - Kafka timestamp):"
while read -r phase rows p50 p95 p99 max; do
  case $phase in
    steady) label="steady state (produced after the first ${WARMUP_S}s)" ;;
    *) label="start-up     (produced in the first ${WARMUP_S}s)" ;;
  esac
  printf '  %-45s %9s rows   p50 %5s ms   p95 %5s ms   p99 %5s ms   max %5s ms\n' \
    "$label" "$(num "$rows")" "$p50" "$p95" "$p99" "$max"
done < <(q "WITH d AS (SELECT kafka_timestamp AS k,
                         extract(epoch FROM ingested_at - kafka_timestamp) * 1000 AS ms
                       FROM sluice.transactions),
             c AS (SELECT min(k) + make_interval(secs => $WARMUP_S) AS cut FROM d)
           SELECT CASE WHEN k >= cut THEN 'steady' ELSE 'start-up' END, count(*),
                  round(percentile_cont(0.50) WITHIN GROUP (ORDER BY ms)),
                  round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)),
                  round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)),
                  round(max(ms))
           FROM d, c GROUP BY 1 ORDER BY 1 DESC")

read -r rows distinct span tail < <(q "SELECT count(*), count(DISTINCT transaction_id),
    round(extract(epoch FROM max(ingested_at) - min(kafka_timestamp))::numeric, 1),
    round(extract(epoch FROM max(ingested_at) - max(kafka_timestamp))::numeric * 1000)
  FROM sluice.transactions")
rejected=$(q "SELECT count(*) FROM sluice.rejected_transactions")
dup_rejected=$(q "SELECT count(*) FROM sluice.rejected_transactions WHERE reason = 'duplicate'")
handled=$((rows + rejected))
rate=$(awk -v n="$handled" -v s="$span" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
if ((${tail:-0} <= 2000)); then
  kept="the last row landed ${tail} ms after the last record was produced: the worker kept up"
else
  kept="the last row landed $(awk -v t="$tail" 'BEGIN { printf "%.1f", t / 1000 }') s after the last record was produced: the worker fell behind"
fi
echo "throughput: $(num "$handled") records handled in ${span} s, first record produced to last row landed: $(num "$rate")/s (offered $(num "$RATE")/s)"
echo "  $kept"
[[ -n $worker_line ]] && echo "  worker: $worker_line"
if ((rows == VALID && distinct == rows && rejected == INVALID + DUPLICATES)); then
  check="every record accounted for"
else
  check="MISMATCH: expected $(num "$VALID") rows and $(num $((INVALID + DUPLICATES))) rejections"
fi
echo "rows: $(num "$PRODUCED") produced ($(num "$VALID") valid, $(num "$INVALID") invalid, $(num "$DUPLICATES") duplicates);" \
  "landed $(num "$rows") rows ($(num "$distinct") distinct ids) and $(num "$rejected") rejections ($(num "$dup_rejected") duplicates): $check"
echo "rejections by reason: $(q "SELECT string_agg(reason || ' ' || n, ', ' ORDER BY n DESC, reason)
                                FROM (SELECT reason, count(*) AS n FROM sluice.rejected_transactions GROUP BY 1) r")"
printf '%s\n' "$fraud"

DB_URL=$DATABASE_URL
# The per-minute summaries are by event time: point at the stream's last simulated hour
# (the API's default, the hour before now, may hold none of it).
read -r since until < <(q "SELECT to_char(t - interval '1 hour', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                                  to_char(t + interval '1 minute', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                           FROM (SELECT max(event_time) AT TIME ZONE 'UTC' AS t FROM sluice.transactions) m" 2>/dev/null) || true
echo
echo "== where to look next (up while the demo runs; DEMO_KEEP=1 make demo keeps them up until Ctrl-C)"
echo "  SQL       hack/postgres.sh psql $NAME      (or: psql $DB_URL)"
echo "            SELECT * FROM sluice.fraud_alerts ORDER BY score DESC LIMIT 10;"
echo "            SELECT * FROM sluice.quality_rates ORDER BY 1 DESC LIMIT 5;"
echo "  metrics   curl -s $HTTP/metrics | grep ^sluice_"
echo "  read API  curl -s '$HTTP/api/v1/summaries?dimension=merchant_category${since:+&since=$since&until=$until}'"
echo "            curl -s '$HTTP/api/v1/quality'"
echo "            curl -s '$HTTP/api/v1/alerts?open=true&limit=100'"
echo "  fraud     DATABASE_URL=$DB_URL $BIN/sluice-eval-e2e --labels $LABELS --warmup $FRAUD_WARMUP --out /tmp/demo-eval.json"
echo "            (the full table: per scenario, hard negatives, rules-only baseline)"
echo "  worker    $SLUICE_RUN/demo-worker.log"
if [[ ${DEMO_KEEP:-0} == 1 ]]; then
  log "services and worker stay up; Ctrl-C stops them"
  wait "$WORKER_PID" || true
fi
