#!/usr/bin/env bash
# Real Apache Kafka (KRaft, one node acting as broker+controller) on 127.0.0.1.
#
#   hack/kafka.sh fetch               download jars into $SLUICE_CACHE/kafka/<version>/libs
#   hack/kafka.sh start   [NAME] [--secure]
#                                     start (or reuse) broker NAME; prints its env file.
#                                     --secure (first start only) adds a SASL_SSL listener
#                                     (SCRAM-SHA-256/512 and PLAIN) and an mTLS listener (SSL,
#                                     client certificate required); see secure_env for what it
#                                     prints
#   hack/kafka.sh stop    [NAME]      stop it and delete its data
#   hack/kafka.sh kill9   [NAME]      SIGKILL it (crash test); `start` brings it back, same port+data
#   hack/kafka.sh status  [NAME]      "running" (exit 0) or "stopped" (exit 1)
#   hack/kafka.sh env     [NAME]      print $SLUICE_RUN/kafka-NAME.env (KAFKA_BOOTSTRAP=127.0.0.1:PORT)
#   hack/kafka.sh topics  ARGS...     kafka-topics (TopicCommand) against broker $KAFKA_NAME
#   hack/kafka.sh run CLASS ARGS...   any Kafka tool main class with the Kafka classpath
#
# NAME defaults to "default" ($KAFKA_NAME for topics/run). KAFKA_VERSION overrides the pin.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
KAFKA_HOME=$SLUICE_CACHE/kafka/$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs
JAVA=${JAVA:-java}

