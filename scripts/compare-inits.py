#!/usr/bin/env python3
"""Runs the same scenarios against tini, dumb-init, catatonit (Debian packages, installed with
apt-get when missing) and handoff-init, and prints what each did as one Markdown table.

    scripts/compare-inits.py [PATH-TO-HANDOFF-INIT]     # as root (unshare --pid)

The default binary is target/debug/handoff-init (built with `cargo build` when missing). Each
scenario runs the init as PID 1 of a fresh PID namespace (as in a container), except job control
through `kill -TSTP`, which is about a shell that runs the init as its job (a subreaper here).
Every wait has a deadline; nothing is left running.
"""

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = {"tini": "/usr/bin/tini", "dumb-init": "/usr/bin/dumb-init", "catatonit": "/usr/bin/catatonit"}
DEADLINE = 10.0

# A process that prints every signal it gets, one number a line, then keeps going
# (SIGTERM included: it must outlive the first signal to show what comes next).
PRINT_SIGNALS = r"""
import os, signal, sys, time
out = open(sys.argv[1], "a", buffering=1)
def h(n, _): out.write("%d\n" % n)
for s in range(1, 32):
    if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        try: signal.signal(s, h)
        except (OSError, ValueError): pass
out.write("ready\n")
end = time.time() + 20
while time.time() < end: time.sleep(0.05)
"""


def ensure_peers():
    missing = [name for name, path in PEERS.items() if not os.path.exists(path)]
    if missing:
        print(f"compare: apt-get install {' '.join(missing)}", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
        )


def wait_for(cond, deadline=DEADLINE):
    end = time.monotonic() + deadline
    pause = 0.002
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return None


def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def children(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    found, i = children(pid), 0
    while i < len(found):
        found += children(found[i])
        i += 1
    return found


def kill_tree(proc):
    for pid in reversed(tree(proc.pid) + [proc.pid]):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def pid1(init, args, **kw):
    return subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", init, *args], **kw)


def init_of(proc):
    """The init's host pid: unshare's child."""
    return wait_for(lambda: (children(proc.pid) or [None])[0])


def quiet(init):
    p = pid1(init, ["--", "sh", "-c", "exit 0"], stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=DEADLINE)
    return f"exit {p.returncode}, {len(err.splitlines())} stderr lines"


def not_found(init):
    p = pid1(init, ["--", "/nonexistent"], stderr=subprocess.PIPE)
    p.communicate(timeout=DEADLINE)
    return f"exit {p.returncode}"


def cwd(init):
    work = tempfile.mkdtemp(prefix="compare-inits-")
    p = pid1(init, ["--", "sleep", "30"], cwd=work, stderr=subprocess.DEVNULL)
    try:
        me = init_of(p)
        job = wait_for(lambda: (children(me) or [None])[0])
        # dumb-init changes directory right after the fork: give it that moment.
        wait_for(lambda: os.readlink(f"/proc/{me}/cwd") == "/", deadline=1)
        return f"init {os.readlink(f'/proc/{me}/cwd')}, child {'own' if os.readlink(f'/proc/{job}/cwd') == work else 'other'}"
    finally:
        kill_tree(p)
        shutil.rmtree(work, ignore_errors=True)


def job_control(init):
    """kill -TSTP to the init (a shell's job, not PID 1), then kill -CONT."""
    p = subprocess.Popen([init, "--", "sleep", "30"], stderr=subprocess.DEVNULL)
    try:
        job = wait_for(lambda: (children(p.pid) or [None])[0])
        wait_for(lambda: state(job) == "S")
        os.kill(p.pid, signal.SIGTSTP)
        wait_for(lambda: state(p.pid) == "T" and state(job) == "T", deadline=2)
        after = f"init {state(p.pid)}, job {state(job)}"
        os.kill(p.pid, signal.SIGCONT)
        wait_for(lambda: state(p.pid) != "T" and state(job) != "T", deadline=2)
        resumed = f"init {state(p.pid)}, job {state(job)}"
        return f"TSTP: {after}; CONT: {resumed}"
    finally:
        kill_tree(p)


def ctrl_z(init):
    """Under a terminal (init is its session leader, as a login shell's job would be): Ctrl-Z."""
    master, slave = os.openpty()

    def take_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen(
        [init, "--", "sleep", "30"],
        stdin=slave, stdout=slave, stderr=slave,
        start_new_session=True, preexec_fn=take_terminal,
    )
    os.close(slave)
    try:
        job = wait_for(lambda: (children(p.pid) or [None])[0])
        wait_for(lambda: state(job) == "S" and os.tcgetpgrp(master) != p.pid, deadline=2)
        os.write(master, b"\x1a")
        wait_for(lambda: state(job) == "T" and state(p.pid) == "T", deadline=2)
        after = f"init {state(p.pid)}, job {state(job)}"
        os.kill(p.pid, signal.SIGCONT)
        wait_for(lambda: state(p.pid) != "T" and state(job) != "T", deadline=2)
        return f"Ctrl-Z: {after}; CONT to init: init {state(p.pid)}, job {state(job)}"
    finally:
        kill_tree(p)
        os.close(master)


def first_signal(init, as_pid1=True):
    """The command exits and leaves a process behind: which signals it sees, in order."""
    work = tempfile.mkdtemp(prefix="compare-inits-")
    report = os.path.join(work, "signals")
    prog = os.path.join(work, "print_signals.py")
    with open(prog, "w") as f:
        f.write(PRINT_SIGNALS)
    script = f"python3 {prog} {report} & until grep -q ready {report} 2>/dev/null; do :; done; exit 0"
    args = ["--", "sh", "-c", script]
    quiet = {"stderr": subprocess.DEVNULL}
    p = pid1(init, args, **quiet) if as_pid1 else subprocess.Popen([init, *args], **quiet)
    try:
        # The init exits (or not) as it does; give the leftover a moment to print.
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        wait_for(lambda: len(open(report).read().split()) > 1, deadline=1)
        seen = [int(s) for s in open(report).read().split() if s.isdigit()]
        names = [signal.Signals(s).name for s in seen]
        return " → ".join(names) if names else "none"
    finally:
        kill_tree(p)
        # An init that exits leaves the leftover running (reparented above us): end it too.
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if prog.encode() in f.read():
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(work, ignore_errors=True)


SCENARIOS = [
    ("clean run `INIT -- sh -c 'exit 0'` as PID 1", quiet),
    ("command not found", not_found),
    ("working directory (PID 1)", cwd),
    ("`kill -TSTP`, then `kill -CONT` to init (a shell's job)", job_control),
    ("Ctrl-Z under a terminal (init not PID 1), then `kill -CONT` to init", ctrl_z),
    ("the command exits; a leftover that prints its signals sees (PID 1)", first_signal),
    ("the same, init not PID 1", lambda init: first_signal(init, as_pid1=False)),
]


def main():
    if os.geteuid() != 0:
        sys.exit("compare-inits: run as root (unshare --pid)")
    ours = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/handoff-init")
    if not os.path.exists(ours):
        subprocess.run(["cargo", "build", "-q"], cwd=ROOT, check=True)
    ensure_peers()
    inits = {**PEERS, "handoff-init": os.path.abspath(ours)}
    print("| scenario | " + " | ".join(inits) + " |")
    print("|---|" + "---|" * len(inits))
    for title, scenario in SCENARIOS:
        cells = []
        for path in inits.values():
            try:
                cells.append(scenario(path))
            except Exception as e:  # a scenario that breaks says so in its cell
                cells.append(f"error: {e}")
        print(f"| {title} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
