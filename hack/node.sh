#!/usr/bin/env bash
# A local Kubernetes cluster with a REAL node: kubelet + containerd + runc running pods from
# the images `make images` builds. Everything runs inside a network namespace this script
# creates, so pods, Kafka, Postgres and the apiserver talk over addresses that exist only
# there (see ../shared/FIELD-NOTES.md, "A real node"). Needs root.
#
#   hack/node.sh up   [NAME]          start (or reuse) node cluster NAME; last stdout line = env file
#   hack/node.sh exec [NAME] -- CMD   run CMD inside the namespace with the cluster's env
#   hack/node.sh down [NAME]          stop pods, kubelet, containerd, services; delete the state
#   hack/node.sh import [NAME] TAR..  import image archives into the node's containerd
#
# Inside namespace sluice-NAME: bridge node0 has the node address 10.77.0.1 and 10.0.0.1, the
# `kubernetes` Service IP, on which the apiserver listens (port 443), so pods reach it with no
# kube-proxy. Pods get 10.88.0.0/16 addresses on the CNI bridge cni0 and reach Kafka and
# Postgres on 10.77.0.1. The env file ($SLUICE_RUN/node-NAME.env) holds NETNS, NODE_IP,
# NODE_NAME, KUBECONFIG, KAFKA_BOOTSTRAP, DATABASE_URL (trust, from the node address only;
# pods need a password), CONTAINERD_ADDRESS, and KAFKA_NAME / PG_NAME (the hack/kafka.sh and
# hack/postgres.sh names of its broker and database, e.g. to kill9 and start them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_IP=10.77.0.1
SERVICE_IP=10.0.0.1
POD_CIDR=10.88.0.0/16
PAUSE_IMAGE=registry.k8s.io/pause:3.10

NAME=default
netns_name() { echo "sluice-$NAME"; }
netns_path() { echo "/var/run/netns/$(netns_name)"; }
dir_of() { echo "$SLUICE_RUN/node-$NAME"; }
env_file() { echo "$SLUICE_RUN/node-$NAME.env"; }
node_name() { echo "sluice-${NAME,,}" | tr -c 'a-z0-9-\n' '-'; }
sock() { echo "$(dir_of)/containerd.sock"; }
ctr_() { ctr --address "$(sock)" --namespace k8s.io "$@"; }

# inside CMD...: run CMD in the namespace. nsenter, not `ip netns exec`: the latter remounts
# /sys, which hides the cgroup mounts from the kubelet.
inside() { nsenter --net="$(netns_path)" -- "$@"; }

alive() { daemon_alive "$(dir_of)" "$1"; }
# start_inside NAME CMD...: daemon NAME (lib.sh's start_daemon) in the namespace. setsid, nsenter
# (no --pid) and nohup each exec the next: its pid is the daemon's own.
start_inside() { start_daemon "$(dir_of)" "$1" nsenter --net="$(netns_path)" -- "${@:2}"; }
node_wait() { wait_until "$1" "node '$NAME': $2" "$(dir_of)/logs" "${@:3}"; }

need_tools() {
  [[ $(id -u) == 0 ]] || die "hack/node.sh needs root (network namespace, containerd, kubelet)"
  need_commands "hack/deps.sh installs containerd, runc, containernetworking-plugins" ip nsenter containerd ctr runc openssl
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] ||
    die "CNI plugins not found in /usr/lib/cni (apt-get install containernetworking-plugins)"
}

make_netns() {
  local ns; ns=$(netns_name)
  ip netns list | grep -qw "^$ns" && ip netns del "$ns"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # A bridge with no ports is an always-up interface to hold the node's addresses.
  ip -n "$ns" link add node0 type bridge
  ip -n "$ns" addr add "$NODE_IP/24" dev node0
  ip -n "$ns" addr add "$SERVICE_IP/32" dev node0
  ip -n "$ns" link set node0 up
}

