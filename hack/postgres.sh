#!/usr/bin/env bash
# Real PostgreSQL 15 throwaway clusters on 127.0.0.1 (trust auth, superuser "sluice").
# With SLUICE_HOST set to another address (hack/node.sh does, inside its network namespace)
# the server also listens there: "sluice" keeps trust from that address, every other client
# (pods) must log in with a password (scram-sha-256).
#
#   hack/postgres.sh start    [NAME]        start (or reuse) cluster NAME; prints its env file
#   hack/postgres.sh stop     [NAME]        stop it (and NAME-replica) and delete the data
#   hack/postgres.sh restart  [NAME]        pg_ctl restart -m fast (same port, same data)
#   hack/postgres.sh kill9    [NAME]        SIGKILL the server (crash test); `start` recovers it
#   hack/postgres.sh status   [NAME]        "running" (exit 0) or "stopped" (exit 1)
#   hack/postgres.sh env      [NAME]        print $SLUICE_RUN/pg-NAME.env
#   hack/postgres.sh psql     [NAME] ARGS   psql as sluice on database postgres
#   hack/postgres.sh createdb [NAME] DB     create database DB unless it exists
#   hack/postgres.sh replica  [NAME]        streaming hot-standby replica of NAME, managed
#                                           afterwards as cluster "NAME-replica"
#
# NAME defaults to "default". Env files: pg-NAME.env has PGHOST, PGPORT, PGUSER and
# DATABASE_URL; pg-NAME-replica.env has REPLICA_PGPORT and REPLICA_DATABASE_URL.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pg15() { [[ -x $1/postgres ]] && "$1/postgres" --version | grep -q ' 15\.'; }

find_bindir() {
  local c
  for c in "${PG_BINDIR:-}" /usr/lib/postgresql/15/bin "$(pg_config --bindir 2>/dev/null || true)"; do
    [[ -n $c ]] && pg15 "$c" && { echo "$c"; return; }
  done
  return 1
}

install_pg() {
  [[ $(id -u) == 0 ]] || die "PostgreSQL 15 not found; set PG_BINDIR or apt-get install postgresql-15"
  log "installing postgresql-15 with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # Tell postgresql-common not to create and start a default cluster on port 5432.
  apt-get install -y -qq postgresql-common >&2
  sed -i 's/^#* *create_main_cluster *=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
  apt-get install -y -qq postgresql-15 >&2
  pg15 /usr/lib/postgresql/15/bin || die "postgresql-15 install did not provide PostgreSQL 15"
  echo /usr/lib/postgresql/15/bin
}

# The server refuses to run as root: as root, run it as an unprivileged user.
if [[ $(id -u) == 0 ]]; then
  PG_USER=${PG_USER:-$(id -u postgres >/dev/null 2>&1 && echo postgres || echo sluice-pg)}
  # cd /: the tools warn when they cannot access the caller's cwd (e.g. /root).
  as_pg() { (cd / && runuser -u "$PG_USER" -- "$@"); }
else
  PG_USER=$(id -un)
  as_pg() { "$@"; }
fi

# What starting a server needs: PostgreSQL 15 (installed if missing) and PG_USER.
prepare_start() {
  [[ -n $BIN ]] || BIN=$(install_pg)
  id -u "$PG_USER" >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin "$PG_USER"
}

link_of() { echo "$SLUICE_RUN/pg-$1"; }
env_file() { echo "$SLUICE_RUN/pg-$1.env"; }
# Real directory of cluster NAME (resolves the /var/tmp symlink, see make_dir).
dir_of() { readlink -f "$(link_of "$1")" 2>/dev/null || true; }

# Create the cluster directory, owned by PG_USER. If PG_USER cannot reach SLUICE_RUN
# (the default one is under /root, mode 700), the directory goes to /var/tmp and
# $SLUICE_RUN/pg-NAME is a symlink to it.
make_dir() {
  local link; link=$(link_of "$1")
  [[ -L $link && ! -e $link ]] && rm -f "$link" # its /var/tmp target was cleaned up
  if [[ -d $link ]]; then :
  elif as_pg test -x "$SLUICE_RUN"; then mkdir "$link"
  else ln -s "$(mktemp -d /var/tmp/sluice-pg.XXXXXX)" "$link"
  fi
  chown "$PG_USER" "$(dir_of "$1")" && chmod 700 "$(dir_of "$1")"
}

