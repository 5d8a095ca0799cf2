"""What the benchmark modules share: paths, the error that breaks a run, waiting with a deadline,
/proc look-ups and tiny HTTP probes."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
HELPERS = OUT / "bin"
UNSHARE = ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc"]
STEP_DEADLINE_S = 10.0  # any single "wait until X" gives up after this


class Broken(Exception):
    """The measurement itself failed: the run must exit non-zero."""


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def wait_until(what, cond, deadline_s=STEP_DEADLINE_S, interval_s=0.002):
    """Polls cond() until it returns a truthy value; raises Broken after the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise Broken(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def stop(proc, pid_to_signal=None, sig=signal.SIGTERM, deadline_s=STEP_DEADLINE_S):
    """Signals pid_to_signal (default: proc) and waits for proc; SIGKILLs past the deadline.
    Returns True when it exited by itself."""
    try:
        os.kill(pid_to_signal or proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=deadline_s)
        return True
    except subprocess.TimeoutExpired:
        if pid_to_signal:
            try:
                os.kill(pid_to_signal, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait()
        return False


def percentile(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port):
    """The whole response to GET /, or b"" when the request fails."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            return data
    except OSError:
        return b""


def http_ok(port):
    return http_get(port).startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
