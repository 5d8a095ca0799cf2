//! What goes beyond a restart: the watchdog that replaces a hung generation by a handoff, the
//! stop delay for load balancers, in-place reloads. The real binary as PID 1 in a fresh PID
//! namespace, under client load where a generation should serve.

#[macro_use]
mod common;
#[path = "support/load.rs"]
mod load;
#[path = "support/sup.rs"]
mod sup;

use common::*;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use sup::*;

/// start.sh: generation 1 runs the service with `gen1`, generation 2 with `gen2`, every later
/// one plainly.
fn script(dir: &TempDir, gen1: &str, gen2: &str) -> PathBuf {
    dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\ncase \"$HANDOFF_GENERATION\" in\n  1) exec {SVC} http {gen1};;\n  2) exec {SVC} http {gen2};;\nesac\nexec {SVC} http\n"
        ),
    )
}

fn sup_with(dir: &TempDir, args: &[&str], gen1: &str, gen2: &str) -> Sup {
    Sup::script(&script(dir, gen1, gen2), args)
}

/// A generation that stops sending WATCHDOG=1 is replaced by a handoff: its replacement
/// serves before the hung one is touched, clients see no failure, and the hung one gets
/// SIGABRT (status 134, the core-dump signal, as systemd sends).
#[test]
fn a_generation_that_misses_its_keepalive_is_replaced_with_no_failed_request() {
    need_unshare!();
    let dir = TempDir::new();
    // 2 s: keep-alives every second leave slack for a loaded machine.
    let mut sup = sup_with(&dir, &["--watchdog", "2s"], "--hang-after 1500", "");
    sup.wait_serving(1);
    let status = sup.status();
    assert!(status.contains("watchdog 2s"), "{status}");
    let load = busy(sup.addr(), 8, 50);
    sup.init
        .wait_for_output("watchdog timeout (no WATCHDOG=1); starting its replacement");
    sup.init
        .wait_for_output("generation 1: ended with status 134");
    let logs = sup.init.logs();
    assert!(logs.contains("watchdog: starting generation 2"), "{logs}");
    assert!(logs.contains("generation 1: hung: SIGABRT"), "{logs}");
    // SIGABRT only once generation 2 was ready.
    let ready = logs.find("generation 2: ready").expect("gen 2 ready");
    let abort = logs.find("generation 1: hung: SIGABRT").unwrap();
    assert!(ready < abort, "{logs}");
    assert!(load.wait_until(DEADLINE, |p| p.ok_from_gen(2) > 20));
    no_failed_request(load, 2);
    let json = sup.ctl(&["status", "--json"]).1;
    assert!(json.contains("\"watchdog_recoveries\":1,"), "{json}");
    assert!(json.contains("\"handoffs_failed\":0,"), "{json}");
    // The replacement keeps its keep-alives going: no second recovery.
    assert!(!sup.init.logs().contains("generation 2: watchdog"));
    sup.init.stop_cleanly();
}

/// WATCHDOG=trigger asks for the recovery at once, long before the interval ends.
#[test]
fn watchdog_trigger_replaces_the_generation_at_once() {
    need_unshare!();
    let dir = TempDir::new();
    let mut sup = sup_with(
        &dir,
        &["--watchdog", "10min"],
        "--hang-after 300 --watchdog-trigger",
        "",
    );
    sup.wait_serving(1);
    // New connections only: the replacement is ready some milliseconds after the trigger, and
    // SIGABRT then ends whatever the hung generation still had open, as it would a really hung
    // one; a kept-alive connection it had not yet closed would lose its request.
    let load = load::start(load::LoadConfig {
        clients: 4,
        mode: load::ConnMode::NewPerRequest,
        ..load::LoadConfig::new(sup.addr())
    });
    assert!(load.wait_until(DEADLINE, |p| p.ok >= 20));
    sup.init
        .wait_for_output("generation 1: WATCHDOG=trigger; starting its replacement");
    sup.init
        .wait_for_output("generation 1: ended with status 134");
    sup.wait_serving(2);
    assert!(load.wait_until(DEADLINE, |p| p.ok_from_gen(2) > 10));
    no_failed_request(load, 2);
    sup.init.stop_cleanly();
}

