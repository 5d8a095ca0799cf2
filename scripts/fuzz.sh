#!/usr/bin/env bash
# Fuzzes the parsers of handoff-init that take outside input (fuzz/, docs/FUZZING.md) with
# cargo-fuzz (libFuzzer) on the nightly toolchain, one target at a time, niced.
#
#   scripts/fuzz.sh                   the campaign: 10,000,000 runs of every target; inputs that add
#                                     coverage are merged into fuzz/corpus/, and the counts libFuzzer
#                                     printed go into docs/FUZZING.md
#   scripts/fuzz.sh --runs N [T...]   N runs of the targets named (default: all), same report
#   scripts/fuzz.sh --smoke           a few seconds per target on a scratch copy of the corpus, no
#                                     report (scripts/test.sh); skipped without nightly or cargo-fuzz
#
# Targets are the directories of fuzz/corpus/. Built with debug assertions (integer overflow
# panics) and without a sanitizer (the parsers are safe Rust); in the campaign, notify_recv, which
# goes through the unsafe recvmsg(2) wrapper, with AddressSanitizer. A crash, a failed check or a
# hang (an input over 10 s) stops with status 1 and leaves the input in fuzz/artifacts/TARGET/.
# Each target's row in docs/FUZZING.md is replaced as soon as it has run.
set -euo pipefail
cd "$(dirname "$0")/.."
command_line="scripts/fuzz.sh${*:+ $*}"

mode=campaign runs=10000000 smoke_seconds=3
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) mode=smoke ;;
    --runs)
        [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --runs needs a count" >&2; exit 2; }
        runs=$2
        shift
        ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    *) targets+=("$1") ;;
    esac
    shift
done

if ! cargo +nightly --version >/dev/null 2>&1 || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    if [ "$mode" = smoke ]; then
        echo "fuzz: short pass skipped (needs the nightly toolchain and cargo-fuzz)"
        exit 0
    fi
    echo "fuzz.sh: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 1
fi
if [ ${#targets[@]} -eq 0 ]; then
    for d in fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi
for t in "${targets[@]}"; do
    [ -d "fuzz/corpus/$t" ] || { echo "fuzz.sh: no target '$t' (fuzz/corpus/$t)" >&2; exit 2; }
done

log() { printf '[fuzz] %s\n' "$*" >&2; }
revision=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src fuzz/src || echo '+uncommitted')
log "building (nightly, debug assertions), revision $revision"
nice -n 10 cargo +nightly fuzz build --features libfuzzer --sanitizer none --debug-assertions
bin=fuzz/target/x86_64-unknown-linux-gnu/release
asan=fuzz/target/asan/x86_64-unknown-linux-gnu/release
if [ "$mode" = campaign ] && [[ " ${targets[*]} " == *" notify_recv "* ]]; then
    log "building notify_recv with AddressSanitizer"
    nice -n 10 cargo +nightly fuzz build --features libfuzzer --sanitizer address --debug-assertions \
        --target-dir fuzz/target/asan notify_recv
fi
work=$(mktemp -d /tmp/handoff-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=0

# One target's row into docs/FUZZING.md (replacing its old row), under a line on the machine.
report_row() {
    local machine
    machine="$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), kernel $(uname -r), $(rustc +nightly -V | cut -d' ' -f1-2), $(cargo +nightly fuzz --version)"
    python3 - "$1" "$2" "$machine" <<'EOF'
import pathlib, re, sys
target, row, machine = sys.argv[1:4]
doc = pathlib.Path("docs/FUZZING.md")
text = doc.read_text()
m = re.search(r"<!-- campaign:begin -->\n(.*?)<!-- campaign:end -->", text, flags=re.S)
if not m:
    sys.exit("docs/FUZZING.md: campaign markers not found")
rows = {}
for line in m.group(1).splitlines():
    found = re.match(r"\| `(\w+)` \|", line)
    if found:
        rows[found.group(1)] = line
rows[target] = row
block = (f"Machine: {machine}. It is shared with other work; each target ran alone, with `nice -n 10`.\n\n"
         "| target | runs (libFuzzer's `Done N runs`) | seconds | runs/s | peak RSS MB | inputs kept | "
         "crashes, hangs, failed checks | run | revision | load average at its start |\n"
         "|---|---:|---:|---:|---:|---:|---:|---|---|---|\n"
         + "".join(rows[k] + "\n" for k in sorted(rows)))
doc.write_text(text[:m.start(1)] + block + text[m.end(1):])
EOF
}

for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    cp fuzz/corpus/"$t"/* "$work/$t/"
    before=$(find "fuzz/corpus/$t" -type f | wc -l)
    load_start=$(cut -d' ' -f1-3 /proc/loadavg)
    args=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "-artifact_prefix=fuzz/artifacts/$t/")
    exe=$bin/$t
    # notify_recv: payloads past the 4096-byte buffer, so truncation is exercised too.
    if [ "$t" = notify_recv ]; then
        args+=(-max_len=8192)
        [ "$mode" = campaign ] && exe=$asan/$t
    fi
    if [ "$mode" = smoke ]; then
        args+=("-max_total_time=$smoke_seconds")
    else
        args+=("-runs=$runs")
        log "$t: $runs runs"
    fi
    if ! nice -n 10 "$exe" "${args[@]}" "$work/$t" >"$work/$t.log" 2>&1; then
        tail -n 40 "$work/$t.log" >&2
        log "$t: FAILED (input kept in fuzz/artifacts/$t/)"
        failed=1
        continue
    fi
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$work/$t.log" | tail -n 1)
    done_runs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/' <<<"$done_line")
    done_secs=$(sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/' <<<"$done_line")
    rss=$(sed -nE 's/^stat::peak_rss_mb: *([0-9]+).*/\1/p' "$work/$t.log" | tail -n 1)
    if [ "$mode" = smoke ]; then
        echo "fuzz: $t: $done_runs runs in ${done_secs}s, no failure"
        continue
    fi
    # Keep the campaign's inputs that reach edges the committed corpus does not (edge coverage
    # without hit counts, so the corpus stays small).
    nice -n 10 "$exe" -merge=1 -use_counters=0 "fuzz/corpus/$t" "$work/$t" >"$work/$t.merge.log" 2>&1
    after=$(find "fuzz/corpus/$t" -type f | wc -l)
    log "$t: $done_line; corpus $before -> $after files"
    report_row "$t" "| \`$t\` | $done_runs | $done_secs | $((done_runs / (done_secs > 0 ? done_secs : 1))) | ${rss:-?} | $((after - before)) | 0 | $(date -u '+%Y-%m-%d %H:%M UTC'), \`$command_line\` | $revision | $load_start |"
done
if [ "$mode" = campaign ] && [ "$failed" -eq 0 ]; then log "rows written to docs/FUZZING.md"; fi
exit "$failed"
