//! handoff-init as a drop-in for tini and dumb-init, judged by what those two do (their own test
//! suites: dumb-init's `tests/`, tini's `test/run_inner_tests.py`): a plain run says nothing,
//! init leaves the working directory, job control (Ctrl-Z under a terminal, `kill -TSTP`, `fg`),
//! `-r` over the job-control rewrites, the peers' environment switches, and SIGTERM as the first
//! signal a leftover sees. Each as PID 1 of a fresh PID namespace and as a subreaper.

#[macro_use]
mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// The two ways init runs: PID 1 of a namespace, and a subreaper below the test.
const MODES: [bool; 2] = [true, false];

fn start(pid1: bool, args: &[&str]) -> Init {
    start_env(pid1, args, &[])
}

fn start_env(pid1: bool, args: &[&str], env: &[(&str, &str)]) -> Init {
    Init::start(
        args,
        Opts {
            pid1,
            env,
            ..Opts::default()
        },
    )
}

fn report(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_once("]: ").map_or(l, |(_, m)| m).to_string())
        .collect()
}

fn wait_report(path: &Path, line: &str) {
    wait_until(&format!("{line:?} in {}", path.display()), || {
        report(path).iter().any(|l| l == line)
    });
}

/// The signals a `wait` service reported, in order.
fn got(path: &Path) -> Vec<String> {
    report(path)
        .into_iter()
        .filter_map(|l| l.strip_prefix("got ").map(String::from))
        .collect()
}

