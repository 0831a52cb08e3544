#!/usr/bin/env bash
# A real local Kubernetes control plane on 127.0.0.1, built from source (hack/k8s/go.mod).
#
#   hack/cluster.sh build                    build etcd, kube-apiserver, -controller-manager, -scheduler, kubelet, kwok
#                                            (unless built); prints their directory
#   hack/cluster.sh up         [NAME]        start (or reuse) cluster NAME; last stdout line = kubeconfig path
#   hack/cluster.sh down       [NAME]        stop every process of NAME and delete its state
#   hack/cluster.sh status     [NAME]        "running" (exit 0) or "stopped" (exit 1); details on stderr
#   hack/cluster.sh env        [NAME]        print $SLUICE_RUN/k8s-NAME.env (KUBECONFIG=, K8S_API=, ...)
#   hack/cluster.sh kubeconfig [NAME]        print the admin kubeconfig path ($SLUICE_RUN/k8s-NAME/kubeconfig)
#
# NAME defaults to "default". Pods are not run: kwok fakes SLUICE_K8S_NODES (default 2) nodes
# and marks pods scheduled on them Running/Ready. hack/node.sh runs this with SLUICE_HOST set
# to a node address inside a network namespace, SLUICE_K8S_API_PORT=443 and no kwok nodes, and
# adds a real kubelet: then the apiserver also answers on the `kubernetes` Service IP 10.0.0.1. Pod IPs (10.244.0.0/16) and Service IPs
# (10.0.0.0/24) are bookkeeping only; nothing routes to them. Logs go to stderr and to
# $SLUICE_RUN/k8s-NAME/logs/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- versions and binaries -------------------------------------------------------------------
K8S_MOD=$HACK_DIR/k8s
modver() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$K8S_MOD/go.mod"; }
K8S_VERSION=$(modver k8s.io/kubernetes)
ETCD_VERSION=$(modver go.etcd.io/etcd/server/v3)
KWOK_VERSION=$(modver sigs.k8s.io/kwok)
[[ -n $K8S_VERSION && -n $ETCD_VERSION && -n $KWOK_VERSION ]] || die "cannot read versions from $K8S_MOD/go.mod"
BIN=${SLUICE_K8S_BIN:-$SLUICE_CACHE/bin/k8s-$K8S_VERSION}
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kwok)

stamp_key() {
  echo "k8s=$K8S_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION sum=$(cat "$K8S_MOD/go.mod" "$K8S_MOD/go.sum" | sha256sum | cut -c1-16)"
}
binaries_ok() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x $BIN/$b ]] || return 1; done
  # A prebuilt SLUICE_K8S_BIN needs no stamp.
  [[ -n ${SLUICE_K8S_BIN:-} ]] || [[ $(cat "$BIN/.stamp" 2>/dev/null) == "$(stamp_key)" ]]
}

# build: the binaries in $BIN, built unless they are there; prints $BIN.
build() {
  ensure_built
  echo "$BIN"
}

ensure_built() {
  binaries_ok && return 0
  [[ -z ${SLUICE_K8S_BIN:-} ]] || die "SLUICE_K8S_BIN=$SLUICE_K8S_BIN lacks one of: ${BINARIES[*]}"
  [[ -x $GO ]] || die "go not found (set GO=/path/to/go; needs Go >= 1.26)"
  mkdir -p "$SLUICE_CACHE/bin"
  # One build at a time per cache (two `up`s in parallel must not both build).
  exec 8>"$SLUICE_CACHE/bin/.k8s-build.lock"
  flock -w 1800 8 || die "another build holds $SLUICE_CACHE/bin/.k8s-build.lock"
  if binaries_ok; then flock -u 8; return 0; fi
  local t0=$SECONDS tmp="$BIN.tmp.$$" minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  rm -rf "$tmp" && mkdir -p "$tmp"
  log "building Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION into $BIN (a cold build takes ~5 min on 2 cores)"
  local pkg x=""
  # What `make` in kubernetes stamps in; otherwise the servers report v0.0.0-master.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitTreeState=clean"
  done
  (
    cd "$K8S_MOD"
    export CGO_ENABLED=0
    # -p: packages compiled in parallel (each compile is itself multi-threaded); linking
    # kube-apiserver peaks at ~2 GB.
    local p=${SLUICE_BUILD_JOBS:-$(nproc)}
    "$GO" build -mod=readonly -trimpath -p "$p" -ldflags "-s -w$x" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet sigs.k8s.io/kwok/cmd/kwok
    "$GO" build -mod=readonly -trimpath -p "$p" -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
  ) >&2 || { rm -rf "$tmp"; die "build failed"; }
  stamp_key >"$tmp/.stamp"
  rm -rf "$BIN" && mv "$tmp" "$BIN"
  flock -u 8
  log "built in $((SECONDS - t0))s: $(cd "$BIN" && du -sh . | cut -f1) in $BIN"
}

