#!/usr/bin/env bash
# The main thing, live: a service under handoff-init holding 127.0.0.1:8080, a client that keeps
# requesting and prints every change of the generation that answers, and three zero-downtime
# handoffs (`handoff-init ctl reload`). Ends with the client's count of failed requests.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
cargo build -q --workspace --bins
port=${PORT:-8080}
work=$(mktemp -d)
ctl() { target/debug/handoff-init ctl "$@" --control "$work/rt/control.sock"; }

echo "== starting: handoff-init --listen web=tcp://127.0.0.1:$port -- handoff-testsvc http --start-delay 700"
target/debug/handoff-init --runtime-dir "$work/rt" --listen "web=tcp://127.0.0.1:$port" \
    -- target/debug/handoff-testsvc http --start-delay 700 --request-delay 20 &
init=$!
cleanup() {
    kill -TERM "$client" "$init" 2>/dev/null || true
    wait "$init" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
until curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1; do
    kill -0 "$init" 2>/dev/null || { echo "handoff-init exited"; exit 1; }
    sleep 0.1
done

# The client: a new connection per request, as fast as curl goes; a failed request is counted.
(
    ok=0 failed=0 last=
    trap 'echo "== client: $ok requests answered, $failed failed"; exit 0' TERM
    while :; do
        if body=$(curl -fsS --max-time 10 "http://127.0.0.1:$port/" 2>&1); then
            ok=$((ok + 1))
            gen=${body#*gen=}; gen=${gen%% *}
            if [ "$gen" != "$last" ]; then echo "   client: now answered by ${body%% path=*}"; last=$gen; fi
        else
            failed=$((failed + 1)); echo "   client: FAILED: $body"
        fi
    done
) &
client=$!

for n in 1 2 3; do
    sleep 2
    echo "== handoff $n: handoff-init ctl reload (waits until the new generation is ready)"
    ctl reload
done
sleep 2
echo "== handoff-init ctl status"
ctl status
kill -TERM "$client"; wait "$client" || true
echo "== stopping: SIGTERM to handoff-init"
kill -TERM "$init"; wait "$init" && echo "== handoff-init exited with status $?"
