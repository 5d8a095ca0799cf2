//! The fault matrix of generations: every way a new or serving generation can fail, with and
//! without a background child holding the socket, with `--track main` and `--track group`,
//! under client load. The real binary as PID 1 in a fresh PID namespace; each case asserts zero
//! failed requests where a generation should serve, exact exit codes, and zero processes left of
//! a failed or drained generation.

#[macro_use]
mod common;
#[path = "support/load.rs"]
mod load;
#[path = "support/sup.rs"]
mod sup;

use common::*;
use load::LoadConfig;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use sup::*;

/// Live processes below init that belong to generation `generation` (their environment says
/// so: every process a generation starts inherits HANDOFF_GENERATION).
fn gen_procs(init: &Init, generation: u32) -> Vec<i32> {
    let needle = format!("HANDOFF_GENERATION={generation}\0");
    descendants(init.pid())
        .into_iter()
        .filter(|&p| state(p).is_some_and(|s| s != 'Z'))
        .filter(|&p| {
            fs::read(format!("/proc/{p}/environ"))
                .map(|e| String::from_utf8_lossy(&e).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// start.sh: generation 2 runs the service with `gen2` (and first, with `helper`, a background
/// copy of the service that holds and serves the socket but tells init nothing, as a worker
/// started with `./worker &` would); every other generation runs it plainly.
fn start_script(dir: &TempDir, gen2: &str, helper: bool) -> PathBuf {
    let helper = if helper {
        format!("(unset LISTEN_PID NOTIFY_SOCKET; exec {SVC} http) &\n  ")
    } else {
        String::new()
    };
    dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\nif [ \"$HANDOFF_GENERATION\" = 2 ]; then\n  {helper}exec {SVC} http {gen2}\nfi\nexec {SVC} http\n"
        ),
    )
}

fn supervise(start: &Path, track: &str, extra: &[&str]) -> Sup {
    let mut flags = vec!["--track", track, "--grace", "5s"];
    flags.extend_from_slice(extra);
    let sup = Sup::script(start, &flags);
    sup.wait_serving(1);
    sup
}

/// A handoff that must fail: `ctl reload` says why, generation 1 keeps serving under load with
/// no failed request, nothing of generation 2 is left, and the next handoff works.
fn rollback_case(gen2: &str, helper: bool, track: &str, why: &str, extra: &[&str]) {
    let scripts = TempDir::new();
    let start = start_script(&scripts, gen2, helper);
    let mut sup = supervise(&start, track, extra);
    let load = busy(sup.addr(), 4, 50);
    let (code, out) = sup.reload();
    let case = format!("{gen2} helper={helper} track={track}");
    assert_eq!(code, 1, "{case}: {out}\n{}", sup.init.logs());
    assert!(out.contains(why), "{case}: {out}");
    assert!(out.contains("generation 1 keeps serving"), "{case}: {out}");
    wait_until(&format!("{case}: nothing of generation 2 left"), || {
        gen_procs(&sup.init, 2).is_empty()
    });
    // From now on only generation 1 answers. A response generation 2 sent just before it
    // exited may still be counted by its client (a starved client thread reads it late): let
    // every client finish two more requests, the second sent after generation 2 was gone.
    assert!(
        load.wait_each_client(DEADLINE, 2),
        "{case}: a client stalled"
    );
    let from_2 = load.progress().ok_from_gen(2);
    let ok = load.progress().ok;
    assert!(load.wait_until(DEADLINE, |p| p.ok >= ok + 100));
    assert_eq!(load.progress().ok_from_gen(2), from_2, "{case}");
    let report = load.stop();
    assert!(report.failures.is_empty(), "{case}: {:?}", report.failures);
    assert_eq!(report.total, report.ok, "{case}");
    let status = sup.status();
    assert!(
        status.contains("handoffs: 0 done, 1 failed"),
        "{case}: {status}"
    );
    wait_until("generation 2 gone from status", || {
        !sup.status().contains("generation 2 pid")
    });
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{case}: {out}");
    assert!(out.starts_with("ok: generation 3 serving"), "{case}: {out}");
    sup.init.signal(libc::SIGTERM);
    assert_eq!(sup.init.wait_exit(), 0, "{case}: {}", sup.init.logs());
}

/// Issue case 1: `./worker & exec ./server`, the server exits 3 before READY=1. The worker is
/// stopped with it (before, it kept serving the socket after the "rollback").
#[test]
fn new_generation_exits_before_ready() {
    need_unshare!();
    let exited = "exited with status 3 before it was ready";
    for helper in [false, true] {
        rollback_case(
            "--fail-start --start-delay 200",
            helper,
            "main",
            exited,
            &[],
        );
    }
    rollback_case(
        "--fail-start --start-delay 200",
        false,
        "group",
        exited,
        &[],
    );
    // With --track group the worker keeps the generation alive: it fails by the timeout.
    rollback_case(
        "--fail-start --start-delay 200",
        true,
        "group",
        "not ready within 2s",
        &["--ready-timeout", "2s"],
    );
}

#[test]
fn new_generation_never_ready() {
    need_unshare!();
    for track in ["main", "group"] {
        for helper in [false, true] {
            rollback_case(
                "--never-ready",
                helper,
                track,
                "not ready within 1s",
                &["--ready-timeout", "1s"],
            );
        }
    }
}

/// A rollback where the new generation ignores SIGTERM: SIGKILL at the drain deadline.
#[test]
fn rollback_of_a_generation_that_ignores_sigterm() {
    need_unshare!();
    rollback_case(
        "--never-ready --ignore-term",
        false,
        "main",
        "not ready within 1s",
        &["--ready-timeout", "1s", "--drain-timeout", "1s"],
    );
}

/// Generation 2 says READY=1 and dies while generation 1 drains. With --restart on-failure a
/// third generation serves what was queued meanwhile: no request fails. A worker it started
/// is stopped with it (--track main), or keeps it serving (--track group).
#[test]
fn new_generation_crashes_right_after_ready_while_the_old_one_drains() {
    need_unshare!();
    for (track, helper) in [("main", false), ("main", true), ("group", false)] {
        let case = format!("track={track} helper={helper}");
        let scripts = TempDir::new();
        let start = start_script(&scripts, "--ready-then-exit 300", helper);
        let mut sup = supervise(&start, track, &["--restart", "on-failure"]);
        let load = busy(sup.addr(), 4, 50);
        let (code, out) = sup.reload();
        assert_eq!(code, 0, "{case}: {out}");
        assert!(out.starts_with("ok: generation 2 serving"), "{case}: {out}");
        assert!(
            load.wait_until(DEADLINE, |p| p.ok_from_gen(3) >= 50),
            "{case}: generation 3 never served\n{}",
            sup.init.logs()
        );
        wait_until(&format!("{case}: generations 1 and 2 gone"), || {
            gen_procs(&sup.init, 1).is_empty() && gen_procs(&sup.init, 2).is_empty()
        });
        let report = load.stop();
        assert!(report.failures.is_empty(), "{case}: {:?}", report.failures);
        let logs = sup.init.stderr();
        assert!(
            logs.contains("generation 2 crashed (status 3); restarting in 100ms"),
            "{case}: {logs}"
        );
        sup.init.signal(libc::SIGTERM);
        assert_eq!(sup.init.wait_exit(), 0, "{case}: {}", sup.init.logs());
    }
    // --track group with a worker: the generation lives while the worker does, and serves.
    let scripts = TempDir::new();
    let start = start_script(&scripts, "--ready-then-exit 300", true);
    let mut sup = supervise(&start, "group", &["--restart", "on-failure"]);
    let load = busy(sup.addr(), 4, 50);
    assert_eq!(sup.reload().0, 0);
    wait_until("the service of generation 2 exited", || {
        sup.init.stderr().contains("exiting with status 3")
    });
    let ok = load.progress().ok_from_gen(2);
    assert!(load.wait_until(DEADLINE, |p| p.ok_from_gen(2) >= ok + 50));
    let report = load.stop();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        sup.status().contains("generation 2 pid"),
        "{}",
        sup.status()
    );
    sup.init.stop_cleanly();
}

/// Without a restart policy the same crash ends init with the generation's status, and the
/// whole tree with it.
#[test]
fn a_crash_after_the_handoff_without_restart_is_the_end() {
    need_unshare!();
    let scripts = TempDir::new();
    let start = start_script(&scripts, "--ready-then-exit 300", true);
    let mut sup = supervise(&start, "main", &[]);
    assert_eq!(sup.reload().0, 0);
    assert_eq!(sup.init.wait_exit(), 3, "{}", sup.init.logs());
}

/// Issue case 2: a reload while init waits out a restart backoff starts the restart at once;
/// when that fails too, init keeps restarting (before, it logged that a previous generation
/// kept serving — there was none — and exited 1).
#[test]
fn reload_during_restart_backoff() {
    need_unshare!();
    let dir = TempDir::new();
    let fail = dir.path("fail");
    fs::write(&fail, "").unwrap();
    let start = dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\n[ -e {} ] && exit 1\nexec {SVC} http\n",
            fail.display()
        ),
    );
    let sup = Sup::script(&start, &["--restart", "on-failure"]);
    wait_until("a long backoff", || {
        sup.init.stderr().contains("restarting in 1.6s")
    });
    let (code, out) = sup.reload();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no older generation: restarting in"), "{out}");
    assert!(!sup.init.stderr().contains("keeps serving"));
    // Init is alive and still restarting; once the service can start, a reload serves now.
    fs::remove_file(&fail).unwrap();
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{out}\n{}", sup.init.logs());
    assert!(out.starts_with("ok: generation"), "{out}");
    assert!(get(sup.addr(), "/").contains("pid="));
}

