//! Hostile input on every socket and flag, resource limits, old kernels: each case is what a
//! misbehaving local process or an operator's typo did to init before it was fixed, run against
//! the real binary as PID 1 of a fresh PID namespace. Bounds are asserted as counts (open fds,
//! VmHWM, CPU ticks), never as timings.

#[macro_use]
mod common;
#[path = "support/load.rs"]
mod load;
#[path = "support/sup.rs"]
mod sup;

use common::*;
use std::fs;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use sup::*;

/// A start script in `dir`: `body` runs with $SVC set to the test service.
fn script(dir: &TempDir, body: &str) -> PathBuf {
    dir.script("start.sh", &format!("#!/bin/sh\nSVC='{SVC}'\n{body}\n"))
}

/// `Sup::start_in` with the start script written into the init's own temp dir first.
fn sup_with_script(args: &[&str], body: &str, prefix: Option<&str>) -> Sup {
    let dir = TempDir::new();
    let start = script(&dir, body);
    let mut all = args.to_vec();
    all.extend(["--", start.to_str().unwrap()]);
    Sup::start_in(
        dir,
        &all,
        Opts {
            shell_prefix: prefix,
            ..Opts::default()
        },
    )
}

/// `handoff-init ctl ARGS` that must finish within `limit`: None if it did not (it is killed).
fn ctl_within(sup: &Sup, args: &[&str], limit: Duration) -> Option<(i32, String)> {
    let mut child = Command::new(INIT)
        .arg("ctl")
        .args(args)
        .arg("--control")
        .arg(&sup.control)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ctl");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut out = String::new();
            child.stdout.take().unwrap().read_to_string(&mut out).ok();
            return Some((status.code().unwrap_or(-1), out));
        }
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: i32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &text[text.rfind(')').map_or(0, |i| i + 1)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// CPU ticks `pid` uses in one second in which nothing is asked of it (a measurement window,
/// not a wait for a condition). A spinning init uses ~100 (one tick is 10 ms); an idle one 0.
fn ticks_in_a_quiet_second(pid: i32) -> u64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    cpu_ticks(pid) - before
}

