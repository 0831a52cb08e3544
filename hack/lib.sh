# shellcheck shell=bash
# Sourced by the hack/*.sh scripts. Everything they keep lives under SLUICE_CACHE;
# SLUICE_RUN holds the state of running services (data dirs, pid files, *.env).
SLUICE_CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
SLUICE_RUN=${SLUICE_RUN:-$SLUICE_CACHE/run}
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$SLUICE_CACHE" "$SLUICE_RUN"
# The address services listen on and advertise. 127.0.0.1 by default; hack/node.sh sets the
# node's address inside its network namespace, so that pods can reach Kafka and Postgres.
SLUICE_HOST=${SLUICE_HOST:-127.0.0.1}

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
