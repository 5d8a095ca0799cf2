#!/usr/bin/env python3
"""Benchmark handoff-init against tini, dumb-init and catatonit in one run.

Started by bench/run.sh (which installs the peers, builds handoff-init and the C helpers), as
root: most figures run each init as PID 1 of a fresh PID namespace, the way a container runs it.
Prints a Markdown report, writes it to docs/BENCHMARKS.md and draws PNG plots into docs/img/.

A benchmark, not a test: timings are reported, never asserted. It exits non-zero only when a
measurement itself breaks (a binary is missing, a helper crashes, an init never starts its child).
"""

import argparse
import datetime
import json
import os
import pickle
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import handoff_cost
from common import (
    HELPERS,
    OUT,
    ROOT,
    STEP_DEADLINE_S,
    UNSHARE,
    Broken,
    accepts,
    children,
    comm,
    free_port,
    http_get,
    http_ok,
    log,
    percentile,
    stop,
    wait_until,
)


# Repetitions (the "N" of every median, written into the report).
IDLE_ROUNDS = 3  # RSS and idle wake-ups: fresh inits per round, all inits side by side
IDLE_WINDOW_S = 10  # observation window for wake-ups (a measurement, not a wait)
STARTUP_RUNS = 300  # hyperfine runs per command, pooled over STARTUP_ROUNDS invocations
STARTUP_ROUNDS = 5
STARTUP_WARMUP = 10  # per invocation
REAP_ROUNDS = 21  # bursts per init, inits interleaved round-robin (the fastest of them is judged)
REAP_ORPHANS = 10_000
SIGNAL_TRIALS = 200  # per init, in SIGNAL_BLOCKS interleaved blocks
SIGNAL_BLOCKS = 8
PITFALL_ROUNDS = 5
PITFALL_CAP_S = 3.0
PITFALL_CLEANUP_MS = 200  # the service's own clean-up after SIGTERM (flush, close)
HANDOFF_RESTARTS = 20
HANDOFF_INTERVAL_S = 0.5  # a restart starts every 0.5 s (or when the previous one is done)
HANDOFF_THREADS = 4
# "No slower than the best peer": differences inside this band are measurement noise.
NOISE_BAND = {"startup": 0.05, "reaping": 0.10}


class Replot(Exception):
    """--replot: skip the measurements."""


@dataclass
class Init:
    name: str
    argv: list  # the init and its options; the command follows after "--"
    binary: str
    peer: bool = True

    def cmd(self, service):
        return self.argv + ["--"] + service


@dataclass
class Report:
    machine: dict = field(default_factory=dict)
    sizes: list = field(default_factory=list)
    idle: dict = field(default_factory=dict)
    startup: dict = field(default_factory=dict)
    reaping: dict = field(default_factory=dict)
    signal: dict = field(default_factory=dict)
    pitfall: list = field(default_factory=list)
    handoff: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)


def kib(n):
    return n / 1024.0


def proc_fields(path, keys):
    """The numeric values of `Key:   123 kB`-style lines of a /proc file."""
    found = {}
    with open(path) as f:
        for line in f:
            k, _, rest = line.partition(":")
            if k in keys:
                found[k] = int(rest.split()[0])
    missing = set(keys) - set(found)
    if missing:
        raise Broken(f"{path}: no {', '.join(sorted(missing))}")
    return found


# ---------------------------------------------------------------------------------------------
# 1. Binary size