/// VmHWM (peak resident set) in kB.
fn peak_rss_kb(pid: i32) -> u64 {
    status_field(pid, "VmHWM")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sends one datagram with `n` fds (copies of /dev/null) to `path`, with our credentials.
fn send_fds(path: &Path, n: usize, payload: &[u8]) -> nix::Result<usize> {
    use nix::sys::socket::{
        AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, sendmsg, socket,
    };
    let null = fs::File::open("/dev/null").unwrap();
    let copies: Vec<OwnedFd> = (0..n)
        .map(|_| OwnedFd::from(null.try_clone().unwrap()))
        .collect();
    let raw: Vec<i32> = copies.iter().map(|f| f.as_raw_fd()).collect();
    let sock = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    let iov = [IoSlice::new(payload)];
    sendmsg(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        Some(&addr),
    )
}

/// Runs `handoff-init ARGS` as a plain process; (exit code, stderr).
fn run_init(args: &[&str]) -> (i32, String) {
    let out = Command::new(INIT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run handoff-init");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Row 1: fds sent with notify datagrams, also more than fit and more than init may open.
#[test]
fn fds_sent_on_the_notify_socket_are_all_closed() {
    need_unshare!();
    let sup = sup_with_script(
        &["--ready", "delay:0"],
        "exec \"$SVC\" wait",
        Some("ulimit -n 64;"),
    );
    sup.status();
    let pid = sup.init.pid();
    let notify = sup.control.with_file_name("notify.sock");
    let before = fds(pid).len();
    for n in [1, 17, 40, 200, 253] {
        for _ in 0..20 {
            send_fds(&notify, n, b"STATUS=hello").expect("send fds");
        }
    }
    wait_until("init has read every datagram", || {
        ctl_within(&sup, &["status"], DEADLINE).is_some_and(|(c, _)| c == 0)
            && fds(pid).len() == before
    });
    assert_eq!(fds(pid).len(), before, "{:?}", fds(pid));
    let ticks = ticks_in_a_quiet_second(pid);
    assert!(ticks <= 20, "init used {ticks} ticks in a quiet second");
    let (code, out) = sup.ctl(&["status"]);
    assert_eq!(code, 0, "{out}\n{}", sup.init.logs());
}

// Row 4: a flood of big STATUS= datagrams from the service's own processes.
#[test]
fn a_notify_flood_is_read_in_bounded_batches() {
    need_unshare!();
    let sup = sup_with_script(
        &["--ready", "delay:0"],
        "for i in $(seq 16); do \"$SVC\" flood 3750 4000 & done\nwait\n: > \"$(dirname \"$0\")/flooded\"\nexec \"$SVC\" wait",
        None,
    );
    sup.status();
    let pid = sup.init.pid();
    let flooded = sup.init.dir.path("flooded");
    let peak_before = peak_rss_kb(pid);
    let mut answered = 0;
    while !flooded.exists() {
        let (code, _) = ctl_within(&sup, &["status"], DEADLINE).expect("ctl status answers");
        assert_eq!(code, 0);
        answered += 1;
        assert!(
            answered < 10_000,
            "the flood never ended:\n{}",
            sup.init.logs()
        );
    }
    let status = sup.status();
    assert!(status.contains("status: xxxx"), "{status}");
    let grown = peak_rss_kb(pid).saturating_sub(peak_before);
    assert!(
        grown < 4 * 1024,
        "init's peak RSS grew by {grown} kB during 60,000 datagrams of 4 kB"
    );
    eprintln!("peak RSS grew by {grown} kB");
}

// Row 9: EXTEND_TIMEOUT_USEC=u64::MAX from a new generation that never gets ready.
#[test]
fn a_huge_extend_timeout_is_clamped_to_the_ready_timeout() {
    need_unshare!();
    let sup = sup_with_script(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--ready-timeout",
            "2s",
            "--drain-timeout",
            "2s",
        ],
        "if [ \"$HANDOFF_GENERATION\" = 2 ]; then\n  exec \"$SVC\" notify EXTEND_TIMEOUT_USEC=18446744073709551615 wait\nfi\nexec \"$SVC\" http",
        None,
    );
    sup.wait_serving(1);
    let (code, out) = ctl_within(&sup, &["reload"], DEADLINE)
        .unwrap_or_else(|| panic!("ctl reload still waits:\n{}", sup.init.logs()));
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("error:"), "{out}");
    sup.wait_serving(1);
}

// Row 10: control characters in STATUS= reach `ctl status` escaped.
#[test]
fn status_text_escapes_control_characters() {
    need_unshare!();
    let sup = sup_with_script(
        &["--track", "main"],
        "exec \"$SVC\" notify \"$(printf 'READY=1\\nSTATUS=a\\033[31mb\\007c')\" wait",
        None,
    );
    let mut text = String::new();
    wait_until("the STATUS= is shown", || {
        text = sup.status();
        text.contains("status: a")
    });
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("status: a\\u{1b}[31mb\\u{7}c\n"), "{text:?}");
    let json = sup.ctl(&["status", "--json"]).1;
    assert!(
        json.contains("\"status\":\"a\\u001b[31mb\\u0007c\""),
        "{json}"
    );
}