fn conts(path: &Path) -> usize {
    got(path).iter().filter(|s| *s == "SIGCONT").count()
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a process this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

fn wait_state(pid: i32, what: &str, want: impl Fn(char) -> bool) {
    wait_until(&format!("pid {pid} {what}"), || {
        state(pid).is_some_and(&want)
    });
}

fn stopped(c: char) -> bool {
    c == 'T'
}

fn running(c: char) -> bool {
    c == 'S' || c == 'R'
}

// ---------------------------------------------------------------------------------------------
// 1. Quiet by default

#[test]
fn a_clean_plain_run_writes_nothing_to_stderr() {
    need_unshare!();
    for pid1 in MODES {
        let mut init = start(pid1, &["--", "sh", "-c", "exit 0"]);
        assert_eq!(init.wait_exit(), 0, "{}", init.logs());
        assert_eq!(init.stderr(), "", "pid1={pid1}");

        // Signals forwarded, a leftover stopped at the end: still nothing to say.
        let dir = TempDir::new();
        let r = dir.path("r");
        let script = format!(
            "{SVC} wait --report {r} & exec {SVC} wait --report {r}2",
            r = r.display()
        );
        let mut init = Init::start_in(dir, &["--", "sh", "-c", &script], Opts::mode(pid1));
        wait_report(&r, "waiting");
        wait_report(&PathBuf::from(format!("{}2", r.display())), "waiting");
        init.signal(libc::SIGUSR1);
        wait_report(&r, "got SIGUSR1");
        init.stop_cleanly();
        assert_eq!(init.stderr(), "", "pid1={pid1}");
    }
}

#[test]
fn plain_mode_speaks_with_v_and_without_generations() {
    need_unshare!();
    let mut init = Init::pid1(&["-v", "--", "sh", "-c", "exit 3"]);
    assert_eq!(init.wait_exit(), 3);
    let err = init.stderr();
    assert!(err.contains("started 'sh' as pid 2"), "{err}");
    assert!(err.contains("'sh' (pid 2) ended with status 3"), "{err}");
    assert!(err.contains("exiting with status 3"), "{err}");
    assert!(!err.contains("generation"), "{err}");
    // Warnings and errors are not silenced: a command that cannot run says so.
    let mut init = Init::pid1(&["--", "handoff-no-such-command"]);
    assert_eq!(init.wait_exit(), 127);
    assert!(
        init.stderr().contains("command not found"),
        "{}",
        init.logs()
    );
    // Errors are never silenced (tini's level 0 keeps its fatal lines too).
    let mut init = Init::pid1(&["-qq", "--", "handoff-no-such-command"]);
    assert_eq!(init.wait_exit(), 127);
    assert!(
        init.stderr().contains("command not found"),
        "{}",
        init.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Working directory

fn cwd_of(pid: i32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/cwd")).expect("read /proc/PID/cwd")
}

#[test]
fn init_leaves_the_working_directory_and_the_command_keeps_it() {
    need_unshare!();
    for pid1 in MODES {
        let work = TempDir::new();
        let prefix = format!("cd '{}' &&", work.0.display());
        let mut init = Init::start(
            &["--", SVC, "wait"],
            Opts {
                pid1,
                shell_prefix: Some(&prefix),
                ..Opts::default()
            },
        );
        init.wait_for_output("waiting");
        let svc = init.find_one("wait");
        wait_until("init to leave its working directory", || {
            cwd_of(init.pid()) == Path::new("/")
        });
        assert_eq!(cwd_of(svc), work.0, "pid1={pid1}");
        init.stop_cleanly();
    }
}

#[test]
fn the_supervisor_keeps_its_working_directory_for_later_generations() {
    need_unshare!();
    let work = TempDir::new();
    let rt = work.path("rt");
    let prefix = format!("cd '{}' &&", work.0.display());
    let mut init = Init::start(
        &[
            "--runtime-dir",
            rt.to_str().unwrap(),
            "--ready",
            "delay:0",
            "--",
            SVC,
            "wait",
        ],
        Opts {
            shell_prefix: Some(&prefix),
            ..Opts::default()
        },
    );
    init.wait_for_output("waiting");
    assert_eq!(cwd_of(init.pid()), work.0);
    init.stop_cleanly();
}

// ---------------------------------------------------------------------------------------------
// 3. Job control: kill -TSTP (dumb-init's shell_background_test.py) and Ctrl-Z under a terminal

const STOPS: [(i32, &str); 3] = [
    (libc::SIGTSTP, "SIGTSTP"),
    (libc::SIGTTIN, "SIGTTIN"),
    (libc::SIGTTOU, "SIGTTOU"),
];

/// Waits until init (host pid `pid`) is in its state after it has handled a job-control stop:
/// PID 1 cannot stop itself.
fn wait_init_after_stop(pid: i32, pid1: bool) {
    let want = if pid1 { running } else { stopped };
    wait_state(pid, "in its state after a stop", want);
}

#[test]
fn job_control_stop_stops_the_group_and_init_and_cont_resumes_them() {
    need_unshare!();
    for pid1 in MODES {
        let dir = TempDir::new();
        let r = dir.path("r");
        let mut init = Init::start_in(
            dir,
            &["--", SVC, "wait", "--report", r.to_str().unwrap()],
            Opts::mode(pid1),
        );
        wait_report(&r, "waiting");
        let svc = init.find_one("wait");
        for (i, (sig, _)) in STOPS.into_iter().enumerate() {
            // Group mode (dumb-init's setsid mode): rewritten to SIGSTOP, which nothing
            // catches, so the service stops although it catches every other signal.
            init.signal(sig);
            wait_state(svc, "stopped", stopped);
            wait_init_after_stop(init.pid(), pid1);
            init.signal(libc::SIGCONT);
            wait_state(init.pid(), "running", running);
            wait_state(svc, "running", running);
            wait_until("the service to see SIGCONT", || conts(&r) == i + 1);
        }
        let seen = got(&r);
        assert!(
            !seen.iter().any(|s| s == "SIGTSTP" || s == "SIGTTIN"),
            "pid1={pid1}: {seen:?}"
        );
        init.stop_cleanly();
    }
}

#[test]
fn single_child_forwards_the_stop_as_it_is_then_init_stops() {
    need_unshare!();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 2] = [(&["-c"], &[]), (&[], &[("DUMB_INIT_SETSID", "0")])];
    for pid1 in MODES {
        for (flags, env) in cases {
            let dir = TempDir::new();
            let r = dir.path("r");
            let mut args = flags.to_vec();
            args.extend(["--", SVC, "wait", "--report", r.to_str().unwrap()]);
            let mut init = Init::start_in(
                dir,
                &args,
                Opts {
                    pid1,
                    env,
                    ..Opts::default()
                },
            );
            wait_report(&r, "waiting");
            let svc = init.find_one("wait");
            for (i, (sig, name)) in STOPS.into_iter().enumerate() {
                init.signal(sig);
                wait_report(&r, &format!("got {name}"));
                wait_init_after_stop(init.pid(), pid1);
                assert!(running(state(svc).unwrap()), "{flags:?} {env:?}");
                init.signal(libc::SIGCONT);
                wait_state(init.pid(), "running", running);
                wait_until("the service to see SIGCONT", || conts(&r) == i + 1);
            }
            init.stop_cleanly();
        }
    }
}

#[test]
fn rewrite_overrides_the_job_control_defaults() {
    need_unshare!();
    for pid1 in MODES {
        let dir = TempDir::new();
        let r = dir.path("r");
        let mut init = Init::start_in(
            dir,
            // Numbers, as dumb-init takes them: TSTP dropped, TTIN sent as USR1.
            &[
                "-r",
                "20:0",
                "-r",
                "21:10",
                "--",
                SVC,
                "wait",
                "--report",
                r.to_str().unwrap(),
            ],
            Opts::mode(pid1),
        );
        wait_report(&r, "waiting");
        let svc = init.find_one("wait");
        init.signal(libc::SIGTSTP);
        // Dropped: the service neither stops nor hears of it; init stops all the same, as
        // dumb-init does.
        wait_init_after_stop(init.pid(), pid1);
        assert!(running(state(svc).unwrap()));
        init.signal(libc::SIGCONT);
        wait_report(&r, "got SIGCONT");
        init.signal(libc::SIGTTIN);
        wait_report(&r, "got SIGUSR1");
        wait_init_after_stop(init.pid(), pid1);
        init.signal(libc::SIGCONT);
        wait_state(init.pid(), "running", running);
        // Seen before the next stop: a SIGSTOP discards a pending SIGCONT (signal(7)).
        wait_until("the second SIGCONT", || conts(&r) == 2);
        // TTOU kept its default: SIGSTOP.
        init.signal(libc::SIGTTOU);
        wait_state(svc, "stopped", stopped);
        // Init stops itself after forwarding the stop: a SIGCONT before that would be spent
        // on a running init, which then stops with the job still stopped.
        wait_init_after_stop(init.pid(), pid1);
        init.signal(libc::SIGCONT);
        wait_state(svc, "running", running);
        wait_until("the third SIGCONT", || conts(&r) == 3);
        init.stop_cleanly();
        assert_eq!(
            got(&r),
            ["SIGCONT", "SIGUSR1", "SIGCONT", "SIGCONT", "SIGTERM"],
            "pid1={pid1}"
        );
    }
}

#[test]
fn with_the_supervisor_job_control_signals_are_forwarded_and_init_runs_on() {
    need_unshare!();
    let dir = TempDir::new();
    let r = dir.path("r");
    let rt = dir.path("rt");
    let mut init = Init::start_in(
        dir,
        &[
            "--runtime-dir",
            rt.to_str().unwrap(),
            "--ready",
            "delay:0",
            "--",
            SVC,
            "wait",
            "--report",
            r.to_str().unwrap(),
        ],
        Opts::default(),
    );
    wait_report(&r, "waiting");
    for (sig, name) in STOPS {
        init.signal(sig);
        wait_report(&r, &format!("got {name}"));
        assert!(running(state(init.pid()).unwrap()));
    }
    init.stop_cleanly();
}

/// A pseudo-terminal whose slave is the controlling terminal of the process started on it (as
/// `docker run -t` or an ssh session gives one); what the processes write is collected.
struct Pty {
    master: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
    guard: Guard,
}

impl Pty {
    fn spawn(argv: &[&str]) -> Pty {
        // SAFETY: posix_openpt(3), grantpt(3), unlockpt(3), ptsname_r(3) with valid buffers;
        // the fd returned is owned here and nowhere else.
        let (master, slave_path) = unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0, "posix_openpt");
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
            let path = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_string_lossy()
                .into_owned();
            (OwnedFd::from_raw_fd(m), path)
        };
        let slave = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&slave_path)
            .expect("open pty slave");
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid(2) and ioctl(2) are async-signal-safe; they run in the child after
        // its stdio is in place, making the terminal on fd 0 its controlling terminal.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = fs::File::from(master.try_clone().unwrap());
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave fd is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            output,
            guard: Guard(child),
        }
    }

    /// Types `bytes` on the terminal (0x1a is Ctrl-Z, 0x03 Ctrl-C).
    fn type_keys(&self, bytes: &[u8]) {
        let mut m = fs::File::from(self.master.try_clone().unwrap());
        m.write_all(bytes).expect("write to the pty");
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}

