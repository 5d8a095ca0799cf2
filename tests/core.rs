//! Integration tests of the core init: the real binary, as PID 1 of a fresh PID namespace (or as
//! a subreaper), with the project's test service. Exact exit codes and signals; waits have
//! deadlines; no fixed sleeps.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

fn report_has(path: &std::path::Path, line: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|r| r.lines().any(|l| l.ends_with(line)))
}

fn wait_report(path: &std::path::Path, line: &str) {
    wait_until(&format!("{line:?} in {}", path.display()), || {
        report_has(path, line)
    });
}

#[test]
fn command_runs_in_its_own_process_group_and_session() {
    need_unshare!();
    let init = Init::pid1(&["--", SVC, "wait"]);
    init.wait_for_output("waiting");
    let svc = init.find_one("handoff-testsvc");
    let (_, ppid, pgrp, sid, _) = stat(svc).expect("stat svc");
    assert_eq!(ppid, init.pid());
    assert_eq!(pgrp, svc, "own process group");
    assert_eq!(sid, svc, "own session when stdin is not a terminal");
    let (_, _, init_pgrp, _, _) = stat(init.pid()).expect("stat init");
    assert_ne!(init_pgrp, pgrp);
}

/// The seed problem: start.sh runs the service without exec and without a trap.
fn seed_script(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let report = dir.path("report");
    let start = dir.script(
        "start.sh",
        &format!("#!/bin/sh\n{SVC} wait --report {}\n", report.display()),
    );
    (start, report)
}

#[test]
fn seed_problem_sh_without_exec_gets_sigterm_through_init() {
    need_unshare!();
    let dir = TempDir::new();
    let (start, report) = seed_script(&dir);
    let mut init = Init::start_in(dir, &["--", start.to_str().unwrap()], Opts::default());
    wait_report(&report, "waiting");
    init.signal(libc::SIGTERM);
    // The shell dies of SIGTERM (status 143, the command's status); the service it started
    // without exec receives SIGTERM too and shuts down gracefully before init exits.
    assert_eq!(init.wait_exit(), 143, "{}", init.logs());
    assert!(report_has(&report, "got SIGTERM"), "{}", init.logs());
    assert!(
        init.stdout().contains("graceful shutdown complete"),
        "{}",
        init.logs()
    );
}

#[test]
fn seed_problem_sh_as_pid1_without_init_never_delivers_sigterm() {
    need_unshare!();
    let dir = TempDir::new();
    let (start, report) = seed_script(&dir);
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "/bin/sh"])
        .arg(&start)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare");
    let top = unshare.id() as i32;
    wait_report(&report, "waiting");
    let sh = children(top)[0];
    let svc = children(sh)[0];
    // SAFETY: kill(2) on processes this test started.
    unsafe { libc::kill(sh, libc::SIGTERM) };
    // The kernel drops SIGTERM to a PID 1 that has no handler at the kill(2) call itself, and
    // nothing forwards it. A marker signal sent straight to the service afterwards proves the
    // service is alive and listening, and that SIGTERM never reached it.
    unsafe { libc::kill(svc, libc::SIGUSR1) };
    wait_report(&report, "got SIGUSR1");
    assert!(!report_has(&report, "got SIGTERM"));
    assert_eq!(
        state(sh).map(|s| s != 'Z'),
        Some(true),
        "sh as PID 1 ignored SIGTERM"
    );
    unsafe { libc::kill(sh, libc::SIGKILL) };
    unshare.wait().ok();
}

/// Every signal tini forwards, plus the fault-class ones when sent with kill(2). The job-control
/// stops (TSTP, TTIN, TTOU) stop the job and init instead: tests/dropin.rs.
const FORWARDED: &[(i32, &str)] = &[
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGCONT, "SIGCONT"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGURG, "SIGURG"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGPIPE, "SIGPIPE"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGSYS, "SIGSYS"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGTRAP, "SIGTRAP"),
];

/// Under qemu-user (7.2) a SEGV, BUS, FPE or ILL sent with kill(2) never reaches the emulated
/// init: qemu takes these host signals for faults of its own.
const QEMU_FAULTS: &[i32] = &[libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL];

/// start.sh: one service in the background, one exec'd in the foreground, same process group.
fn two_services(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (r1, r2) = (dir.path("r1"), dir.path("r2"));
    let start = dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\n{SVC} wait --report {} &\nexec {SVC} wait --report {}\n",
            r1.display(),
            r2.display()
        ),
    );
    (start, r1, r2)
}