/// SIGKILL of the serving generation: with --restart on-failure, connections made while no
/// generation runs wait on the held socket and are answered by the next one; without it, init
/// exits 137 and nothing is left.
#[test]
fn sigkill_of_the_serving_generation() {
    need_unshare!();
    for restart in [true, false] {
        let mut args = vec!["--listen", "tcp://127.0.0.1:0"];
        if restart {
            args.extend(["--restart", "on-failure"]);
        }
        args.extend(["--", SVC, "http"]);
        let mut sup = Sup::start(&args, true);
        let addr = sup.addr();
        sup.wait_serving(1);
        let svc = sup.init.find_one("http");
        // SAFETY: kill(2) on the test's own service process.
        unsafe { libc::kill(svc, libc::SIGKILL) };
        // Until it is dead it may still accept a connection, which its death then resets.
        wait_until("generation 1 is dead", || {
            state(svc).is_none_or(|s| s == 'Z')
        });
        if restart {
            // Clients from the moment generation 1 is gone (a connection its accept thread took
            // in the instant before SIGKILL landed is reset, and that is the kill, not init).
            sup.init
                .wait_for_output("generation 1 crashed (status 137)");
            let load = load::start(LoadConfig {
                clients: 4,
                ..LoadConfig::new(addr)
            });
            assert!(load.wait_until(DEADLINE, |p| p.ok_from_gen(2) >= 50));
            let report = load.stop();
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            assert!(
                sup.init
                    .stderr()
                    .contains("generation 1 crashed (status 137)")
            );
            sup.init.stop_cleanly();
        } else {
            assert_eq!(sup.init.wait_exit(), 137, "{}", sup.init.logs());
        }
    }
}