fetch() {
  [[ -f $KAFKA_HOME/.fetched ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  local tmp=$KAFKA_HOME/libs.tmp
  rm -rf "$tmp" && mkdir -p "$KAFKA_HOME"
  # Own local repo under the cache: `rm -rf $SLUICE_CACHE` really resets everything.
  mvn -B -f "$HACK_DIR/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    -Dmaven.repo.local="$SLUICE_CACHE/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$KAFKA_HOME/fetch.log" 2>&1 || { tail -n 30 "$KAFKA_HOME/fetch.log" >&2; die "mvn failed"; }
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"
  rm -rf "$LIBS" && mv "$tmp" "$LIBS" && touch "$KAFKA_HOME/.fetched"
  log "fetched $(ls "$LIBS" | wc -l) jars"
}

# Log4j2 config shared by broker and tools: WARN and up only, plus the one INFO line
# ("Kafka Server started") that start() uses as its readiness signal.
log4j_config() {
  local f=$KAFKA_HOME/log4j2.xml
  [[ -f $f ]] || cat >"$f" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <!-- kafka.log.file is set by kafka.sh; tools have none and log to stderr -->
    <Select>
      <SystemPropertyArbiter propertyName="kafka.log.file">
        <File name="out" fileName="${sys:kafka.log.file}">
          <PatternLayout pattern="[%d] %p %m (%c)%n"/>
        </File>
      </SystemPropertyArbiter>
      <DefaultArbiter>
        <Console name="out" target="SYSTEM_ERR">
          <PatternLayout pattern="[%d] %p %m (%c)%n"/>
        </Console>
      </DefaultArbiter>
    </Select>
  </Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="out"/></Root>
    <Logger name="kafka.server.KafkaRaftServer" level="info"/>
  </Loggers>
</Configuration>
EOF
  echo "$f"
}

# Short-lived tools: small heap, C1 only and SerialGC start a JVM noticeably faster.
run_tool() {
  fetch
  "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$(log4j_config)" -cp "$LIBS/*" "$@"
}

dir_of() { echo "$SLUICE_RUN/kafka-$1"; }
pid_of() { cat "$(dir_of "$1")/kafka.pid" 2>/dev/null || true; }
# The marker ties the pid to this broker's own config file.
running() { pid_alive "$(pid_of "$1")" "$(dir_of "$1")/server.properties"; }

env_file() { echo "$SLUICE_RUN/kafka-$1.env"; }

# Test certificates for --secure, made with openssl into DIR/tls: a CA, the broker's
# certificate (SANs: localhost, 127.0.0.1, $SLUICE_HOST), a client certificate for mTLS and a
# second CA that signed none of them (for "untrusted CA" tests). PEM throughout: Kafka reads
# PEM key/trust stores (ssl.keystore.type=PEM, PKCS#8 key), librdkafka reads PEM files.
make_certs() {
  local t=$1/tls
  mkdir -p "$t"
  ossl() { openssl "$@" 2>/dev/null; }
  ossl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=sluice-test-ca" \
    -keyout "$t/ca.key" -out "$t/ca.pem"
  ossl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=sluice-untrusted-ca" \
    -keyout "$t/untrusted-ca.key" -out "$t/untrusted-ca.pem"
  local who
  for who in broker client; do
    ossl req -newkey rsa:2048 -nodes -subj "/CN=sluice-$who" -keyout "$t/$who.key" -out "$t/$who.csr"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:%s\n' "$SLUICE_HOST" >"$t/$who.ext"
    ossl x509 -req -in "$t/$who.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
      -days 30 -extfile "$t/$who.ext" -out "$t/$who.pem"
    # PKCS#8, unencrypted: what Kafka's PEM keystore accepts without ssl.key.password.
    ossl pkcs8 -topk8 -nocrypt -in "$t/$who.key" -out "$t/$who.p8"
    mv "$t/$who.p8" "$t/$who.key"
    rm -f "$t/$who.csr" "$t/$who.ext"
  done
  cat "$t/broker.key" "$t/broker.pem" >"$t/broker-keystore.pem"
  chmod 600 "$t"/*.key "$t/broker-keystore.pem"
}

# The extra listeners and credentials of a --secure broker, for the env file.
secure_env() {
  local dir=$1 host=$2
  [[ -f $dir/secure ]] || return 0
  local sasl mtls
  sasl=$(sed -n 's|^advertised.listeners=.*SASL_SSL://[^:]*:\([0-9]*\).*|\1|p' "$dir/server.properties")
  mtls=$(sed -n 's|^advertised.listeners=.*MTLS://[^:]*:\([0-9]*\).*|\1|p' "$dir/server.properties")
  cat <<EOF
KAFKA_SASL_SSL_BOOTSTRAP=$host:$sasl
KAFKA_MTLS_BOOTSTRAP=$host:$mtls
KAFKA_CA=$dir/tls/ca.pem
KAFKA_UNTRUSTED_CA=$dir/tls/untrusted-ca.pem
KAFKA_CLIENT_CERT=$dir/tls/client.pem
KAFKA_CLIENT_KEY=$dir/tls/client.key
KAFKA_SCRAM_USERNAME=sluice
KAFKA_SCRAM_PASSWORD=$(cat "$dir/scram-password")
KAFKA_PLAIN_USERNAME=sluice-plain
KAFKA_PLAIN_PASSWORD=$(cat "$dir/plain-password")
EOF
}

start() {
  local name=$1 secure=${2:-} dir; dir=$(dir_of "$name")
  [[ -z $secure || $secure == --secure ]] || die "unknown option $secure (want --secure)"
  if running "$name"; then
    log "kafka '$name' already running (pid $(pid_of "$name"))"
    cat "$(env_file "$name")"; return 0
  fi
  fetch
  mkdir -p "$dir"
  if [[ ! -f $dir/meta.ok ]]; then
    # First start: pick ports and format the storage. Later starts (e.g. after
    # kill9) reuse both, so clients keep their bootstrap address and the data.
    rm -rf "$dir/data"
    local ports bport cport sport mport listeners advertised
    ports=$(free_port 4); read -r bport cport sport mport <<<"$ports"
    listeners="PLAINTEXT://$SLUICE_HOST:$bport"
    advertised="PLAINTEXT://$SLUICE_HOST:$bport"
    if [[ -n $secure ]]; then
      listeners+=",SASL_SSL://$SLUICE_HOST:$sport,MTLS://$SLUICE_HOST:$mport"
      advertised+=",SASL_SSL://$SLUICE_HOST:$sport,MTLS://$SLUICE_HOST:$mport"
    fi
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL
log.dirs=$dir/data
# single broker: every internal topic with RF 1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=8
# on, so console tools and demos need no topic setup (the worker still creates its
# topics through the admin API)
auto.create.topics.enable=true
# After a kill9 the restarted broker cannot register until the controller expires
# the old incarnation's session (default 9s); heartbeat faster to make that ~3s.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
# small box: fewer threads than the defaults (3 network, 8 io)
num.network.threads=2
num.io.threads=4
EOF
    local scram=()
    if [[ -n $secure ]]; then
      make_certs "$dir"
      # token_urlsafe: [A-Za-z0-9_-] only, safe inside the JAAS line's quotes below.
      local f
      for f in scram-password plain-password; do
        python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$dir/$f"
      done
      local pw plain_pw; pw=$(cat "$dir/scram-password"); plain_pw=$(cat "$dir/plain-password")
      # SCRAM users are written into the metadata log at format time (KRaft's bootstrap).
      scram=(--add-scram "SCRAM-SHA-256=[name=sluice,password=$pw]"
             --add-scram "SCRAM-SHA-512=[name=sluice,password=$pw]")
      cat >>"$dir/server.properties" <<EOF
# --secure: SASL_SSL with SCRAM and PLAIN, and MTLS (SSL that requires a client certificate)
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.pem
listener.name.mtls.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# PLAIN users live in this JAAS line (user_<name>="<password>"), not in the metadata log.
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_sluice-plain="$plain_pw";
EOF
      chmod 600 "$dir/server.properties"
      touch "$dir/secure"
    fi
    # Cluster id: 16 random bytes, base64url without padding (22 chars), as
    # `StorageTool random-uuid` makes, but without paying a JVM start. Kafka's own
    # generator also avoids a leading '-', which CLI parsers take for an option.
    local id
    id=$(python3 -c 'import base64,uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"): print(s); break')
    log "formatting kafka '$name' storage (cluster id $id)"
    run_tool kafka.tools.StorageTool format --standalone -t "$id" -c "$dir/server.properties" "${scram[@]}" >&2
    touch "$dir/meta.ok"
  fi
  local bport host
  host=$(sed -n 's|^advertised.listeners=PLAINTEXT://\([^:]*\):.*|\1|p' "$dir/server.properties")
  bport=$(sed -n 's|^advertised.listeners=PLAINTEXT://[^:]*:\([0-9]*\).*|\1|p' "$dir/server.properties")
  [[ -f $dir/kafka.log ]] && mv "$dir/kafka.log" "$dir/kafka.log.1"
  log "starting kafka '$name' on $host:$bport"
  # setsid+nohup: the broker outlives this script and the caller's terminal/session.
  setsid nohup "$JAVA" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$(log4j_config)" -Dkafka.log.file="$dir/kafka.log" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
  # Ready = the node logged "Kafka Server started": in KRaft that is after the
  # broker registered with the controller and got unfenced, so clients can use it.
  local deadline=$((SECONDS + 90))
  until grep -qs "Kafka Server started" "$dir/kafka.log"; do
    # kill -0, not `running`: right after the launch the child may not have exec'd java yet,
    # and its command line would not match.
    kill -0 "$(pid_of "$name")" 2>/dev/null || { tail -n 30 "$dir/stdout.log" "$dir/kafka.log" >&2 || true; die "kafka '$name' exited during startup"; }
    ((SECONDS < deadline)) || die "kafka '$name' not ready after 90s (see $dir/kafka.log)"
    sleep 0.2
  done
  wait_for_port "$host" "$bport" 10
  { echo "KAFKA_BOOTSTRAP=$host:$bport"; secure_env "$dir" "$host"; } >"$(env_file "$name")"
  log "kafka '$name' ready (pid $(pid_of "$name"))"
  cat "$(env_file "$name")"
}

stop() {
  local name=$1
  if running "$name"; then
    log "stopping kafka '$name'"
    local t0=$SECONDS
    kill_wait "$(pid_of "$name")" "$(dir_of "$name")/server.properties" 30
    log "kafka '$name' stopped in $((SECONDS - t0))s"
  fi
  rm -rf "$(dir_of "$name")" "$(env_file "$name")"
}

kill9() {
  local name=$1 pid; pid=$(pid_of "$name")
  running "$name" || die "kafka '$name' is not running"
  kill -KILL "$pid"
  while pid_alive "$pid" "$(dir_of "$name")/server.properties"; do sleep 0.1; done
  log "kafka '$name' killed (data and port kept; 'start $name' recovers it)"
}

bootstrap() {
  local f; f=$(env_file "${KAFKA_NAME:-default}")
  [[ -f $f ]] || die "kafka '${KAFKA_NAME:-default}' not started ($f missing)"
  sed -n 's/^KAFKA_BOOTSTRAP=//p' "$f"
}

cmd=${1:-}; shift || true
case $cmd in
  fetch) fetch ;;
  start) start "${1:-default}" "${2:-}" ;;
  stop) stop "${1:-default}" ;;
  kill9) kill9 "${1:-default}" ;;
  status) if running "${1:-default}"; then echo running; else echo stopped; exit 1; fi ;;
  env) cat "$(env_file "${1:-default}")" ;;
  topics) run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap)" "$@" ;;
  run) run_tool "$@" ;;
  *) sed -n '2,16s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
