#!/usr/bin/env python3
"""The driver of bench/soak.sh (see there): N handoffs of handoff-init, PID 1 of a fresh PID
namespace, under docker/load.py's client load; init's fds, VmRSS and zombies sampled along the
way; the report to docs/SOAK.md."""

import argparse
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def log(msg):
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


def wait_for(what, cond, timeout):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def proc_table():
    """pid -> (ppid, state) of every process on the machine."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(pid, table):
    children = {}
    for p, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(p)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def sample(ipid, handoffs, load_status, rt):
    """init's open fds and VmRSS, and the zombies and processes below it."""
    fds = os.listdir(f"/proc/{ipid}/fd")
    rss = int(re.search(r"VmRSS:\s+(\d+)", pathlib.Path(f"/proc/{ipid}/status").read_text()).group(1))
    table = proc_table()
    below = descendants(ipid, table)
    requests, failed, _ = load_status()
    return {
        "handoffs": handoffs,
        "fds": len(fds),
        "fd_targets": sorted(readlink(f"/proc/{ipid}/fd/{fd}", rt) for fd in fds),
        "rss_kb": rss,
        "zombies": sum(1 for p in below if table[p][1] == "Z"),
        "procs": len(below),
        "requests": requests,
        "failed": failed,
        "t": time.monotonic(),
    }