#[test]
fn ctrl_z_under_a_terminal_stops_the_job_and_cont_resumes_it() {
    need_unshare!();
    for pid1 in MODES {
        for flags in [&[][..], &["-c"][..]] {
            let mut argv: Vec<&str> = Vec::new();
            if pid1 {
                argv.extend(["unshare", "--pid", "--fork", "--mount-proc"]);
            }
            argv.push(INIT);
            argv.extend(flags);
            // sleep: a command that keeps the default action of SIGTSTP, as most do.
            argv.extend(["--", "sleep", "1000"]);
            let mut pty = Pty::spawn(&argv);
            let top = pty.guard.0.id() as i32;
            let init = if pid1 {
                let mut p = 0;
                wait_until("unshare to fork init", || {
                    p = children(top).first().copied().unwrap_or(0);
                    p != 0
                });
                p
            } else {
                top
            };
            let mut job = 0;
            wait_until("the job to hold the terminal", || {
                job = children(init).first().copied().unwrap_or(0);
                job != 0 && stat(job).is_some_and(|s| s.4 == s.2 && s.2 == job)
            });
            let context = |pty: &Pty| format!("pid1={pid1} {flags:?}: {}", pty.output());
            pty.type_keys(b"\x1a");
            wait_state(job, "stopped by Ctrl-Z", stopped);
            wait_init_after_stop(init, pid1);
            // fg: SIGCONT to the job's group, here init's.
            kill(init, libc::SIGCONT);
            wait_state(init, "running", running);
            wait_state(job, "running", running);
            // The job still holds the terminal: Ctrl-C reaches it, and init exits with it.
            assert_eq!(stat(job).map(|s| s.4), Some(job), "{}", context(&pty));
            pty.type_keys(b"\x03");
            let status = pty.guard.0.wait().expect("wait");
            assert_eq!(status.code(), Some(130), "{}", context(&pty));
        }
    }
}