def measure_sizes(inits):
    rows = []
    for init in inits:
        if any(r["binary"] == init.binary for r in rows):
            continue
        kind = subprocess.run(["file", "-b", "-L", init.binary], capture_output=True, text=True, check=True).stdout
        rows.append(
            {
                "name": init.name,
                "binary": init.binary,
                "bytes": os.path.getsize(init.binary),
                "static": "statically linked" in kind or "static-pie linked" in kind,
                "file": kind.strip(),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# 2 + 3. RSS and idle wake-ups, each init as PID 1 of its own namespace, its child asleep


def start_in_namespace(init, service, **popen):
    return subprocess.Popen(UNSHARE + init.cmd(service), **popen)


def init_of(wrapper):
    """Host pid of the init: the only child of `unshare --fork`."""
    return wait_until(f"the init under unshare {wrapper.pid}", lambda: (children(wrapper.pid) or [None])[0])


def measure_idle(inits, rounds):
    per = {i.name: {"vmrss_kib": [], "rss_kib": [], "pss_kib": [], "wakeups": []} for i in inits}
    for r in range(rounds):
        log(f"idle round {r + 1}/{rounds}: RSS, then {IDLE_WINDOW_S} s of idle wake-ups")
        running = []
        try:
            for init in inits:
                w = start_in_namespace(
                    init, ["/bin/sleep", "100000"], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                running.append((init, w))
            pids = {}
            for init, w in running:
                pid = init_of(w)
                # Ready when the init's child has exec'd sleep: the init is then idle.
                wait_until(
                    f"{init.name}'s child to exec sleep",
                    lambda pid=pid: any(comm(c) == "sleep" for c in children(pid)),
                )
                pids[init.name] = pid
            before = {}
            for init, _ in running:
                pid = pids[init.name]
                rollup = proc_fields(f"/proc/{pid}/smaps_rollup", ["Rss", "Pss"])
                status = proc_fields(
                    f"/proc/{pid}/status", ["VmRSS", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"]
                )
                per[init.name]["vmrss_kib"].append(status["VmRSS"])
                per[init.name]["rss_kib"].append(rollup["Rss"])
                per[init.name]["pss_kib"].append(rollup["Pss"])
                before[init.name] = status["voluntary_ctxt_switches"] + status["nonvoluntary_ctxt_switches"]
            # The measurement window itself: every init sits idle while we count its switches.
            time.sleep(IDLE_WINDOW_S)
            for init, w in running:
                pid = pids[init.name]
                if w.poll() is not None:
                    raise Broken(f"{init.name} exited during the idle window (status {w.returncode})")
                status = proc_fields(f"/proc/{pid}/status", ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"])
                after = status["voluntary_ctxt_switches"] + status["nonvoluntary_ctxt_switches"]
                per[init.name]["wakeups"].append(after - before[init.name])
        finally:
            for init, w in running:
                children_now = children(w.pid)
                stop(w, children_now[0] if children_now else None)
    return {
        name: {
            "vmrss_kib": statistics.median(v["vmrss_kib"]),
            "rss_kib": statistics.median(v["rss_kib"]),
            "pss_kib": statistics.median(v["pss_kib"]),
            "wakeups": statistics.median(v["wakeups"]),
            "wakeups_all": v["wakeups"],
        }
        for name, v in per.items()
    }


# ---------------------------------------------------------------------------------------------
# 4. Start-up overhead: INIT -- /bin/true vs /bin/true, hyperfine without a shell


def measure_startup(inits, runs, warmup, rounds):
    """Pools the run times of `rounds` hyperfine invocations, each command order rotated, so a
    burst of load from elsewhere on the machine spreads over all commands instead of landing
    on whichever one hyperfine happened to be timing."""
    commands = [("/bin/true", "/bin/true")] + [(i.name, " ".join(i.cmd(["/bin/true"]))) for i in inits]
    times = {name: [] for name, _ in commands}
    out = OUT / "startup.json"
    for r in range(rounds):
        log(f"start-up round {r + 1}/{rounds}: hyperfine, {runs // rounds} runs per command")
        order = commands[r % len(commands) :] + commands[: r % len(commands)]
        argv = ["hyperfine", "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(runs // rounds)]
        argv += ["--export-json", str(out)]
        for name, cmd in order:
            argv += ["-n", name, cmd]
        res = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if res.returncode != 0:
            raise Broken(f"hyperfine failed ({res.returncode}): {res.stderr.strip()[-500:]}")
        for result in json.loads(out.read_text())["results"]:
            if any(code != 0 for code in result.get("exit_codes") or [0]):
                raise Broken(f"{result['command']} -- /bin/true exited non-zero under hyperfine")
            times[result["command"]] += result["times"]
    base = statistics.median(times["/bin/true"])
    return {
        name: {
            "median_ms": statistics.median(t) * 1e3,
            "p90_ms": percentile(t, 90) * 1e3,
            "ratio": statistics.median(t) / base,
            "n": len(t),
        }
        for name, t in times.items()
    }


# ---------------------------------------------------------------------------------------------
# 5. Reaping a burst of orphans as PID 1


def measure_reaping(inits, rounds, orphans):
    per = {i.name: [] for i in inits}
    capped = {i.name: 0 for i in inits}
    for r in range(rounds):
        log(f"reaping round {r + 1}/{rounds}: {orphans} orphans per init")
        for init in inits:
            cmd = UNSHARE + init.cmd([str(HELPERS / "reapburst"), str(orphans)])
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
            except subprocess.TimeoutExpired:
                raise Broken(f"reaping under {init.name} did not finish in 180 s") from None
            if res.returncode == 3:  # reapburst's own cap: the init did not reap everything
                capped[init.name] += 1
                continue
            if res.returncode != 0 or "elapsed_ns=" not in res.stdout:
                raise Broken(f"reapburst under {init.name} failed ({res.returncode}): {res.stderr.strip()}")
            ns = int(res.stdout.split("elapsed_ns=")[1].split()[0])
            per[init.name].append(ns / 1e6)
    return {
        name: {
            "median_ms": statistics.median(v) if v else None,
            "min_ms": min(v) if v else None,
            "max_ms": max(v) if v else None,
            "all_ms": v,
            "capped": capped[name],
        }
        for name, v in per.items()
    }


# ---------------------------------------------------------------------------------------------
# 6. Signal forwarding latency: SIGTERM to the init -> taken by its child


def measure_signal(inits, trials, blocks):
    per = {i.name: [] for i in inits}
    fifo = Path(tempfile.mkdtemp(prefix="bench-sig-")) / "fifo"
    try:
        for b in range(blocks):
            log(f"signal latency block {b + 1}/{blocks}: {trials // blocks} trials per init")
            for init in inits:
                cmd = [str(HELPERS / "sigbench"), str(trials // blocks), str(fifo), "--"]
                cmd += UNSHARE + init.cmd([str(HELPERS / "sigchild"), str(fifo)])
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                if res.returncode != 0:
                    raise Broken(f"sigbench under {init.name} failed ({res.returncode}): {res.stderr.strip()}")
                per[init.name] += [int(x) / 1e3 for x in res.stdout.split()]
    finally:
        fifo.unlink(missing_ok=True)
        fifo.parent.rmdir()
    return {
        name: {"p50_us": percentile(v, 50), "p99_us": percentile(v, 99), "n": len(v), "all_us": v}
        for name, v in per.items()
    }


# ---------------------------------------------------------------------------------------------
# 7. The seed pitfall: `INIT -- sh start.sh` where start.sh runs the service without exec

START_SH = """#!/bin/sh
# The classic mistake: the service runs as a child of this shell (no exec), so a signal sent to
# the shell alone never reaches it.
echo "start.sh: starting the service" >&2
{service} {fifo} {cleanup_ms}
echo "start.sh: service exited with $?" >&2
"""


def read_available(fd, buf):
    """Appends what the non-blocking fd has to buf; returns False at EOF."""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        buf += chunk


def pitfall_once(init, workdir):
    fifo = workdir / "fifo"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo, 0o600)
    script = workdir / "start.sh"
    script.write_text(START_SH.format(service=HELPERS / "sigchild", fifo=fifo, cleanup_ms=PITFALL_CLEANUP_MS))
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    buf = bytearray()
    w = start_in_namespace(init, ["/bin/sh", str(script)], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def ready():
            read_available(fd, buf)
            return buf.startswith(b"R ")

        wait_until(f"the service under {init.name} sh start.sh", ready)
        pid = init_of(w)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        exited_at = None
        while True:
            read_available(fd, buf)
            if w.poll() is not None:
                exited_at = time.monotonic()
                break
            if time.monotonic() - t0 > PITFALL_CAP_S:
                break
            time.sleep(0.001)
        if exited_at is None:
            stop(w, pid, signal.SIGKILL)
        read_available(fd, buf)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
        os.close(fd)
    lines = bytes(buf).decode().split("\n")
    return {
        "received": any(l.startswith("T ") for l in lines),
        "clean": "X" in lines,
        "exit_ms": (exited_at - t0) * 1e3 if exited_at is not None else None,
        "exit_status": w.returncode,
    }


def measure_pitfall(rows, rounds):
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-pitfall-"))
    try:
        for init in rows:
            log(f"sh start.sh pitfall: {init.name}")
            runs = [pitfall_once(init, workdir) for _ in range(rounds)]
            received = sum(r["received"] for r in runs)
            clean = sum(r["clean"] for r in runs)
            exits = [r["exit_ms"] for r in runs if r["exit_ms"] is not None]
            results.append(
                {
                    "name": init.name,
                    "argv": " ".join(init.argv),
                    "received": received,
                    "clean": clean,
                    "capped": rounds - len(exits),
                    "rounds": rounds,
                    "exit_ms": statistics.median(exits) if exits else None,
                    "runs": runs,
                }
            )
    finally:
        for p in workdir.iterdir():
            p.unlink()
        workdir.rmdir()
    return results


# ---------------------------------------------------------------------------------------------
# 8. Restarts under load: handoff-init's handoff vs stop-and-start under each peer


def handoff_supported(hi, testsvc):
    """Why the handoff figure cannot run, or None when it can."""
    help_text = subprocess.run([hi, "--help"], capture_output=True, text=True).stdout
    if "--listen" not in help_text:
        return "handoff not available"
    svc = subprocess.run([testsvc, "--help"], capture_output=True, text=True)
    if "http" not in svc.stdout + svc.stderr:
        return "handoff-testsvc has no http mode"
    return None


def restart_run(init, testsvc, handoff, ready_arg):
    port = free_port()
    if handoff:
        argv = init.argv + ["--listen", f"tcp://127.0.0.1:{port}"] + ready_arg + ["--", testsvc, "http"]
    else:
        argv = init.cmd([testsvc, "http", "--bind", f"127.0.0.1:{port}"])
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(argv, **quiet)
    out = OUT / f"load-{init.name}.json"
    load = None
    durations = []
    try:
        wait_until(f"{init.name}: the test service to answer", lambda: http_ok(port))
        load = subprocess.Popen(
            [str(HELPERS / "loadgen"), "127.0.0.1", str(port), str(HANDOFF_THREADS), "120", str(out)], **quiet
        )
        t_start = time.monotonic()
        time.sleep(1.0)  # steady load before the first restart (part of the workload)
        for i in range(HANDOFF_RESTARTS):
            due = t_start + 1.0 + i * HANDOFF_INTERVAL_S
            if time.monotonic() < due:
                time.sleep(due - time.monotonic())
            t0 = time.monotonic()
            if handoff:
                old = set(children(proc.pid))
                os.kill(proc.pid, signal.SIGHUP)
                # Done when the old generation is gone and a new one runs.
                wait_until(
                    f"{init.name}: handoff {i + 1}",
                    lambda: (lambda now: now and not (now & old))(set(children(proc.pid))),
                    deadline_s=30,
                )
                if proc.poll() is not None:
                    raise Broken(f"handoff-init exited during handoff {i + 1} ({proc.returncode})")
            else:
                if not stop(proc):
                    raise Broken(f"{init.name} did not stop within {STEP_DEADLINE_S:.0f} s")
                proc = subprocess.Popen(argv, **quiet)
                wait_until(f"{init.name}: restart {i + 1} to accept", lambda: accepts(port), interval_s=0.001)
            durations.append(time.monotonic() - t0)
        if handoff:
            # The test service answers `pid=P gen=N`: after every handoff really happened the
            # generation serving is 1 + HANDOFF_RESTARTS.
            body = http_get(port).decode(errors="replace")
            if f"gen={1 + HANDOFF_RESTARTS} " not in body:
                raise Broken(f"after {HANDOFF_RESTARTS} handoffs expected gen={1 + HANDOFF_RESTARTS}, got: {body[-80:]!r}")
        time.sleep(1.0)  # steady load after the last restart
        load.send_signal(signal.SIGTERM)
        if load.wait(timeout=30) != 0:
            raise Broken(f"loadgen failed ({load.returncode})")
        data = json.loads(out.read_text())
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        stop(proc)
    ok, fail = sum(data["ok"]), sum(data["fail"])
    return {
        "mode": "handoff (SIGHUP)" if handoff else "stop-and-start",
        "requests_per_s": ok / data["elapsed_s"],
        "ok": ok,
        "failed": fail,
        "fail_kinds": data["fail_kinds"],
        "restart_ms_median": statistics.median(durations) * 1e3,
        "series_ok": data["ok"],
        "series_fail": data["fail"],
    }


def measure_handoff(inits, hi_init, testsvc, ready_arg):
    why = handoff_supported(hi_init.binary, testsvc)
    if why:
        log(f"handoff figure: n/a ({why})")
        return {"na": why}
    if not ready_arg:
        help_text = subprocess.run([hi_init.binary, "--help"], capture_output=True, text=True).stdout
        # The test service sends READY=1 once it accepts: let each handoff wait for exactly that.
        ready_arg = ["--ready", "notify"] if "--ready" in help_text else []
    results = {}
    for init in inits:
        log(f"restarts under load: {init.name}")
        results[init.name] = restart_run(init, testsvc, handoff=not init.peer, ready_arg=ready_arg)
    return {"na": None, "results": results, "ready": " ".join(ready_arg)}


# ---------------------------------------------------------------------------------------------
# Machine, targets, report and plots


def machine_info(command):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for pkg in ("tini", "dumb-init", "catatonit"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        versions[pkg] = r.stdout.strip() or "?"
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "testsvc", "Cargo.toml"], capture_output=True, text=True)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {
        "loadavg": load,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": cpu,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "peers": versions,
        "revision": rev.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else ""),
    }


def no_slower(hi, best, band):
    """met/missed with the reason spelled out; differences inside the band count as equal."""
    if hi is None or best is None:
        return "missed", "no measurement"
    rel = hi / best - 1.0
    verdict = "met" if rel <= band else "missed"
    return verdict, f"{hi:.3g} vs best peer {best:.3g} ({rel:+.1%}; noise band {band:.0%})"


def evaluate_targets(rep, hi, peers):
    t = []
    size = {r["name"]: r for r in rep.sizes}
    his = size[hi]["bytes"]
    comp = [size[p] for p in ("tini-static", "catatonit") if p in size]
    ok = size[hi]["static"] and his < 600 * 1024 and all(his < c["bytes"] for c in comp)
    detail = f"{kib(his):.1f} KiB ({'static' if size[hi]['static'] else 'NOT static'})"
    detail += "".join(f"; {c['name']} {kib(c['bytes']):.1f} KiB" for c in comp)
    t.append(("static binary < 600 KiB and smaller than tini-static and catatonit", "met" if ok else "missed", detail))

    # The verdict is on VmRSS: Pss of a dynamic binary depends on how many other processes on
    # the machine share its C library, so it is shown beside the verdict but not judged.
    best_name = min(peers, key=lambda p: rep.idle[p]["vmrss_kib"])
    best = rep.idle[best_name]["vmrss_kib"]
    mine = rep.idle[hi]["vmrss_kib"]
    best_pss = min(peers, key=lambda p: rep.idle[p]["pss_kib"])
    t.append(
        (
            "RSS no higher than the smallest peer",
            "met" if mine <= best else "missed",
            f"VmRSS {mine:g} KiB vs {best_name} {best:g} KiB (Pss {rep.idle[hi]['pss_kib']:g} KiB vs "
            f"{best_pss} {rep.idle[best_pss]['pss_kib']:g} KiB)",
        )
    )

    w = rep.idle[hi]["wakeups"]
    t.append(("0 idle wake-ups in 10 s", "met" if w == 0 else "missed", f"{w:g} (rounds: {rep.idle[hi]['wakeups_all']})"))

    best_name = min(peers, key=lambda p: rep.startup[p]["median_ms"])
    v, d = no_slower(rep.startup[hi]["median_ms"], rep.startup[best_name]["median_ms"], NOISE_BAND["startup"])
    t.append(("start-up no slower than the best peer", v, f"ms: {d}, best = {best_name}"))

    # Judged on each init's fastest burst: burst times are bimodal for every init alike (see the
    # method), so medians of a few bursts compare the machine's luck more than the inits.
    reaped = [p for p in peers if rep.reaping[p]["min_ms"] is not None]
    best_name = min(reaped, key=lambda p: rep.reaping[p]["min_ms"]) if reaped else None
    v, d = no_slower(rep.reaping[hi]["min_ms"], rep.reaping[best_name]["min_ms"] if best_name else None, NOISE_BAND["reaping"])
    t.append(("reaping 10 000 orphans no slower than the best peer (fastest burst)", v, f"ms: {d}, best = {best_name}"))

    if rep.handoff.get("na"):
        t.append(("0 failed requests during handoffs where every peer fails some", "n/a", rep.handoff["na"]))
    else:
        res = rep.handoff["results"]
        mine = res[hi]["failed"]
        peer_fail = {p: res[p]["failed"] for p in peers}
        ok = mine == 0 and all(f > 0 for f in peer_fail.values())
        t.append(
            (
                "0 failed requests during handoffs where every peer fails some",
                "met" if ok else "missed",
                f"{hi}: {mine}; " + ", ".join(f"{p}: {f}" for p, f in peer_fail.items()),
            )
        )
    return t


def markdown(rep, hi, inits, targets, quick):
    m = rep.machine
    size = {r["binary"]: r for r in rep.sizes}
    L = []
    L.append("# Benchmarks")
    L.append("")
    L.append("handoff-init against tini, dumb-init and catatonit, all measured in one run on the same machine.")
    L.append("Generated by `bench/run.sh`; every number below is the output of that run, nothing is edited by hand.")
    if quick:
        L.append("")
        L.append("**Quick mode (`--quick`): fewer repetitions; for development only.**")
    L.append("")
    L.append("## Machine and run")
    L.append("")
    L.append(f"- command: `{m['command']}`")
    L.append(f"- date: {m['date']}")
    L.append(f"- CPU: {m['cpu']}, `nproc` = {m['nproc']}")
    L.append(f"- kernel (`uname -r`): {m['kernel']}")
    L.append(f"- load average (1, 5, 15 min) at the start: {m['loadavg']}; at the end: {m['loadavg_end']}")
    if max(float(x) for x in (m["loadavg"] + " " + m["loadavg_end"]).split()) > m["nproc"]:
        L.append(
            "  (above `nproc`: it counts runnable threads, the 256 load clients and the services of the handoff "
            "runs among them, and any other work on the machine. That widens every spread; the inits "
            "are measured interleaved or side by side, so it falls on all of them alike.)"
        )
    shown = os.path.relpath(hi.binary, ROOT) if hi.binary.startswith(str(ROOT)) else hi.binary
    L.append(f"- handoff-init: revision {m['revision']}, `{shown}`")
    L.append("- peers (Debian packages): " + ", ".join(f"{k} {v}" for k, v in m["peers"].items()))
    L.append("")
    L.append("## Results")
    L.append("")
    L.append(
        "| init | binary | VmRSS KiB | Pss KiB | idle wake-ups / 10 s | start-up ms (× /bin/true) "
        "| reap 10 000 orphans ms, median (min–max) | SIGTERM forwarding p50 / p99 µs |"
    )
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for i in inits:
        s = size[i.binary]
        idle, st, rp, sg = rep.idle[i.name], rep.startup[i.name], rep.reaping[i.name], rep.signal[i.name]
        link = "static" if s["static"] else "dynamic"
        reap = (
            f"{rp['median_ms']:.0f} ({rp['min_ms']:.0f}–{rp['max_ms']:.0f})"
            if rp["median_ms"] is not None
            else "not reaped in 60 s"
        )
        if rp["capped"] and rp["median_ms"] is not None:
            reap += f" ({rp['capped']} runs not reaped in 60 s)"
        L.append(
            f"| {i.name} | {kib(s['bytes']):.1f} KiB {link} | {idle['vmrss_kib']:g} | {idle['pss_kib']:g} "
            f"| {idle['wakeups']:g} | {st['median_ms']:.3f} (× {st['ratio']:.2f}) | {reap} "
            f"| {sg['p50_us']:.1f} / {sg['p99_us']:.1f} |"
        )
    L.append(f"| /bin/true alone | | | | | {rep.startup['/bin/true']['median_ms']:.3f} (× 1.00) | | |")
    L.append("")
    L.append("### `INIT -- sh start.sh`: the service started without `exec`")
    L.append("")
    L.append(
        f"start.sh runs the service as a child of the shell. SIGTERM goes to the init (PID 1 of its own "
        f"namespace); the service needs {PITFALL_CLEANUP_MS} ms to clean up after SIGTERM. "
        f"Cap: {PITFALL_CAP_S:g} s, then SIGKILL. {PITFALL_ROUNDS} runs per row; the time is the median."
    )
    L.append("")
    L.append("| init (as invoked) | service sees SIGTERM | service finishes its clean-up | time from SIGTERM to the init's exit |")
    L.append("|---|---|---|---|")
    for r in rep.pitfall:
        n = r["rounds"]
        recv = "yes" if r["received"] == n else ("no" if r["received"] == 0 else f"{r['received']}/{n} runs")
        clean = "yes" if r["clean"] == n else ("no: killed when PID 1 exited" if r["clean"] == 0 else f"{r['clean']}/{n} runs")
        if r["capped"] == n:
            took = f"no (killed at cap {PITFALL_CAP_S:g} s)"
        else:
            took = f"{r['exit_ms']:.0f} ms"
            if r["capped"]:
                took += f" ({r['capped']}/{n} runs killed at cap)"
        L.append(f"| `{r['name']} -- sh start.sh` | {recv} | {clean} | {took} |")
    L.append("")
    L.append(
        "\"Sees\": the service ran and recorded the signal. When PID 1 exits the kernel SIGKILLs the rest of its "
        "namespace, so a service that was sent SIGTERM a moment before may die before it runs: forwarding to the "
        "group does not help if the init then exits as soon as the shell has died."
    )
    L.append("")
    L.append("tini forwards to its child only unless `-g`; dumb-init forwards to the child's process group by default "
             "(setsid mode); catatonit forwards to the child unless `-g`; handoff-init forwards to the group by default.")
    L.append("")
    L.append(f"### Restarts under load ({HANDOFF_RESTARTS} restarts)")
    L.append("")
    if rep.handoff.get("na"):
        L.append(f"n/a ({rep.handoff['na']}).")
    else:
        L.append(
            f"{HANDOFF_THREADS} client threads, a new connection per request (`Connection: close`), one restart every "
            f"{HANDOFF_INTERVAL_S:g} s (or as soon as the previous one finished). handoff-init: "
            f"`handoff-init --listen tcp://127.0.0.1:PORT {rep.handoff['ready'] + ' ' if rep.handoff['ready'] else ''}"
            "-- handoff-testsvc http`, then `kill -HUP` "
            "(new generation on the same listening socket, old one drained). Peers: SIGTERM to the init, wait for "
            "it to exit, start it again with `handoff-testsvc http --bind`. Restart time: for handoff-init from "
            "`kill -HUP` until the new generation serves alone (the old one has drained and exited); for the peers "
            "from SIGTERM until the restarted service accepts."
        )
        L.append("")
        L.append("| init | restart by | requests/s | ok | failed | failures by kind | median restart ms |")
        L.append("|---|---|---:|---:|---:|---|---:|")
        for name, r in rep.handoff["results"].items():
            kinds = ", ".join(f"{k} {v}" for k, v in r["fail_kinds"].items() if v) or "—"
            L.append(
                f"| {name} | {r['mode']} | {r['requests_per_s']:.0f} | {r['ok']} | {r['failed']} | {kinds} "
                f"| {r['restart_ms_median']:.0f} |"
            )
        L.append("")
        L.append("![errors over time](img/handoff.png)")
    L.append("")
    L += handoff_cost.markdown(rep.cost)
    L.append("## Targets")
    L.append("")
    L.append("| target | verdict | measured |")
    L.append("|---|---|---|")
    for name, verdict, detail in targets:
        L.append(f"| {name} | **{verdict}** | {detail} |")
    L.append("")
    L.append("## Plots")
    L.append("")
    for img, title in (
        ("size", "binary size"),
        ("rss", "memory"),
        ("wakeups", "idle wake-ups"),
        ("startup", "start-up"),
        ("reaping", "reaping"),
        ("signal", "signal forwarding latency"),
    ):
        L.append(f"![{title}](img/{img}.png)")
        L.append("")
    L.append("## Method")
    L.append("")
    L.append(
        "Each init runs as PID 1 of a fresh PID namespace (`unshare --pid --fork --mount-proc INIT -- CMD`), the way "
        "a container runs it, except for the start-up figure, which times `INIT -- /bin/true` directly. "
        f"The whole run has nice value {os.nice(0)} (bench/run.sh starts it at -10, so that other work on a shared "
        "machine disturbs it less; every init, helper and service inherits it). The C helpers are in `bench/helpers/`."
    )
    L.append("")
    L.append(
        f"1. **Binary size**: bytes on disk; linkage from `file`. Debian's tini is dynamic; its package also ships "
        f"tini-static. Debian's dumb-init is dynamic. Debian's catatonit is "
        f"{'static' if size['/usr/bin/catatonit']['static'] else 'dynamic'} (`file` says so)."
        if "/usr/bin/catatonit" in size
        else "1. **Binary size**: bytes on disk; linkage from `file`."
    )
    L.append(
        f"2. **Memory**: VmRSS from `/proc/PID/status`, Pss from `/proc/PID/smaps_rollup` of the init while its child "
        f"(`sleep`) sleeps; median of {IDLE_ROUNDS} fresh starts. A dynamic binary's RSS includes the shared C library "
        "pages; Pss divides shared pages among the processes mapping them."
    )
    L.append(
        f"3. **Idle wake-ups**: voluntary + nonvoluntary context switches of the init (`/proc/PID/status`) over a "
        f"{IDLE_WINDOW_S} s window with all inits idle side by side; median of {IDLE_ROUNDS} rounds."
    )
    L.append(
        f"4. **Start-up**: `hyperfine -N`, {STARTUP_ROUNDS} invocations of {STARTUP_RUNS // STARTUP_ROUNDS} runs "
        f"(after {STARTUP_WARMUP} warm-up runs) per command, the order of the commands rotated between invocations; "
        f"median wall time of all {STARTUP_RUNS} runs of `INIT -- /bin/true` and its ratio to `/bin/true` alone. (tini, not being PID 1 here, prints a warning to "
        "stderr, which hyperfine discards.)"
    )
    L.append(
        f"5. **Reaping**: `bench/helpers/reapburst.c` runs as the service: it forks a child that forks {REAP_ORPHANS:,} "
        "grandchildren blocked on a pipe, the child exits (the kernel reparents all of them to PID 1), then it starts "
        "the clock and closes the pipe so all of them exit at once; the clock stops when every one of them has been "
        "reaped (`kill(pid, 0)` fails with ESRCH), confirmed by `/proc/1/task/1/children` holding only the helper "
        f"and no process in state Z in the namespace. {REAP_ROUNDS} bursts per init, inits interleaved; the table "
        "shows the median and the range. Ten thousand processes exiting on two cores is itself most of that time, "
        "and on this machine it is bimodal for every init alike (about 0.25–0.4 s, or about 1.5 s when the machine "
        "is busy with the previous burst's aftermath), so the target is judged on each init's fastest burst, the "
        f"cost with the least interference; differences under {NOISE_BAND['reaping']:.0%} are noise."
    )
    L.append(
        f"6. **Signal forwarding**: `bench/helpers/sigbench.c` takes CLOCK_MONOTONIC and sends SIGTERM to the init; "
        "the child (`sigchild.c`, SIGTERM blocked, waiting in `sigwaitinfo`) takes CLOCK_MONOTONIC on receipt. "
        f"{SIGNAL_TRIALS} trials per init (a fresh init each), in {SIGNAL_BLOCKS} interleaved blocks; nearest-rank "
        "p50 and p99."
    )
    L.append(
        f"7. **sh start.sh**: {PITFALL_ROUNDS} runs per row, as in the table's caption. \"Killed when PID 1 exited\": "
        "the init exited as soon as the shell died and the kernel killed the rest of the namespace."
    )
    L.append(
        f"8. **Restarts under load**: `bench/helpers/loadgen.c`; a thread that sees a failure pauses 10 ms, so "
        f"failures count about {HANDOFF_THREADS} × 100 per second of outage rather than a spin of refused connects."
    )
    L.append("")
    L.append(
        f"Targets \"no slower than the best peer\" count a difference within the noise band (start-up "
        f"{NOISE_BAND['startup']:.0%}, reaping {NOISE_BAND['reaping']:.0%}) as equal; the measured numbers are shown "
        "beside every verdict."
    )
    L.append("")
    return "\n".join(L)


def plots(rep, hi, inits, img):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    names = [i.name for i in inits]
    colors = ["#d62728" if n == hi else "#7f7f7f" for n in names]
    # Line colours: handoff-init red, the peers from a palette without red.
    palette = iter(["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22"])
    line = {n: {"linewidth": 2.2, "color": "#d62728"} if n == hi else {"linewidth": 1.2, "color": next(palette)} for n in names}

    def bar(fname, title, ylabel, values, labels=None, fmt_="{:.1f}", hline=None):
        fig, ax = plt.subplots(figsize=(7, 3.8))
        lab = labels or names
        bars = ax.bar(lab, values, color=colors[: len(lab)] if labels is None else ["#7f7f7f"] * len(lab))
        if labels is not None:
            for b, n in zip(bars, lab):
                if n.startswith(hi):
                    b.set_color("#d62728")
        for b, v in zip(bars, values):
            ax.annotate(fmt_.format(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        top = max(values + ([hline[0]] if hline else [])) or 1
        ax.set_ylim(0, top * 1.3)  # headroom so the legend sits above the bars and their labels
        if hline is not None:
            ax.axhline(hline[0], color="black", linestyle="--", linewidth=1, label=hline[1])
            ax.legend(fontsize=8, loc="upper right")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        fig.savefig(img / fname, dpi=110)
        plt.close(fig)

    sizes = rep.sizes
    bar(
        "size.png",
        "Binary size (KiB on disk)",
        "KiB",
        [kib(s["bytes"]) for s in sizes],
        labels=[f"{s['name']}\n({'static' if s['static'] else 'dynamic'})" for s in sizes],
        hline=(600, "600 KiB target"),
    )

    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = range(len(names))
    w = 0.38
    vm = [rep.idle[n]["vmrss_kib"] for n in names]
    ps = [rep.idle[n]["pss_kib"] for n in names]
    b1 = ax.bar([i - w / 2 for i in x], vm, w, label="VmRSS", color="#1f77b4")
    b2 = ax.bar([i + w / 2 for i in x], ps, w, label="Pss", color="#ff7f0e")
    for bars_, vals in ((b1, vm), (b2, ps)):
        for b, v in zip(bars_, vals):
            ax.annotate(f"{v:g}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(x), names, fontsize=8)
    ax.set_ylabel("KiB")
    ax.set_title("Memory of the init while its child sleeps")
    ax.set_ylim(0, max(vm + ps) * 1.25)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(img / "rss.png", dpi=110)
    plt.close(fig)

    bar("wakeups.png", f"Idle wake-ups of the init in {IDLE_WINDOW_S} s", "context switches", [rep.idle[n]["wakeups"] for n in names], fmt_="{:g}")
    bar(
        "startup.png",
        "Start-up: INIT -- /bin/true (median wall time)",
        "ms",
        [rep.startup[n]["median_ms"] for n in names],
        fmt_="{:.3f}",
        hline=(rep.startup["/bin/true"]["median_ms"], "/bin/true alone"),
    )

    fig, ax = plt.subplots(figsize=(7, 3.8))
    data = [rep.reaping[n]["all_ms"] or [0] for n in names]
    try:
        bp = ax.boxplot(data, tick_labels=names, patch_artist=True)
    except TypeError:  # matplotlib before 3.9
        bp = ax.boxplot(data, labels=names, patch_artist=True)
    for patch, c in zip(bp["boxes"], colors):
        patch.set_facecolor(c)
        patch.set_alpha(0.6)
    ax.set_title(f"Time to reap a burst of {REAP_ORPHANS:,} orphans as PID 1 ({REAP_ROUNDS} bursts)")
    ax.set_ylabel("ms")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(img / "reaping.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for n in names:
        v = sorted(rep.signal[n]["all_us"])
        ax.plot(v, [(k + 1) / len(v) for k in range(len(v))], label=n, **line[n])
    ax.set_xscale("log")
    ax.set_xlabel("µs from kill(init, SIGTERM) to receipt in the child (log)")
    ax.set_ylabel("fraction of trials")
    ax.set_title(f"SIGTERM forwarding latency, CDF of {SIGNAL_TRIALS} trials per init")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(img / "signal.png", dpi=110)
    plt.close(fig)

    if not rep.handoff.get("na"):
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        # Peers often fail the same number of requests at the same moments: distinct dash
        # patterns keep overlapping lines visible.
        dashes = iter(["--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))])
        for n, r in rep.handoff["results"].items():
            # The last bucket is cut short by the end of the run: leave it out of the rates.
            t = [k * 0.1 for k in range(len(r["series_ok"]) - 1)]
            style = dict(line[n])
            if n != hi:
                style["linestyle"] = next(dashes)
            a1.plot(t, [v * 10 for v in r["series_ok"][:-1]], label=n, **style)
            cumulative, total = [], 0
            for v in r["series_fail"][:-1]:
                total += v
                cumulative.append(total)
            total += r["series_fail"][-1]
            a2.step(t, cumulative, where="post", label=f"{n} ({total} in all)", **style)
        a1.set_ylabel("ok requests/s")
        a2.set_ylabel("failed requests (cumulative)")
        a2.set_xlabel("s since load start (100 ms buckets)")
        a1.set_title(f"{HANDOFF_RESTARTS} restarts under load: handoff-init by handoff, peers by stop-and-start")
        a1.legend(fontsize=8, ncol=3)
        a2.legend(fontsize=8, ncol=2, loc="upper left")
        fig.tight_layout()
        fig.savefig(img / "handoff.png", dpi=110)
        plt.close(fig)


# ---------------------------------------------------------------------------------------------


README_BEGIN = "<!-- the peers table: written by bench/run.sh, not by hand -->"
README_END = "<!-- end of the peers table -->"


def readme_table(rep, hi, peers):
    """The README's comparison with the peers, from this run's figures."""
    size = {r["name"]: r for r in rep.sizes}
    idle, st, sg = rep.idle, rep.startup, rep.signal
    cost = rep.cost
    ver = rep.machine["peers"]

    def k(name):
        return f"{kib(size[name]['bytes']):.1f} KiB"

    cols = {"handoff-init": [hi], "tini": ["tini-static", "tini"], "dumb-init": ["dumb-init"], "catatonit": ["catatonit"]}
    wrap = textwrap.TextWrapper(width=100, break_long_words=False, break_on_hyphens=False).fill
    L = [
        README_BEGIN,
        wrap("Rows for handoff-init's behaviour are what its tests assert; the figures are from one run of `bench/run.sh` "
        f"({rep.machine['date']}, as root; it installs the Debian packages tini {ver['tini'].split('-')[0]}, "
        f"dumb-init {ver['dumb-init'].split('-')[0]}, catatonit {ver['catatonit'].split('-')[0]} and measures all four "
        f"side by side; {rep.machine['nproc']} cores, load average {rep.machine['loadavg']} at the start — the full "
        "report, spreads and plots are in [docs/BENCHMARKS.md](docs/BENCHMARKS.md))."),
        "",
        "| | handoff-init | tini | dumb-init | catatonit |",
        "|---|---|---|---|---|",
        "| forwards to the whole process group by default | yes | no (`-g`) | yes | no (`-g`) |",
        "| `INIT -- sh start.sh` (no exec): the service finishes its graceful shutdown on SIGTERM | yes | no | no (sees "
        "SIGTERM, killed mid-clean-up when PID 1 exits) | no |",
        "| waits for the rest of the tree, SIGKILL at a grace deadline | yes | no | no | no |",
    ]

    def row(label, cell):
        L.append(f"| {label} | " + " | ".join(cell(col, names) for col, names in cols.items()) + " |")

    row("idle wake-ups in 10 s", lambda c, n: f"{idle[n[-1]]['wakeups']:g}")

    def binary(c, n):
        if c == "tini":
            return f"{k('tini-static')} (tini-static)"
        if not size[n[0]]["static"]:
            return f"— ({kib(size[n[0]]['bytes']):.0f} KiB dynamic)"
        return k(n[0])

    row("static binary", binary)

    def both(fmt, dyn=False):
        def cell(c, n):
            if c == "tini":
                return f"{fmt('tini-static')} static, {fmt('tini')}" + (" dynamic" if dyn else "")
            return fmt(n[0])

        return cell

    row("resident memory, child sleeping (VmRSS)", both(lambda n: f"{idle[n]['vmrss_kib']:g} KiB", dyn=True))
    row(f"`INIT -- /bin/true` (median of {st[hi]['n']})", both(lambda n: f"{st[n]['median_ms']:.2f} ms"))
    row(
        "SIGTERM forwarding latency p50 / p99",
        lambda c, n: f"{sg[n[0]]['p50_us']:.0f} / {sg[n[0]]['p99_us']:.0f} µs" + (" static" if c == "tini" else ""),
    )
    if not rep.handoff.get("na"):
        res = rep.handoff["results"]
        row(
            f"{HANDOFF_RESTARTS} restarts under load",
            lambda c, n: f"{res[n[0]]['failed']} failed requests (handoff)" if c == "handoff-init" else f"{res[n[0]]['failed']} failed (stop and start)",
        )
    if cost:
        runs = {(r["clients"], r["mode"]): r for r in cost["latency"]["runs"]}
        r16, k16 = runs.get((16, "close")), runs.get((16, "keepalive"))

        def lat(c, n):
            if c != "handoff-init":
                return "— (a restart is downtime)"
            q, qk = handoff_cost.ratio(r16), handoff_cost.ratio(k16)
            return (
                f"×{q:.2f} ({handoff_cost.ms(r16['window']['p99_us'])} vs {handoff_cost.ms(r16['steady']['p99_us'])} ms) new connections, "
                f"×{qk:.2f} keep-alive"
            )

        row("p99 latency in a handoff's window / steady, 16 clients", lat)
        slow = {r["name"]: r for r in cost["slow"]}
        row(
            f"restart of a service {handoff_cost.SLOW_READY_S:g} s to ready: downtime per restart, failed requests in "
            f"{cost['slow'][0]['restarts']} restarts",
            lambda c, n: f"{slow[n[-1]]['gap_ms']:.0f} ms, {slow[n[-1]]['failed']} failed" + (" (handoff)" if c == "handoff-init" else ""),
        )
    L.append("")
    pss = ", ".join(f"{n} {idle[n]['pss_kib']:g} KiB" for n in ("tini", "dumb-init") if not size[n]["static"])
    L.append(wrap(
        f"Dynamic peers share libc pages, so their proportional set size is lower ({pss} Pss, handoff-init "
        f"{idle[hi]['pss_kib']:g} KiB). Reaping a burst of {REAP_ORPHANS:,} orphans as PID 1 took "
        f"{min(rep.reaping[n]['min_ms'] for n in rep.reaping if rep.reaping[n]['min_ms'] is not None) / 1e3:.2f}–"
        f"{max(rep.reaping[n]['max_ms'] for n in rep.reaping if rep.reaping[n]['max_ms'] is not None) / 1e3:.1f} s "
        f"for every init in that run (fastest of {REAP_ROUNDS} bursts: "
        + ", ".join(f"{n} {rep.reaping[n]['min_ms']:.0f} ms" for n in sorted(rep.reaping, key=lambda n: rep.reaping[n]['min_ms'] or 1e9))
        + "); the spread is the machine's, wider than the differences between inits (see the report)."
    ))
    L.append(README_END)
    return "\n".join(L)


def write_readme_table(path, block):
    text = path.read_text()
    a, b = text.find(README_BEGIN), text.find(README_END)
    if a < 0 or b < a:
        raise SystemExit(f"bench: {path} has no {README_BEGIN!r} … {README_END!r} markers")
    path.write_text(text[:a] + block + text[b + len(README_END) :])


def main():
    global IDLE_ROUNDS, STARTUP_RUNS, STARTUP_WARMUP, STARTUP_ROUNDS, REAP_ROUNDS, SIGNAL_TRIALS, PITFALL_ROUNDS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handoff-init", required=True, help="path of the static handoff-init build")
    ap.add_argument("--testsvc", required=True, help="path of handoff-testsvc")
    ap.add_argument("--command", default="bench/run.sh", help="the command line to record in the report")
    ap.add_argument("--ready", default="", help="extra handoff-init readiness option for the handoff figure, e.g. '--ready notify'")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--img", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, for development")
    ap.add_argument("--python", default="python3", help="the Python that has gunicorn and uvicorn")
    ap.add_argument("--replot", action="store_true", help="report and plots again from the last run's bench/out/run.pickle")
    ap.add_argument("--readme", default=str(ROOT / "README.md"), help="README whose peers table is rewritten")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: must run as root (PID namespaces)")
    if args.quick:
        IDLE_ROUNDS, STARTUP_RUNS, STARTUP_WARMUP, STARTUP_ROUNDS = 1, 50, 5, 2
        REAP_ROUNDS, SIGNAL_TRIALS, PITFALL_ROUNDS = 2, 40, 1
        handoff_cost.quick()
    # 10 000 idle keep-alive connections need as many fds in the client and in the service.
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    hi_name = "handoff-init"
    hi = Init(hi_name, [args.handoff_init], args.handoff_init, peer=False)
    peers = [
        Init("tini", ["/usr/bin/tini"], "/usr/bin/tini"),
        Init("tini-static", ["/usr/bin/tini-static"], "/usr/bin/tini-static"),
        Init("dumb-init", ["/usr/bin/dumb-init"], "/usr/bin/dumb-init"),
        Init("catatonit", ["/usr/bin/catatonit"], "/usr/bin/catatonit"),
    ]
    inits = [hi] + peers
    pitfall_rows = [hi] + peers + [
        Init("tini -g", ["/usr/bin/tini", "-g"], "/usr/bin/tini"),
        Init("catatonit -g", ["/usr/bin/catatonit", "-g"], "/usr/bin/catatonit"),
    ]
    needed = [i.binary for i in inits] + [args.testsvc] + [str(HELPERS / h) for h in ("sigchild", "reapburst", "sigbench", "loadgen")]
    missing = [p for p in needed if not os.access(p, os.X_OK)]
    if missing:
        print(f"bench: missing binaries: {', '.join(missing)}", file=sys.stderr)
        return 1

    OUT.mkdir(parents=True, exist_ok=True)
    rep = Report()
    started = time.monotonic()
    if args.replot:
        rep, took = pickle.loads((OUT / "run.pickle").read_bytes())
        started -= took
    try:
        if args.replot:
            raise Replot
        rep.machine = machine_info(args.command)
        rep.sizes = measure_sizes(inits)
        rep.idle = measure_idle(inits, IDLE_ROUNDS)
        rep.startup = measure_startup(inits, STARTUP_RUNS, STARTUP_WARMUP, STARTUP_ROUNDS)
        rep.reaping = measure_reaping(inits, REAP_ROUNDS, REAP_ORPHANS)
        rep.signal = measure_signal(inits, SIGNAL_TRIALS, SIGNAL_BLOCKS)
        rep.pitfall = measure_pitfall(pitfall_rows, PITFALL_ROUNDS)
        ready_arg = args.ready.split() if args.ready else []
        rep.handoff = measure_handoff(inits, hi, args.testsvc, ready_arg)
        rep.cost = handoff_cost.measure_all(hi, peers, args.testsvc, args.python)
    except Broken as e:
        print(f"bench: measurement broke: {e}", file=sys.stderr)
        return 1
    except Replot:
        pass
    else:
        with open("/proc/loadavg") as f:
            rep.machine["loadavg_end"] = " ".join(f.read().split()[:3])
        (OUT / "run.pickle").write_bytes(pickle.dumps((rep, time.monotonic() - started)))
    targets = evaluate_targets(rep, hi_name, [p.name for p in peers])
    targets += handoff_cost.targets(rep.cost, f"{rep.machine['loadavg']} / {rep.machine['loadavg_end']}")
    saved = dict(rep.__dict__, cost=handoff_cost.json_safe(rep.cost))
    (OUT / "results.json").write_text(json.dumps(saved, indent=1, default=str))
    plots(rep, hi_name, inits, Path(args.img))
    handoff_cost.plots(rep.cost, Path(args.img))
    text = markdown(rep, hi, inits, targets, args.quick)
    text += f"\nThe whole run took {time.monotonic() - started:.0f} s.\n"
    Path(args.doc).write_text(text)
    if not args.quick:
        write_readme_table(Path(args.readme), readme_table(rep, hi_name, [p.name for p in peers]))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
