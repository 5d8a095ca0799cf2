#!/usr/bin/env bash
# Builds the static release binaries, reproducibly: the same commit gives byte-identical binaries
# wherever the tree is checked out. Prints one line per target: "TRIPLE PATH SIZE bytes".
#
#   scripts/build-static.sh [--all] [--target-dir DIR] [TRIPLE...]
#
# TRIPLE: x86_64-unknown-linux-musl (the default), aarch64-unknown-linux-musl, or the short
# names x86_64 / aarch64. --all builds the test service too. Output:
# DIR/TRIPLE/release/handoff-init, DIR = target/static unless given (a directory of its own, so
# these flags do not invalidate the usual target/ builds).
#
# What keeps the build reproducible: paths of the checkout, of $CARGO_HOME and of the toolchain
# are remapped (--remap-path-prefix), so the panic locations that stay in a stripped binary name
# no machine; Cargo.lock is used as is (--locked); SOURCE_DATE_EPOCH is the commit's time; the
# commit comes from git (build.rs); the build ID is left out. The linker for aarch64 is Debian's
# aarch64-linux-gnu-gcc (scripts/setup.sh installs it).
#
# Size: non-PIE (-C relocation-model=static: no dynamic relocations or GOT, about 17 KB less
# than static-pie; the price is that the init's own code is not address-randomized) plus the
# profile in Cargo.toml (opt-level "z", LTO, one codegen unit, panic = "abort", stripped).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bins=(--bin handoff-init)
target_dir=$root/target/static
triples=()
while [ $# -gt 0 ]; do
    case $1 in
        --all) bins=(--workspace --bin handoff-init --bin handoff-testsvc) ;;
        --target-dir) target_dir=$(mkdir -p "$2" && cd "$2" && pwd); shift ;;
        x86_64 | x86_64-unknown-linux-musl) triples+=(x86_64-unknown-linux-musl) ;;
        aarch64 | aarch64-unknown-linux-musl) triples+=(aarch64-unknown-linux-musl) ;;
        *) echo "build-static.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[ ${#triples[@]} -gt 0 ] || triples=(x86_64-unknown-linux-musl)

cargo_home=${CARGO_HOME:-$HOME/.cargo}
sysroot=$(rustc --print sysroot)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
# Only these flags (CARGO_ENCODED_RUSTFLAGS below wins over RUSTFLAGS and the config's).
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS
flags=(
    "--remap-path-prefix=$root=/handoff-init"
    "--remap-path-prefix=$cargo_home=/cargo"
    "--remap-path-prefix=$sysroot=/rust"
    -C relocation-model=static
    -C "link-arg=-Wl,--build-id=none"
)

for triple in "${triples[@]}"; do
    if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
        echo "build-static.sh: the Rust target $triple is not installed (rustup target add $triple; scripts/setup.sh does)" >&2
        exit 1
    fi
    linker_var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$triple")_LINKER
    case $triple in
        aarch64-*) export "$linker_var=${!linker_var:-aarch64-linux-gnu-gcc}" ;;
    esac
    CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f' && echo "${flags[*]}") cargo build --quiet --locked --release --target "$triple" \
        --target-dir "$target_dir" "${bins[@]}"
    bin="$target_dir/$triple/release/handoff-init"
    echo "$triple $bin $(stat -c %s "$bin") bytes"
done