# --- cluster state ---------------------------------------------------------------------------
NAME=default
dir_of() { echo "$SLUICE_RUN/k8s-$NAME"; }
env_file() { echo "$SLUICE_RUN/k8s-$NAME.env"; }
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

all_alive() {
  local c
  for c in "${COMPONENTS[@]}"; do daemon_alive "$(dir_of)" "$c" || return 1; done
}

# curl as cluster-admin: api PATH [curl args...]
api() {
  local d; d=$(dir_of)
  local port; port=$(cat "$d/apiserver.port")
  curl -sS --max-time 10 --cacert "$d/pki/ca.crt" --cert "$d/pki/admin.crt" --key "$d/pki/admin.key" \
    "https://$SLUICE_HOST:$port$1" "${@:2}"
}
readyz() { [[ $(api /readyz 2>/dev/null) == ok ]]; }

# cluster_wait SECONDS WHAT CMD...: poll CMD until it succeeds (lib.sh's wait_until); dies at
# once, with its log, when a component started so far has exited.
cluster_wait() {
  wait_until "$1" "cluster '$NAME': $2" "$(dir_of)/logs" started_alive_and "${@:3}"
}
started_alive_and() {
  local c d; d=$(dir_of)
  for c in "${COMPONENTS[@]}"; do
    if [[ -f $d/$c.pid ]] && ! daemon_alive "$d" "$c"; then
      tail -n 30 "$d/logs/$c.log" >&2 || true
      die "cluster '$NAME': $c exited (log: $d/logs/$c.log)"
    fi
  done
  "$@"
}

gen_pki() {
  local p=$1/pki
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=sluice-k8s-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    # leaf CN O EKU [SANs]
    leaf() {
      local subj="/CN=$2" ext
      [[ -n $3 ]] && subj="/O=$3$subj"
      ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$4"
      [[ -n ${5:-} ]] && ext+=$'\n'"subjectAltName=$5"
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$subj" 2>/dev/null
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -out "$1.crt" -extfile <(printf '%s\n' "$ext") 2>/dev/null
      rm -f "$1.csr"
    }
    leaf apiserver kube-apiserver "" serverAuth \
      "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1,IP:$SLUICE_HOST"
    leaf admin kubernetes-admin system:masters clientAuth
    leaf controller-manager system:kube-controller-manager "" clientAuth
    leaf scheduler system:kube-scheduler "" clientAuth
    # kwok writes node and pod status for every fake node: simplest as a master.
    leaf kwok system:kwok-controller system:masters clientAuth
    # the apiserver's client cert towards "kubelets" (kwok serves none; keeps the flags honest)
    leaf apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
    # front proxy (aggregation layer): its own CA, as kubeadm does
    mv ca.crt cluster-ca.crt && mv ca.key cluster-ca.key
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=sluice-front-proxy-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    leaf front-proxy-client front-proxy-client "" clientAuth
    mv ca.crt front-proxy-ca.crt && mv ca.key front-proxy-ca.key && rm -f ca.srl
    mv cluster-ca.crt ca.crt && mv cluster-ca.key ca.key
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
}

# kubeconfig FILE USER PORT: certificates embedded, so the file can be copied elsewhere.
write_kubeconfig() {
  local f=$1 user=$2 port=$3 p; p=$(dir_of)/pki
  cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sluice-$NAME
  cluster:
    server: https://$SLUICE_HOST:$port
    certificate-authority-data: $(base64 -w0 <"$p/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$p/$user.crt")
    client-key-data: $(base64 -w0 <"$p/$user.key")
contexts:
- name: sluice-$NAME
  context:
    cluster: sluice-$NAME
    user: $user
    namespace: default
current-context: sluice-$NAME
EOF
  chmod 600 "$f"
}

default_sa_exists() { [[ $(api /api/v1/namespaces/default/serviceaccounts/default -o /dev/null -w '%{http_code}' 2>/dev/null) == 200 ]]; }