#[test]
fn every_forwardable_signal_reaches_every_process_of_the_group() {
    need_unshare!();
    let dir = TempDir::new();
    let (start, r1, r2) = two_services(&dir);
    let mut init = Init::start_in(dir, &["--", start.to_str().unwrap()], Opts::default());
    wait_report(&r1, "waiting");
    wait_report(&r2, "waiting");
    for &(sig, name) in FORWARDED {
        if emulated() && QEMU_FAULTS.contains(&sig) {
            continue;
        }
        init.signal(sig);
        let line = format!("got {name}");
        wait_report(&r1, &line);
        wait_report(&r2, &line);
    }
    init.signal(libc::SIGINT);
    wait_report(&r1, "got SIGINT");
    assert_eq!(init.wait_exit(), 0, "{}", init.logs());
    assert!(report_has(&r2, "graceful shutdown complete"));
}

#[test]
fn forward_to_child_reaches_only_the_command() {
    need_unshare!();
    for flag in [&["--forward-to", "child"][..], &["-c"][..]] {
        let dir = TempDir::new();
        let (start, r1, r2) = two_services(&dir);
        let mut args: Vec<&str> = flag.to_vec();
        args.extend(["--", start.to_str().unwrap()]);
        let mut init = Init::start_in(dir, &args, Opts::default());
        wait_report(&r1, "waiting");
        wait_report(&r2, "waiting");
        init.signal(libc::SIGUSR1);
        wait_report(&r2, "got SIGUSR1");
        // Init forwarded with one kill(2) to the command alone, already done; a marker sent to
        // the other service afterwards shows it is listening and never got SIGUSR1.
        let bg = init.find(r1.to_str().unwrap())[0];
        // SAFETY: kill(2) on a process this test started.
        unsafe { libc::kill(bg, libc::SIGUSR2) };
        wait_report(&r1, "got SIGUSR2");
        assert!(!report_has(&r1, "got SIGUSR1"), "{flag:?}");
        init.stop_cleanly();
        // The background service was not in the command's line of fire, but init's shutdown
        // reached it once the command had exited.
        assert!(report_has(&r1, "got SIGTERM"), "{flag:?}");
    }
}

#[test]
fn rewrite_translates_and_drops_signals() {
    need_unshare!();
    let dir = TempDir::new();
    let report = dir.path("r");
    let r = report.to_str().unwrap();
    let mut init = Init::start_in(
        dir,
        &[
            "--rewrite",
            "TERM:QUIT",
            "-r",
            "10:0",
            "--",
            SVC,
            "wait",
            "--report",
            r,
        ],
        Opts::default(),
    );
    wait_report(&report, "waiting");
    init.signal(libc::SIGTERM);
    wait_report(&report, "got SIGQUIT");
    init.signal(libc::SIGUSR1); // 10: dropped
    init.signal(libc::SIGUSR2);
    wait_report(&report, "got SIGUSR2");
    assert!(!report_has(&report, "got SIGUSR1"));
    assert!(!report_has(&report, "got SIGTERM"));
    init.signal(libc::SIGINT);
    assert_eq!(init.wait_exit(), 0, "{}", init.logs());
}

fn reaps_orphans(pid1: bool) {
    let dir = TempDir::new();
    let report = dir.path("r");
    let start = dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\n{SVC} orphans 1000 || exit 9\nexec {SVC} wait --report {}\n",
            report.display()
        ),
    );
    let mut init = Init::start_in(
        dir,
        &["-w", "--", start.to_str().unwrap()],
        Opts::mode(pid1),
    );
    // `orphans` returns once all 1000 grandchildren (orphaned to init) have exited.
    wait_report(&report, "waiting");
    let pid = init.pid();
    wait_until("zero zombies under init", || zombies_under(pid) == 0);
    // Init logs each reap after the batch; the test reads its stderr through a pipe.
    wait_until("1000 reaps logged", || {
        init.stderr().matches("reaped zombie pid").count() >= 1000
    });
    init.stop_cleanly();
}

#[test]
fn reaps_1000_orphans_as_pid1() {
    need_unshare!();
    reaps_orphans(true);
}

#[test]
fn reaps_1000_orphans_as_subreaper_when_not_pid1() {
    reaps_orphans(false);
}

