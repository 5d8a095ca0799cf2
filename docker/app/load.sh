#!/bin/sh
# load.sh URL SECONDS [CLIENTS]: busybox-only HTTP load for clusters (docker/k8s/rollout-test.sh),
# where the host's Python cannot reach the Service. Each client issues one request per
# connection until the deadline; prints "requests=N failed=M" and exits 1 when any failed.
# Requests are bounded by timeout(1): Debian's static busybox wget crashes on its own -T option.
url=$1 seconds=$2 clients=${3:-4}
end=$(($(date +%s) + seconds))
dir=$(mktemp -d)
client() {
    ok=0 failed=0
    while [ "$(date +%s)" -lt "$end" ]; do
        if body=$(timeout 5 wget -q -O - "$url" 2>&1) && [ "${body#pid=}" != "$body" ]; then
            ok=$((ok + 1))
        else
            failed=$((failed + 1))
            echo "load: request failed: $body" >&2
        fi
    done
    echo "$ok $failed" >"$dir/$1"
}
i=0
while [ "$i" -lt "$clients" ]; do client "$i" & i=$((i + 1)); done
wait
ok=0 failed=0
for f in "$dir"/*; do read -r o fl <"$f"; ok=$((ok + o)); failed=$((failed + fl)); done
rm -rf "$dir"
echo "requests=$((ok + failed)) failed=$failed"
[ "$failed" -eq 0 ]