nodes_ready() {
  api "/api/v1/nodes?labelSelector=type%3Dkwok" 2>/dev/null | python3 -c '
import json, sys
items = json.load(sys.stdin).get("items", [])
want = int(sys.argv[1])
ready = [n for n in items if any(c["type"] == "Ready" and c["status"] == "True"
                                  for c in n.get("status", {}).get("conditions", []))]
sys.exit(0 if len(ready) >= want else 1)' "$NODES"
}

create_nodes() {
  local i node
  for ((i = 0; i < NODES; i++)); do
    node="kwok-node-$i"
    # No kwok taint: ordinary workloads (the operator's Deployments) schedule as they are.
    api /api/v1/nodes -o /dev/null -w '' -X POST -H 'Content-Type: application/json' --data @- <<EOF
{"apiVersion":"v1","kind":"Node","metadata":{"name":"$node",
 "annotations":{"kwok.x-k8s.io/node":"fake","node.alpha.kubernetes.io/ttl":"0"},
 "labels":{"type":"kwok","kubernetes.io/hostname":"$node","kubernetes.io/os":"linux",
           "kubernetes.io/arch":"amd64","node-role.kubernetes.io/agent":"",
           "topology.kubernetes.io/zone":"zone-$((i % 3))"}},
 "spec":{},
 "status":{"allocatable":{"cpu":"32","memory":"256Gi","pods":"110"},
           "capacity":{"cpu":"32","memory":"256Gi","pods":"110"}}}
EOF
  done
}

up() {
  local d; d=$(dir_of)
  NODES=${SLUICE_K8S_NODES:-2}
  need_commands "apt-get install -y curl openssl python3 util-linux coreutils" curl openssl python3 setsid flock base64
  ensure_built
  exec 9>"$SLUICE_RUN/k8s-$NAME.lock"
  flock -w 300 9 || die "cluster '$NAME': another hack/cluster.sh holds $SLUICE_RUN/k8s-$NAME.lock"
  if all_alive && readyz; then
    log "cluster '$NAME' already up ($(sed -n 's/^K8S_API=//p' "$(env_file)"))"
    echo "$d/kubeconfig"
    return 0
  fi
  if [[ -d $d ]]; then
    log "cluster '$NAME' is partly up or stale: recreating it"
    down_locked
  fi
  local t0=$SECONDS
  # A failed start stops what it started but keeps the run dir, for its logs.
  trap 'stop_procs; log "cluster $NAME: start failed; logs kept in $(dir_of)/logs"' EXIT
  mkdir -p "$d/logs" "$d/etcd"
  local etcd_port peer_port api_port kcm_port sched_port
  read -r etcd_port peer_port api_port kcm_port sched_port <<<"$(free_port 5)"
  api_port=${SLUICE_K8S_API_PORT:-$api_port}
  # On loopback nothing may be published as the `kubernetes` Service's endpoint; on a node
  # address it is, and pods reach the apiserver as in any cluster.
  # There is no kube-proxy either: the aggregation layer dials an APIService's endpoint (pod)
  # addresses itself instead of its Service IP.
  local bind=127.0.0.1 reconciler=none aggregator_routing=false
  [[ $SLUICE_HOST == 127.0.0.1 ]] || { bind=0.0.0.0; reconciler=lease; aggregator_routing=true; }
  echo "$api_port" >"$d/apiserver.port"
  gen_pki "$d"
  write_kubeconfig "$d/kubeconfig" admin "$api_port"
  write_kubeconfig "$d/controller-manager.kubeconfig" controller-manager "$api_port"
  write_kubeconfig "$d/scheduler.kubeconfig" scheduler "$api_port"
  write_kubeconfig "$d/kwok.kubeconfig" kwok "$api_port"
  local p=$d/pki

  log "cluster '$NAME': etcd on 127.0.0.1:$etcd_port"
  # --unsafe-no-fsync: a throwaway test cluster; fsync on every write makes CI slow.
  start_daemon "$d" etcd "$BIN/etcd" --name sluice --data-dir "$d/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "sluice=http://127.0.0.1:$peer_port" --initial-cluster-state new \
    --unsafe-no-fsync --log-level warn --quota-backend-bytes=$((2 * 1024 * 1024 * 1024))
  cluster_wait 30 "etcd health" bash -c "curl -fsS --max-time 2 http://127.0.0.1:$etcd_port/health 2>/dev/null | grep -q true"

  log "cluster '$NAME': kube-apiserver $K8S_VERSION on https://$SLUICE_HOST:$api_port"
  # shellcheck disable=SC2086
  start_daemon "$d" kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$bind" --advertise-address "$SLUICE_HOST" --secure-port "$api_port" \
    --cert-dir "$p" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" \
    --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" --kubelet-client-key "$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$p/ca.crt" --kubelet-preferred-address-types InternalIP \
    --requestheader-client-ca-file "$p/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$p/front-proxy-client.crt" --proxy-client-key-file "$p/front-proxy-client.key" \
    --authorization-mode Node,RBAC --allow-privileged=true \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --endpoint-reconciler-type "$reconciler" \
    --enable-aggregator-routing="$aggregator_routing" \
    --enable-priority-and-fairness="${SLUICE_K8S_APF:-true}" \
    --profiling=false --v="${SLUICE_K8S_V:-1}" ${SLUICE_K8S_APISERVER_ARGS:-}
  cluster_wait 120 "apiserver /readyz" readyz

  log "cluster '$NAME': kube-controller-manager, kube-scheduler, kwok ($NODES fake nodes)"
  start_daemon "$d" kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$d/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$d/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$d/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$d/kcm-certs" \
    --controllers '*' --use-service-account-credentials=true --leader-elect=false \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --node-monitor-grace-period 40s --profiling=false --v="${SLUICE_K8S_V:-1}"
  cat >"$d/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $d/scheduler.kubeconfig
leaderElection:
  leaderElect: false
EOF
  start_daemon "$d" kube-scheduler "$BIN/kube-scheduler" --config "$d/scheduler.yaml" \
    --authentication-kubeconfig "$d/scheduler.kubeconfig" --authorization-kubeconfig "$d/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --cert-dir "$d/scheduler-certs" \
    --profiling=false --v="${SLUICE_K8S_V:-1}"
  # Node IP 127.0.0.1: anything that would talk to a "kubelet" stays on this machine.
  start_daemon "$d" kwok "$BIN/kwok" --config "$K8S_MOD/kwok.yaml" --kubeconfig "$d/kwok.kubeconfig" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-ip 127.0.0.1 --cidr 10.244.0.0/16 --node-lease-duration-seconds 40
  create_nodes
  cluster_wait 60 "the default ServiceAccount" default_sa_exists
  cluster_wait 60 "$NODES Ready kwok nodes" nodes_ready

  cat >"$(env_file)" <<EOF
KUBECONFIG=$d/kubeconfig
K8S_API=https://$SLUICE_HOST:$api_port
K8S_VERSION=$K8S_VERSION
K8S_RUN_DIR=$d
EOF
  trap - EXIT
  log "cluster '$NAME' up in $((SECONDS - t0))s: kubectl --kubeconfig $d/kubeconfig get nodes"
  echo "$d/kubeconfig"
}