#[test]
fn exit_status_is_the_commands() {
    let dir = TempDir::new();
    let noexec = dir.path("noexec");
    fs::write(&noexec, "#!/bin/sh\n").unwrap();
    set_mode(&noexec, 0o644);
    let noexec = noexec.to_str().unwrap();
    let cases: &[(&[&str], i32)] = &[
        (&["sh", "-c", "exit 3"], 3),
        (&["sh", "-c", "exit 0"], 0),
        (&["sh", "-c", "kill -KILL $$"], 137),
        (&["sh", "-c", "kill -TERM $$"], 143),
        (&["sh", "-c", "kill -SEGV $$"], 139),
        (&["handoff-no-such-command"], 127),
        (&["/no/such/path"], 127),
        (&[noexec], 126),
        (&["--remap-exit", "3:0", "sh", "-c", "exit 3"], 0),
        (&["--remap-exit", "3:0", "sh", "-c", "exit 4"], 4),
        (&["-e", "143", "--", "sh", "-c", "kill -TERM $$"], 0),
        (
            &["--remap-exit", "137:5", "--", "sh", "-c", "kill -KILL $$"],
            5,
        ),
    ];
    for &(args, code) in cases {
        let mut init = Init::plain(args);
        assert_eq!(init.wait_exit(), code, "{args:?}\n{}", init.logs());
        if code == 127 {
            assert!(
                init.stderr().contains(&format!("cannot run '{}'", args[0])),
                "{}",
                init.stderr()
            );
        }
    }
}

#[test]
fn exit_status_as_pid1() {
    need_unshare!();
    let mut init = Init::pid1(&["-v", "--", "sh", "-c", "exit 42"]);
    assert_eq!(init.wait_exit(), 42);
    // Every log line (-v: a plain init is silent by default): program name and pid (1, as
    // PID 1), on stderr.
    let err = init.stderr();
    assert!(err.lines().count() >= 2, "{err}");
    assert!(
        err.lines().all(|l| l.starts_with("handoff-init[1]: ")),
        "{err}"
    );
    assert!(init.stdout().is_empty());
    let mut init = Init::pid1(&["--", "handoff-no-such-command"]);
    assert_eq!(init.wait_exit(), 127);
}

#[test]
fn bad_input_is_one_line_exit_2_and_starts_nothing() {
    let dir = TempDir::new();
    let marker = dir.path("started");
    let touch = format!("touch {}", marker.display());
    let cases: &[(&[&str], &str)] = &[
        (&["--rewrite", "FOO:TERM"], "FOO"),
        (&["--rewrite", "TERM"], "TERM"),
        (&["--grace", "10x"], "10x"),
        (&["--remap-exit", "300:0"], "300"),
        (&["-e", "abc"], "abc"),
        (&["--forward-to", "nobody"], "nobody"),
        (&["-p", "NOPE"], "NOPE"),
        (&["--bogus"], "--bogus"),
        (&["-x"], "-x"),
    ];
    for &(bad, named) in cases {
        let mut args = bad.to_vec();
        args.extend(["--", "sh", "-c", &touch]);
        let mut init = Init::plain(&args);
        assert_eq!(init.wait_exit(), 2, "{bad:?}");
        let err = init.stderr();
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.contains(named), "{bad:?}: {err}");
        assert!(!marker.exists(), "{bad:?} started the command");
    }
    for missing in [&[][..], &["--"][..], &["-v"][..]] {
        let mut init = Init::plain(missing);
        assert_eq!(init.wait_exit(), 2);
        assert!(
            init.stderr().contains("missing COMMAND"),
            "{}",
            init.stderr()
        );
    }
    let mut env_bad = Init::start(
        &["--", "true"],
        Opts {
            pid1: false,
            env: &[("HANDOFF_GRACE", "soon")],
            shell_prefix: None,
        },
    );
    assert_eq!(env_bad.wait_exit(), 2);
    assert!(env_bad.stderr().contains("soon"));
}

