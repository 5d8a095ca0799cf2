#!/usr/bin/env bash
# Installs what the tests, the Docker end-to-end cases and the demo need on a fresh Debian
# machine (run as root). Idempotent and quick when everything is already there.
set -euo pipefail

need_apt=()
command -v busybox >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v script >/dev/null 2>&1 || need_apt+=(bsdutils)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The aarch64 release binary: its linker, and qemu-user to test it (scripts/test-arch.sh).
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_apt+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null 2>&1 || need_apt+=(qemu-user-static)
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
# Go and Debian's go-systemd: the README's Go example is built and run by tests/snippets.rs.
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
[ -d /usr/share/gocode/src/github.com/coreos/go-systemd ] || need_apt+=(golang-github-coreos-go-systemd-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# From PyPI, for the python3 on PATH: gunicorn, a real third-party LISTEN_FDS consumer for the
# handoff tests, and PyYAML for the offline check of the Kubernetes manifests.
need_pip=()
python3 -c 'import gunicorn' >/dev/null 2>&1 || need_pip+=(gunicorn)
python3 -c 'import yaml' >/dev/null 2>&1 || need_pip+=(pyyaml)
if [ ${#need_pip[@]} -gt 0 ]; then
    echo "setup: pip install ${need_pip[*]}"
    python3 -m pip install -q --root-user-action=ignore "${need_pip[@]}"
fi

# The static binary is built for musl when the target can be had, else glibc static.
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -q x86_64-unknown-linux-musl; then
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || echo "setup: musl target unavailable; static builds use glibc"
fi
# cargo-fuzz for the short fuzzing pass in scripts/test.sh (scripts/fuzz.sh), where the nightly
# toolchain it needs is installed; without one that pass is skipped.
if cargo +nightly --version >/dev/null 2>&1 && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "setup: cargo install cargo-fuzz"
    cargo install --locked --quiet cargo-fuzz
fi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx aarch64-unknown-linux-musl; then
    echo "setup: rustup target add aarch64-unknown-linux-musl"
    rustup target add aarch64-unknown-linux-musl >/dev/null
fi
echo "setup: ok"