/// Nothing to hand over to: the hung generation's replacement fails to start, so the hung one
/// is aborted and `--restart` brings the service back.
#[test]
fn a_hung_generation_whose_replacement_fails_is_restarted() {
    need_unshare!();
    let dir = TempDir::new();
    let mut sup = sup_with(
        &dir,
        &["--watchdog", "2s", "--restart", "on-failure"],
        "--hang-after 500",
        "--fail-start",
    );
    sup.wait_serving(1);
    sup.init
        .wait_for_output("generation 1: hung and its replacement failed: SIGABRT");
    sup.wait_serving(3);
    let logs = sup.init.logs();
    assert!(
        logs.contains("generation 2 failed: exited with status"),
        "{logs}"
    );
    assert!(
        logs.contains("generation 1: ended with status 134"),
        "{logs}"
    );
    assert!(get(sup.addr(), "/").contains("gen=3"));
    sup.init.stop_cleanly();
}

fn switches(pid: i32) -> u64 {
    ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"]
        .iter()
        .map(|k| status_field(pid, k).unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The supervisor, idle: no wake-up at all without a watchdog; with one, a wake-up per
/// keep-alive the service sends (every half interval), no polling timer of its own.
#[test]
fn the_watchdog_wakes_init_only_for_keepalives() {
    need_unshare!();
    let idle = Sup::start(&["--listen", "tcp://127.0.0.1:0", "--", SVC, "http"], true);
    idle.wait_serving(1);
    let pid = idle.init.pid();
    wait_until("init asleep", || state(pid) == Some('S'));
    let before = switches(pid);
    // A measurement window, not a wait for a condition: init must not wake at all in it.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(switches(pid) - before, 0, "idle supervisor woke up");

    let watched = Sup::start(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--watchdog",
            "2s",
            "--",
            SVC,
            "http",
        ],
        true,
    );
    watched.wait_serving(1);
    let pid = watched.init.pid();
    wait_until("init asleep", || state(pid) == Some('S'));
    let before = switches(pid);
    std::thread::sleep(Duration::from_secs(4));
    let woke = switches(pid) - before;
    // 4 keep-alives in 4 s (one per second); allow for scheduling, not for a poll loop.
    assert!(
        woke <= 12,
        "init woke {woke} times in 4 s with --watchdog 2s"
    );
    assert!(woke >= 2, "no keep-alive reached init ({woke} wake-ups)");
}

/// With --stop-delay everything keeps serving after the first SIGTERM, then stops as usual.
#[test]
fn stop_delay_keeps_serving_then_drains() {
    need_unshare!();
    let mut sup = Sup::start(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--stop-delay",
            "2s",
            "--",
            SVC,
            "http",
        ],
        true,
    );
    sup.wait_serving(1);
    let addr = sup.addr();
    let mut conn = TcpStream::connect(addr).unwrap();
    request(&mut conn, "/");
    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    sup.init.wait_for_output("(--stop-delay), then stopping");
    // Served on a kept-alive connection and on new ones until the service gets SIGTERM.
    let mut served = 0;
    while !sup.init.logs().contains("got SIGTERM") {
        assert!(get(addr, "/").contains("gen=1"));
        assert!(request(&mut conn, "/").contains("gen=1"));
        served += 1;
        assert!(sent.elapsed() < DEADLINE, "{}", sup.init.logs());
    }
    let held = sent.elapsed();
    assert!(
        held >= Duration::from_secs(2),
        "service stopped after {held:?}"
    );
    assert!(served > 0);
    assert_eq!(sup.init.wait_exit(), 0, "{}", sup.init.logs());
    let logs = sup.init.logs();
    assert_eq!(logs.matches("got SIGTERM").count(), 1, "{logs}");
}

/// A second SIGTERM (or a SIGINT) ends the delay at once.
#[test]
fn a_second_sigterm_skips_the_stop_delay() {
    need_unshare!();
    for second in [libc::SIGTERM, libc::SIGINT] {
        let mut sup = Sup::start(
            &[
                "--listen",
                "tcp://127.0.0.1:0",
                "--stop-delay",
                "10min",
                "--grace",
                "20min",
                "--",
                SVC,
                "http",
            ],
            true,
        );
        sup.wait_serving(1);
        sup.init.signal(libc::SIGTERM);
        sup.init.wait_for_output("(--stop-delay), then stopping");
        assert!(get(sup.addr(), "/").contains("gen=1"));
        sup.init.signal(second);
        sup.init.wait_for_output("got SIG");
        // Well within the test's deadline, far below the 10-minute delay.
        let code = sup.init.wait_exit();
        let logs = sup.init.logs();
        assert_eq!(code, 0, "{logs}");
        assert_eq!(logs.matches("got SIG").count(), 1, "{logs}");
    }
}