# Not `pg_ctl status`: it takes a zombie for a live server, and zombies stay around
# where PID 1 does not reap orphans (as in some containers).
postmaster_pid() { head -n1 "$(dir_of "$1")/data/postmaster.pid" 2>/dev/null || true; }
running() { pid_alive "$(postmaster_pid "$1")" "$(dir_of "$1")/data"; }

# Processes of the process group PGID that are not zombies.
group_alive() { ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {f=1} END {exit !f}'; }
port_of() { cat "$(dir_of "$1")/port"; }

write_env() {
  local name=$1 port; port=$(port_of "$name")
  if [[ -f $(dir_of "$name")/primary ]]; then
    printf 'REPLICA_PGPORT=%s\nREPLICA_DATABASE_URL=postgres://sluice@%s:%s/postgres\n' "$port" "$SLUICE_HOST" "$port"
  else
    printf 'PGHOST=%s\nPGPORT=%s\nPGUSER=sluice\nDATABASE_URL=postgres://sluice@%s:%s/postgres\n' "$SLUICE_HOST" "$port" "$SLUICE_HOST" "$port"
  fi >"$(env_file "$name")"
  cat "$(env_file "$name")"
}

# Settings appended to postgresql.conf (the last occurrence of a setting wins).
conf() { # DIR PORT
  if [[ $SLUICE_HOST != 127.0.0.1 ]]; then
    printf 'host all sluice %s/32 trust\nhost replication sluice %s/32 trust\nhost all all 0.0.0.0/0 scram-sha-256\n' \
      "$SLUICE_HOST" "$SLUICE_HOST" >>"$1/data/pg_hba.conf"
  fi
  cat >>"$1/data/postgresql.conf" <<EOF

# --- hack/postgres.sh ---
listen_addresses = '$(if [[ $SLUICE_HOST == 127.0.0.1 ]]; then echo 127.0.0.1; else echo "127.0.0.1,$SLUICE_HOST"; fi)'
port = $2
unix_socket_directories = '$1'
max_connections = 200
shared_buffers = 256MB
# durability stays on: the tests check exactly-once delivery across crashes
fsync = on
synchronous_commit = on
wal_level = replica
wal_compression = lz4
max_wal_senders = 5
max_wal_size = 2GB
checkpoint_timeout = 15min
hot_standby = on
password_encryption = scram-sha-256
# which statements ran where (tests check that analytics reads hit the replica)
shared_preload_libraries = 'pg_stat_statements'
EOF
}

pg_start() {
  local name=$1 d; d=$(dir_of "$name")
  # -w: return once it accepts connections (for a standby: once hot standby is open).
  as_pg "$BIN/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w -t 120 -s start >&2 ||
    { tail -n 20 "$d/postgres.log" >&2; die "postgres '$name' failed to start"; }
}

start() {
  local name=$1 d
  if running "$name"; then
    log "postgres '$name' already running on port $(port_of "$name")"
    write_env "$name"; return
  fi
  make_dir "$name"; d=$(dir_of "$name")
  # A data dir left by kill9 (or a stopped server) is reused with its port.
  if [[ ! -f $d/data/PG_VERSION ]]; then
    local port; port=$(free_port)
    log "initdb postgres '$name' in $d/data"
    rm -rf "$d/data"
    # -N: no fsync of the fresh cluster files; it is throwaway and a process crash
    # does not lose the page cache.
    as_pg "$BIN/initdb" -D "$d/data" -U sluice -A trust -E UTF8 --locale=C -N >"$d/initdb.log" 2>&1 ||
      { cat "$d/initdb.log" >&2; die "initdb failed"; }
    conf "$d" "$port"
    echo "$port" >"$d/port"
  fi
  # Lock files left by a crash (kill9): the server refuses to start if their pid is
  # a zombie, so remove them once no process of the old server (its process group)
  # is left. Not before: the data dir one is also how the server detects old
  # backends still attached to its shared memory.
  local old; old=$(postmaster_pid "$name")
  if [[ -n $old ]]; then
    group_alive "$old" && die "processes of the old postgres '$name' (pgid $old) still run"
    rm -f "$d/data/postmaster.pid" "$d"/.s.PGSQL.*.lock
  fi
  log "starting postgres '$name' on $SLUICE_HOST:$(port_of "$name")"
  pg_start "$name"
  write_env "$name"
}

replica() {
  local primary=$1 name=$1-replica d
  need_running "$primary"
  make_dir "$name"; d=$(dir_of "$name")
  if [[ ! -f $d/data/PG_VERSION ]]; then
    local port slot; port=$(free_port); slot=$(slot_of "$primary")
    psql_to "$(port_of "$primary")" -qc "select pg_drop_replication_slot('$slot') from pg_replication_slots where slot_name = '$slot'" >/dev/null
    log "pg_basebackup of '$primary' into $d/data (slot $slot)"
    rm -rf "$d/data"
    # -R writes standby.signal + primary_conninfo/primary_slot_name; -C -S creates a
    # physical slot so the primary keeps the WAL a lagging replica still needs.
    as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$(port_of "$primary")" -U sluice -D "$d/data" \
      -R -X stream -C -S "$slot" -c fast -N >&2
    conf "$d" "$port"
    echo "$port" >"$d/port"
    echo "$primary" >"$d/primary"
  fi
  start "$name"
}
slot_of() { local s=${1//[^a-zA-Z0-9_]/_}; echo "sluice_${s,,}_replica"; }

psql_to() { # PORT ARGS...
  local port=$1; shift
  "$BIN/psql" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U sluice -d postgres "$@"
}

kill9() {
  local name=$1 d pid; d=$(dir_of "$name")
  need_running "$name"
  pid=$(head -n1 "$d/data/postmaster.pid")
  # pg_ctl starts the postmaster in its own session, so its pid is the process group
  # of all backends. Kill them all, as a host crash would: a lone killed postmaster
  # leaves backends attached to the shared memory, and a new postmaster refuses to
  # start until they have noticed and exited.
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
  local deadline=$((SECONDS + 10))
  while group_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  log "postgres '$name' killed (data and port kept; 'start $name' recovers it)"
}

stop() {
  local name=$1 d; d=$(dir_of "$name")
  [[ -e $(link_of "$name-replica") ]] && stop "$name-replica"
  if running "$name"; then
    log "stopping postgres '$name'"
    as_pg "$BIN/pg_ctl" -D "$d/data" -m fast -w -t 60 -s stop >&2 || kill9 "$name"
  fi
  if [[ -n $d && -f $d/primary ]] && running "$(cat "$d/primary")"; then
    # Drop the replica's slot, or the primary would keep its WAL forever. The
    # walsender may take a moment to exit after the standby went away.
    local slot i; slot=$(slot_of "$(cat "$d/primary")")
    for i in 1 2 3 4 5 6 7 8 9 10; do
      psql_to "$(port_of "$(cat "$d/primary")")" -qAtc \
        "select pg_drop_replication_slot('$slot') from pg_replication_slots where slot_name = '$slot'" \
        >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  [[ -n $d ]] && rm -rf "$d"
  rm -rf "$(link_of "$name")" "$(env_file "$name")"
}

need_running() { running "$1" || die "postgres '$1' is not running"; }

cmd=${1:-}; shift || true
name=default
if [[ $cmd == psql ]]; then
  # NAME is optional for psql: a first argument starting with '-' is a psql option.
  if [[ $# -gt 0 && $1 != -* ]]; then name=$1; shift; fi
else
  name=${1:-default}
fi
# Only a start installs anything. Without PostgreSQL 15 no server of ours can be running, so
# stop then only deletes what is left.
BIN=$(find_bindir) || BIN=
case $cmd in
  start | replica) prepare_start ;;
  restart | psql | createdb) [[ -n $BIN ]] || die "PostgreSQL 15 not found (set PG_BINDIR)" ;;
esac
case $cmd in
  start) start "$name" ;;
  stop) stop "$name" ;;
  restart)
    need_running "$name"
    as_pg "$BIN/pg_ctl" -D "$(dir_of "$name")/data" -l "$(dir_of "$name")/postgres.log" -m fast -w -t 120 -s restart >&2
    write_env "$name" ;;
  kill9) kill9 "$name" ;;
  status) if running "$name"; then echo running; else echo stopped; exit 1; fi ;;
  env) cat "$(env_file "$name")" ;;
  psql) need_running "$name"; psql_to "$(port_of "$name")" "$@" ;;
  createdb)
    [[ $# -eq 2 ]] || die "usage: createdb NAME DB"
    need_running "$1"
    [[ -n $(psql_to "$(port_of "$1")" -qAtc "select 1 from pg_database where datname = '$2'") ]] ||
      psql_to "$(port_of "$1")" -qc "create database \"$2\"" ;;
  replica) replica "$name" ;;
  *) sed -n '2,16s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
