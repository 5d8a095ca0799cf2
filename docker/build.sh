#!/usr/bin/env bash
# Builds the images the Docker end-to-end tests run (docker/e2e.sh), from local files only: the
# engine here cannot pull base images, so every image is FROM scratch plus static binaries.
#
#   handoff-init-test:local    /sbin/handoff-init as ENTRYPOINT, busybox, handoff-testsvc,
#                              handoff-loadclient (docker/loadclient), /app/*.sh
#   handoff-init-test:noinit   the same files, ENTRYPOINT the start script itself (sh is PID 1)
#   handoff-init-test:example  the final stage of Dockerfile.example, rebuilt from the same files
#
# Idempotent and fast when nothing changed: cargo builds incrementally, files are copied into the
# context only when their content changed (so mtimes stay put), and docker reuses cached layers.
#
# Environment:
#   HANDOFF_INIT_BIN / HANDOFF_TESTSVC_BIN / HANDOFF_LOADCLIENT_BIN
#                                            use these prebuilt static binaries instead of cargo
#   BUSYBOX                                  static busybox to install (default /bin/busybox)
#   IMAGE_REPO                               image name (default handoff-init-test)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
ctx="$here/build/ctx"
repo=${IMAGE_REPO:-handoff-init-test}
busybox=${BUSYBOX:-/bin/busybox}

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# is_static FILE: true when FILE needs no dynamic loader (a scratch image has none).
is_static() {
    ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}

# cargo_static BIN [CRATE]: builds BIN of the crate in CRATE (default: the repository) as a
# static binary and prints its path. musl is the target of record; when that target is not
# installed or BIN does not build for it, glibc with crt-static gives a static binary too (no
# program here resolves names through NSS: the load client has its own DNS client).
cargo_static() {
    local bin=$1 crate=${2:-$root}
    local dir=${CARGO_TARGET_DIR:-$crate/target}
    if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
        local errlog="$here/build/cargo-musl-$bin.log"
        mkdir -p "$here/build"
        if (cd "$crate" && cargo build --quiet --release --target x86_64-unknown-linux-musl --workspace --bin "$bin" >&2 2>"$errlog"); then
            echo "$dir/x86_64-unknown-linux-musl/release/$bin"
            return
        fi
        log "warning: $bin does not build for musl ($(grep -m1 '^error' "$errlog"); see $errlog);" \
            "falling back to a static glibc build"
    fi
    (cd "$crate" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --quiet --release --target x86_64-unknown-linux-gnu --workspace --bin "$bin" >&2) ||
        die "cargo build --bin $bin failed"
    echo "$dir/x86_64-unknown-linux-gnu/release/$bin"
}

build_binaries() {
    init_bin=${HANDOFF_INIT_BIN:-$(cargo_static handoff-init)} || exit 1
    testsvc_bin=${HANDOFF_TESTSVC_BIN:-$(cargo_static handoff-testsvc)} || exit 1
    loadclient_bin=${HANDOFF_LOADCLIENT_BIN:-$(cargo_static handoff-loadclient "$here/loadclient")} || exit 1
}

# put SRC DEST [MODE]: copy only when the content differs, so an unchanged file keeps its mtime and
# docker's build cache stays valid.
put() {
    local src=$1 dest=$2 mode=${3:-0755}
    mkdir -p "$(dirname "$dest")"
    if [[ -L $dest ]] || ! cmp -s "$src" "$dest" 2>/dev/null; then
        rm -f "$dest"
        cp "$src" "$dest"
    fi
    chmod "$mode" "$dest"
}

# busybox_into ROOTFS: /bin/busybox plus one symlink per applet (sh, sleep, wget, ...).
busybox_into() {
    local rootfs=$1 applet
    put "$busybox" "$rootfs/bin/busybox"
    for applet in $("$busybox" --list); do
        [[ $applet == busybox ]] && continue
        [[ -L $rootfs/bin/$applet ]] || ln -sfn busybox "$rootfs/bin/$applet"
    done
}

