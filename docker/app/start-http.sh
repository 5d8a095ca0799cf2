#!/bin/sh
# The control of docker/e2e.sh case f: the HTTP test service behind a start script without exec, as
# the image's entrypoint, so sh is PID 1 and the kernel drops the orchestrator's SIGTERM.
handoff-testsvc http --bind 0.0.0.0:8080
