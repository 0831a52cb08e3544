#!/usr/bin/env bash
# Container images of sluice, built without a Docker engine (buildah, own store under the cache).
#
#   hack/images.sh [build]        binaries, base, pause, both images and their archives (`make images`)
#   hack/images.sh base           only the local gcr.io/distroless/cc-debian12:nonroot
#   hack/images.sh pause          only registry.k8s.io/pause:$PAUSE_TAG and target/images/pause.tar
#   hack/images.sh list           the images in the store, the archives
#   hack/images.sh buildah ARGS   buildah on this script's store (e.g. `images`, `inspect IMAGE`)
#
# Writes docker-archive files with the name:tag recorded, which `kind load image-archive`,
# `ctr -n k8s.io images import` (one file per call: it ignores further arguments), `skopeo`
# and `docker load` all take:
#   target/images/sluice-worker.tar     ghcr.io/sluice-dev/sluice-worker:$VERSION
#   target/images/sluice-operator.tar   ghcr.io/sluice-dev/sluice-operator:$VERSION
#   target/images/pause.tar             registry.k8s.io/pause:3.10
# VERSION is the workspace version in Cargo.toml. The last stdout lines are a summary (names,
# sizes, archive paths); logs go to stderr.
#
# No registry is reachable here, so the two base images are made locally:
# - gcr.io/distroless/cc-debian12:nonroot from the Debian 12 packages distroless cc ships
#   (the binaries link zlib statically, so nothing more), extracted with dpkg-deb,
#   with distroless' users (root, nonroot 65532, nobody) and directories. Rebuilt only when a
#   package's candidate version (apt-cache policy) or BASE_REV changes.
# - registry.k8s.io/pause from Kubernetes' own build/pause/linux/pause.c, at the version of
#   hack/k8s/go.mod, compiled static: FROM scratch, /pause, USER 65535.
# An image is rebuilt only when its inputs (Dockerfile, .dockerignore, stripped binary, base
# image, version) changed; a second run with nothing changed takes a few seconds.
#
# Needs root: the layers carry real uids (root, 65532) and buildah runs rootful with the vfs
# driver (or SLUICE_BUILDAH_DRIVER=overlay) in $SLUICE_CACHE/containers/<driver>, so nothing
# goes to the system's /var/lib/containers.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=$ROOT/target/images          # archives; target/ is git-ignored
STAGE=$OUT/bin                   # the stripped binaries, the only files .dockerignore lets in
WORK=$SLUICE_CACHE/images        # debs, base rootfs, pause build, stamps/<driver>
DRIVER=${SLUICE_BUILDAH_DRIVER:-vfs}
STORE=$SLUICE_CACHE/containers/$DRIVER   # buildah's storage and run root (one per driver)

VERSION=$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml")
[[ -n $VERSION ]] || die "no [workspace.package] version in $ROOT/Cargo.toml"
REPO=${SLUICE_IMAGE_REPO:-ghcr.io/sluice-dev}
IMAGES=(worker operator)         # Dockerfile targets; image $REPO/sluice-<target>:$VERSION

BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot
BASE_PKGS=(base-files netbase tzdata ca-certificates libc6 libgcc-s1 libstdc++6 libgomp1 libssl3)
BASE_REV=1                       # bump when make_base's recipe changes
PAUSE_TAG=${PAUSE_TAG:-3.10}
PAUSE_IMAGE=registry.k8s.io/pause:$PAUSE_TAG
PAUSE_REV=1

bh() { buildah --root "$STORE/storage" --runroot "$STORE/runroot" --storage-driver "$DRIVER" "$@"; }
image_id() { bh inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null; }
# stamp_ok NAME KEY: the stamp of NAME holds KEY.
stamp_ok() { [[ -f $WORK/stamps/$DRIVER/$1 && $(<"$WORK/stamps/$DRIVER/$1") == "$2" ]]; }
stamp_set() { printf '%s\n' "$2" >"$WORK/stamps/$DRIVER/$1"; }

