#!/bin/sh
# The seed pitfall with a service that exits 7 after a 300 ms clean-up (real services take a
# moment to shut down), started without exec.
handoff-testsvc wait --cleanup 300 --exit-code 7
