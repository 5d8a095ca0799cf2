#!/usr/bin/env bash
# Makes a release of the committed tree in dist/:
#
#   scripts/release.sh VERSION        (VERSION must be Cargo.toml's, e.g. 0.1.0)
#
#   dist/handoff-init-VERSION-x86_64           static musl binaries (scripts/build-static.sh)
#   dist/handoff-init-VERSION-aarch64
#   dist/SHA256SUMS                            `sha256sum -c SHA256SUMS` checks them
#   dist/handoff-init-VERSION-image-amd64.tar  `docker load -i` gives handoff-init:VERSION: FROM
#   dist/handoff-init-VERSION-image-arm64.tar  scratch, /handoff-init and nothing else (the arm64
#                                              one is tagged handoff-init:VERSION-arm64)
#
# Checks before it says ok: each binary is under the 600 KiB budget (614,400 bytes); a second
# build from a fresh clone of the same commit, in another directory, is byte-identical; the
# saved image, loaded again, serves a multi-stage build with
# `COPY --from=handoff-init:VERSION /handoff-init /sbin/handoff-init` whose init runs as PID 1 of
# a container (version, exit status); `cargo install --path .` installs handoff-init alone. The
# images it made are removed at the end: dist/ has them.
# Needs root, Docker, and what scripts/setup.sh installs (it runs it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
die() { echo "release: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: scripts/release.sh VERSION"
version=$1
pkg_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ "$version" = "$pkg_version" ] || die "VERSION $version is not the version in Cargo.toml ($pkg_version)"
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
    die "the tree has uncommitted changes: a release is built from a commit"
commit=$(git rev-parse HEAD)
budget=614400
dist=$root/dist
tmp=$(mktemp -d /tmp/handoff-release.XXXXXX)
images=()
cleanup() {
    [ ${#images[@]} -eq 0 ] || docker rmi -f "${images[@]}" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

scripts/setup.sh >/dev/null
declare -A triple=([x86_64]=x86_64-unknown-linux-musl [aarch64]=aarch64-unknown-linux-musl)
declare -A platform=([x86_64]=linux/amd64 [aarch64]=linux/arm64)
arches=(x86_64 aarch64)

echo "release: handoff-init $version, commit $commit"
scripts/build-static.sh "${arches[@]}" >/dev/null
# The second build: a clone of the same commit elsewhere, its own target dir.
git clone --quiet --no-hardlinks "$root" "$tmp/src"
git -C "$tmp/src" checkout --quiet "$commit"
"$tmp/src/scripts/build-static.sh" --target-dir "$tmp/target" "${arches[@]}" >/dev/null

rm -rf "$dist"
mkdir -p "$dist"
for arch in "${arches[@]}"; do
    bin=target/static/${triple[$arch]}/release/handoff-init
    again=$tmp/target/${triple[$arch]}/release/handoff-init
    sum=$(sha256sum <"$bin" | cut -d' ' -f1)
    sum2=$(sha256sum <"$again" | cut -d' ' -f1)
    size=$(stat -c %s "$bin")
    echo "release: $arch: $size bytes ($(awk "BEGIN { printf \"%.1f\", $size / 1024 }") KiB, budget $budget)"
    echo "release: $arch: sha256 $sum (this checkout), $sum2 (fresh clone)"
    [ "$sum" = "$sum2" ] || die "$arch: the two builds of $commit differ: not reproducible"
    [ "$size" -lt "$budget" ] || die "$arch: $size bytes is over the budget of $budget"
    cp "$bin" "$dist/handoff-init-$version-$arch"
done
(cd "$dist" && sha256sum handoff-init-"$version"-* >SHA256SUMS && sha256sum --quiet -c SHA256SUMS)

# The binary-only images (the classic builder: FROM scratch needs no registry).
for arch in "${arches[@]}"; do
    tag=handoff-init:$version
    [ "$arch" = x86_64 ] || tag=handoff-init:$version-${platform[$arch]#linux/}
    ctx=$tmp/image-$arch
    mkdir -p "$ctx"
    cp "$dist/handoff-init-$version-$arch" "$ctx/handoff-init"
    cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY handoff-init /handoff-init
LABEL org.opencontainers.image.title=handoff-init org.opencontainers.image.version=$version org.opencontainers.image.revision=$commit
ENTRYPOINT ["/handoff-init"]
EOF
    images+=("$tag")
    DOCKER_BUILDKIT=0 docker build --quiet --platform "${platform[$arch]}" -t "$tag" "$ctx" >/dev/null
    out=$dist/handoff-init-$version-image-${platform[$arch]#linux/}.tar
    docker save "$tag" -o "$out"
    # What the image holds, from the saved layers: /handoff-init alone.
    files=$(python3 - "$out" <<'PY'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    for layer in json.load(t.extractfile("manifest.json"))[0]["Layers"]:
        with tarfile.open(fileobj=t.extractfile(layer)) as l:
            print("\n".join(l.getnames()))
PY
    )
    [ "$files" = handoff-init ] || die "$tag holds more than /handoff-init: $(echo $files)"
    echo "release: image $tag (${platform[$arch]}) saved as dist/${out##*/}"
done

# A user's build, from the saved image: loaded again, COPY --from it, run the result.
docker rmi "handoff-init:$version" >/dev/null
docker load -q -i "$dist/handoff-init-$version-image-amd64.tar" >/dev/null
check=handoff-init-release-check:$version
images+=("$check")
mkdir -p "$tmp/check"
cp "$(command -v busybox)" "$tmp/check/busybox"
cat >"$tmp/check/Dockerfile" <<EOF
FROM scratch
COPY busybox /bin/busybox
COPY --from=handoff-init:$version /handoff-init /sbin/handoff-init
ENTRYPOINT ["/sbin/handoff-init"]
EOF
DOCKER_BUILDKIT=0 docker build --quiet -t "$check" "$tmp/check" >/dev/null
got=$(docker run --rm "$check" --version)
[ "$got" = "handoff-init $version (commit ${commit:0:12})" ] || die "the checked image says: $got"
status=0
docker run --rm "$check" -- /bin/busybox sh -c 'exit 7' || status=$?
[ "$status" = 7 ] || die "handoff-init -- sh -c 'exit 7' in the checked image exited $status"
echo "release: COPY --from=handoff-init:$version /handoff-init /sbin/handoff-init: $got; exit status passed through"
# What `cargo install --path .` gives a user: handoff-init alone (the test service is a workspace
# member of its own).
cargo install --quiet --locked --path . --root "$tmp/install" --target-dir "$root/target/install" 2>/dev/null
installed=$(ls "$tmp/install/bin")
[ "$installed" = handoff-init ] || die "cargo install --path . installs: $(echo "$installed")"
echo "release: cargo install --path . installs bin/$installed alone"
echo "release: ok: dist/"
(cd "$dist" && ls -l | tail -n +2 | awk '{ printf "release:   %10s  %s\n", $5, $9 }')
