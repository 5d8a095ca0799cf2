#!/usr/bin/env bash
# Builds the static release binaries (handoff-init and, with --all, the test service) and prints
# the path of handoff-init and its size. musl when the target is installed, else static glibc.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=(--bin handoff-init)
[ "${1:-}" = "--all" ] && bins+=(--workspace --bin handoff-testsvc)
if rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl; then
    target=x86_64-unknown-linux-musl
    cargo build -q --release --target "$target" "${bins[@]}"
else
    target=x86_64-unknown-linux-gnu
    RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --release --target "$target" "${bins[@]}"
fi
bin="target/$target/release/handoff-init"
echo "$bin $(stat -c %s "$bin") bytes"