/// `handoff-testsvc hold-exec -- [unshare --pid --fork --mount-proc] handoff-init ARGS`: init's
/// first child is stopped (SIGSTOP) inside its execve, before the exec, as a Ctrl-Z typed just as
/// the command starts or anyone's SIGSTOP to the new pid can stop it.
struct Held {
    top: Guard,
    dir: TempDir,
    /// The stopped child, still a copy of init (host pid).
    child: i32,
    /// Init (host pid).
    init: i32,
}

impl Held {
    fn start(pid1: bool, args: &[&str]) -> Held {
        let dir = TempDir::new();
        let report = dir.path("held");
        let mut cmd = Command::new(SVC);
        cmd.args(["hold-exec", "--report", report.to_str().unwrap(), "--"]);
        if pid1 {
            cmd.args(["unshare", "--pid", "--fork", "--mount-proc"]);
        }
        cmd.arg(INIT)
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path("stdout")).unwrap())
            .stderr(fs::File::create(dir.path("stderr")).unwrap());
        let top = Guard(cmd.spawn().expect("start hold-exec"));
        let mut child = 0;
        wait_until("init's child to be held before its exec", || {
            child = fs::read_to_string(&report)
                .ok()
                .and_then(|s| s.trim().strip_prefix("held ")?.parse().ok())
                .unwrap_or(0);
            child != 0 && state(child) == Some('T')
        });
        let comm = fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "handoff-init", "stopped after its exec");
        let init = stat(child).map_or(0, |s| s.1);
        Held {
            top,
            dir,
            child,
            init,
        }
    }

    fn logs(&self) -> String {
        let read = |name| fs::read_to_string(self.dir.path(name)).unwrap_or_default();
        format!(
            "--- stdout\n{}--- stderr\n{}",
            read("stdout"),
            read("stderr")
        )
    }

    /// Init's exit code (hold-exec passes it on), waited for with a deadline.
    fn wait_exit(&mut self) -> i32 {
        let mut code = None;
        wait_until("init to exit", || {
            code = self.top.0.try_wait().expect("try_wait").map(|s| s.code());
            code.is_some()
        });
        code.flatten()
            .unwrap_or_else(|| panic!("died of a signal\n{}", self.logs()))
    }
}

// A stop between fork and exec used to leave init blocked for good in its read of the exec
// status pipe: no signal handled, no deadline. Now it takes the stopped child as started, and a
// SIGTERM is forwarded (TERM, then CONT to the stopped job) as for any stopped job.
#[test]
fn a_child_stopped_before_its_exec_does_not_stall_init() {
    need_unshare!();
    if emulated() {
        // qemu-user's syscalls do not pass through a filter written for the emulated arch.
        eprintln!("skipped under emulation");
        return;
    }
    for pid1 in MODES {
        let mut held = Held::start(pid1, &["--", "sleep", "1000"]);
        kill(held.init, libc::SIGTERM);
        assert_eq!(held.wait_exit(), 143, "pid1={pid1}\n{}", held.logs());
    }
}

