#!/usr/bin/env bash
# The size budget, checked on every test run (scripts/test.sh): each static release binary
# (scripts/build-static.sh, x86_64 and aarch64) must stay under 600 KiB = 614,400 bytes.
# Prints each size and what is left.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=614400
built=$(scripts/build-static.sh x86_64 aarch64)
status=0
while read -r triple bin size _; do
    if [ "$size" -lt "$budget" ]; then
        echo "size: $triple: $size bytes, $((budget - size)) under the budget of $budget"
    else
        echo "size: $triple: $size bytes ($bin) is over the budget of $budget bytes" >&2
        status=1
    fi
done <<<"$built"
exit $status
