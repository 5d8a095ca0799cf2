#!/bin/sh
# Leaves ${ORPHANS:-200} orphans behind, then becomes the service. Each `( cmd & )` subshell exits
# at once, so its sleep is reparented to PID 1 (or the nearest subreaper). The sleeps never exit on
# their own: the test kills them when it chooses, so whether they become zombies depends only on
# whether PID 1 reaps, not on timing. `exec` makes the service PID 1 in the no-init image, where
# nothing reaps.
i=0
while [ "$i" -lt "${ORPHANS:-200}" ]; do
    (sleep 100000 &)
    i=$((i + 1))
done
exec handoff-testsvc wait