/// SIGTERM to init while the first generation starts, while it serves, during a handoff,
/// during a drain, and during a restart backoff: exact status, nothing left, no failure logged.
#[test]
fn sigterm_to_init_in_every_state() {
    need_unshare!();
    // First generation starting (never ready), then serving.
    for (svc_args, wait_for) in [
        (
            &["http", "--start-delay", "30000"][..],
            "start delay 30000 ms",
        ),
        (&["http"][..], "ready gen=1"),
    ] {
        let mut args = vec!["--listen", "tcp://127.0.0.1:0", "--", SVC];
        args.extend_from_slice(svc_args);
        let mut sup = Sup::start(&args, true);
        wait_until(wait_for, || sup.init.stderr().contains(wait_for));
        // The service logs these once it handles signals (before, SIGTERM kills it: 143).
        sup.init.signal(libc::SIGTERM);
        assert_eq!(sup.init.wait_exit(), 0, "{wait_for}: {}", sup.init.logs());
    }
    // During a handoff (generation 2 still starting).
    let scripts = TempDir::new();
    let start = start_script(&scripts, "--start-delay 30000", false);
    let mut sup = supervise(&start, "main", &[]);
    let init = sup.init.pid();
    let reload = Command::new(INIT)
        .args(["ctl", "reload", "--control"])
        .arg(&sup.control)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("generation 2 started", || {
        sup.init.stderr().contains("generation 2: started")
    });
    sup.init.signal(libc::SIGTERM);
    let out = reload.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shutting down"));
    assert_eq!(sup.init.wait_exit(), 0, "{}", sup.init.logs());
    let logs = sup.init.stderr();
    assert!(
        !logs.contains("failed"),
        "a shutdown is not a failure: {logs}"
    );
    assert!(!logs.contains("keeps serving"), "{logs}");
    assert!(!Path::new(&format!("/proc/{init}")).exists());
    // During a drain: generation 1 ignores the stop signal; init's grace ends it.
    let scripts = TempDir::new();
    let p = gen_script(&scripts, 1, "--ignore-term");
    let mut sup = supervise(&p, "main", &["--grace", "1s"]);
    assert_eq!(sup.reload().0, 0);
    wait_until("generation 1 draining", || {
        sup.status().contains("draining")
    });
    sup.init.stop_cleanly();
    assert!(sup.init.stderr().contains("grace period of 1s is over"));
    // During a restart backoff: no new generation starts; the status is the last crash's.
    let dir = TempDir::new();
    let start = dir.script("start.sh", "#!/bin/sh\nexit 4\n");
    let mut sup = Sup::script(&start, &["--restart", "on-failure"]);
    wait_until("a long backoff", || {
        sup.init.stderr().contains("restarting in 800ms")
    });
    sup.init.signal(libc::SIGTERM);
    assert_eq!(sup.init.wait_exit(), 4, "{}", sup.init.logs());
    let logs = sup.init.stderr();
    let after = &logs[logs.find("received SIGTERM").unwrap()..];
    assert!(
        !after.contains("starting generation") && !after.contains("restarting:"),
        "{logs}"
    );
}

