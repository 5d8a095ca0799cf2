#!/usr/bin/env bash
# Soak: 1000 handoffs under client load, with handoff-init as PID 1 of a fresh PID namespace.
# A benchmark, not a test: it records, and docs/SOAK.md is its report.
#
#   sudo bench/soak.sh                  1000 handoffs, 8 clients; writes docs/SOAK.md
#   sudo bench/soak.sh --handoffs 50    a shorter run, for development (report to stdout only)
#
# handoff-init (release build) holds tcp://127.0.0.1:0 and runs handoff-testsvc http; the load is
# docker/load.py (one request per connection, each held 20 ms by the service, so requests are in
# flight whenever a generation drains). Every handoff is `handoff-init ctl reload`, one after
# the other. Recorded: failed requests, and init's open fds, VmRSS and the zombies in its PID
# namespace at the start, every 100 handoffs (once the drained generations are gone) and at the
# end. Always a private --runtime-dir. Exits 1 when a handoff failed, a request failed, a zombie
# is left or init's fds grew; the report is written either way.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ "$(id -u)" -ne 0 ]; then
    echo "bench/soak.sh: run as root (it creates PID namespaces): sudo bench/soak.sh" >&2
    exit 1
fi
echo "[soak] building handoff-init and handoff-testsvc (release)" >&2
cargo build --quiet --release -p handoff-init -p handoff-testsvc
exec python3 bench/soak.py --command-line "bench/soak.sh${*:+ $*}" \
    --init target/release/handoff-init --svc target/release/handoff-testsvc "$@"