#[test]
fn shutdown_reaches_processes_that_left_the_group_and_waits_for_them() {
    need_unshare!();
    for &pid1 in pid1_variants() {
        let dir = TempDir::new();
        let (ready, cleaned) = (dir.path("ready"), dir.path("cleaned"));
        let start = dir.script(
            "start.sh",
            &format!(
                "#!/bin/sh\nsetsid sh -c 'trap \"sleep 0.2; echo done > {c}; exit 0\" TERM; echo r > {r}; while :; do sleep 0.05; done' &\nexec {SVC} wait\n",
                c = cleaned.display(),
                r = ready.display()
            ),
        );
        let mut init = Init::start_in(dir, &["--", start.to_str().unwrap()], Opts::mode(pid1));
        wait_until("the setsid child to start", || ready.exists());
        init.wait_for_output("waiting");
        init.stop_cleanly();
        // It left the service's group and session, yet init signalled it and waited for its
        // cleanup: as PID 1, exiting first would have had the kernel SIGKILL it.
        assert!(
            cleaned.exists(),
            "pid1={pid1}: leftover not stopped gracefully\n{}",
            init.logs()
        );
    }
}

#[test]
fn leftover_that_ignores_sigterm_is_killed_at_the_grace_deadline() {
    need_unshare!();
    let dir = TempDir::new();
    let ready = dir.path("ready");
    let start = dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\nsetsid sh -c 'trap \"\" TERM; echo r > {}; while :; do sleep 0.05; done' &\nexec {SVC} wait --exit-code 4\n",
            ready.display()
        ),
    );
    let mut init = Init::start_in(
        dir,
        &["--grace", "500ms", "--", start.to_str().unwrap()],
        Opts::default(),
    );
    wait_until("the stubborn child to start", || ready.exists());
    init.wait_for_output("waiting");
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait_exit(), 4, "{}", init.logs());
    assert!(
        init.stderr()
            .contains("grace period of 500ms is over; sent SIGKILL"),
        "{}",
        init.logs()
    );
}

#[test]
fn command_that_ignores_sigterm_is_killed_at_the_deadline_exit_137() {
    need_unshare!();
    let mut init = Init::pid1(&["--grace", "300ms", "--", SVC, "wait", "--ignore-term"]);
    init.wait_for_output("waiting");
    init.signal(libc::SIGTERM);
    init.wait_for_output("got SIGTERM");
    assert_eq!(init.wait_exit(), 137, "{}", init.logs());
}

#[test]
fn when_the_command_exits_leftovers_get_sigterm_and_init_waits() {
    need_unshare!();
    for &pid1 in pid1_variants() {
        let dir = TempDir::new();
        let report = dir.path("r");
        let start = dir.script(
            "start.sh",
            &format!(
                "#!/bin/sh\nsetsid {SVC} wait --report {r} &\nuntil grep -q waiting {r} 2>/dev/null; do :; done\nexit 5\n",
                r = report.display()
            ),
        );
        let mut init = Init::start_in(dir, &["--", start.to_str().unwrap()], Opts::mode(pid1));
        assert_eq!(init.wait_exit(), 5, "{}", init.logs());
        assert!(
            report_has(&report, "got SIGTERM"),
            "pid1={pid1}\n{}",
            init.logs()
        );
        assert!(
            report_has(&report, "graceful shutdown complete"),
            "pid1={pid1}\n{}",
            init.logs()
        );
    }
}

#[test]
fn child_starts_clean_mask_dispositions_fds_and_environment() {
    need_unshare!();
    // Init is started with fd 7 open (not close-on-exec) and SIGUSR2 ignored, as a careless
    // parent might; the command must get fds 0-2 only, an empty mask, SIGUSR2 still ignored,
    // nothing else ignored (SIGPIPE default), and init's environment unchanged.
    let init = Init::start(
        &["--", SVC, "wait", "--print-self"],
        Opts {
            pid1: true,
            env: &[("HANDOFF_TEST_VAR", "x y=z")],
            shell_prefix: Some("exec 7</dev/null; trap '' USR2;"),
        },
    );
    init.wait_for_output("waiting");
    let out = init.stdout();
    let line = out
        .lines()
        .find(|l| l.contains("sigblk="))
        .expect("print-self line");
    assert!(line.contains("sigblk=0000000000000000"), "{line}");
    assert!(line.contains("sigign=0000000000000800"), "{line}"); // bit 12 - 1: SIGUSR2 only
    assert!(line.contains("fds=0,1,2 "), "{line}");
    let svc = init.find_one("handoff-testsvc");
    let env = |p: i32| {
        let mut v: Vec<String> =
            String::from_utf8_lossy(&fs::read(format!("/proc/{p}/environ")).unwrap())
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        v.sort();
        v
    };
    assert_eq!(env(svc), env(init.pid()));
    assert!(env(svc).contains(&"HANDOFF_TEST_VAR=x y=z".to_string()));
    // Init itself closed the inherited fd: 0-2 and its signalfd only (once it is back in its
    // loop: the service can print before init has closed its exec-status pipe).
    assert!(!fds(svc).contains(&7));
    wait_until("init holds fds 0-3 only", || {
        fds(init.pid()) == vec![0, 1, 2, 3]
    });
}