# Kubelet client and serving certificates, signed by the cluster's CA.
kubelet_pki() {
  local k8s=$1 node=$2 p; p=$(dir_of)/pki
  mkdir -p "$p"
  (
    cd "$p"
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out c.csr \
      -subj "/O=system:nodes/CN=system:node:$node" 2>/dev/null
    openssl x509 -req -in c.csr -CA "$k8s/pki/ca.crt" -CAkey "$k8s/pki/ca.key" -CAcreateserial \
      -days 3650 -out kubelet-client.crt -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n') 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout kubelet.key -out s.csr -subj "/CN=$node" 2>/dev/null
    openssl x509 -req -in s.csr -CA "$k8s/pki/ca.crt" -CAkey "$k8s/pki/ca.key" -CAcreateserial \
      -days 3650 -out kubelet.crt -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:%s,DNS:%s\n' "$NODE_IP" "$node") 2>/dev/null
    rm -f ./*.csr
    chmod 600 ./*.key
  )
  cat >"$(dir_of)/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$NODE_IP:443
    certificate-authority: $k8s/pki/ca.crt
users:
- name: kubelet
  user:
    client-certificate: $p/kubelet-client.crt
    client-key: $p/kubelet-client.key
contexts:
- name: local
  context: {cluster: local, user: kubelet}
current-context: local
EOF
}

start_containerd() {
  local d; d=$(dir_of)
  mkdir -p "$d/containerd/root" "$d/containerd/state" "$d/cni/net.d" "$d/cni/ipam"
  # restrict_oom_score_adj: no CAP_SYS_RESOURCE here, and runc fails every sandbox when it
  # cannot write a negative oom_score_adj.
  cat >"$d/containerd.toml" <<EOF
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${SLUICE_SNAPSHOTTER:-overlayfs}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni/net.d"
EOF
  # No masquerade: every address pods talk to is in this namespace.
  cat >"$d/cni/net.d/10-sluice.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "sluice",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$d/cni/ipam"}
    }
  ]
}
EOF
  start_inside containerd containerd --config "$d/containerd.toml"
  node_wait 30 "containerd" bash -c "ctr --address '$(sock)' version >/dev/null 2>&1"
}

import_images() {
  local t
  for t in "$@"; do
    log "node '$NAME': importing $(basename "$t")"
    ctr_ images import --no-unpack=false "$t" >/dev/null
  done
}

start_kubelet() {
  local d k8s=$1 node; d=$(dir_of); node=$(node_name)
  kubelet_pki "$k8s" "$node"
  mkdir -p "$d/kubelet"
  # cgroup v1 (hybrid) and no systemd here: cgroupfs driver, no QoS hierarchy, nothing
  # reserved. Image GC off: the images are imported, never pulled back.
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
tlsCertFile: $d/pki/kubelet.crt
tlsPrivateKeyFile: $d/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $k8s/pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$d/containerd.sock
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
registerNode: true
EOF
  start_inside kubelet "$K8S_BIN/kubelet" --config "$d/kubelet.yaml" --kubeconfig "$d/kubelet.kubeconfig" \
    --hostname-override "$node" --node-ip "$NODE_IP" --root-dir "$d/kubelet" --cert-dir "$d/pki" \
    --v="${SLUICE_K8S_V:-1}"
}

node_ready() {
  inside kubectl --kubeconfig "$1" get node "$(node_name)" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True
}

up() {
  need_tools
  local d t0=$SECONDS; d=$(dir_of)
  exec 9>"$SLUICE_RUN/node-$NAME.lock"
  flock -w 600 9 || die "node '$NAME': another hack/node.sh holds its lock"
  if [[ -f $(env_file) ]] && alive containerd && alive kubelet && [[ -e $(netns_path) ]]; then
    # shellcheck disable=SC1090
    local kc; kc=$(sed -n 's/^KUBECONFIG=//p' "$(env_file)")
    if node_ready "$kc"; then
      log "node '$NAME' already up"
      echo "$(env_file)"
      return 0
    fi
  fi
  [[ -d $d || -e $(netns_path) ]] && { log "node '$NAME' is partly up or stale: recreating it"; down_locked; }
  trap 'log "node $NAME: start failed; stopping it (logs kept in $(dir_of)/logs)"; stop_all' EXIT
  mkdir -p "$d/logs"
  K8S_BIN=$("$HACK_DIR/cluster.sh" build)

  local images=("$ROOT"/target/images/*.tar)
  [[ -f $ROOT/target/images/pause.tar ]] || die "no $ROOT/target/images/pause.tar: run 'make images' first"

  log "node '$NAME': network namespace $(netns_name), node address $NODE_IP"
  make_netns
  # 9>&-: the services these start must not inherit (and so hold) this script's lock.
  local envs
  envs=$(inside env SLUICE_HOST="$NODE_IP" "$HACK_DIR/kafka.sh" start "node-$NAME" 9>&-)
  envs+=$'\n'$(inside env SLUICE_HOST="$NODE_IP" "$HACK_DIR/postgres.sh" start "node-$NAME" 9>&-)
  local kc
  kc=$(inside env SLUICE_HOST="$NODE_IP" SLUICE_K8S_API_PORT=443 SLUICE_K8S_NODES=0 \
    "$HACK_DIR/cluster.sh" up "node-$NAME" 9>&- | tail -n 1)
  local k8s; k8s=$(dirname "$kc")

  log "node '$NAME': containerd (runc, CNI bridge $POD_CIDR)"
  start_containerd
  import_images "${images[@]}"
  log "node '$NAME': kubelet $(node_name)"
  start_kubelet "$k8s"
  node_wait 120 "node $(node_name) Ready" node_ready "$kc"

  {
    echo "NETNS=$(netns_path)"
    echo "NODE_IP=$NODE_IP"
    echo "NODE_NAME=$(node_name)"
    echo "KUBECONFIG=$kc"
    echo "CONTAINERD_ADDRESS=$(sock)"
    echo "KAFKA_NAME=node-$NAME"
    echo "PG_NAME=node-$NAME"
    echo "$envs"
  } >"$(env_file)"
  trap - EXIT
  log "node '$NAME' up in $((SECONDS - t0))s: hack/node.sh exec $NAME -- kubectl get nodes -o wide"
  echo "$(env_file)"
}

# Names of the pod network namespaces whose veth peers hang on the node's bridge cni0.
attached_pod_netns() {
  ip -n "$(netns_name)" -o link show master cni0 2>/dev/null | grep -o 'link-netns cni-[0-9a-f-]*' | cut -d' ' -f2 || true
}

# Pods first (the kubelet tears down their sandboxes and CNI netns), then the daemons.
stop_all() {
  local d kc; d=$(dir_of)
  # Pod network namespaces still attached to the node's bridge (sandboxes not yet removed
  # when the kubelet stops): named by their veth peers, deleted once the pods are gone.
  local pod_netns
  pod_netns=$(attached_pod_netns)
  kc=$SLUICE_RUN/k8s-node-$NAME/kubeconfig
  if alive kubelet && [[ -f $kc ]] && [[ -e $(netns_path) ]]; then
    inside kubectl --kubeconfig "$kc" delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)) && [[ -n $(ctr_ tasks ls -q 2>/dev/null) ]]; do sleep 0.5; done
  fi
  stop_daemon "$d" kubelet
  if alive containerd; then
    local t
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
    sleep 0.5
    for t in $(ctr_ containers ls -q 2>/dev/null); do
      ctr_ tasks rm -f "$t" >/dev/null 2>&1 || true
      ctr_ containers rm "$t" >/dev/null 2>&1 || true
    done
    stop_daemon "$d" containerd
  fi
  # Shims outlive containerd by design; these are ours if they name our socket. Containers
  # still running now (a wedged kubelet or containerd) are killed through runc's state.
  local pid task
  for task in "$d"/containerd/state/io.containerd.runtime.v2.task/k8s.io/*; do
    [[ -e $task ]] || continue
    pid=$(grep -o '"init_process_pid":[0-9]*' "/run/containerd/runc/k8s.io/${task##*/}/state.json" 2>/dev/null | cut -d: -f2)
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in $(pgrep -f "containerd-shim.*-address $(sock)" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  [[ -e $(netns_path) ]] && {
    inside env SLUICE_HOST="$NODE_IP" "$HACK_DIR/cluster.sh" down "node-$NAME" >/dev/null 2>&1 || true
    inside env SLUICE_HOST="$NODE_IP" "$HACK_DIR/kafka.sh" stop "node-$NAME" >/dev/null 2>&1 || true
    inside env SLUICE_HOST="$NODE_IP" "$HACK_DIR/postgres.sh" stop "node-$NAME" >/dev/null 2>&1 || true
  }
  # Volumes (secret tmpfs), rootfs and sandbox mounts under the state dir, deepest first.
  [[ -d $d ]] && findmnt -rn -o TARGET | grep -F "$d/" | sort -r | xargs -r umount -l 2>/dev/null || true
  local n
  for n in $pod_netns $(attached_pod_netns); do
    ip netns del "$n" 2>/dev/null || true
  done
  ip netns del "$(netns_name)" 2>/dev/null || true
}

down_locked() {
  stop_all
  rm -rf "$(dir_of)" "$(env_file)"
}

down() {
  [[ $(id -u) == 0 ]] || die "hack/node.sh needs root"
  take_down "node '$NAME'" "$SLUICE_RUN/node-$NAME.lock" "$(dir_of)" down_locked
}

exec_in() {
  [[ -f $(env_file) ]] || die "node '$NAME' is not up (hack/node.sh up $NAME)"
  [[ ${1:-} == -- ]] && shift
  set -a
  # shellcheck disable=SC1090
  source "$(env_file)"
  set +a
  exec nsenter --net="$(netns_path)" -- "$@"
}

main() {
  local cmd=${1:-}; shift || true
  if [[ ${1:-} != -- && -n ${1:-} ]]; then NAME=$1; shift; fi
  [[ $NAME =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad node name '$NAME'"
  case $cmd in
    up) up ;;
    down) down ;;
    exec) exec_in "$@" ;;
    import) import_images "$@" ;;
    *) sed -n '2,17s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
  esac
}
main "$@"