// If the exec fails once the stopped child is continued, the child's exit code (127: not
// found) is init's, as when the exec fails right away.
#[test]
fn an_exec_that_fails_after_a_stop_before_it_gives_the_same_exit_code() {
    need_unshare!();
    if emulated() {
        eprintln!("skipped under emulation");
        return;
    }
    for pid1 in MODES {
        let mut held = Held::start(pid1, &["-v", "--", "/nonexistent/command"]);
        wait_until("init to take the stopped child as started", || {
            held.logs().contains(&format!(
                "started '/nonexistent/command' as pid {}",
                if pid1 { 2 } else { held.child }
            ))
        });
        kill(held.child, libc::SIGCONT);
        assert_eq!(held.wait_exit(), 127, "pid1={pid1}\n{}", held.logs());
    }
}

// The supervisor, too, goes on serving its control socket while generation 1 is stopped before
// its exec, and the generation starts once continued.
#[test]
fn the_supervisor_answers_while_a_generation_is_stopped_before_its_exec() {
    need_unshare!();
    if emulated() {
        eprintln!("skipped under emulation");
        return;
    }
    let rt_dir = TempDir::new();
    let rt = rt_dir.path("rt");
    let mut held = Held::start(
        true,
        &[
            "--runtime-dir",
            rt.to_str().unwrap(),
            "--cgroup",
            "off",
            "--listen",
            "tcp://127.0.0.1:0",
            "--",
            SVC,
            "http",
        ],
    );
    let status = || {
        let mut s = std::os::unix::net::UnixStream::connect(rt.join("control.sock")).ok()?;
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(b"status\n").ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        Some(answer)
    };
    let mut answer = String::new();
    wait_until("the control socket to answer", || {
        answer = status().unwrap_or_default();
        !answer.is_empty()
    });
    assert!(answer.contains("generation 1"), "{answer}\n{}", held.logs());
    kill(held.child, libc::SIGCONT);
    wait_until("generation 1 to serve", || {
        status().is_some_and(|a| a.contains("serving"))
    });
    kill(held.init, libc::SIGTERM);
    assert_eq!(held.wait_exit(), 0, "{}", held.logs());
}

#[test]
fn ctrl_z_and_fg_in_an_interactive_shell() {
    // What a user does: run init as a job of an interactive shell, Ctrl-Z, then `fg`. The shell
    // sees its job stop only if init stops, and `fg` gives the terminal to init's group: init
    // must hand it on to the command's group, or the command wakes up in the background.
    let pty = Pty::spawn(&["bash", "--norc", "--noprofile", "-i"]);
    let shell = pty.guard.0.id() as i32;
    pty.type_keys(format!("exec 2>&1; {INIT} -- sleep 1000\n").as_bytes());
    let (mut init, mut job) = (0, 0);
    wait_until("the job to hold the terminal", || {
        init = children(shell).first().copied().unwrap_or(0);
        job = children(init).first().copied().unwrap_or(0);
        job != 0 && stat(job).is_some_and(|s| s.4 == s.2 && s.2 == job)
    });
    pty.type_keys(b"\x1a");
    wait_state(job, "stopped by Ctrl-Z", stopped);
    wait_state(init, "stopped with its job", stopped);
    // The shell took the terminal back: its own group is the foreground.
    wait_until("the shell to get the terminal back", || {
        stat(shell).is_some_and(|s| s.4 == shell)
    });
    pty.type_keys(b"fg\n");
    wait_state(init, "running", running);
    wait_state(job, "running", running);
    wait_until("the command's group to hold the terminal again", || {
        stat(job).is_some_and(|s| s.4 == job)
    });
    pty.type_keys(b"\x03");
    wait_until("init to exit", || state(init).is_none_or(|s| s == 'Z'));
    pty.type_keys(b"echo status=$?\n");
    wait_until("the shell to report init's status", || {
        pty.output().contains("status=130")
    });
}

// ---------------------------------------------------------------------------------------------
// 4. The peers' environment switches