/// An old generation that ignores the stop signal is SIGKILLed at the drain timeout.
#[test]
fn old_generation_ignoring_the_stop_signal_is_killed_at_the_drain_timeout() {
    need_unshare!();
    let scripts = TempDir::new();
    let p = gen_script(&scripts, 1, "--ignore-term");
    let mut sup = supervise(&p, "main", &["--drain-timeout", "1s"]);
    assert_eq!(sup.reload().0, 0);
    wait_until("generation 1 killed", || gen_procs(&sup.init, 1).is_empty());
    let logs = sup.init.stderr();
    assert!(
        logs.contains("generation 1: drain timeout; SIGKILL to what is left of it"),
        "{logs}"
    );
    assert!(
        logs.contains("generation 1: no process left")
            || !sup.status().contains("generation 1 pid")
    );
    sup.init.stop_cleanly();
}

/// Issue case 4: right after a handoff the pid file still names generation 1's process; the
/// new generation must not adopt it (before, generation 2 followed it, and "ended" when
/// generation 1 finished draining).
#[test]
fn pidfile_across_a_handoff() {
    need_unshare!();
    let dir = TempDir::new();
    let pidfile = dir.path("svc.pid");
    let go = dir.path("go");
    let start = dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\nif [ \"$HANDOFF_GENERATION\" = 1 ]; then echo $$ > {pf}; else (while [ ! -e {go} ]; do sleep 0.02; done; echo $$ > {pf}) & fi\nexec {SVC} http\n",
            pf = pidfile.display(),
            go = go.display()
        ),
    );
    let pidfile_arg = pidfile.to_str().unwrap().to_string();
    let mut sup = supervise(&start, "main", &["--pidfile", &pidfile_arg]);
    let load = busy(sup.addr(), 4, 50);
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{out}");
    wait_until("generation 1 drained", || {
        gen_procs(&sup.init, 1).is_empty()
    });
    assert!(
        load.wait_until(DEADLINE, |p| p.ok_from_gen(2) >= 100),
        "generation 2 stopped serving\n{}",
        sup.init.logs()
    );
    assert!(sup.status().contains("serving"), "{}", sup.status());
    assert!(
        !sup.init.stderr().contains("generation 2: following pid"),
        "{}",
        sup.init.logs()
    );
    fs::write(&go, "").unwrap();
    let report = load.stop();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    sup.init.stop_cleanly();
}

