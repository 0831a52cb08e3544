# shellcheck shell=bash
# Sourced by the hack/*.sh scripts. Everything they keep lives under SLUICE_CACHE;
# SLUICE_RUN holds the state of running services (data dirs, pid files, *.env).
export SLUICE_CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
# Each on its own statement: `export A=x B=$A` would expand $A before A is set.
export SLUICE_RUN=${SLUICE_RUN:-$SLUICE_CACHE/run}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SLUICE_CACHE/target}
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HACK_DIR/.." && pwd)
mkdir -p "$SLUICE_CACHE" "$SLUICE_RUN"
# The address services listen on and advertise. 127.0.0.1 by default; hack/node.sh sets the
# node's address inside its network namespace, so that pods can reach Kafka and Postgres.
SLUICE_HOST=${SLUICE_HOST:-127.0.0.1}

# Go: one module cache and one build cache for everything fetched or built with go (the control
# plane, helm, the pause sources, hack/dashcheck). -modcacherw: `rm -rf $SLUICE_CACHE` resets
# everything without a chmod first.
export GOMODCACHE=$SLUICE_CACHE/go/mod
export GOCACHE=$SLUICE_CACHE/go/build
export GOFLAGS=-modcacherw GOTOOLCHAIN=local
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

# Logs go to stderr: stdout is reserved for the env files the scripts print.
log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${0##*/}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# free_port [N]: print N (default 1) distinct free TCP ports on 127.0.0.1. All
# sockets are held open together so the N ports differ from each other.
free_port() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for_port HOST PORT TIMEOUT_SECONDS
wait_for_port() {
  local host=$1 port=$2 deadline=$((SECONDS + ${3:-30}))
  until port_open "$host" "$port"; do
    ((SECONDS < deadline)) || { log "timeout waiting for $host:$port"; return 1; }
    sleep 0.2
  done
}

# wait_until SECONDS WHAT LOG_DIR CMD...: run CMD every 0.5 s until it succeeds; after SECONDS,
# print the tails of LOG_DIR/*.log and die.
wait_until() {
  local secs=$1 what=$2 logs=$3 deadline=$((SECONDS + $1))
  shift 3
  until "$@"; do
    if ((SECONDS >= deadline)); then
      tail -n 30 "$logs"/*.log >&2 2>/dev/null || true
      die "$what not reached after ${secs}s (logs: $logs)"
    fi
    sleep 0.5
  done
}

# need_commands HINT CMD...: die naming the first CMD not on PATH, with HINT (how to get it).
need_commands() {
  local hint=$1 cmd
  shift
  for cmd; do command -v "$cmd" >/dev/null || die "$cmd not found ($hint)"; done
}

# pid_alive PID MARKER: the process exists and its command line contains MARKER
# (guards against a recycled pid from a stale pid file).
pid_alive() {
  [[ -n ${1:-} && -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

# kill_wait PID MARKER TIMEOUT: SIGTERM, then SIGKILL if still alive after TIMEOUT s.
kill_wait() {
  local pid=$1 marker=$2 deadline=$((SECONDS + ${3:-30}))
  pid_alive "$pid" "$marker" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while pid_alive "$pid" "$marker"; do
    if ((SECONDS >= deadline)); then
      log "pid $pid ignored SIGTERM for ${3:-30}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
}

# --- daemons of a cluster or node (hack/cluster.sh, hack/node.sh) ----------------------------
# A daemon NAME of state directory DIR logs to DIR/logs/NAME.log and has its pid in DIR/NAME.pid;
# DIR/ is on its command line, which ties the pid to that state.

# start_daemon DIR NAME CMD...: run CMD in its own session, immune to the caller's hangup.
# 8>&- 9>&-: daemons must not inherit (and so hold forever) the scripts' build and state locks.
start_daemon() {
  local dir=$1 name=$2 pid i
  shift 2
  setsid nohup "$@" >"$dir/logs/$name.log" 2>&1 </dev/null 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$dir/$name.pid"
  # Until the child has exec'd, /proc shows this shell's command line, without DIR in it, and
  # daemon_alive would call the daemon exited: a false start failure with an empty log, seen
  # when the machine is busy. So return once it shows the daemon (or has gone).
  for ((i = 0; i < 100; i++)); do
    if pid_alive "$pid" "$dir/" || [[ ! -e /proc/$pid ]]; then break; fi
    sleep 0.05
  done
}
daemon_pid() { cat "$1/$2.pid" 2>/dev/null || true; }
daemon_alive() { pid_alive "$(daemon_pid "$1" "$2")" "$1/"; }
# stop_daemon DIR NAME: SIGTERM, SIGKILL after 20 s.
stop_daemon() { daemon_alive "$1" "$2" && kill_wait "$(daemon_pid "$1" "$2")" "$1/" 20 || true; }

# take_down WHAT LOCK DIR CMD...: run CMD (stop WHAT and delete DIR) under LOCK, the lock its `up`
# holds. After 60 s without the lock it goes ahead anyway: down is what one runs to clean up a
# wedged one.
take_down() {
  local what=$1 lock=$2 dir=$3
  shift 3
  exec 9>"$lock"
  flock -w 60 9 || log "$what: lock still held after 60s, stopping it anyway"
  [[ -d $dir ]] && log "$what: stopping and deleting $dir"
  "$@"
  rm -f "$lock"
}

# --- the services of one run (make test, demo, bench, eval) ----------------------------------
EXIT_HOOKS=()
# on_exit 'COMMANDS': evaluate COMMANDS when the script exits, whatever the reason (as `trap`
# would, so variables expand then); the last registered runs first, the exit status is kept.
on_exit() {
  EXIT_HOOKS+=("$1")
  trap run_exit_hooks EXIT
}
run_exit_hooks() {
  local rc=$? i
  for ((i = ${#EXIT_HOOKS[@]} - 1; i >= 0; i--)); do eval "${EXIT_HOOKS[i]}" || true; done
  exit "$rc"
}

# start_services NAME: fresh Kafka and Postgres named NAME (whatever an earlier run left under
# that name is deleted first), stopped when the script exits. Each start returns once its
# service takes clients; their env (KAFKA_BOOTSTRAP, DATABASE_URL, PG*) is exported here.
start_services() {
  local name=$1
  stop_services "$name"
  on_exit "stop_services $(printf %q "$name")"
  set -a
  eval "$("$HACK_DIR/kafka.sh" start "$name")"
  eval "$("$HACK_DIR/postgres.sh" start "$name")"
  set +a
}
stop_services() {
  "$HACK_DIR/kafka.sh" stop "$1" >/dev/null 2>&1 || true
  "$HACK_DIR/postgres.sh" stop "$1" >/dev/null 2>&1 || true
}

# build_release CARGO_ARGS...: what is missing installed (hack/deps.sh), then a release build.
build_release() {
  "$HACK_DIR/deps.sh"
  (cd "$ROOT" && cargo build --release --locked "$@")
}

# start_worker LOG [VAR=VALUE...]: the release sluice-worker with that environment, its output
# in LOG; WORKER_PID is its pid. stop_worker: SIGTERM, and wait until it has exited.
WORKER_PID=
start_worker() {
  local log=$1
  shift
  env "$@" "$CARGO_TARGET_DIR/release/sluice-worker" >"$log" 2>&1 &
  WORKER_PID=$!
}
stop_worker() {
  if [[ -n $WORKER_PID ]]; then kill -TERM "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null || true; fi
  WORKER_PID=
}