def readlink(path, rt):
    try:
        target = os.readlink(path)
    except OSError:
        return "?"
    # socket:[12345] and the like: the kind, not the inode, so two samples compare.
    return re.sub(r"\[\d+\]$", "", target.replace(str(rt), "PRIVATE"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", required=True)
    ap.add_argument("--svc", required=True)
    ap.add_argument("--command-line", default="bench/soak.sh")
    ap.add_argument("--handoffs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--every", type=int, default=100, help="sample every N handoffs")
    args = ap.parse_args()
    if args.handoffs < 1:
        sys.exit("soak: --handoffs must be at least 1")
    init = str(pathlib.Path(args.init).resolve())
    svc = str(pathlib.Path(args.svc).resolve())
    report_path = ROOT / "docs/SOAK.md" if args.handoffs == 1000 else None

    rt = pathlib.Path(tempfile.mkdtemp(prefix="handoff-soak-"))
    os.chmod(rt, 0o700)
    ctl = str(rt / "control.sock")
    init_log = open(rt / "init.log", "w+")
    load_avg_start = pathlib.Path("/proc/loadavg").read_text().split()[:3]
    started = time.monotonic()
    argv = ["unshare", "--pid", "--fork", "--mount-proc", init,
            "--listen", "web=tcp://127.0.0.1:0", "--runtime-dir", str(rt / "run"),
            "--control", ctl, "--ready-timeout", "20s", "--drain-timeout", "20s",
            "--", svc, "http"]
    unshare = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=init_log, stderr=init_log)
    load = None
    ipid = None
    try:
        ipid = wait_for("unshare to fork handoff-init", lambda: child_of(unshare.pid), 10)

        def status():
            r = subprocess.run([init, "ctl", "status", "--control", ctl],
                               capture_output=True, text=True, timeout=30)
            return r.stdout if r.returncode == 0 else None

        def generations():
            text = status() or ""
            return re.findall(r"^generation (\d+) pid (\d+) (\w+)", text, re.M)

        def settled():
            gens = generations()
            return len(gens) == 1 and gens[0][2] == "serving" and gens

        wait_for("the first generation to serve", settled, 30)
        port = int(re.search(r"tcp://127\.0\.0\.1:(\d+)", status()).group(1))
        stop_file = rt / "stop"
        load_file = rt / "load.status"
        load = subprocess.Popen(
            [sys.executable, str(ROOT / "docker/load.py"), "--port", str(port),
             "--clients", str(args.clients), "--stop-file", str(stop_file),
             "--max-seconds", "7200", "--delay-ms", "20", "--status-file", str(load_file)],
            stdout=subprocess.PIPE, text=True)

        def load_status():
            try:
                return tuple(int(x) for x in load_file.read_text().split())
            except (OSError, ValueError):
                return (0, 0, 0)

        wait_for("the load to reach generation 1", lambda: load_status()[2] >= 1, 30)
        time.sleep(1)  # a second of load before the first sample (benchmark pacing, not a wait)
        samples = [sample(ipid, 0, load_status, rt)]
        log(f"start: {fmt(samples[0])}")
        times, failures = [], []
        for i in range(1, args.handoffs + 1):
            t0 = time.monotonic()
            r = subprocess.run([init, "ctl", "reload", "--control", ctl],
                               capture_output=True, text=True, timeout=120)
            times.append(time.monotonic() - t0)
            if r.returncode != 0 or not r.stdout.startswith(f"ok: generation {i + 1} serving"):
                failures.append(f"handoff {i}: status {r.returncode}: {(r.stdout + r.stderr).strip()}")
                log(failures[-1])
                if len(failures) >= 5:
                    raise RuntimeError("five handoffs failed; stopping")
            # Every generation serves before the next handoff: the load must have been answered by it.
            wait_for(f"the load to reach generation {i + 1}", lambda: load_status()[2] >= i + 1, 30)
            if i % args.every == 0 or i == args.handoffs:
                # Compare like with like: once the drained generations are gone.
                wait_for("the drained generations to end", settled, 60)
                samples.append(sample(ipid, i, load_status, rt))
                log(fmt(samples[-1]))
        stop_file.touch()
        out, _ = load.communicate(timeout=60)
        result = json.loads(out.strip().splitlines()[-1])
        load = None
        # A zombie may be seen for the instant before init reaps it: look again for up to 10 s.
        deadline = time.monotonic() + 10
        final = sample(ipid, args.handoffs, load_status, rt)
        while final["zombies"] and time.monotonic() < deadline:
            time.sleep(0.05)
            final = sample(ipid, args.handoffs, load_status, rt)
        final["requests"], final["failed"] = result["requests"], result["failed"]
        os.kill(ipid, signal.SIGTERM)
        code = unshare.wait(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if load is not None:
            load.kill()
            load.wait()
        if unshare.poll() is None:
            if ipid:
                os.kill(ipid, signal.SIGKILL)
            unshare.kill()
            unshare.wait()
    init_log.seek(0)
    init_lines = init_log.read().splitlines()
    shutil.rmtree(rt, ignore_errors=True)

    load_avg_end = pathlib.Path("/proc/loadavg").read_text().split()[:3]
    first, last = samples[0], final
    verdicts = [
        ("handoffs that failed", len(failures), len(failures) == 0),
        ("failed requests", result["failed"], result["failed"] == 0),
        ("init's open fds, start → end", f"{first['fds']} → {last['fds']}", last["fds"] <= first["fds"]),
        ("init's VmRSS, start → end", f"{first['rss_kb']} kB → {last['rss_kb']} kB", True),
        ("zombies at the end", last["zombies"], last["zombies"] == 0),
        ("zombies at any sample", max(s["zombies"] for s in samples), True),
        ("init's exit status after SIGTERM", code, code == 0),
    ]
    report = render(args, samples, final, result, times, failures, verdicts, elapsed,
                    load_avg_start, load_avg_end, init_lines)
    print(report)
    if report_path:
        report_path.write_text(report)
        log(f"report written to {report_path.relative_to(ROOT)}")
    ok = all(v[2] for v in verdicts)
    if not ok:
        log("FAILED: " + "; ".join(f"{v[0]}: {v[1]}" for v in verdicts if not v[2]))
    sys.exit(0 if ok else 1)


def child_of(pid):
    try:
        kids = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def fmt(s):
    return (f"after {s['handoffs']} handoffs: init fds {s['fds']}, VmRSS {s['rss_kb']} kB, "
            f"zombies {s['zombies']}, processes {s['procs']}, requests {s['requests']} "
            f"({s['failed']} failed)")


def git(*a):
    r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip()


def render(args, samples, final, result, times, failures, verdicts, elapsed, la0, la1,
           init_lines):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = re.search(r"MemTotal:\s+(\d+)", pathlib.Path("/proc/meminfo").read_text()).group(1)
    dirty = "" if not git("status", "--porcelain", "--", "src", "testsvc", "bench/soak.py") else " (with uncommitted changes)"
    ms = sorted(t * 1000 for t in times)
    q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
    L = [f"# Soak: {len(times)} handoffs under load", ""]
    L.append(f"Generated by `{args.command_line}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"revision {git('rev-parse', '--short', 'HEAD')}{dirty}. A benchmark, not a test: "
             "it records what happened; the figures below are from this one run.")
    L.append("")
    L.append(f"- Machine: {os.cpu_count()} cores ({cpu}), {int(mem) // 1024} MiB, kernel {platform.release()}; "
             f"load average {' '.join(la0)} at the start and {' '.join(la1)} at the end "
             "(the machine is shared with other work).")
    L.append(f"- handoff-init (release build) as PID 1 of a fresh PID namespace (`unshare --pid --fork "
             f"--mount-proc`): `handoff-init --listen web=tcp://127.0.0.1:0 --runtime-dir PRIVATE "
             f"--control PRIVATE/control.sock --ready-timeout 20s --drain-timeout 20s -- "
             f"handoff-testsvc http`.")
    L.append(f"- Load: `docker/load.py --clients {args.clients} --delay-ms 20`: {args.clients} client threads, "
             "one request per connection, each response held 20 ms by the service, so requests "
             "are in flight whenever a generation drains; a request counts as ok only with a complete 200.")
    L.append(f"- Handoffs: {len(times)} × `handoff-init ctl reload`, one after the other: each returns when "
             "the new generation serves, and the next starts once the load has had an answer from "
             f"it; {elapsed:.0f} s in all. Time of a `ctl reload`: median "
             f"{statistics.median(ms):.0f} ms, p95 {q(0.95):.0f} ms, max {ms[-1]:.0f} ms.")
    L.append(f"- Samples: at the start, every {args.every} handoffs once the drained generations are "
             "gone, and at the end after the load stopped. Fds: `/proc/PID/fd` of init; zombies: "
             "processes in state Z below init.")
    L.append("")
    L.append("| | result |")
    L.append("|---|---|")
    L.append(f"| requests | {result['requests']} |")
    for name, value, ok in verdicts:
        L.append(f"| {name} | {value}{'' if ok else ' **(not as expected)**'} |")
    L.append(f"| generations that answered requests | {len(result['gens'])} of {len(times) + 1} |")
    own = [l for l in init_lines if l.startswith("handoff-init[")]
    L.append(f"| init's own log lines (info level) | {len(own)}, {len(own) / max(1, len(times)):.1f} per handoff |")
    L.append("")
    L.append("| after handoffs | init fds | init VmRSS kB | zombies | processes below init | requests so far | failed |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|")
    for s in samples + [final]:
        when = "end, load stopped" if s is final else str(s["handoffs"])
        L.append(f"| {when} | {s['fds']} | {s['rss_kb']} | {s['zombies']} | {s['procs']} | "
                 f"{s['requests']} | {s['failed']} |")
    L.append("")
    L.append(f"Init's fds at the start: "
             f"{', '.join(samples[0]['fd_targets'])}; at the end: {', '.join(final['fd_targets'])} "
             "(PRIVATE/init.log is the stderr init and the service write to).")
    if failures:
        L.append("")
        L.append("Failed handoffs: " + "; ".join(failures[:5]))
    if result.get("errors"):
        L.append("")
        L.append("First failed requests: " + "; ".join(result["errors"][:5]))
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