/// 100 SIGHUPs within a second, under load: handoffs coalesce, none fails, no request fails,
/// and afterwards exactly one generation serves, with init's fds and zombies as before.
#[test]
fn a_hundred_sighups_in_one_second() {
    need_unshare!();
    let mut sup = Sup::start(&["--listen", "tcp://127.0.0.1:0", "--", SVC, "http"], true);
    let addr = sup.addr();
    sup.wait_serving(1);
    let before = fds(sup.init.pid());
    let load = busy(addr, 8, 50);
    let start = Instant::now();
    for i in 0..100u32 {
        sup.init.signal(libc::SIGHUP);
        let next = start + Duration::from_millis(10 * u64::from(i + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    wait_until("one generation left, serving", || {
        let s = sup.status();
        s.lines().filter(|l| l.starts_with("generation ")).count() == 1 && s.contains("serving")
    });
    let status = sup.status();
    assert!(status.contains(" 0 failed"), "{status}");
    let ok = load.progress().ok;
    assert!(load.wait_until(DEADLINE, |p| p.ok >= ok + 50));
    let report = load.stop();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    wait_until("init's fds as before", || fds(sup.init.pid()) == before);
    assert_eq!(zombies_under(sup.init.pid()), 0);
    sup.init.stop_cleanly();
}

/// Issue case 5: `setsid sleep 300 & exec ./server`. With a cgroup per generation (where
/// cgroup v2 is writable, as on this test host), each drained generation's daemon is stopped
/// with it; with --cgroup off, the documented fallback: daemons that left the process group
/// live on until init's own shutdown, which ends them too.
#[test]
fn a_drained_generations_daemons_are_stopped_with_it() {
    need_unshare!();
    for (cgroup, left) in [("auto", 1), ("off", 4)] {
        let dir = TempDir::new();
        let start = dir.script(
            "start.sh",
            &format!("#!/bin/sh\nsetsid sleep 300 &\nexec {SVC} http\n"),
        );
        let mut sup = Sup::script(&start, &["--cgroup", cgroup]);
        sup.wait_serving(1);
        if cgroup == "auto" {
            assert!(
                sup.init.cgroup_dir().is_some_and(|d| d.exists()),
                "no cgroup made"
            );
        }
        for n in 1..=3 {
            let (code, out) = sup.reload();
            assert_eq!(code, 0, "{out}");
            wait_until(&format!("generation {n} gone"), || {
                !sup.status().contains(&format!("generation {n} pid"))
            });
        }
        wait_until(&format!("--cgroup {cgroup}: {left} daemons"), || {
            sup.init.find("sleep 300").len() == left
        });
        let cg = sup.init.cgroup_dir();
        sup.init.stop_cleanly();
        if let Some(dir) = cg {
            assert!(!dir.exists(), "init left its cgroup {}", dir.display());
        }
    }
}

/// Issue case 3: `ctl` with a closed stdout ends quietly with status 1 (before, it panicked),
/// and Ctrl-C interrupts a `ctl reload` waiting for a slow start (before, every signal was
/// blocked in it).
#[test]
fn ctl_runs_as_a_plain_command() {
    need_unshare!();
    let scripts = TempDir::new();
    let start = start_script(&scripts, "--start-delay 30000", false);
    let sup = supervise(&start, "main", &[]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(INIT)
        .args(["ctl", "status", "--control"])
        .arg(&sup.control)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reload = Command::new(INIT)
        .args(["ctl", "reload", "--control"])
        .arg(&sup.control)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("generation 2 started", || {
        sup.init.stderr().contains("generation 2: started")
    });
    // SAFETY: kill(2) on the ctl process this test started.
    unsafe { libc::kill(reload.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = reload.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < DEADLINE, "ctl reload ignored SIGINT");
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}

/// A generation someone stopped (SIGSTOP, or a debugger's stop) acts on its stop signal only
/// once it runs: init follows the signal with SIGCONT to its stopped processes, as systemd does,
/// for a drain after a handoff and for init's own shutdown. Before, the drained generation slept
/// until the SIGKILL at --drain-timeout (60 s here), and a shutdown until --grace (60 s).
#[test]
fn a_stopped_generation_is_continued_to_act_on_its_stop_signal() {
    need_unshare!();
    let svc_stopped = |sup: &Sup| {
        let svc = sup.init.find_one("http");
        // SAFETY: kill(2) on a pid of the test's own namespace child.
        unsafe { libc::kill(svc, libc::SIGSTOP) };
        wait_until("the service stopped", || state(svc) == Some('T'));
    };
    // Drained after a handoff.
    let mut sup = Sup::start(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--drain-timeout",
            "60s",
            "--grace",
            "60s",
            "--",
            SVC,
            "http",
        ],
        true,
    );
    sup.wait_serving(1);
    svc_stopped(&sup);
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{out}");
    wait_until("generation 1 drained and ended with status 0", || {
        sup.init
            .stderr()
            .contains("generation 1: ended with status 0")
    });
    let logs = sup.init.stderr();
    assert!(logs.contains("graceful shutdown complete"), "{logs}");
    // Init's own shutdown.
    svc_stopped(&sup);
    sup.init.signal(libc::SIGTERM);
    assert_eq!(sup.init.wait_exit(), 0, "{}", sup.init.logs());
    assert!(
        sup.init
            .stderr()
            .contains("generation 2: ended with status 0"),
        "{}",
        sup.init.logs()
    );
}