# base_rootfs ROOTFS: the directories every image needs (/tmp for init's private notify dir).
base_rootfs() {
    local rootfs=$1
    mkdir -p "$rootfs"/{tmp,run,proc,sys,dev,etc}
    chmod 1777 "$rootfs/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$ctx/passwd.new"
    put "$ctx/passwd.new" "$rootfs/etc/passwd" 0644
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/group.new"
    put "$ctx/group.new" "$rootfs/etc/group" 0644
    rm -f "$ctx/passwd.new" "$ctx/group.new"
}

# Checks that docker/Dockerfile.test's `example` stage declares the same runtime configuration
# (ENV, WORKDIR, EXPOSE, ENTRYPOINT, CMD, USER lines) as Dockerfile.example's final stage, so the
# image the tests run is the image users copy.
check_example_in_sync() {
    local a b
    a=$(awk '/^FROM /{stage=$0} stage ~ / AS final$/ && /^(ENV|WORKDIR|EXPOSE|ENTRYPOINT|CMD|USER|STOPSIGNAL) /' \
        "$root/Dockerfile.example")
    b=$(awk '/^FROM /{stage=$0} stage ~ / AS example$/ && /^(ENV|WORKDIR|EXPOSE|ENTRYPOINT|CMD|USER|STOPSIGNAL) /' \
        "$here/Dockerfile.test")
    [[ -n $a ]] || die "no runtime lines found in Dockerfile.example's final stage"
    if [[ $a != "$b" ]]; then
        diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") >&2 || true
        die "Dockerfile.example (final stage) and docker/Dockerfile.test (example stage) differ"
    fi
}

main() {
    if ! [[ -x $busybox ]] || ! is_static "$busybox"; then
        die "$busybox is not a static busybox (apt-get install busybox-static)"
    fi
    check_example_in_sync
    build_binaries
    local bin
    for bin in "$init_bin" "$testsvc_bin" "$loadclient_bin"; do
        [[ -x $bin ]] || die "missing binary $bin"
        is_static "$bin" || die "$bin is dynamically linked; a FROM scratch image cannot run it"
    done

    mkdir -p "$ctx"
    # Test image: every start script of docker/app/ under /app.
    local rootfs="$ctx/rootfs"
    base_rootfs "$rootfs"
    busybox_into "$rootfs"
    put "$init_bin" "$rootfs/sbin/handoff-init"
    put "$testsvc_bin" "$rootfs/usr/local/bin/handoff-testsvc"
    put "$loadclient_bin" "$rootfs/usr/local/bin/handoff-loadclient"
    local f
    for f in "$here"/app/*; do put "$f" "$rootfs/app/$(basename "$f")"; done
    # Drop scripts that were removed from docker/app/.
    for f in "$rootfs"/app/*; do [[ -e $here/app/$(basename "$f") ]] || rm -f "$f"; done

    # Example image: the same paths Dockerfile.example's final stage creates, from the same files.
    local ex="$ctx/example-rootfs"
    base_rootfs "$ex"
    busybox_into "$ex"
    put "$init_bin" "$ex/sbin/handoff-init"
    put "$testsvc_bin" "$ex/usr/local/bin/handoff-testsvc"
    put "$here/example/start.sh" "$ex/app/start.sh"

    put "$here/Dockerfile.test" "$ctx/Dockerfile" 0644

    local target
    for target in local noinit example; do
        log "docker build $repo:$target"
        DOCKER_BUILDKIT=0 docker build --quiet --target "$target" -t "$repo:$target" "$ctx" >/dev/null 2>"$ctx/build-$target.err" \
            || { cat "$ctx/build-$target.err" >&2; die "docker build $repo:$target failed"; }
    done
    # Rebuilt tags leave their previous images dangling: remove ours (and only ours), once they
    # are 10 minutes old. A build running at the same time (another checkout) has dangling
    # intermediate images too, younger: pruning those broke it ("No such image").
    docker image prune -f --filter label=handoff-init-test=1 --filter until=10m >/dev/null 2>&1 || true
    log "images: $repo:local $repo:noinit $repo:example"
}

main "$@"
