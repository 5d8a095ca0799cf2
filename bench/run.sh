#!/usr/bin/env bash
# Benchmark handoff-init against tini, dumb-init and catatonit in one run.
#
#   sudo bench/run.sh            (or bench/run.sh as root)
#   sudo bench/run.sh --quick    fewer repetitions, for development; not for the published numbers
#
# Installs what is missing (the peers and tools from Debian packages; matplotlib, gunicorn and
# uvicorn from pip), builds handoff-init static and the C helpers under
# bench/helpers/, then runs bench/bench.py, which prints the report and writes
# docs/BENCHMARKS.md and docs/img/*.png. About 8 minutes on 2 cores.
# Exits non-zero when a measurement breaks; timings themselves are never asserted.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command_line="bench/run.sh${*:+ $*}"

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/run.sh: run as root (it installs packages and creates PID namespaces): sudo bench/run.sh" >&2
    exit 1
fi

log() { printf '[bench] %s\n' "$*" >&2; }

# --- what the run needs -------------------------------------------------------------------------
# tini's package also ships /usr/bin/tini-static.
need_pkgs=()
for pair in tini:/usr/bin/tini tini:/usr/bin/tini-static dumb-init:/usr/bin/dumb-init \
    catatonit:/usr/bin/catatonit hyperfine:/usr/bin/hyperfine gcc:/usr/bin/gcc \
    libc6-dev:/usr/lib/x86_64-linux-gnu/libc.a file:/usr/bin/file util-linux:/usr/bin/unshare \
    python3:/usr/bin/python3 strace:/usr/bin/strace; do
    [ -e "${pair#*:}" ] || need_pkgs+=("${pair%%:*}")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# One Python for the driver and the real servers: the python3 on PATH (the one scripts/setup.sh
# gives gunicorn), with matplotlib for the plots and uvicorn from PyPI.
py=$(python3 -c "import sys; print(sys.executable)")
need_pip=()
for mod in matplotlib numpy gunicorn uvicorn; do
    "$py" -c "import $mod" 2>/dev/null || need_pip+=("$mod")
done
if [ ${#need_pip[@]} -gt 0 ]; then
    log "pip install: ${need_pip[*]}"
    "$py" -m pip install --quiet --root-user-action=ignore "${need_pip[@]}"
fi

# --- handoff-init, static ---------------------------------------------------------------------
testsvc=""
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    target=x86_64-unknown-linux-musl
    log "building handoff-init and handoff-testsvc (release, $target)"
    if ! cargo build --quiet --release --target "$target" --workspace --bin handoff-init --bin handoff-testsvc; then
        # The test service only serves the restart figure and need not be static: if it does not
        # build for musl, build it for the host and say so, but handoff-init itself must be static.
        log "WARNING: handoff-testsvc did not build for $target; building it for the host target"
        cargo build --quiet --release --target "$target" --bin handoff-init
        cargo build --quiet --release -p handoff-testsvc
        testsvc="$root/target/release/handoff-testsvc"
    fi
else
    # An explicit --target keeps these RUSTFLAGS away from build scripts and out of
    # target/release, which the rest of the project builds without them.
    target=x86_64-unknown-linux-gnu
    log "no musl target: building handoff-init static with glibc (crt-static, $target)"
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --quiet --release --target "$target" --workspace --bin handoff-init --bin handoff-testsvc
fi
bin_dir="$root/target/$target/release"
testsvc=${testsvc:-$bin_dir/handoff-testsvc}

# --- the C helpers (static: small mappings keep 10 000 forked copies cheap) ----------------------
mkdir -p bench/out/bin
for h in sigchild reapburst sigbench loadgen latgen kaidle; do
    gcc -O2 -Wall -Wextra -Werror -static -D_GNU_SOURCE -o "bench/out/bin/$h" "bench/helpers/$h.c" -lpthread
done

# --- the run -------------------------------------------------------------------------------------
# Niced to -10 (inherited by every init, helper and service it starts): on a shared machine other
# work then disturbs the measurements less, and all inits get the same treatment.
exec nice -n -10 "$py" bench/bench.py \
    --handoff-init "$bin_dir/handoff-init" \
    --testsvc "$testsvc" \
    --command "$command_line" \
    --python "$py" \
    "$@"
