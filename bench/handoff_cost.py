"""What a handoff costs a client: latency percentiles around handoffs, the throughput dip, idle
keep-alive connections at a drain, init's own CPU and syscalls per handoff, a service that takes
1 s to be ready under every init, and real servers (gunicorn, uvicorn) restarted alone or handed
off. Part of the run of bench/bench.py; the clients are C (bench/helpers/latgen.c, kaidle.c).

A benchmark, not a test: timings are reported, never asserted. Broken is raised only when a
measurement itself breaks (a service never answers, a handoff never ends, a helper fails).
"""

import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import HELPERS, OUT, ROOT, Broken, accepts, children, free_port, http_ok, log, stop, wait_until

LAT_CLIENTS = (1, 16, 256)
LAT_MODES = ("close", "keepalive")
LAT_HANDOFFS = 10  # per latency run
DIP_CLIENTS, DIP_MODE, DIP_HANDOFFS = 16, "close", 20  # that run does 20: the throughput figure
HANDOFF_EVERY_S = 0.5
WARM_S = 1.0  # steady load before the first handoff, left out of the steady state's first 0.3 s
WINDOW_AFTER_S = 0.1  # a handoff's window: from kill -HUP until 100 ms after the old one exited
BUCKET_S = 0.1
DRAIN_CONNS = 10_000
DRAIN_IDLE_MS = 2000  # handoff-testsvc's own --drain-idle default, written out
COST_HANDOFFS = 40  # init's CPU time is summed over this many handoffs without load
STRACE_HANDOFFS = 10
SLOW_READY_S = 1.0
SLOW_RESTARTS = 5
SERVER_RESTARTS = 5
SERVER_CLIENTS = 16
UVICORN_READY = "delay:2s"  # uvicorn sends no READY=1: a fixed delay after its start

QUIET = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def quick():
    global LAT_HANDOFFS, DIP_HANDOFFS, DRAIN_CONNS, COST_HANDOFFS, STRACE_HANDOFFS, SLOW_RESTARTS, SERVER_RESTARTS
    LAT_HANDOFFS, DIP_HANDOFFS, DRAIN_CONNS, COST_HANDOFFS = 3, 5, 1000, 10
    STRACE_HANDOFFS, SLOW_RESTARTS, SERVER_RESTARTS = 3, 2, 2


# ---------------------------------------------------------------------------------------------
# Clients and records