/// --stop-delay must fit inside --grace: refused at start, exit 2, nothing started.
#[test]
fn stop_delay_longer_than_grace_is_a_usage_error() {
    let out = std::process::Command::new(INIT)
        .args(["--stop-delay", "20s", "--grace", "10s", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--stop-delay must be shorter than --grace"),
        "{err}"
    );
}

/// `ctl reload --in-place` sends --reload-signal to the serving generation and waits for
/// RELOADING=1 then READY=1; a service that never answers times out and keeps serving.
#[test]
fn in_place_reload_reports_ok_and_timeout() {
    need_unshare!();
    let dir = TempDir::new();
    let mut sup = sup_with(
        &dir,
        &["--reload-signal", "USR1", "--ready-timeout", "1s"],
        "",
        "--no-reload",
    );
    sup.wait_serving(1);
    let load = busy(sup.addr(), 4, 20);
    let (code, out) = sup.ctl(&["reload", "--in-place"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: generation 1 serving, pid "), "{out}");
    let logs = sup.init.logs();
    assert!(logs.contains("generation 1: reloaded"), "{logs}");
    // One line for the reload's start: the signal sent, with the service's RELOADING=1 (seen,
    // or it would not be reloaded) as its answer, not a second line.
    let started: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("generation 1: reloading"))
        .collect();
    assert_eq!(started.len(), 1, "{logs}");
    assert!(
        started[0].ends_with("generation 1: reloading in place (sent SIGUSR1)"),
        "{logs}"
    );
    assert!(
        logs.contains("testsvc") && logs.contains("got SIGUSR1"),
        "{logs}"
    );
    // Generation 2 ignores the reload signal.
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{out}");
    let (code, out) = sup.ctl(&["reload", "--in-place"]);
    assert_eq!(code, 1, "{out}");
    sup.init
        .wait_for_output("generation 2: not reloaded within 1s");
    let (code, json) = sup.ctl(&["reload", "--in-place", "--json"]);
    assert_eq!(code, 1, "{json}");
    assert!(json.starts_with("{\"ok\":false"), "{json}");
    // Still serving: no failed request, generation 2 answers.
    assert!(load.wait_until(DEADLINE, |p| p.ok_from_gen(2) > 10));
    no_failed_request(load, 2);
    sup.init.stop_cleanly();
}

/// Without --reload-signal an in-place reload is refused, clearly, and nothing changes.
#[test]
fn in_place_reload_without_a_reload_signal_is_refused() {
    need_unshare!();
    let mut sup = Sup::start(&["--listen", "tcp://127.0.0.1:0", "--", SVC, "http"], true);
    sup.wait_serving(1);
    let (code, out) = sup.ctl(&["reload", "--in-place"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--reload-signal"), "{out}");
    assert!(get(sup.addr(), "/").contains("gen=1"));
    sup.init.stop_cleanly();
}

const FDSTORE_SVC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fdstore_svc.py");

fn fdstore_sup(args: &[&str], svc_args: &[&str]) -> Sup {
    let mut all = vec!["--listen", "tcp://127.0.0.1:0"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "python3", FDSTORE_SVC]);
    all.extend_from_slice(svc_args);
    let sup = Sup::start(&all, true);
    sup.wait_serving(1);
    sup
}

fn held(sup: &Sup) -> String {
    let json = sup.ctl(&["status", "--json"]).1;
    json.split("\"fdstore\":")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .map(|s| format!("{s}}}"))
        .unwrap_or_else(|| panic!("no fdstore in {json}"))
}

fn word<'a>(body: &'a str, key: &str) -> &'a str {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {body:?}"))
}

/// The acceptance case of the fd store: one client connection, a request every 10 ms, 20
/// handoffs; every request is answered on that same connection, by every generation in turn.
#[test]
fn a_parked_connection_survives_20_handoffs() {
    need_unshare!();
    let mut sup = fdstore_sup(&["--fdstore-max", "16"], &[]);
    let mut conn = TcpStream::connect(sup.addr()).unwrap();
    let first = request(&mut conn, "/");
    let name = word(&first, "conn=").to_string();
    assert_eq!(word(&first, "gen="), "1");
    wait_until("the connection is parked", || {
        held(&sup) == "{\"held\":1,\"max\":16}"
    });
    let control = sup.control.clone();
    let reloads = std::thread::spawn(move || {
        for n in 1..=20 {
            let out = std::process::Command::new(INIT)
                .args(["ctl", "reload", "--control"])
                .arg(&control)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                text.starts_with(&format!("ok: generation {} serving", n + 1)),
                "handoff {n}: {text}"
            );
        }
    });
    let mut gens = vec![1u64];
    let mut answers = 1;
    while !reloads.is_finished() || *gens.last().unwrap() < 21 {
        std::thread::sleep(Duration::from_millis(10));
        let body = read_on(&mut conn);
        assert_eq!(word(&body, "conn="), name, "{body}");
        let g: u64 = word(&body, "gen=").parse().unwrap();
        assert!(
            g >= *gens.last().unwrap(),
            "answers went back to gen {g}: {gens:?}"
        );
        if g != *gens.last().unwrap() {
            gens.push(g);
        }
        answers += 1;
        assert!(answers < 100_000, "generation 21 never answered: {gens:?}");
    }
    reloads.join().unwrap();
    eprintln!("{answers} answers on one connection from generations {gens:?}");
    // Each generation serves from its predecessor's exit to its own drain: at least one
    // answer each (a generation's readiness alone takes longer than the 10 ms between requests).
    assert_eq!(gens, (1..=21).collect::<Vec<u64>>());
    // The client closes: the service removes the connection from the store.
    drop(conn);
    wait_until("the store is empty", || {
        held(&sup) == "{\"held\":0,\"max\":16}"
    });
    sup.init.stop_cleanly();
}

