#!/usr/bin/env bash
# Smoke test of the real services: Kafka round trip on an 8-partition topic, then
# `select 1` on a Postgres primary and its streaming replica. Uses instances named
# "smoke" (not "default") and stops them on exit, pass or fail.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export KAFKA_NAME=smoke

start_services smoke
# Stopped with its primary.
eval "$("$HACK_DIR/postgres.sh" replica smoke)"

"$HACK_DIR/kafka.sh" topics --create --if-not-exists --topic smoke --partitions 8 --replication-factor 1 >&2
parts=$("$HACK_DIR/kafka.sh" topics --describe --topic smoke | grep -c 'Partition: ')
[[ $parts == 8 ]] || die "topic smoke has $parts partitions, want 8"

msg="hello-$$-$RANDOM"
echo "$msg" | "$HACK_DIR/kafka.sh" run org.apache.kafka.tools.ConsoleProducer \
  --bootstrap-server "$KAFKA_BOOTSTRAP" --topic smoke --producer-property acks=all
got=$("$HACK_DIR/kafka.sh" run org.apache.kafka.tools.consumer.ConsoleConsumer \
  --bootstrap-server "$KAFKA_BOOTSTRAP" --topic smoke --from-beginning \
  --max-messages 1 --timeout-ms 30000 2>/dev/null)
[[ $got == "$msg" ]] || die "consumed '$got', produced '$msg'"
log "kafka ok: $KAFKA_BOOTSTRAP, 8 partitions, round trip of '$msg'"

[[ $("$HACK_DIR/postgres.sh" psql smoke -qAtc 'select 1') == 1 ]] || die "select 1 on primary failed"
[[ $("$HACK_DIR/postgres.sh" psql smoke-replica -qAtc 'select pg_is_in_recovery()') == t ]] ||
  die "replica is not in recovery"
[[ $("$HACK_DIR/postgres.sh" psql smoke-replica -qAtc 'select 1') == 1 ]] || die "select 1 on replica failed"
log "postgres ok: primary $DATABASE_URL, replica $REPLICA_DATABASE_URL"
log "SMOKE PASSED"