# --- gcr.io/distroless/cc-debian12:nonroot, from Debian packages ----------------------------
candidate() {
  apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p'
}

# deb_file PKG VERSION: the .deb in $WORK/debs, from /var/cache/apt/archives or apt-get download.
deb_file() {
  local pkg=$1 ver=$2 name f
  name="${pkg}_${ver//:/%3a}_"
  for f in "$WORK/debs/$name"*.deb /var/cache/apt/archives/"$name"*.deb; do
    [[ -f $f ]] || continue
    [[ $f == "$WORK/debs/"* ]] || cp "$f" "$WORK/debs/"
    echo "$WORK/debs/${f##*/}"; return 0
  done
  (cd "$WORK/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2) || return 1
  for f in "$WORK/debs/$name"*.deb; do [[ -f $f ]] && { echo "$f"; return 0; }; done
  return 1
}

make_base() {
  local pv=() p v key
  for p in "${BASE_PKGS[@]}"; do
    v=$(candidate "$p")
    [[ -n $v && $v != "(none)" ]] || die "no candidate version of $p (run apt-get update)"
    pv+=("$p=$v")
  done
  key="rev=$BASE_REV ${pv[*]}"
  if stamp_ok base "$key" && [[ -n $(image_id "$BASE_IMAGE") ]]; then
    log "base $BASE_IMAGE up to date"; return 0
  fi
  log "making $BASE_IMAGE from Debian packages: ${pv[*]}"
  mkdir -p "$WORK/debs"
  local debs=() f
  for p in "${pv[@]}"; do
    if ! f=$(deb_file "${p%%=*}" "${p#*=}"); then
      # Offline with a base already made from older packages: keep it rather than fail.
      [[ -n $(image_id "$BASE_IMAGE") ]] || die "cannot download $p"
      log "WARNING: cannot download $p; keeping the existing $BASE_IMAGE"; return 0
    fi
    debs+=("$f")
  done

  local rootfs=$WORK/base-rootfs
  rm -rf "$rootfs" && mkdir -p "$rootfs/var/lib/dpkg/status.d"
  for f in "${debs[@]}"; do
    dpkg-deb -x "$f" "$rootfs"
    # As distroless does: one control file per package, for image scanners (trivy, grype).
    dpkg-deb -f "$f" >"$rootfs/var/lib/dpkg/status.d/$(dpkg-deb -f "$f" Package)"
  done
  (
    cd "$rootfs"
    # CA bundle as update-ca-certificates would write it (the postinst does not run here);
    # the individual certificates and the (shell) tool are not needed.
    mkdir -p etc/ssl/certs
    find usr/share/ca-certificates -name '*.crt' | LC_ALL=C sort | while read -r f; do
      cat "$f"
      [[ -z $(tail -c1 "$f") ]] || echo   # a file without a final newline
    done >etc/ssl/certs/ca-certificates.crt
    [[ -s etc/ssl/certs/ca-certificates.crt ]] || die "empty CA bundle"
    rm -rf usr/share/ca-certificates usr/sbin/update-ca-certificates etc/ca-certificates \
      usr/share/man usr/share/info usr/share/lintian usr/share/gdb usr/share/gcc
    # Keep only the copyright files of the docs (licenses), like distroless.
    find usr/share/doc -mindepth 2 ! -name copyright ! -type d -delete
    find usr/share/doc -xtype l -delete
    find usr/share/doc -mindepth 1 -depth -type d -empty -delete
    # As libc-bin's default (libc-bin is not installed, as in distroless): /etc/hosts, then
    # DNS. Without the file glibc asks DNS first and reads /etc/hosts only if DNS is down.
    cat >etc/nsswitch.conf <<'EOF'
passwd:         files
group:          files
shadow:         files
gshadow:        files
hosts:          files dns
networks:       files
protocols:      db files
services:       db files
ethers:         db files
rpc:            db files
EOF
    cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >etc/group <<'EOF'
root:x:0:
tty:x:5:
staff:x:50:
nobody:x:65534:
nonroot:x:65532:
EOF
    chmod 0644 etc/passwd etc/group etc/nsswitch.conf
    install -d -m 0700 root
    install -d -m 0700 -o 65532 -g 65532 home/nonroot
    install -d -m 1777 tmp var/tmp
  )
  local c mnt
  c=$(bh from --quiet scratch)
  mnt=$(bh mount "$c")
  cp -a "$rootfs/." "$mnt/"
  bh umount "$c" >/dev/null
  bh config --os linux --arch amd64 --user 65532:65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label "dev.sluice.base.packages=${pv[*]}" \
    --label "dev.sluice.base.note=local stand-in for $BASE_IMAGE, made by hack/images.sh" \
    --created-by "hack/images.sh: dpkg-deb -x ${BASE_PKGS[*]}" "$c"
  bh commit --quiet --rm "$c" "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  stamp_set base "$key"
  log "base $BASE_IMAGE made ($(image_id "$BASE_IMAGE" | cut -c1-12))"
}

# --- registry.k8s.io/pause, from Kubernetes' pause.c -----------------------------------------
make_pause() {
  local k8s src mod=$HACK_DIR/k8s
  k8s=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$mod/go.mod")
  [[ -n $k8s ]] || die "no k8s.io/kubernetes version in $mod/go.mod"
  src=$GOMODCACHE/k8s.io/kubernetes@$k8s/build/pause
  if [[ ! -f $src/linux/pause.c ]]; then
    log "downloading k8s.io/kubernetes@$k8s into $GOMODCACHE"
    (cd "$mod" && GOFLAGS="$GOFLAGS -mod=readonly" "$GO" mod download k8s.io/kubernetes) || die "go mod download k8s.io/kubernetes failed"
  fi
  # The version pause.c reports (-v): upstream's TAG, then the Kubernetes release it came from.
  local tag key
  tag=$(sed -n 's/^TAG ?= *//p' "$src/Makefile")
  key="rev=$PAUSE_REV $PAUSE_IMAGE v${tag:-unknown}-$k8s $(sha256sum <"$src/linux/pause.c" | cut -c1-16) $(gcc -dumpfullversion)"
  if stamp_ok pause "$key" && [[ -n $(image_id "$PAUSE_IMAGE") && -f $OUT/pause.tar ]]; then
    log "pause $PAUSE_IMAGE up to date"; return 0
  fi
  log "making $PAUSE_IMAGE from $src/linux/pause.c (v${tag:-unknown}-$k8s)"
  local b=$WORK/pause c
  mkdir -p "$b"
  gcc -Os -Wall -Werror -static -DVERSION="v${tag:-unknown}-$k8s" -o "$b/pause" "$src/linux/pause.c"
  strip "$b/pause"
  c=$(bh from --quiet scratch)
  bh copy --quiet --chmod 0755 "$c" "$b/pause" /pause >/dev/null
  bh config --os linux --arch amd64 --user 65535:65535 --entrypoint '["/pause"]' \
    --label "dev.sluice.pause.version=v${tag:-unknown}-$k8s" "$c"
  bh commit --quiet --rm "$c" "$PAUSE_IMAGE" >/dev/null
  archive "$PAUSE_IMAGE" "$OUT/pause.tar"
  stamp_set pause "$key"
}

# archive IMAGE PATH: docker-archive with IMAGE's name:tag recorded (written aside, then moved).
archive() {
  rm -f "$2.tmp"
  bh push --quiet "$1" "docker-archive:$2.tmp:$1" >&2
  mv -f "$2.tmp" "$2"
}

# --- sluice-worker, sluice-operator ------------------------------------------------------------
binaries() {
  log "cargo build --release (sluice-worker, sluice-operator) in $CARGO_TARGET_DIR"
  # The same selection as hack/test.sh: cargo unifies features per invocation, so building only
  # these two packages would give other artifacts and rebuild both each time after `make test`.
  (cd "$ROOT" && cargo build --release --workspace --bins --tests --benches --locked)
  mkdir -p "$STAGE"
  local t src dst
  for t in "${IMAGES[@]}"; do
    src=$CARGO_TARGET_DIR/release/sluice-$t dst=$STAGE/sluice-$t
    # --strip-debug drops the line tables of the release profile but keeps the symbol
    # table, so panics still print function names.
    objcopy --strip-debug "$src" "$dst.tmp"
    chmod 0755 "$dst.tmp"
    if cmp -s "$dst.tmp" "$dst"; then rm -f "$dst.tmp"; else mv -f "$dst.tmp" "$dst"; fi
  done
}

build_image() {
  local t=$1 img=$REPO/sluice-$1:$VERSION key
  key="$img base=$(image_id "$BASE_IMAGE") $(cd "$ROOT" && cat Dockerfile .dockerignore "$STAGE/sluice-$t" | sha256sum | cut -c1-32)"
  if stamp_ok "$t" "$key" && [[ -n $(image_id "$img") && -f $OUT/sluice-$t.tar ]]; then
    log "$img up to date"; return 0
  fi
  log "building $img (Dockerfile target $t)"
  # Only COPY steps: no container runs, chroot isolation avoids needing runc for them.
  # --pull=never: the base is the local one from make_base, never a registry's.
  bh bud --quiet --isolation chroot --pull=never --target "$t" --build-arg "VERSION=$VERSION" \
    -f "$ROOT/Dockerfile" -t "$img" "$ROOT" >/dev/null
  archive "$img" "$OUT/sluice-$t.tar"
  stamp_set "$t" "$key"
}

# summary IMAGE...: name, id, size in the store, archive path and size (stdout).
summary() {
  local img tar arch
  printf '%-46s %-12s %9s  %s\n' IMAGE ID SIZE ARCHIVE
  for img in "$@"; do
    case $img in
      "$BASE_IMAGE") tar="" ;;
      "$PAUSE_IMAGE") tar=$OUT/pause.tar ;;
      *) tar=${img%:*}; tar=$OUT/${tar##*/}.tar ;;
    esac
    arch="-"
    [[ -n $tar && -f $tar ]] && arch="${tar#"$ROOT"/} ($(du -h "$tar" | cut -f1))"
    printf '%-46s %-12s %9s  %s\n' "$img" "$(image_id "$img" | cut -c1-12)" \
      "$(bh images --format '{{.Size}}' "$img" 2>/dev/null | head -n1)" "$arch"
  done
}

