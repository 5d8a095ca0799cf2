#!/usr/bin/env bash
# The release binary for aarch64, tested here under qemu-user: the core PID-1 tests
# (tests/core.rs: forwarding, reaping, exit codes, grace, whole-tree shutdown) and one series of
# handoffs under load (tests/handoff.rs), run against the static aarch64 handoff-init and
# handoff-testsvc from scripts/build-static.sh, each init PID 1 of a fresh PID namespace.
# binfmt_misc runs every aarch64 executable through qemu-aarch64-static, so the init's own
# children (the aarch64 test service) are emulated too. Needs root; scripts/setup.sh installs the
# Rust target, the linker (gcc-aarch64-linux-gnu) and qemu-user-static.
#
# What emulation cannot do, and is left out (tests/common's emulated() marks the places):
#   reaps_1000_orphans_as_subreaper_when_not_pid1, and the not-PID-1 half of the two shutdown
#     tests: qemu-user 7.2 answers prctl(PR_SET_CHILD_SUBREAPER) with EINVAL.
#   SEGV, BUS, FPE and ILL in the forwarding test: qemu takes these host signals for faults of
#     its own, so one sent with kill(2) never reaches the emulated init.
#   child_starts_clean_mask_dispositions_fds_and_environment: qemu installs a host handler for
#     every signal, so a disposition ignored before init started is lost across init's exec of
#     the service, whatever init does.
#   idle_init_has_zero_context_switches_over_5_seconds: qemu's own threads switch; the count is
#     the emulator's, not the init's.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=aarch64-unknown-linux-musl

# binfmt_misc with the F flag (the interpreter is opened now, so it works in any mount
# namespace): Debian's qemu-user-static registers it where binfmt_misc is mounted at install
# time, which a container may not have had.
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e $binfmt/register ]; then
    mount -t binfmt_misc binfmt_misc $binfmt
fi
if [ ! -e $binfmt/qemu-aarch64 ]; then
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -e $conf ] || { echo "test-arch: $conf missing (apt-get install qemu-user-static)" >&2; exit 1; }
    cat $conf > $binfmt/register
fi
grep -qx enabled $binfmt/qemu-aarch64 || { echo "test-arch: binfmt qemu-aarch64 is disabled" >&2; exit 1; }

scripts/build-static.sh --all "$triple" >/dev/null
bin=$PWD/target/static/$triple/release
# The binaries under test are aarch64 (ELF e_machine 183 at offset 18) and run.
for b in handoff-init handoff-testsvc; do
    machine=$(od -An -tu2 -j18 -N2 "$bin/$b" | tr -d ' ')
    [ "$machine" = 183 ] || { echo "test-arch: $bin/$b is not an aarch64 executable ($machine)" >&2; exit 1; }
done
echo "test-arch: $("$bin/handoff-init" --version) for $triple, under $(qemu-aarch64-static --version | head -1)"

export HANDOFF_TEST_EMULATED=1 HANDOFF_TEST_INIT=$bin/handoff-init HANDOFF_TEST_SVC=$bin/handoff-testsvc
cargo test --test core -- \
    --skip reaps_1000_orphans_as_subreaper_when_not_pid1 \
    --skip child_starts_clean_mask_dispositions_fds_and_environment \
    --skip idle_init_has_zero_context_switches_over_5_seconds
cargo test --test handoff -- --exact fifty_handoffs_under_load_fail_no_request
