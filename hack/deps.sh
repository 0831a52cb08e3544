#!/usr/bin/env bash
# Installs what the project needs on a fresh machine (Debian packages by name) and checks
# the toolchains. Idempotent and quick when everything is there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v openssl >/dev/null || need_apt+=(openssl)
# rdkafka's `ssl` feature links the system OpenSSL (found through pkg-config).
[ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v python3 >/dev/null || need_apt+=(python3)
command -v curl >/dev/null || need_apt+=(curl)
[ -x /usr/lib/postgresql/15/bin/postgres ] || command -v postgres >/dev/null || need_apt+=(postgresql-15 postgresql-client-15)
# Images (make images) and the real node (hack/node.sh): Debian's container tools.
command -v buildah >/dev/null || need_apt+=(buildah)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v objcopy >/dev/null || need_apt+=(binutils)
# Monitoring checks: promtool (rule unit tests) and a real Prometheus (the scrape test).
command -v promtool >/dev/null || need_apt+=(prometheus)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
command -v go >/dev/null || die "go not found: the control plane is built from the Go module proxy"