prepare() {
  ((EUID == 0)) || die "needs root (rootful buildah; layers with uids 0 and 65532)"
  local tool
  for tool in buildah dpkg-deb apt-get gcc objcopy; do
    command -v "$tool" >/dev/null || die "$tool not found"
  done
  mkdir -p "$WORK/stamps/$DRIVER" "$STORE" "$OUT"
  # One run at a time on the store and the stamps.
  exec 9>"$WORK/.lock"
  flock -n 9 || { log "another hack/images.sh is running; waiting"; flock 9; }
  # Working containers left by an interrupted run (the store is this script's alone).
  bh rm --all >/dev/null 2>&1 || true
}

cmd=${1:-build}
[[ $# -gt 0 ]] && shift
case $cmd in
  build)
    start=$SECONDS
    prepare
    make_base
    make_pause
    binaries
    for t in "${IMAGES[@]}"; do build_image "$t"; done
    # Untagged leftovers: intermediate stages, images replaced by a rebuild.
    bh rmi --prune >/dev/null 2>&1 || true
    log "done in $((SECONDS - start))s"
    imgs=()
    for t in "${IMAGES[@]}"; do imgs+=("$REPO/sluice-$t:$VERSION"); done
    summary "$BASE_IMAGE" "$PAUSE_IMAGE" "${imgs[@]}"
    ;;
  base) prepare; make_base; summary "$BASE_IMAGE" ;;
  pause) prepare; make_pause; summary "$PAUSE_IMAGE" ;;
  list) bh images; ls -l "$OUT"/*.tar 2>/dev/null || true ;;
  buildah) bh "$@" ;;
  *) die "usage: $0 [build|base|pause|list|buildah ARGS...]" ;;
esac
