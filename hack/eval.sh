#!/usr/bin/env bash
# `make eval`: the fraud evaluation per traffic regime, offline and through the real pipeline.
#
# 1. The offline evaluation (sluice-eval: simulator -> scorer, no I/O) of every regime of
#    sluice_fraud::sim::regimes() on seed 2, the model having been fitted on seed 1 of a few
#    of them: target/eval/offline.json.
# 2. On one fresh Kafka + Postgres, for each regime in EVAL_REGIMES in turn: sluice-loadgen
#    --regime R --event-clock simulated produces the same seed-2 stream (each customer at
#    its own daily pace, ending a little before now) with labels on the side, into its own
#    topic; one worker (fraud scoring on, defaults) consumes it under its own consumer group,
#    pipeline name and Postgres schema (eval_R), keeping enough days for the stream's oldest
#    event. sluice-eval-e2e then scores what the pipeline stored against the labels, with the
#    offline run's warm-up (its first N simulator draws build history and are not counted)
#    and counted events (`sluice-eval-e2e plan`), beside the rules-only baseline and the
#    offline figures of the regime: target/eval/R/{report.json,worker.log}.
# 3. `sluice-eval-e2e merge` prints one table line per regime (end to end | baseline |
#    offline) and the scenarios, and writes target/eval/report.json ({regimes: {R: …}}).
#    It fails when a regime's labels and stored rows do not match one to one.
#
# EVAL_REGIMES (default "mixed quiet travellers busy": every held-out regime but million,
# whose week of warm-up is about 12M events, and the busiest one the fit saw; about 6 minutes on
# 2 cores, mixed alone ~2.5 minutes end to end for its 2.9M records), EVAL_SEED, EVAL_EVENTS
# (counted events per regime, offline and end to end), EVAL_OUT override; EVAL_OFFLINE_ARGS
# adds sluice-eval flags (e.g. "--regimes busy"), EVAL_LOADGEN_ARGS sluice-loadgen flags
# (e.g. "--invalid-ratio 0 --duplicate-ratio 0": the stream is then exactly the offline one);
# EVAL_KEEP_LABELS=1 keeps target/eval/R/labels.jsonl.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIN=$CARGO_TARGET_DIR/release
OUT=${EVAL_OUT:-$ROOT/target/eval}
REGIMES=${EVAL_REGIMES:-mixed quiet travellers busy}
SEED=${EVAL_SEED:-2}
NAME=eval-$$

build_release -p sluice-worker -p sluice-loadgen -p sluice-fraud
cd "$ROOT"
mkdir -p "$OUT"
started=$SECONDS

log "offline evaluation, every regime, seed $SEED"
offline_args=(--seed "$SEED" --out "$OUT/offline.json")
[[ -n ${EVAL_EVENTS:-} ]] && offline_args+=(--events "$EVAL_EVENTS")
# shellcheck disable=SC2086 # EVAL_OFFLINE_ARGS is a list of flags
"$BIN/sluice-eval" "${offline_args[@]}" ${EVAL_OFFLINE_ARGS:-}
log "offline evaluation done in $((SECONDS - started)) s"

log "end to end: starting Kafka and Postgres ($NAME); regimes: $REGIMES"
start_services "$NAME"
on_exit stop_worker

reports=()
failed=()
# shellcheck disable=SC2154 # the variables of each regime's plan, set by `eval "$plan"`
for regime in $REGIMES; do
  regime_started=$SECONDS
  dir=$OUT/$regime
  mkdir -p "$dir"
  rm -f "$dir/report.json" "$dir/labels.jsonl"
  # seed, warmup_draws, events, customers, count, daily_events, simulated_days, retention_days
  plan=$("$BIN/sluice-eval-e2e" plan --offline "$OUT/offline.json" --regime "$regime")
  eval "$plan"
  [[ $seed == "$SEED" ]] || die "offline.json is of seed $seed, not $SEED"
  id=${regime//[^a-zA-Z0-9_]/_}
  topic=eval-$id
  log "regime $regime: $customers customers, $count records over $simulated_days simulated days ($daily_events purchases a day): the offline $warmup_draws warm-up draws, then $events counted; worker keeps $retention_days days"
  KAFKA_NAME=$NAME "$HACK_DIR/kafka.sh" topics --create --topic "$topic" --partitions 8 --replication-factor 1 >&2
  start_worker "$dir/worker.log" SLUICE_PIPELINE="eval-$id" SLUICE_KAFKA__BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" \
    SLUICE_KAFKA__TOPIC="$topic" SLUICE_KAFKA__GROUP_ID="eval-$id" SLUICE_POSTGRES__SCHEMA="eval_$id" \
    SLUICE_RETENTION__DAYS="$retention_days" SLUICE_HTTP__LISTEN="127.0.0.1:$(free_port)"

  # shellcheck disable=SC2086 # EVAL_LOADGEN_ARGS is a list of flags
  summary=$("$BIN/sluice-loadgen" --topic "$topic" --regime "$regime" --customers "$customers" \
    --event-clock simulated --rate 0 --count "$count" --seed "$SEED" --id-prefix "eval-$id" \
    --labels "$dir/labels.jsonl" --quiet ${EVAL_LOADGEN_ARGS:-} 2> >(grep -v 'older than 29 days' >&2))
  log "$summary"
  produced=$(sed -n 's/.*produced=\([0-9]*\).*/\1/p' <<<"$summary")

  log "regime $regime: waiting for the worker to handle $produced records, then evaluating what it stored"
  if "$BIN/sluice-eval-e2e" --schema "eval_$id" --labels "$dir/labels.jsonl" --warmup-draws "$warmup_draws" \
    --expect-handled "$produced" --offline "$OUT/offline.json" --regime "$regime" --out "$dir/report.json"; then
    [[ ${EVAL_KEEP_LABELS:-0} == 1 ]] || rm -f "$dir/labels.jsonl"
  else
    failed+=("$regime")
  fi
  [[ -f $dir/report.json ]] && reports+=("$dir/report.json")
  stop_worker
  log "regime $regime done in $((SECONDS - regime_started)) s"
done

((${#reports[@]} > 0)) || die "no regime was evaluated end to end"
log "all regimes, end to end beside offline ($((SECONDS - started)) s so far)"
"$BIN/sluice-eval-e2e" merge --offline "$OUT/offline.json" --out "$OUT/report.json" "${reports[@]}" || failed+=(merge)
((${#failed[@]} == 0)) || die "failed: ${failed[*]} (labels and rows, or the worker; see $OUT/<regime>/worker.log)"
log "make eval done in $((SECONDS - started)) s"