stop_procs() {
  local c i
  # reverse start order: kwok first, etcd last
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[i]}
    stop_daemon "$(dir_of)" "$c"
  done
}

down_locked() {
  stop_procs
  rm -rf "$(dir_of)" "$(env_file)"
}

down() {
  take_down "cluster '$NAME'" "$SLUICE_RUN/k8s-$NAME.lock" "$(dir_of)" down_locked
}

status() {
  local c ok=0
  [[ -d $(dir_of) ]] || { log "cluster '$NAME': no state at $(dir_of)"; echo stopped; return 1; }
  for c in "${COMPONENTS[@]}"; do
    if daemon_alive "$(dir_of)" "$c"; then log "$c: running (pid $(daemon_pid "$(dir_of)" "$c"))"; else log "$c: stopped"; ok=1; fi
  done
  if ((ok == 0)) && readyz; then log "apiserver /readyz: ok"; echo running; else echo stopped; return 1; fi
}

# All of it parsed before anything runs: editing this file under a running `up` is harmless.
main() {
  local cmd=${1:-}; shift || true
  NAME=${1:-default}
  [[ $NAME =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad cluster name '$NAME'"
  case $cmd in
    build) build ;;
    up) up ;;
    down) down ;;
    status) status ;;
    env) [[ -f $(env_file) ]] || die "cluster '$NAME' is not up"; cat "$(env_file)" ;;
    kubeconfig) [[ -f $(dir_of)/kubeconfig ]] || die "cluster '$NAME' is not up"; echo "$(dir_of)/kubeconfig" ;;
    *) sed -n '2,15s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
  esac
}
main "$@"
exit