/// One request on a kept-alive connection; panics with the init's log on no answer.
fn read_on(conn: &mut TcpStream) -> String {
    use std::io::Write;
    write!(conn, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(conn).expect("an answer on the parked connection")
}

/// The store keeps at most --fdstore-max fds; what is over is closed, and with the store off
/// (the default) every fd sent with FDSTORE=1 is closed: init's own fd count does not grow.
#[test]
fn the_fd_store_is_bounded_and_off_by_default() {
    need_unshare!();
    for (args, max) in [(&["--fdstore-max", "2"][..], 2), (&[][..], 0)] {
        let mut sup = fdstore_sup(args, &[]);
        let before = fds(sup.init.pid()).len();
        let addr = sup.addr();
        let mut conns: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for c in &mut conns {
            assert!(word(&read_on(c), "gen=") == "1");
        }
        let warning = if max == 0 {
            "but the fd store is off (--fdstore-max); closed"
        } else {
            "fd store full (2 of 2): 1 fds named"
        };
        sup.init.wait_for_output(warning);
        assert_eq!(
            held(&sup),
            format!("{{\"held\":{},\"max\":{max}}}", max.min(3))
        );
        assert_eq!(fds(sup.init.pid()).len(), before + max.min(3));
        drop(conns);
        wait_until("the store is empty", || {
            held(&sup).starts_with("{\"held\":0")
        });
        assert_eq!(fds(sup.init.pid()).len(), before);
        sup.init.stop_cleanly();
    }
}

/// A parked connection the client resets is dropped by init itself (POLLHUP/POLLERR), even
/// when the service never removes it; with FDPOLL=0 it is kept.
#[test]
fn a_reset_connection_leaves_the_store_unless_fdpoll_0() {
    need_unshare!();
    for (svc, stays) in [
        (&["--no-remove"][..], false),
        (&["--no-remove", "--fdpoll0"][..], true),
    ] {
        let mut sup = fdstore_sup(&["--fdstore-max", "4", "-v"], svc);
        let mut conn = TcpStream::connect(sup.addr()).unwrap();
        read_on(&mut conn);
        wait_until("parked", || held(&sup).starts_with("{\"held\":1"));
        // SO_LINGER 0: close sends RST.
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        use std::os::fd::AsRawFd;
        // SAFETY: setsockopt on a socket we own with a correctly sized linger struct.
        let rc = unsafe {
            libc::setsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        drop(conn);
        if stays {
            // Nothing to wait for but the absence of a drop: a reload makes init look again.
            assert_eq!(sup.reload().0, 0);
            assert!(held(&sup).starts_with("{\"held\":1"), "{}", sup.init.logs());
        } else {
            sup.init.wait_for_output("hung up; closed");
            assert!(held(&sup).starts_with("{\"held\":0"));
        }
        sup.init.stop_cleanly();
    }
}
