#!/usr/bin/env python3
"""Types Ctrl-C into `docker run -t -i` the way a user would, for docker/e2e.sh case c.

ctrl_c.py NAME IMAGE [DOCKER RUN ARGS...]: runs `docker run -t -i --name NAME ... IMAGE` on a
pseudo-terminal, waits until the container's `handoff-testsvc wait` logs `waiting`, writes 0x03, and
waits for the service's `got SIGINT` line. The byte travels raw to the container's tty, whose line
discipline sends SIGINT to the tty's foreground process group: the service sees it only when init
made the service's group the foreground one. Prints the transcript;
exit 0 when the line arrived within the deadline, 1 otherwise. The caller removes the container."""

import os
import pty
import re
import select
import subprocess
import sys
import time

DEADLINE_S = 30
# `handoff-testsvc wait` prints this once its signals are blocked for sigwaitinfo.
WAITING = re.compile(rb"testsvc\[\d+\]: waiting")


def main():
    name, image, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        ["docker", "run", "-t", "-i", "--name", name, *extra, image],
        stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    transcript = b""
    sent = False
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    transcript += os.read(controller, 4096)
                except OSError:  # EIO: the client exited and closed the terminal
                    break
            if sent and b"got SIGINT" in transcript:
                print(transcript.decode(errors="replace"))
                return 0
            if not sent and WAITING.search(transcript):
                os.write(controller, b"\x03")
                sent = True
        print(transcript.decode(errors="replace"))
        print("ctrl_c.py: %s" % ("no 'got SIGINT' after Ctrl-C" if sent else "service never ready"),
              file=sys.stderr)
        return 1
    finally:
        proc.kill()
        proc.wait()
        os.close(controller)


if __name__ == "__main__":
    sys.exit(main())