#[test]
fn idle_init_has_zero_context_switches_over_5_seconds() {
    need_unshare!();
    let init = Init::pid1(&["--", SVC, "wait"]);
    init.wait_for_output("waiting");
    let pid = init.pid();
    wait_until("init asleep", || state(pid) == Some('S'));
    let switches = || {
        ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"]
            .iter()
            .map(|k| status_field(pid, k).unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    let before = switches();
    // A measurement window, not a wait for a condition: init must not wake at all in it.
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(switches() - before, 0, "init woke up while idle");
    assert_eq!(status_field(pid, "Threads").as_deref(), Some("1"));
}

#[test]
fn closed_or_broken_stderr_never_kills_init() {
    need_unshare!();
    // stderr closed at start: init opens /dev/null there and logs into the void.
    let mut init = Init::start(
        &["-vv", "--", SVC, "wait"],
        Opts {
            shell_prefix: Some("exec 2>&-;"),
            ..Opts::default()
        },
    );
    init.wait_for_output("waiting");
    init.signal(libc::SIGUSR1);
    init.wait_for_output("got SIGUSR1");
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait_exit(), 0);

    // stderr a pipe whose reader is gone: every log line fails with EPIPE.
    let dir = TempDir::new();
    let out = dir.path("out");
    let mut child = Command::new("unshare")
        // The service's own stderr goes to /dev/null: only init's is broken.
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            INIT,
            "-vv",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!("exec 2>/dev/null; exec {SVC} wait"))
        .stdout(fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let mut child = Guard(child);
    let seen = |t: &str| fs::read_to_string(&out).unwrap_or_default().contains(t);
    wait_until("service up", || seen("waiting"));
    let pid = children(child.0.id() as i32)[0];
    for sig in [libc::SIGUSR1, libc::SIGHUP] {
        // SAFETY: kill(2) on the init this test started.
        unsafe { libc::kill(pid, sig) };
    }
    wait_until("forwarded after EPIPE", || seen("got SIGHUP"));
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn pdeathsig_fires_when_inits_parent_dies() {
    let dir = TempDir::new();
    let out = dir.path("out");
    let mut parent = Command::new("sh")
        .args(["-c", "\"$0\" -p USR1 -- \"$1\" wait & wait", INIT, SVC])
        .stdout(fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = |t: &str| fs::read_to_string(&out).unwrap_or_default().contains(t);
    wait_until("service up", || seen("waiting"));
    let init = children(parent.id() as i32)[0];
    let _cleanup = KillPids(vec![init]);
    parent.kill().unwrap();
    parent.wait().unwrap();
    wait_until("SIGUSR1 forwarded after the parent died", || {
        seen("got SIGUSR1")
    });
    // SAFETY: kill(2) on the init this test started.
    unsafe { libc::kill(init, libc::SIGTERM) };
    wait_until("init gone", || state(init).is_none_or(|s| s == 'Z'));
}

#[test]
fn terminal_foreground_group_is_the_commands_and_ctrl_c_reaches_it() {
    need_unshare!();
    let dir = TempDir::new();
    let report = dir.path("r");
    let cmd = format!(
        "unshare --pid --fork --mount-proc {INIT} -- {SVC} wait --report {}",
        report.display()
    );
    let script = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script(1) from util-linux");
    let mut script = Guard(script);
    wait_report(&report, "waiting");
    let svc = descendants(script.0.id() as i32)
        .into_iter()
        .find(|&p| {
            // argv[0], or argv[1] under qemu-user, whose interpreter comes first.
            fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.split('\0').take(2).any(|a| a == &**SVC))
        })
        .expect("service pid");
    let (_, _, pgrp, _, tpgid) = stat(svc).unwrap();
    assert_eq!(pgrp, svc);
    assert_eq!(
        tpgid, pgrp,
        "the command's group is the terminal's foreground group"
    );
    // Ctrl-C typed at the terminal: the line discipline sends SIGINT to the foreground group.
    script.0.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    wait_report(&report, "got SIGINT");
    assert_eq!(script.0.wait().unwrap().code(), Some(0));
}
