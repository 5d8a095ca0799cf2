#!/usr/bin/env bash
# Runs every test: unit and integration tests (the real binary as PID 1 in fresh PID
# namespaces) and, when a Docker engine answers, the end-to-end container cases.
# Needs root (unshare --pid). Installs what it needs through scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --all-targets
if [ -x docker/e2e.sh ]; then
    docker/e2e.sh
fi