#[test]
fn peer_environment_switches() {
    need_unshare!();
    for pid1 in MODES {
        let run = |env: &[(&str, &str)]| {
            let mut init = start_env(pid1, &["--", "sh", "-c", "exit 0"], env);
            let code = init.wait_exit();
            (code, init.stderr())
        };
        let (code, err) = run(&[("DUMB_INIT_DEBUG", "1")]);
        assert_eq!(code, 0);
        assert!(
            err.contains("started 'sh'") && err.contains("shutdown: grace"),
            "{err}"
        );
        let (code, err) = run(&[("TINI_VERBOSITY", "2")]);
        assert_eq!(code, 0);
        assert!(
            err.contains("started 'sh'") && !err.contains("shutdown: grace"),
            "{err}"
        );
        let (code, err) = run(&[("TINI_VERBOSITY", "3")]);
        assert_eq!(code, 0);
        assert!(err.contains("shutdown: grace"), "{err}");
        // -q moves down from the environment's level (tini would let the variable override it).
        let mut init = start_env(
            pid1,
            &["-q", "--", "sh", "-c", "exit 0"],
            &[("TINI_VERBOSITY", "2")],
        );
        assert_eq!(init.wait_exit(), 0);
        assert_eq!(init.stderr(), "");
        let (code, err) = run(&[("TINI_VERBOSITY", "loud")]);
        assert_eq!(code, 2);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("invalid TINI_VERBOSITY 'loud'"), "{err}");
        // Accepted and already true: subreaper, process group.
        let (code, err) = run(&[("TINI_SUBREAPER", "1"), ("TINI_KILL_PROCESS_GROUP", "1")]);
        assert_eq!((code, err.as_str()), (0, ""), "pid1={pid1}");
    }
}

#[test]
fn dumb_init_setsid_0_signals_only_the_command() {
    need_unshare!();
    for (pid1, (env, both)) in MODES.into_iter().flat_map(|m| {
        [
            (&[("DUMB_INIT_SETSID", "0")][..], false),
            (&[("DUMB_INIT_SETSID", "1")][..], true),
            (&[("TINI_KILL_PROCESS_GROUP", "1")][..], true),
        ]
        .map(|case| (m, case))
    }) {
        let dir = TempDir::new();
        let (r1, r2) = (dir.path("r1"), dir.path("r2"));
        let script = format!(
            "{SVC} wait --report {} & exec {SVC} wait --report {}",
            r1.display(),
            r2.display()
        );
        let mut init = Init::start_in(
            dir,
            &["--", "sh", "-c", &script],
            Opts {
                pid1,
                env,
                ..Opts::default()
            },
        );
        wait_report(&r1, "waiting");
        wait_report(&r2, "waiting");
        init.signal(libc::SIGUSR1);
        wait_report(&r2, "got SIGUSR1");
        // A marker straight to the background service: it listens, and got USR1 only if
        // the group was signalled.
        let bg = init.find(r1.to_str().unwrap())[0];
        kill(bg, libc::SIGUSR2);
        wait_report(&r1, "got SIGUSR2");
        assert_eq!(
            got(&r1).contains(&"SIGUSR1".to_string()),
            both,
            "pid1={pid1} {env:?}"
        );
        init.stop_cleanly();
    }
}

// ---------------------------------------------------------------------------------------------
// 5. When the command exits, leftovers see SIGTERM first

#[test]
fn leftovers_see_sigterm_first_and_stopped_ones_are_continued() {
    need_unshare!();
    for pid1 in MODES {
        let dir = TempDir::new();
        let (run, stop) = (dir.path("running"), dir.path("stopped"));
        // One leftover runs (and ignores SIGTERM: SIGKILL at the grace deadline), one is
        // stopped when the command exits.
        let script = format!(
            "{SVC} wait --ignore-term --report {run} &\n\
             {SVC} wait --report {stop} & s=$!\n\
             until grep -q waiting {run} 2>/dev/null && grep -q waiting {stop} 2>/dev/null; do :; done\n\
             kill -STOP $s\n\
             while [ \"$(cut -d' ' -f3 /proc/$s/stat)\" != T ]; do :; done\n\
             exit 7\n",
            run = run.display(),
            stop = stop.display()
        );
        let mut init = Init::start_in(
            dir,
            &["--grace", "1s", "--", "sh", "-c", &script],
            Opts::mode(pid1),
        );
        assert_eq!(init.wait_exit(), 7, "{}", init.logs());
        assert_eq!(got(&run), ["SIGTERM"], "pid1={pid1}");
        assert_eq!(got(&stop), ["SIGTERM"], "pid1={pid1}");
        assert!(
            report(&stop)
                .iter()
                .any(|l| l == "graceful shutdown complete"),
            "the stopped leftover was continued and shut down: {:?}",
            report(&stop)
        );
    }
}
