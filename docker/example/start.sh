#!/bin/sh
# Example start script (Dockerfile.example copies it to /app/start.sh; the test image
# handoff-init-test:example uses this same file). Prepare what the service needs, then start it.
# `exec` is good practice; handoff-init signals the service's whole process group, so a script that
# forgets it still shuts down gracefully. Every generation runs this script again, with LISTEN_FDS,
# NOTIFY_SOCKET and HANDOFF_GENERATION in its environment.
set -e
exec handoff-testsvc http "$@"