// Row 11: command-line edges are usage errors (exit 2, one line), and nothing is created.
#[test]
fn command_line_edges_are_usage_errors() {
    let dir = TempDir::new();
    let long = format!("unix://{}/{}", dir.0.display(), "s".repeat(120));
    let rt = dir.path("rt");
    let rt = rt.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--listen", &long, "--", "true"],
        vec!["--control", "", "--", "true"],
        vec!["--control=", "--", "true"],
        vec!["--runtime-dir", "", "--", "true"],
        vec![
            "--runtime-dir",
            rt,
            "--listen",
            "a=tcp://127.0.0.1:0",
            "--listen",
            "a=tcp://127.0.0.1:0",
            "--",
            "true",
        ],
        vec!["--rewrite", "KILL:TERM", "--", "true"],
        vec!["--rewrite", "STOP:0", "--", "true"],
        vec![
            "--handoff-signal",
            "KILL",
            "--runtime-dir",
            rt,
            "--",
            "true",
        ],
        vec!["ctl", "status", "--control"],
        vec!["ctl", "status", "--control", ""],
        vec!["ctl", "status", "--control="],
    ];
    for args in cases {
        let (code, err) = run_init(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!Path::new(rt).exists(), "{args:?} created {rt}");
    }
    let long_rt = format!("{}/{}", dir.0.display(), "d".repeat(100));
    let (code, err) = run_init(&["--runtime-dir", &long_rt, "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("too long"), "{err}");
    // Rewriting to KILL is fine: init can send it.
    let (code, err) = run_init(&["--rewrite", "TERM:KILL", "--", "true"]);
    assert_eq!(code, 0, "{err}");
}

// Row 5: --control naming something that is not our socket.
#[test]
fn control_path_that_is_not_a_socket_is_left_alone() {
    let dir = TempDir::new();
    let file = dir.path("precious");
    fs::write(&file, "keep me").unwrap();
    let link = dir.path("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for path in [&file, &link] {
        let (code, err) = run_init(&[
            "--cgroup",
            "off",
            "--runtime-dir",
            dir.path("rt").to_str().unwrap(),
            "--control",
            path.to_str().unwrap(),
            "--",
            "true",
        ]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            fs::symlink_metadata(path).is_ok(),
            "{} was deleted",
            path.display()
        );
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

// Row 6: a shared runtime dir keeps its mode; our own private one is used as it is.
#[test]
fn an_existing_runtime_dir_keeps_its_mode() {
    let dir = TempDir::new();
    let shared = dir.path("shared");
    fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o1777);
    let (code, err) = run_init(&[
        "--cgroup",
        "off",
        "--runtime-dir",
        shared.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("writable by others"), "{err}");
    let mode = fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777);
    let own = dir.path("own");
    fs::create_dir(&own).unwrap();
    set_mode(&own, 0o750);
    let (code, err) = run_init(&[
        "--cgroup",
        "off",
        "--runtime-dir",
        own.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(code, 0, "{err}");
    let mode = fs::metadata(&own).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750, "chmod'ed");
    assert_eq!(
        fs::read_dir(&own).unwrap().count(),
        0,
        "sockets left behind"
    );
}

/// Opens `n` control connections that send nothing.
fn idle_clients(sup: &Sup, n: usize) -> Vec<UnixStream> {
    (0..n)
        .map(|_| UnixStream::connect(&sup.control).expect("connect"))
        .collect()
}

// Row 2: accept(2) failing with EMFILE (a low fd limit, idle clients).
#[test]
fn fd_exhaustion_on_the_control_socket_never_spins() {
    need_unshare!();
    let sup = sup_with_script(
        &["--ready", "delay:0"],
        "exec \"$SVC\" wait",
        Some("ulimit -n 24;"),
    );
    sup.status();
    let pid = sup.init.pid();
    let _idle = idle_clients(&sup, 40);
    // Every connection is accepted (or refused) at once: none stays queued on the listener.
    wait_until("init has dealt with every connection", || {
        ticks_in_a_quiet_second(pid) <= 20
    });
    assert!(fds(pid).len() <= 24, "{:?}", fds(pid));
    for _ in 0..5 {
        let (code, out) = ctl_within(&sup, &["status"], DEADLINE).expect("ctl status answers");
        assert_eq!(code, 0, "{out}\n{}", sup.init.logs());
    }
    let ticks = ticks_in_a_quiet_second(pid);
    assert!(ticks <= 20, "init used {ticks} ticks in a quiet second");
}

// Row 7: a waiting `ctl reload` is never evicted by idle connections.
#[test]
fn a_waiting_reload_outlives_idle_connections() {
    need_unshare!();
    let sup = sup_with_script(
        &["--listen", "tcp://127.0.0.1:0"],
        "if [ \"$HANDOFF_GENERATION\" = 2 ]; then\n  exec \"$SVC\" http --start-delay 2000\nfi\nexec \"$SVC\" http",
        None,
    );
    sup.wait_serving(1);
    let reload = std::thread::spawn({
        let control = sup.control.clone();
        move || {
            let out = Command::new(INIT)
                .args(["ctl", "reload", "--control"])
                .arg(&control)
                .output()
                .expect("run ctl");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    });
    wait_until("generation 2 starts", || {
        sup.ctl(&["status"]).1.contains("generation 2 ")
    });
    let _idle = idle_clients(&sup, 40);
    let (code, out) = reload.join().unwrap();
    assert_eq!(code, 0, "{out}\n{}", sup.init.logs());
    assert!(out.starts_with("ok: generation 2 serving"), "{out}");
}

// Row 7: `ctl status` under a flood of connections that connect and close at once.
#[test]
fn ctl_status_answers_under_a_connect_flood() {
    need_unshare!();
    let sup = sup_with_script(&["--ready", "delay:0"], "exec \"$SVC\" wait", None);
    sup.status();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..2)
        .map(|_| {
            let (control, stop) = (sup.control.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(s) = UnixStream::connect(&control) {
                        drop(s);
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let mut failed = 0;
    for _ in 0..10 {
        let (code, out) = ctl_within(&sup, &["status"], DEADLINE).expect("ctl status answers");
        if code != 0 || !out.starts_with("handoff-init pid") {
            failed += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let connects: u64 = flood.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(connects > 100, "the flood made only {connects} connections");
    assert_eq!(failed, 0, "{failed} of 10 ctl status failed");
    // A connection that never sends its request is closed at its deadline (5 s).
    let mut silent = UnixStream::connect(&sup.control).unwrap();
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut byte = [0u8; 1];
    // A read with SO_RCVTIMEO fails with EINTR when this process was stopped and continued
    // meanwhile (signal(7)); that is not init's answer: read again.
    let got = loop {
        match silent.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    assert_eq!(got.expect("closed by init, not timed out"), 0);
    let mut s = UnixStream::connect(&sup.control).unwrap();
    s.write_all(b"status\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("handoff-init pid"), "{answer}");
}

/// One GET that must be answered within 5 s (a listener no generation serves would let the
/// connection sit in its backlog forever).
fn get_within(addr: std::net::SocketAddr) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    Ok(resp)
}

/// The TCP addresses of all listeners, from `ctl status`.
fn listener_addrs(sup: &Sup) -> Vec<std::net::SocketAddr> {
    sup.status()
        .lines()
        .filter_map(|l| l.strip_prefix("listener "))
        .filter_map(|r| r.split_whitespace().nth(1))
        .filter_map(|u| u.trim_start_matches("tcp://").parse().ok())
        .collect()
}

// Row 3: RLIMIT_NOFILE between 100 and 100+N-1 with N listeners.
#[test]
fn listeners_reach_their_fds_under_a_low_fd_limit() {
    need_unshare!();
    for limit in [101, 64] {
        let sup = sup_with_script(
            &[
                "--listen",
                "a=tcp://127.0.0.1:0",
                "--listen",
                "b=tcp://127.0.0.1:0",
                "--listen",
                "c=tcp://127.0.0.1:0",
            ],
            "exec \"$SVC\" http",
            Some(&format!("ulimit -n {limit};")),
        );
        sup.wait_serving(1);
        let addrs = listener_addrs(&sup);
        assert_eq!(addrs.len(), 3, "{}", sup.status());
        for a in addrs {
            let resp = get_within(a).unwrap_or_else(|e| {
                panic!(
                    "ulimit {limit}: {a} does not answer: {e}\n{}",
                    sup.init.logs()
                )
            });
            assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        }
    }
    // Too low for three listeners above fd 5: one clear line, exit 1, nothing started.
    let mut sup = sup_with_script(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "tcp://127.0.0.1:0",
        ],
        "exec \"$SVC\" http",
        Some("ulimit -n 8;"),
    );
    assert_eq!(sup.init.wait_exit(), 1, "{}", sup.init.logs());
    let err = sup.init.stderr();
    assert!(err.contains("RLIMIT_NOFILE 8"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

// Row 8: a serving generation calls shutdown(2) on its listening fd and keeps running.
#[test]
fn a_listener_shut_down_by_a_generation_listens_again_at_once() {
    need_unshare!();
    let sup = sup_with_script(
        &["--listen", "tcp://127.0.0.1:0"],
        "if [ \"$HANDOFF_GENERATION\" = 1 ]; then\n  \"$SVC\" shutdown-fd 3 || exit 9\nfi\nexec \"$SVC\" http",
        None,
    );
    sup.wait_serving(1);
    let addr = sup.addr();
    let resp = get_within(addr).unwrap_or_else(|e| panic!("{e}\n{}", sup.init.logs()));
    assert!(resp.contains("gen=1"), "{resp}");
    let logs = sup.init.logs();
    assert_eq!(
        logs.matches("was shut down by a generation; listening again")
            .count(),
        1,
        "{logs}"
    );
    // The next generation gets the healthy socket.
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{out}");
    // (Generation 1 may take one more connection before its stop signal lands.)
    wait_until("generation 2 answers", || {
        get_within(addr)
            .unwrap_or_else(|e| panic!("{e}\n{}", sup.init.logs()))
            .contains("gen=2")
    });
    let ticks = ticks_in_a_quiet_second(sup.init.pid());
    assert!(ticks <= 20, "init used {ticks} ticks in a quiet second");
}

// Row 8 for a unix listener at a path: a shut-down unix socket refuses every connection for
// good, so init binds a fresh one at the path (the mode and owner the file had), and the
// connections made to it wait for the next generation.
#[test]
fn a_unix_listener_shut_down_by_a_generation_is_bound_again_at_its_path() {
    use std::os::unix::fs::MetadataExt;
    need_unshare!();
    let dir = TempDir::new();
    let sock = dir.path("app.sock");
    let go = dir.path("go");
    let sup = sup_with_script(
        &["--listen", &format!("unix://{}", sock.display())],
        &format!(
            "if [ \"$HANDOFF_GENERATION\" = 1 ]; then\n  while [ ! -e '{}' ]; do sleep 0.01; done\n  \"$SVC\" shutdown-fd 3 || exit 9\nfi\nexec \"$SVC\" http",
            go.display()
        ),
        None,
    );
    wait_until("init binds the socket", || sock.exists());
    // What an operator may have done to the socket file since init bound it.
    set_mode(&sock, 0o660);
    std::os::unix::fs::lchown(&sock, Some(1234), Some(4321)).unwrap();
    let ino = fs::symlink_metadata(&sock).unwrap().ino();
    fs::write(&go, "").unwrap();
    sup.wait_serving(1);
    let logs = sup.init.logs();
    assert_eq!(
        logs.matches("was shut down by a generation; a fresh socket is bound at")
            .count(),
        1,
        "{logs}"
    );
    let m = fs::symlink_metadata(&sock).unwrap();
    assert_ne!(m.ino(), ino, "the same socket file");
    assert_eq!(
        (m.mode() & 0o170777, m.uid(), m.gid()),
        (0o140660, 1234, 4321)
    );
    // Generation 1 holds the broken socket; a client connecting now waits for generation 2.
    let mut early = UnixStream::connect(&sock).unwrap_or_else(|e| panic!("{e}\n{logs}"));
    early
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        early,
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{out}\n{}", sup.init.logs());
    let mut resp = String::new();
    early.read_to_string(&mut resp).unwrap();
    assert!(resp.contains("gen=2"), "{resp}\n{}", sup.init.logs());
    let ticks = ticks_in_a_quiet_second(sup.init.pid());
    assert!(ticks <= 20, "init used {ticks} ticks in a quiet second");
}

/// The fds the service's `wait --print-self` saw, with init started as PID 1 under
/// `testsvc old-kernel KERNEL` (close_range(2) failing as on that kernel) and holding fds 7 and
/// 8 it inherited without close-on-exec; `extra` goes before `--`.
fn fds_under_old_kernel(kernel: &str, extra: &[&str]) -> String {
    let dir = TempDir::new();
    let rt = dir.path("rt");
    let mut args = vec!["--runtime-dir", rt.to_str().unwrap(), "--cgroup", "off"];
    args.extend_from_slice(extra);
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let cmd = format!(
        "exec 7</dev/null 8>/dev/null; exec unshare --pid --fork --mount-proc '{SVC}' old-kernel {kernel} -- '{INIT}' {} -- '{SVC}' wait --print-self",
        quoted.join(" ")
    );
    let out = dir.path("stdout");
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(dir.path("stderr")).unwrap())
        .spawn()
        .expect("start");
    let _guard = Guard(child);
    let mut line = String::new();
    wait_until("the service reports its fds", || {
        line = fs::read_to_string(&out).unwrap_or_default();
        line.contains(" pgid=")
    });
    let err = fs::read_to_string(dir.path("stderr")).unwrap_or_default();
    assert!(!err.contains("old-kernel:"), "{err}");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("fds="))
        .unwrap_or_else(|| panic!("{line}\n{err}"))
        .to_string()
}

// Old kernels (RHEL 8's 4.18, Ubuntu 20.04's 5.4: no close_range; Amazon Linux 2's 5.10: no
// CLOSE_RANGE_CLOEXEC): no fd init inherited reaches the service.
#[test]
fn on_old_kernels_no_inherited_fd_reaches_the_service() {
    need_unshare!();
    for kernel in ["4.18", "5.10"] {
        assert_eq!(fds_under_old_kernel(kernel, &["-q"]), "0,1,2", "{kernel}");
        assert_eq!(
            fds_under_old_kernel(kernel, &["--listen", "tcp://127.0.0.1:0"]),
            "0,1,2,3",
            "{kernel}"
        );
    }
}
