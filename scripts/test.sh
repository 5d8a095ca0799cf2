#!/usr/bin/env bash
# Runs every test: unit and integration tests (the real binary as PID 1 in fresh PID
# namespaces), the core ones again against the aarch64 release binary under qemu-user
# (scripts/test-arch.sh), the size budget of both static binaries (scripts/check-size.sh), the fuzz corpus, the load client's tests, shellcheck (warnings and errors)
# on every script, the offline check of the Kubernetes manifests and, when a Docker engine answers
# (required when HANDOFF_REQUIRE_DOCKER=1, as in CI), the end-to-end container cases.
# Needs root (unshare --pid). Installs what it needs through scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --all-targets
scripts/test-arch.sh
scripts/check-size.sh
# The fuzz corpus replayed through its targets (stable), then a few seconds of fuzzing per target
# where nightly and cargo-fuzz are installed (docs/FUZZING.md).
cargo test --manifest-path fuzz/Cargo.toml
scripts/fuzz.sh --smoke
cargo test --manifest-path docker/loadclient/Cargo.toml
shellcheck -S warning scripts/*.sh .ci/run bench/run.sh docker/*.sh docker/app/*.sh docker/example/*.sh docker/k8s/*.sh
docker/k8s/check.sh
docker/e2e.sh