class Latgen:
    """bench/helpers/latgen.c running against 127.0.0.1:port until stop()."""

    def __init__(self, port, clients, mode, name):
        self.out = OUT / f"lat-{name}.bin"
        self.proc = subprocess.Popen(
            [str(HELPERS / "latgen"), "127.0.0.1", str(port), str(clients), mode, "300", str(self.out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("started"):
            self.proc.kill()
            self.proc.wait()
            raise Broken(f"latgen did not start ({self.proc.returncode})")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        if self.proc.wait(timeout=60) != 0:
            raise Broken(f"latgen failed ({self.proc.returncode})")
        return read_records(self.out)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def read_records(path):
    import numpy as np

    raw = path.read_bytes()
    nl = raw.index(b"\n")
    head = json.loads(raw[:nl])
    recs = np.frombuffer(raw[nl + 1 :], dtype="<i8").reshape(-1, 3)
    order = np.argsort(recs[:, 0], kind="stable")
    return head, recs[order]


def now_ns():
    return time.monotonic_ns()  # CLOCK_MONOTONIC, the clock latgen stamps its records with


def handoff(proc, what, deadline_s=60):
    """kill -HUP to init; waits until the old generation is gone and a new one runs. Returns the
    (start, end) monotonic ns."""
    old = set(children(proc.pid))
    t0 = now_ns()
    os.kill(proc.pid, signal.SIGHUP)
    wait_until(what, lambda: (lambda now: now and not (now & old))(set(children(proc.pid))), deadline_s=deadline_s)
    if proc.poll() is not None:
        raise Broken(f"handoff-init exited during {what} ({proc.returncode})")
    return t0, now_ns()


def split(recs, windows, t_from, t_to):
    """Records started in [t_from, t_to): (in some window, outside every window)."""
    import numpy as np

    recs = recs[(recs[:, 0] >= t_from) & (recs[:, 0] < t_to)]
    inside = np.zeros(len(recs), dtype=bool)
    for a, b in windows:
        inside |= (recs[:, 0] >= a) & (recs[:, 0] < b)
    return recs[inside], recs[~inside]


def lat_stats(recs):
    import numpy as np

    ok = recs[recs[:, 2] == 0][:, 1] / 1e3  # µs
    fails = recs[recs[:, 2] != 0]
    if len(ok) == 0:
        return {"n": 0, "failed": int(len(fails))}
    return {
        "n": int(len(ok)),
        "failed": int(len(fails)),
        "p50_us": float(np.percentile(ok, 50)),
        "p99_us": float(np.percentile(ok, 99)),
        "p999_us": float(np.percentile(ok, 99.9)),
        "max_us": float(ok.max()),
    }


KINDS = ["ok", "connect", "io", "timeout", "status", "stale"]


def fail_kinds(recs):
    out = {}
    for k in range(1, len(KINDS)):
        n = int((recs[:, 2] == k).sum())
        if n:
            out[KINDS[k]] = n
    return out


def longest_gap_ms(recs, a, b):
    """Longest time in [a, b] with no request completed ok: what a client sees as downtime."""
    import numpy as np

    ok = recs[recs[:, 2] == 0]
    done = np.sort(ok[:, 0] + ok[:, 1])
    inside = done[(done >= a) & (done <= b)]
    points = np.concatenate(([a], inside, [b]))
    return float(np.diff(points).max() / 1e6)


def downsample(recs, n=6000):
    if len(recs) <= n:
        return recs
    step = len(recs) // n
    return recs[::step]


# ---------------------------------------------------------------------------------------------
# Latency through handoffs, and the throughput dip


def serve(hi, args, service, port):
    argv = [hi, "--listen", f"tcp://127.0.0.1:{port}", "--runtime-dir", tempfile.mkdtemp(prefix="bench-rt-")]
    proc = subprocess.Popen(argv + args + ["--"] + service, **QUIET)
    try:
        wait_until("the service under handoff-init to answer", lambda: http_ok(port), deadline_s=30)
    except Broken:
        stop(proc)
        raise
    return proc, argv[-1]


def cleanup_rt(rt):
    try:
        for p in Path(rt).iterdir():
            p.unlink()
        Path(rt).rmdir()
    except OSError:
        pass


def latency_run(hi, testsvc, clients, mode, handoffs):
    port = free_port()
    proc, rt = serve(hi, ["--ready", "notify"], [testsvc, "http"], port)
    load = None
    windows = []
    try:
        load = Latgen(port, clients, mode, f"{clients}-{mode}")
        t_start = now_ns()
        time.sleep(WARM_S)  # steady load before the first handoff (part of the workload)
        for i in range(handoffs):
            due = t_start + int((WARM_S + i * HANDOFF_EVERY_S) * 1e9)
            if now_ns() < due:
                time.sleep((due - now_ns()) / 1e9)
            windows.append(handoff(proc, f"handoff {i + 1} at {clients} {mode} clients"))
        time.sleep(HANDOFF_EVERY_S)
        t_end = now_ns()
        head, recs = load.stop()
    finally:
        if load:
            load.kill()
        stop(proc)
        cleanup_rt(rt)
    wins = [(a, b + int(WINDOW_AFTER_S * 1e9)) for a, b in windows]
    inside, outside = split(recs, wins, t_start + int(0.3e9), t_end)
    return {
        "clients": clients,
        "mode": mode,
        "handoffs": handoffs,
        "window": lat_stats(inside),
        "steady": lat_stats(outside),
        "failed": int((recs[:, 2] != 0).sum()),
        "fail_kinds": fail_kinds(recs),
        "requests": int(len(recs)),
        "handoff_ms": [(b - a) / 1e6 for a, b in windows],
        "t0": t_start,
        "windows": windows,
        "t_end": t_end,
        "recs": recs,
    }


def throughput(run):
    """Requests completed per 100 ms bucket from the first handoff to the last one's end."""
    import numpy as np

    recs = run["recs"]
    ok = recs[recs[:, 2] == 0]
    done = ok[:, 0] + ok[:, 1]
    a = run["windows"][0][0]
    b = run["windows"][-1][1]
    nb = max(1, int((b - a) / (BUCKET_S * 1e9)))
    counts, _ = np.histogram(done, bins=nb, range=(a, a + nb * BUCKET_S * 1e9))
    # The same buckets over the whole run, for the plot.
    total = int((run["t_end"] - run["t0"]) / (BUCKET_S * 1e9))
    all_counts, _ = np.histogram(done, bins=total, range=(run["t0"], run["t0"] + total * BUCKET_S * 1e9))
    med = float(np.median(counts))
    worst = int(counts.min())
    # Which buckets a handoff overlaps: a dip in the others is the machine's, not a handoff's.
    edges = a + np.arange(nb + 1) * BUCKET_S * 1e9
    during = np.zeros(nb, dtype=bool)
    for w0, w1 in run["windows"]:
        during |= (edges[1:] > w0) & (edges[:-1] < w1)
    return {
        "handoffs": run["handoffs"],
        "worst_during_per_s": int(counts[during].min()) / BUCKET_S if during.any() else None,
        "worst_between_per_s": int(counts[~during].min()) / BUCKET_S if (~during).any() else None,
        "during_buckets": int(during.sum()),
        "buckets": int(nb),
        "median_per_s": med / BUCKET_S,
        "worst_per_s": worst / BUCKET_S,
        "worst_ratio": worst / med if med else 0.0,
        "series": [int(c) for c in all_counts],
    }


def measure_latency(hi, testsvc):
    runs = []
    for mode in LAT_MODES:
        for clients in LAT_CLIENTS:
            n = DIP_HANDOFFS if (clients, mode) == (DIP_CLIENTS, DIP_MODE) else LAT_HANDOFFS
            log(f"latency through handoffs: {clients} clients, {mode}, {n} handoffs")
            runs.append(latency_run(hi, testsvc, clients, mode, n))
    dip = next(r for r in runs if (r["clients"], r["mode"]) == (DIP_CLIENTS, DIP_MODE))
    return {"runs": runs, "throughput": throughput(dip)}


# ---------------------------------------------------------------------------------------------
# 10 000 idle keep-alive connections on the old generation at the handoff


def proc_cpu_ns(pid):
    """CPU time of pid so far, ns: /proc/PID/schedstat's first field (sum_exec_runtime)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def proc_ticks(pid):
    """utime + stime of pid from /proc/PID/stat, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure_drain(hi, testsvc):
    log(f"keep-alive drain: {DRAIN_CONNS} idle connections on the old generation")
    port = free_port()
    svc = [testsvc, "http", "--drain-idle", str(DRAIN_IDLE_MS)]
    proc, rt = serve(hi, ["--ready", "notify", "--drain-timeout", "60s"], svc, port)
    out = OUT / "kaidle.json"
    idle = None
    try:
        idle = subprocess.Popen(
            [str(HELPERS / "kaidle"), "127.0.0.1", str(port), str(DRAIN_CONNS), "120", str(out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        if not idle.stdout.readline().startswith("ready"):
            raise Broken(f"kaidle did not open its connections ({idle.wait()})")
        rss_before = vmrss_kib(proc.pid)
        rss = [rss_before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                rss.append(vmrss_kib(proc.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        cpu0, ticks0 = proc_cpu_ns(proc.pid), proc_ticks(proc.pid)
        sampler.start()
        try:
            t0, t1 = handoff(proc, "the handoff with idle keep-alive connections", deadline_s=90)
        finally:
            done.set()
            sampler.join()
        cpu1, ticks1 = proc_cpu_ns(proc.pid), proc_ticks(proc.pid)
        if idle.wait(timeout=120) != 0:
            raise Broken(f"kaidle failed ({idle.returncode})")
        res = json.loads(out.read_text())
    finally:
        if idle and idle.poll() is None:
            idle.kill()
            idle.wait()
        stop(proc, deadline_s=30)
        cleanup_rt(rt)
    return {
        "connections": DRAIN_CONNS,
        "old_exited_ms": (t1 - t0) / 1e6,
        "init_cpu_ms": (cpu1 - cpu0) / 1e6,
        "init_ticks": ticks1 - ticks0,
        "rss_before_kib": rss_before,
        "rss_max_kib": max(rss),
        "client": res,
        "failed": res["reasked_failed"] + res["resets"] + (DRAIN_CONNS - res["closed_by_server"]),
    }


# ---------------------------------------------------------------------------------------------
# Init's own cost per handoff: CPU time and syscalls, with 1 and with 8 listeners


def parse_strace(path, init_pid):
    """Counts syscalls by init itself and by its forked children before their execve."""
    own, child, forks = {}, {}, set()
    execd = set()
    for line in Path(path).read_text(errors="replace").splitlines():
        pid_s, _, rest = line.partition(" ")
        rest = rest.lstrip()
        # "<... clone resumed> ...) = PID" ends a call counted on its "<unfinished ...>" line.
        if pid_s.isdigit() and rest.startswith("<...") and " resumed>" in rest and int(pid_s) == init_pid:
            name = rest[5:].split(" ", 1)[0]
            if name in ("clone", "clone3", "fork", "vfork") and "=" in rest:
                ret = rest.rsplit("=", 1)[1].split()[0]
                if ret.isdigit():
                    forks.add(int(ret))
            continue
        if not pid_s.isdigit() or rest.startswith(("<...", "+++", "---")):
            continue
        name = rest.split("(", 1)[0]
        if not name.replace("_", "").isalnum():
            continue
        pid = int(pid_s)
        if pid == init_pid:
            own[name] = own.get(name, 0) + 1
            if name in ("clone", "clone3", "fork", "vfork") and "=" in rest:
                ret = rest.rsplit("=", 1)[1].split()[0]
                if ret.isdigit():
                    forks.add(int(ret))
        elif pid in forks and pid not in execd:
            child[name] = child.get(name, 0) + 1
            if name == "execve":
                execd.add(pid)
    return own, child


def cost_run(hi, testsvc, listeners):
    ports = [free_port() for _ in range(listeners)]
    rt = tempfile.mkdtemp(prefix="bench-rt-")
    argv = [hi, "--runtime-dir", rt, "--ready", "notify"]
    for p in ports:
        argv += ["--listen", f"tcp://127.0.0.1:{p}"]
    proc = subprocess.Popen(argv + ["--", testsvc, "http"], **QUIET)
    trace = OUT / f"strace-{listeners}.txt"
    try:
        wait_until("the service to answer on every listener", lambda: all(http_ok(p) for p in ports), deadline_s=30)
        cpu0, ticks0 = proc_cpu_ns(proc.pid), proc_ticks(proc.pid)
        for i in range(COST_HANDOFFS):
            handoff(proc, f"handoff {i + 1} with {listeners} listeners")
        cpu1, ticks1 = proc_cpu_ns(proc.pid), proc_ticks(proc.pid)
        st = subprocess.Popen(["strace", "-f", "-qq", "-o", str(trace), "-p", str(proc.pid)], **QUIET)
        wait_until("strace to attach", lambda: tracer_of(proc.pid) == st.pid)
        for i in range(STRACE_HANDOFFS):
            handoff(proc, f"traced handoff {i + 1} with {listeners} listeners")
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        wait_until("strace to detach", lambda: tracer_of(proc.pid) == 0)
    finally:
        stop(proc)
        cleanup_rt(rt)
    own, child = parse_strace(trace, proc.pid)
    return {
        "listeners": listeners,
        "cpu_us_per_handoff": (cpu1 - cpu0) / 1e3 / COST_HANDOFFS,
        "ticks": ticks1 - ticks0,
        "handoffs": COST_HANDOFFS,
        "syscalls_per_handoff": sum(own.values()) / STRACE_HANDOFFS,
        "child_syscalls_per_handoff": sum(child.values()) / STRACE_HANDOFFS,
        "top": sorted(own.items(), key=lambda kv: -kv[1])[:8],
        "child_top": sorted(child.items(), key=lambda kv: -kv[1])[:6],
        "traced_handoffs": STRACE_HANDOFFS,
    }


def tracer_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


def measure_costs(hi, testsvc):
    rows = []
    for n in (1, 8):
        log(f"init's cost per handoff: {n} listener(s), {COST_HANDOFFS} handoffs, {STRACE_HANDOFFS} traced")
        rows.append(cost_run(hi, testsvc, n))
    return rows


# ---------------------------------------------------------------------------------------------
# A service that takes 1 s to be ready: the peers' stop-and-start against a handoff


def restarts(name, argv, port, clients, restarts_n, handoff_mode, up=None, deadline_s=30):
    """Runs argv (an init with its service, or a server alone), puts latgen load on it, restarts
    it restarts_n times (handoff: kill -HUP; else SIGTERM, wait, start again) and returns the
    figures. up(port) says when a restarted service serves (default: it answers 200)."""
    up = up or http_ok
    proc = subprocess.Popen(argv, **QUIET)
    load = None
    spans = []
    try:
        wait_until(f"{name} to answer", lambda: up(port), deadline_s=deadline_s)
        load = Latgen(port, clients, "close", name)
        t_start = now_ns()
        time.sleep(WARM_S)
        for i in range(restarts_n):
            if handoff_mode:
                spans.append(handoff(proc, f"{name}: handoff {i + 1}"))
            else:
                t0 = now_ns()
                if not stop(proc, deadline_s=deadline_s):
                    raise Broken(f"{name} did not stop within {deadline_s} s")
                proc = subprocess.Popen(argv, **QUIET)
                wait_until(f"{name}: restart {i + 1} to serve", lambda: up(port), deadline_s=deadline_s, interval_s=0.001)
                spans.append((t0, now_ns()))
            time.sleep(HANDOFF_EVERY_S)
        t_end = now_ns()
        head, recs = load.stop()
    finally:
        if load:
            load.kill()
        stop(proc, deadline_s=deadline_s)
    gaps = [longest_gap_ms(recs, a - int(0.05e9), b + int(0.3e9)) for a, b in spans]
    inside, outside = split(recs, [(a, b + int(WINDOW_AFTER_S * 1e9)) for a, b in spans], t_start + int(0.3e9), t_end)
    return {
        "name": name,
        "mode": "handoff" if handoff_mode else "stop-and-start",
        "restarts": restarts_n,
        "ok": int((recs[:, 2] == 0).sum()),
        "failed": int((recs[:, 2] != 0).sum()),
        "fail_kinds": fail_kinds(recs),
        "restart_ms": statistics.median([(b - a) / 1e6 for a, b in spans]),
        "gap_ms": statistics.median(gaps),
        "gap_max_ms": max(gaps),
        "all": lat_stats(recs),
        "window": lat_stats(inside),
        "steady": lat_stats(outside),
        "t0": t_start,
        "spans": spans,
        "recs": recs,
    }


def measure_slow_ready(hi, peers, testsvc):
    """The service sleeps 1 s before it binds (stop-and-start) or before it accepts and sends
    READY=1 (handoff), as one that warms a cache or a JIT before it serves."""
    slow = f"sleep {SLOW_READY_S:g}; exec {testsvc} http"
    rows = []
    port = free_port()
    rt = tempfile.mkdtemp(prefix="bench-rt-")
    argv = [hi.binary, "--listen", f"tcp://127.0.0.1:{port}", "--runtime-dir", rt, "--ready", "notify"]
    log(f"service 1 s to ready: handoff-init, {SLOW_RESTARTS} handoffs")
    try:
        rows.append(restarts("handoff-init", argv + ["--", "/bin/sh", "-c", slow], port, 16, SLOW_RESTARTS, True))
    finally:
        cleanup_rt(rt)
    for p in peers:
        log(f"service 1 s to ready: {p.name}, {SLOW_RESTARTS} stop-and-starts")
        port = free_port()
        argv = p.cmd(["/bin/sh", "-c", f"{slow} --bind 127.0.0.1:{port}"])
        rows.append(restarts(p.name, argv, port, 16, SLOW_RESTARTS, False, up=accepts))
    return rows


# ---------------------------------------------------------------------------------------------
# Real servers: gunicorn and uvicorn, alone (stop-and-start) and under handoff-init (handoffs)

ASGI_APP = ROOT / "bench" / "apps"
WSGI_DIR = ROOT / "tests" / "fixtures"


def server_versions(py):
    out = {}
    for mod in ("gunicorn", "uvicorn"):
        r = subprocess.run([py, "-c", f"import {mod}; print({mod}.__version__)"], capture_output=True, text=True)
        out[mod] = r.stdout.strip() if r.returncode == 0 else None
    return out


def measure_servers(hi, py):
    versions = server_versions(py)
    rows = []
    common_g = [py, "-m", "gunicorn", "--chdir", str(WSGI_DIR), "--workers", "2", "--log-level", "warning"]
    common_g += ["--graceful-timeout", "20"]
    common_u = [py, "-m", "uvicorn", "--app-dir", str(ASGI_APP), "--log-level", "warning", "--no-access-log"]
    for server in ("gunicorn", "uvicorn"):
        if not versions[server]:
            log(f"real servers: {server} is not installed for {py}; skipped")
            continue
        for under in (False, True):
            port = free_port()
            rt = tempfile.mkdtemp(prefix="bench-rt-")
            if server == "gunicorn":
                alone = common_g + ["--bind", f"127.0.0.1:{port}", "wsgi_app:application"]
                held = common_g + ["wsgi_app:application"]
                ready = ["--ready", "notify"]  # gunicorn sends READY=1 itself
            else:
                alone = common_u + ["--host", "127.0.0.1", "--port", str(port), "asgi_app:app"]
                held = common_u + ["--fd", "3", "asgi_app:app"]
                ready = ["--ready", UVICORN_READY]
            if under:
                argv = [hi, "--listen", f"tcp://127.0.0.1:{port}", "--runtime-dir", rt] + ready
                argv += ["--drain-timeout", "30s", "--"] + held
            else:
                argv = alone
            name = f"{server} {'under handoff-init' if under else 'alone'}"
            log(f"real servers: {name}, {SERVER_RESTARTS} {'handoffs' if under else 'stop-and-starts'}")
            try:
                r = restarts(name, argv, port, SERVER_CLIENTS, SERVER_RESTARTS, under)
            finally:
                cleanup_rt(rt)
            r["server"], r["under"], r["version"] = server, under, versions[server]
            rows.append(r)
    return {"rows": rows, "versions": versions, "python": py}


# ---------------------------------------------------------------------------------------------


def measure_all(hi, peers, testsvc, py):
    out = {}
    out["latency"] = measure_latency(hi.binary, testsvc)
    out["drain"] = measure_drain(hi.binary, testsvc)
    out["costs"] = measure_costs(hi.binary, testsvc)
    out["slow"] = measure_slow_ready(hi, peers, testsvc)
    out["servers"] = measure_servers(hi.binary, py)
    return out


# ---------------------------------------------------------------------------------------------
# Report: targets, Markdown, plots


def json_safe(cost):
    """The figures without the raw per-request records (those go to the plots only)."""

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "recs"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(cost)


def ms(us):
    return f"{us / 1e3:.2f}" if us is not None else "—"


def ratio(run):
    w, s = run["window"], run["steady"]
    if not w.get("n") or not s.get("n"):
        return None
    return w["p99_us"] / s["p99_us"]


def held_failures(cost):
    """Failed requests of every run where handoff-init handed off a service that drains as the
    contract says (the test service, gunicorn): the 0-failures target."""
    parts = [(f"latency {r['clients']} {r['mode']}", r["failed"]) for r in cost["latency"]["runs"]]
    parts.append((f"{cost['drain']['connections']} idle keep-alives", cost["drain"]["failed"]))
    parts += [(f"1 s-to-ready {r['name']}", r["failed"]) for r in cost["slow"] if r["mode"] == "handoff"]
    parts += [(r["name"], r["failed"]) for r in cost["servers"]["rows"] if r["under"] and r["server"] == "gunicorn"]
    return parts


def dip_why(tp):
    """Why the worst bucket missed, from the buckets themselves."""
    between, during, med = tp["worst_between_per_s"], tp["worst_during_per_s"], tp["median_per_s"]
    if between is None or during is None or not med:
        return ""
    if between / med < 0.95:
        return (
            f". Why: buckets no handoff overlaps dip to {between / med:.0%} of the median too, so this "
            f"machine's own variation at this load is already beyond the target; the worst bucket a handoff "
            f"overlaps is {during / between:.0%} of the worst one without"
        )
    return f". Why: the worst bucket without a handoff is {between / med:.0%} of the median; with one, {during / med:.0%}"


def targets(cost, loadavg):
    t = []
    why = (
        f"(load average at start/end {loadavg} on {os.cpu_count()} cores; it counts the benchmark's own "
        "client threads and service processes)"
    )
    runs = cost["latency"]["runs"]
    for clients in (16, 256):
        rs = [r for r in runs if r["clients"] == clients]
        ratios = {r["mode"]: ratio(r) for r in rs}
        ok = all(v is not None and v <= 1.2 for v in ratios.values())
        detail = "; ".join(
            f"{'new connection' if m == 'close' else 'keep-alive'}: ×{v:.2f} "
            f"({ms(r['window']['p99_us'])} vs {ms(r['steady']['p99_us'])} ms)"
            for m, v, r in ((r["mode"], ratios[r["mode"]], r) for r in rs)
            if v is not None
        )
        if not ok:
            close, keep = ratios.get("close"), ratios.get("keepalive")
            if close is not None and close <= 1.2 and keep is not None and keep > 1.2:
                # The reason, from this run's own rows: the handoff adds what a keep-alive client
                # pays once per connection, which its steady state never pays.
                detail += (
                    f". Why: the old generation closes its keep-alive connections as it drains, so in a "
                    f"handoff's window each keep-alive client opens one new connection (a TCP handshake and "
                    f"an accept by the new generation), which its steady requests never pay; with a new "
                    f"connection per request, where steady requests pay that too, the window's p99 is "
                    f"×{close:.2f}, within the target"
                )
            detail += f" {why}"
        t.append((f"handoff-window p99 ≤ 1.2 × steady p99 at {clients} clients (C client)", "met" if ok else "missed", detail))
    tp = cost["latency"]["throughput"]
    ok = tp["worst_ratio"] >= 0.95
    t.append(
        (
            f"worst 100 ms bucket ≥ 95 % of the median bucket ({tp['handoffs']} handoffs, {DIP_CLIENTS} clients)",
            "met" if ok else "missed",
            f"{tp['worst_ratio']:.0%}: {tp['worst_per_s']:.0f} vs {tp['median_per_s']:.0f} requests/s (worst bucket "
            f"a handoff overlaps {tp['worst_during_per_s']:.0f}, worst between handoffs {tp['worst_between_per_s']:.0f})"
            + ("" if ok else dip_why(tp) + f" {why}"),
        )
    )
    parts = held_failures(cost)
    total = sum(n for _, n in parts)
    t.append(
        (
            "0 failed requests through handoffs (test service, gunicorn)",
            "met" if total == 0 else "missed",
            f"{total} failed" + ("" if total == 0 else ": " + ", ".join(f"{k} {n}" for k, n in parts if n)),
        )
    )
    worst = max(c["cpu_us_per_handoff"] for c in cost["costs"])
    t.append(
        (
            "init CPU time per handoff < 1 ms (1 and 8 listeners)",
            "met" if worst < 1000 else "missed",
            ", ".join(f"{c['listeners']} listener{'s' if c['listeners'] > 1 else ''}: {c['cpu_us_per_handoff']:.0f} µs" for c in cost["costs"]),
        )
    )
    return t


def kinds_text(k):
    return ", ".join(f"{n} {kind}" for kind, n in k.items()) or "—"


def markdown(cost):
    L = []
    lat = cost["latency"]
    L.append("## What a handoff costs a client")
    L.append("")
    L.append(
        "handoff-init (the static build) holds `--listen tcp://127.0.0.1:PORT --ready notify` for `handoff-testsvc http` "
        "(a thread per connection), and `bench/helpers/latgen.c` (C: its own cost stays far below the server's) "
        "keeps CLIENTS requests in flight, each client one at a time, recording every request's start and latency. "
        f"After {WARM_S:g} s of steady load, one `kill -HUP` every {HANDOFF_EVERY_S:g} s (or as soon as the previous "
        f"handoff ended). A handoff's **window** runs from `kill -HUP` until {WINDOW_AFTER_S * 1e3:.0f} ms after the old "
        "generation exited; a request belongs to it when it started inside. **Steady** is every other request after the "
        "first 0.3 s. Latencies are of successful requests; percentiles by linear interpolation. The physical limit is "
        "zero added latency: the kernel keeps queueing on the one socket while generations change."
    )
    L.append("")
    L.append(
        "| clients | connection | handoffs | requests | steady p50 / p99 / p99.9 / max ms | handoff window p50 / p99 / p99.9 / max ms "
        "| p99 window / steady | failed | handoff ms, median (max) |"
    )
    L.append("|---:|---|---:|---:|---|---|---:|---:|---:|")
    for r in lat["runs"]:
        s, w = r["steady"], r["window"]
        q = ratio(r)

        def four(x):
            return " / ".join(ms(x.get(k)) for k in ("p50_us", "p99_us", "p999_us", "max_us")) if x.get("n") else "—"

        L.append(
            f"| {r['clients']} | {'new per request' if r['mode'] == 'close' else 'keep-alive'} | {r['handoffs']} "
            f"| {r['requests']} | {four(s)} | {four(w)} | {'×%.2f' % q if q else '—'} "
            f"| {r['failed']}{' (' + kinds_text(r['fail_kinds']) + ')' if r['failed'] else ''} "
            f"| {statistics.median(r['handoff_ms']):.0f} ({max(r['handoff_ms']):.0f}) |"
        )
    L.append("")
    L.append("![latency over time](img/latency.png)")
    L.append("")
    tp = lat["throughput"]
    L.append(f"### Throughput through {tp['handoffs']} handoffs")
    L.append("")
    L.append(
        f"Requests completed per {BUCKET_S * 1e3:.0f} ms bucket in the {DIP_CLIENTS}-client new-connection run, from the "
        f"first `kill -HUP` to the end of the last handoff ({tp['buckets']} buckets): median "
        f"{tp['median_per_s']:.0f} requests/s, worst bucket {tp['worst_per_s']:.0f} requests/s "
        f"(**{tp['worst_ratio']:.0%}** of the median). The worst of the {tp['during_buckets']} buckets a handoff "
        f"overlaps: {tp['worst_during_per_s']:.0f} requests/s; the worst of the {tp['buckets'] - tp['during_buckets']} "
        f"between handoffs: {tp['worst_between_per_s']:.0f} requests/s (a dip there is the machine's, not a handoff's)."
    )
    L.append("")
    L.append("![throughput](img/throughput.png)")
    L.append("")
    d = cost["drain"]
    c = d["client"]
    L.append(f"### {d['connections']:,} idle keep-alive connections at a handoff")
    L.append("")
    L.append(
        f"`bench/helpers/kaidle.c` opens {d['connections']:,} connections to the serving generation, one request on "
        "each, and leaves them idle. Then `kill -HUP`. The test service closes idle keep-alive connections "
        f"`--drain-idle {DRAIN_IDLE_MS}` ms after its drain began (its own policy; a server that never closes them "
        "lives until `--drain-timeout`). Each client whose connection is closed sends its next request on a new "
        "connection at once, as a pooled HTTP client does. Init's CPU time from `/proc/PID/schedstat`, its VmRSS "
        "sampled every 10 ms."
    )
    L.append("")
    L.append("| from `kill -HUP` until the old generation exited | init CPU during it | init VmRSS before / max during | closed by the server | resets | re-asked ok / failed |")
    L.append("|---:|---:|---:|---:|---:|---:|")
    L.append(
        f"| {d['old_exited_ms']:.0f} ms | {d['init_cpu_ms']:.2f} ms | {d['rss_before_kib']} / {d['rss_max_kib']} KiB "
        f"| {c['closed_by_server']} (first at {c['first_close_ms']:.0f} ms, last at {c['last_close_ms']:.0f} ms) "
        f"| {c['resets']} | {c['reasked_ok']} / {c['reasked_failed']} |"
    )
    L.append("")
    L.append("### Init's own cost per handoff")
    L.append("")
    co = cost["costs"]
    L.append(
        f"No load; {co[0]['handoffs']} handoffs of `handoff-testsvc http`, each waited out. CPU: init's "
        "`/proc/PID/schedstat` run time (ns) over all of them, divided by their number (utime + stime from "
        f"`/proc/PID/stat`, in {os.sysconf('SC_CLK_TCK')} Hz ticks, beside it). Syscalls: `strace -f -p INIT` over "
        f"{co[0]['traced_handoffs']} more handoffs; init's own calls, and those of each child it forked until its "
        "`execve` (the spawn path: fd plan, signal mask, exec); the service's own calls after exec are not counted."
    )
    L.append("")
    L.append("| listeners | init CPU per handoff | ticks in all | init syscalls per handoff | most frequent | forked child before exec |")
    L.append("|---:|---:|---:|---:|---|---:|")
    for r in co:
        top = ", ".join(f"{n} {k / r['traced_handoffs']:.1f}" for n, k in r["top"])
        L.append(
            f"| {r['listeners']} | {r['cpu_us_per_handoff']:.0f} µs | {r['ticks']} | {r['syscalls_per_handoff']:.1f} "
            f"| {top} | {r['child_syscalls_per_handoff']:.1f} |"
        )
    L.append("")
    L.append(f"### A service that takes {SLOW_READY_S:g} s to be ready")
    L.append("")
    L.append(
        f"The service sleeps {SLOW_READY_S:g} s before it serves, as one that loads a cache or warms a JIT first "
        "(`sh -c 'sleep 1; exec handoff-testsvc http …'`). Peers: SIGTERM to the init, wait for it to exit, start it "
        "again; the service binds after its second. handoff-init: `kill -HUP`; the new generation sends READY=1 after "
        f"its second, while the old one serves. {SLOW_RESTARTS} restarts, 16 C clients, a new connection per "
        "request. **Downtime** is what a client sees: the longest time around a restart in which no request "
        "completed."
    )
    L.append("")
    L.append("| init | restart by | ok | failed | downtime per restart, median (max) | restart ms, median | p99 in the restart window / steady ms |")
    L.append("|---|---|---:|---:|---:|---:|---:|")
    for r in cost["slow"]:
        L.append(
            f"| {r['name']} | {r['mode']} | {r['ok']} | {r['failed']}{' (' + kinds_text(r['fail_kinds']) + ')' if r['failed'] else ''} "
            f"| {r['gap_ms']:.0f} ms ({r['gap_max_ms']:.0f}) | {r['restart_ms']:.0f} "
            f"| {ms(r['window'].get('p99_us'))} / {ms(r['steady'].get('p99_us'))} |"
        )
    L.append("")
    L.append("![a service 1 s to ready](img/slowready.png)")
    L.append("")
    sv = cost["servers"]
    L.append("### Real servers: gunicorn and uvicorn")
    L.append("")
    vs = ", ".join(f"{k} {v}" for k, v in sv["versions"].items() if v)
    L.append(
        f"{vs} (Python `{sv['python']}`). gunicorn: `--workers 2`, sync workers, `tests/fixtures/wsgi_app.py`; it "
        "takes LISTEN_FDS and sends READY=1 itself. uvicorn: `bench/apps/asgi_app.py`, `--fd 3` under handoff-init "
        f"with `--ready {UVICORN_READY}` (it sends no READY=1). Alone: `--bind` / `--host --port`, restarted by SIGTERM, "
        f"wait, start again. {SERVER_RESTARTS} restarts each, {SERVER_CLIENTS} C clients, a new connection per request."
    )
    L.append("")
    L.append("| server | run | ok | failed | p50 / p99 / max ms | p99 restart window / steady ms | downtime per restart, median (max) |")
    L.append("|---|---|---:|---:|---|---:|---:|")
    for r in sv["rows"]:
        a = r["all"]
        L.append(
            f"| {r['server']} | {'handoffs under handoff-init' if r['under'] else 'alone, stop-and-start'} | {r['ok']} "
            f"| {r['failed']}{' (' + kinds_text(r['fail_kinds']) + ')' if r['failed'] else ''} "
            f"| {ms(a.get('p50_us'))} / {ms(a.get('p99_us'))} / {ms(a.get('max_us'))} "
            f"| {ms(r['window'].get('p99_us'))} / {ms(r['steady'].get('p99_us'))} | {r['gap_ms']:.0f} ms ({r['gap_max_ms']:.0f}) |"
        )
    L.append("")
    L.append(
        "Whose failures: a **connect** failure (refused or timed out) means nobody held the listening socket: under "
        "handoff-init that would be init's. An **io** or **stale** failure is a connection the server accepted and "
        "then reset or closed without an answer: the server's own shutdown."
    )
    for r in sv["rows"]:
        if r["under"] and r["failed"]:
            refused = r["fail_kinds"].get("connect", 0) + r["fail_kinds"].get("timeout", 0)
            L.append(
                f"{r['server']} under handoff-init failed {r['failed']}: "
                + (
                    f"none refused, so every one is {r['server']}'s own ({kinds_text(r['fail_kinds'])}); "
                    if refused == 0
                    else f"{refused} refused or timed out (init's side) and {r['failed'] - refused} reset by {r['server']}; "
                )
                + f"{r['server']} alone failed {next((x['failed'] for x in sv['rows'] if x['server'] == r['server'] and not x['under']), '?')}."
            )
    L.append("")
    return L


def plots(cost, img):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = cost["latency"]["runs"]
    fig, axes = plt.subplots(len(LAT_MODES), len(LAT_CLIENTS), figsize=(12, 6.5), sharex=False)
    for r in runs:
        ax = axes[LAT_MODES.index(r["mode"])][LAT_CLIENTS.index(r["clients"])]
        recs = downsample(r["recs"])
        ok = recs[recs[:, 2] == 0]
        t = (ok[:, 0] - r["t0"]) / 1e9
        ax.scatter(t, ok[:, 1] / 1e6, s=1, color="#1f77b4", alpha=0.4, rasterized=True)
        for a, b in r["windows"]:
            ax.axvspan((a - r["t0"]) / 1e9, (b - r["t0"]) / 1e9 + WINDOW_AFTER_S, color="#d62728", alpha=0.25, lw=0)
        if r["steady"].get("n"):
            ax.axhline(r["steady"]["p99_us"] / 1e3, color="black", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{r['clients']} client{'s' if r['clients'] > 1 else ''}, {'new connection' if r['mode'] == 'close' else 'keep-alive'}", fontsize=9)
        ax.tick_params(labelsize=7)
        if r["clients"] == LAT_CLIENTS[0]:
            ax.set_ylabel("latency ms (log)", fontsize=8)
        if r["mode"] == LAT_MODES[-1]:
            ax.set_xlabel("s since load start", fontsize=8)
    fig.suptitle("Request latency through handoffs (red: handoff windows; dashed: steady p99)", fontsize=10)
    fig.tight_layout()
    fig.savefig(img / "latency.png", dpi=100)
    plt.close(fig)

    tp = cost["latency"]["throughput"]
    dip = next(r for r in runs if (r["clients"], r["mode"]) == (DIP_CLIENTS, DIP_MODE))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    series = np.array(tp["series"]) / BUCKET_S
    ax.plot(np.arange(len(series)) * BUCKET_S, series, color="#1f77b4", lw=1.2, label="requests/s per 100 ms bucket")
    for a, b in dip["windows"]:
        ax.axvspan((a - dip["t0"]) / 1e9, (b - dip["t0"]) / 1e9, color="#d62728", alpha=0.25, lw=0)
    ax.axhline(tp["median_per_s"], color="black", ls="--", lw=0.8, label="median bucket")
    ax.axhline(0.95 * tp["median_per_s"], color="grey", ls=":", lw=0.8, label="95 % of the median")
    ax.set_ylim(0, series.max() * 1.2 if len(series) else 1)
    ax.set_xlabel("s since load start (red: handoffs)")
    ax.set_ylabel("requests/s")
    ax.set_title(f"Throughput through {dip['handoffs']} handoffs, {DIP_CLIENTS} clients, new connection per request")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(img / "throughput.png", dpi=110)
    plt.close(fig)

    slow = cost["slow"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [r["name"] for r in slow]
    colors = ["#d62728" if r["mode"] == "handoff" else "#7f7f7f" for r in slow]
    for ax, key, title, unit in ((a1, "gap_ms", "downtime per restart (median)", "ms"), (a2, "failed", f"failed requests in {SLOW_RESTARTS} restarts", "requests")):
        vals = [r[key] for r in slow]
        bars = ax.bar(names, vals, color=colors)
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(vals + [1]) * 1.25)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelsize=7, rotation=15)
    fig.suptitle(f"A service {SLOW_READY_S:g} s to ready: handoff (red) vs stop-and-start", fontsize=10)
    fig.tight_layout()
    fig.savefig(img / "slowready.png", dpi=110)
    plt.close(fig)
