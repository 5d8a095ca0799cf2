//! Integration tests of the supervisor: held sockets passed with LISTEN_FDS, NOTIFY_SOCKET,
//! handoffs under load, rollback, shutdown during a handoff, self-forking services, and flat
//! resources over many handoffs. The real binary as PID 1 in a fresh PID namespace (the network
//! namespace is shared, so the test reaches its listeners on 127.0.0.1), real clients.

#[macro_use]
mod common;
#[path = "support/load.rs"]
mod load;
#[path = "support/sup.rs"]
mod sup;

use common::*;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use sup::*;

#[test]
fn fifty_handoffs_under_load_fail_no_request() {
    need_unshare!();
    let mut sup = Sup::start(
        &["--listen", "web=tcp://127.0.0.1:0", "--", SVC, "http"],
        true,
    );
    let addr = sup.addr();
    sup.wait_serving(1);
    let load = busy(addr, 16, 200);
    // Slow requests accepted by the old generation before a handoff must be answered by it.
    let mut slow = Vec::new();
    for n in 1..=50u32 {
        if n <= 3 {
            // On a keep-alive connection the current generation has already answered, send a
            // slow request: it is in that generation's hands when the handoff starts.
            let mut conn = TcpStream::connect(addr).expect("connect");
            let before = field(&request(&mut conn, "/"), "gen");
            write!(conn, "GET /slow?delay=1500 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            slow.push((before, std::thread::spawn(move || read_response(&mut conn))));
        }
        handoff_seen_by_clients(&sup, &load, n);
    }
    no_failed_request(load, 51);
    for (before, t) in slow {
        let body = t
            .join()
            .expect("slow request")
            .expect("slow request answered");
        assert_eq!(
            field(&body, "gen"),
            before,
            "slow request answered by another generation: {body}"
        );
    }
    assert!(sup.status().contains("handoffs: 50 done, 0 failed"));
    sup.init.stop_cleanly();
}

#[test]
fn failed_new_generation_is_rolled_back_and_the_old_keeps_serving() {
    need_unshare!();
    for (gen2, why) in [
        ("--fail-start", "exited with status 3 before it was ready"),
        ("--never-ready", "not ready within 1s"),
    ] {
        let scripts = TempDir::new();
        let start = gen_script(&scripts, 2, gen2);
        let sup = Sup::script(&start, &["--ready-timeout", "1s"]);
        let addr = sup.addr();
        sup.wait_serving(1);
        let load = busy(addr, 4, 50);
        let (code, out) = sup.reload();
        assert_eq!(code, 1, "{gen2}: {out}");
        assert!(out.contains(why), "{gen2}: {out}");
        let ok_after = load.progress().ok;
        assert!(
            load.wait_until(DEADLINE, |p| p.ok >= ok_after + 50),
            "old generation stopped serving"
        );
        let report = load.stop();
        assert!(report.failures.is_empty(), "{gen2}: {:?}", report.failures);
        assert_eq!(report.gen_values(), vec![1], "{gen2}");
        let status = sup.status();
        assert!(status.contains("handoffs: 0 done, 1 failed"), "{status}");
        assert!(status.contains("generation 1 pid"), "{status}");
        // A generation killed for failing is listed as failed until its processes are gone.
        wait_until("generation 2 gone from status", || {
            !sup.status().contains("generation 2 pid")
        });
        // The failed generation's processes are gone (never-ready was SIGKILLed).
        wait_until("no generation-2 service left", || {
            sup.init.find("--never-ready").is_empty()
        });
        // The next handoff works.
        let (code, out) = sup.reload();
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("ok: generation 3 serving"), "{out}");
    }
}

#[test]
fn sighup_triggers_coalesce_into_at_most_one_more_handoff() {
    need_unshare!();
    let sup = Sup::start(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--",
            SVC,
            "http",
            "--start-delay",
            "300",
        ],
        true,
    );
    sup.wait_serving(1);
    sup.init.signal(libc::SIGHUP);
    wait_until("generation 2 starting", || {
        sup.status().contains("generation 2 pid")
    });
    // Standard signals do not queue, so each further SIGHUP is sent once init has read the one
    // before (its log says so).
    for n in 1..=4 {
        sup.init.signal(libc::SIGHUP);
        wait_until("trigger queued", || {
            sup.init.stderr().matches("queued").count() == n
        });
    }
    // Four triggers while generation 2 starts: then exactly one more generation.
    sup.wait_serving(3);
    let status = sup.status();
    assert!(status.contains("handoffs: 2 done, 0 failed"), "{status}");
    assert!(
        !sup.init.stderr().contains("generation 4"),
        "{}",
        sup.init.stderr()
    );
}

#[test]
fn shutdown_during_a_handoff_stops_both_generations_gracefully() {
    need_unshare!();
    let scripts = TempDir::new();
    let start = gen_script(&scripts, 2, "--start-delay 60000");
    let mut sup = Sup::script(&start, &["--grace", "10s"]);
    sup.wait_serving(1);
    sup.init.signal(libc::SIGHUP);
    wait_until("generation 2 starting", || {
        sup.status().contains("generation 2 pid")
    });
    // Generation 2 handles signals and waits out its start delay: the test service logs its start
    // delay once its signals are blocked ("listening on" comes before that).
    sup.init.wait_for_output("start delay 60000 ms");
    let started = std::time::Instant::now();
    sup.init.stop_cleanly();
    let took = started.elapsed();
    let logs = sup.init.logs();
    assert_eq!(
        logs.matches("graceful shutdown complete").count(),
        2,
        "{logs}"
    );
    assert!(!logs.contains("SIGKILL"), "{logs}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn notify_protocol_with_a_python_service() {
    need_unshare!();
    // A service written against the sd_notify contract with Python's socket module, as real
    // services do: it checks LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, sends garbage, an oversized
    // datagram and one carrying an fd (all must be ignored, the fd closed), a foreign MAINPID
    // (refused), EXTEND_TIMEOUT_USEC, STATUS, then READY=1.
    let dir = TempDir::new();
    let py = dir.path("svc.py");
    let log = dir.path("py.log");
    fs::write(
        &py,
        format!(
            r#"
import os, socket, sys, time, array
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
fds = [f for f in fds if os.path.exists("/proc/self/fd/%d" % f)]  # minus listdir's own
log = open({log:?}, "a")
def say(*a):
    print(*a, file=log, flush=True)
say("pid", os.getpid(), "LISTEN_PID", os.environ.get("LISTEN_PID"), "LISTEN_FDS", os.environ.get("LISTEN_FDS"),
    "NAMES", os.environ.get("LISTEN_FDNAMES"), "GEN", os.environ.get("HANDOFF_GENERATION"))
say("fds", fds)
n = int(os.environ["LISTEN_FDS"])
kinds = []
for fd in range(3, 3 + n):
    s = socket.socket(fileno=fd)
    kinds.append((s.family.name, s.type.name))
    s.detach()
say("kinds", kinds)
addr = os.environ["NOTIFY_SOCKET"]
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.sendto(b"\xff\xfe garbage without equals", addr)
n.sendto(b"READY=1" + b"x" * 10000, addr)
r, w = os.pipe()
n.sendmsg([b"STATUS=with an fd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))], 0, addr)
n.sendto(b"MAINPID=1", addr)
# Longer than --ready-timeout: only EXTEND_TIMEOUT_USEC keeps it alive. Each message buys at most
# one more --ready-timeout from its arrival, so a long start sends it again and again. 5 s in all
# against 4 s: a late wake-up on a loaded machine still leaves 3 s.
for _ in range(5):
    n.sendto(b"EXTEND_TIMEOUT_USEC=30000000", addr)
    time.sleep(1)
n.sendto(b"STATUS=warming up\nSTOPPING=0\nUNKNOWN=1", addr)
n.sendto(b"READY=1\nSTATUS=serving from python", addr)
say("sent")
while True:
    time.sleep(60)
"#
        ),
    )
    .unwrap();
    let sup = Sup::start(
        &[
            "--listen",
            "web=tcp://127.0.0.1:0",
            "--listen",
            "dns=udp://127.0.0.1:0",
            "--listen",
            &format!("sock=unix://{}", dir.path("app.sock").display()),
            "--ready-timeout",
            "4s",
            "-v",
            "--",
            "python3",
            py.to_str().unwrap(),
        ],
        true,
    );
    sup.wait_serving(1);
    let text = fs::read_to_string(&log).unwrap();
    let svc = sup.init.find_one("svc.py");
    let ns_pid = status_field(svc, "NSpid").unwrap();
    let ns_pid = ns_pid.split_whitespace().last().unwrap();
    assert!(
        text.contains(&format!(
            "pid {ns_pid} LISTEN_PID {ns_pid} LISTEN_FDS 3 NAMES web:dns:sock GEN 1"
        )),
        "{text}"
    );
    assert!(text.contains("fds [0, 1, 2, 3, 4, 5]"), "{text}");
    assert!(text.contains("kinds [('AF_INET', 'SOCK_STREAM'), ('AF_INET', 'SOCK_DGRAM'), ('AF_UNIX', 'SOCK_STREAM')]"), "{text}");
    let status = sup.status();
    assert!(status.contains("status: serving from python"), "{status}");
    // MAINPID=1 (init itself) re-pointed nothing.
    assert!(
        status.contains(&format!("generation 1 pid {ns_pid} serving")),
        "{status}"
    );
    // The fd passed with a datagram was closed: init holds only its own fds.
    // 0-2, signalfd, the control socket and its reserve fd (for EMFILE), the notify socket,
    // the three listeners at 100+.
    wait_until("init holds only its own fds", || {
        fds(sup.init.pid()) == vec![0, 1, 2, 3, 4, 5, 6, 100, 101, 102]
    });
    assert!(dir.path("app.sock").exists());
}

#[test]
fn bad_listen_input_exit_codes_and_nothing_left_behind() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = format!("tcp://{}", holder.local_addr().unwrap());
    let dir = TempDir::new();
    let sock = dir.path("a.sock");
    let marker = dir.path("started");
    let touch = format!("touch {}", marker.display());
    // Syntax: 2. Bind failure: 1, and the unix socket bound before it is removed again.
    let cases: &[(Vec<String>, i32, &str)] = &[
        (
            vec!["--listen".into(), "http://x:1".into()],
            2,
            "http://x:1",
        ),
        (
            vec!["--listen".into(), "tcp://127.0.0.1".into()],
            2,
            "tcp://127.0.0.1",
        ),
        (vec!["--ready".into(), "sometimes".into()], 2, "sometimes"),
        (vec!["--restart".into(), "always".into()], 2, "always"),
        (
            vec![
                "--listen".into(),
                format!("unix://{}", sock.display()),
                "--listen".into(),
                busy.clone(),
            ],
            1,
            "in use",
        ),
    ];
    for (args, code, named) in cases {
        let mut all: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let rt = dir.path("rt");
        all.extend([
            "--runtime-dir",
            rt.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &touch,
        ]);
        let mut init = Init::plain(&all);
        assert_eq!(init.wait_exit(), *code, "{args:?}\n{}", init.logs());
        let err = init.stderr();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
        assert!(!marker.exists(), "{args:?} started the command");
        assert!(!sock.exists(), "{args:?} left a socket file");
        assert!(!rt.exists(), "{args:?} left the runtime dir");
    }
}

#[test]
fn socket_activated_init_adopts_its_listen_fds() {
    need_unshare!();
    // A launcher binds a socket and execs handoff-init with LISTEN_FDS for its own pid (as
    // systemd or a socket-activating runtime would).
    let dir = TempDir::new();
    let port_file = dir.path("port");
    let rt = dir.path("rt");
    let launcher = format!(
        r#"
import os, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16)
open({port_file:?}, "w").write(str(s.getsockname()[1]))
os.dup2(s.fileno(), 3); os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="adopted")
os.execve({INIT:?}, [{INIT:?}, "--runtime-dir", {rt:?}, "--ready", "notify", "--", {SVC:?}, "http"], env)
"#
    );
    let mut child = Command::new("python3")
        .args(["-c", &launcher])
        .stdout(fs::File::create(dir.path("out")).unwrap())
        .stderr(fs::File::create(dir.path("err")).unwrap())
        .spawn()
        .unwrap();
    wait_until("port file", || {
        fs::read_to_string(&port_file).is_ok_and(|p| !p.is_empty())
    });
    let port: u16 = fs::read_to_string(&port_file).unwrap().parse().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_until("adopted socket served", || {
        fs::read_to_string(dir.path("err"))
            .unwrap_or_default()
            .contains("ready gen=1")
    });
    assert!(get(addr, "/").contains("gen=1"));
    let err = fs::read_to_string(dir.path("err")).unwrap();
    assert!(
        err.contains("listening on adopted=tcp://127.0.0.1:"),
        "{err}"
    );
    // SAFETY: kill(2) on the init this test started (python exec'd into it).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The endless/grace style: on SIGHUP the service forks a copy on the same sockets, the copy
/// stops its parent. Started by `sh start.sh` without exec.
#[test]
fn self_forking_service_is_followed_with_track_group() {
    need_unshare!();
    let dir = TempDir::new();
    let port = free_port();
    let start = dir.script(
        "start.sh",
        &format!("#!/bin/sh\n{SVC} http --bind 127.0.0.1:{port} --self-fork\n"),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut init = Init::start_in(
        dir,
        &["--track", "group", "--", start.to_str().unwrap()],
        Opts::default(),
    );
    wait_until("service up", || TcpStream::connect(addr).is_ok());
    let first = field(&get(addr, "/"), "pid");
    let load = busy(addr, 4, 50);
    // No listeners: SIGHUP is forwarded to the group; sh dies of it, the service forks.
    init.signal(libc::SIGHUP);
    wait_until("the copy serves", || field(&get(addr, "/"), "pid") != first);
    let ok = load.progress().ok;
    assert!(load.wait_until(DEADLINE, |p| p.ok >= ok + 50));
    let report = load.stop();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let logs = init.logs();
    assert!(
        logs.contains("received SIGHUP from outside the PID namespace; forwarded to process group"),
        "{logs}"
    );
    // Init kept running after the command (sh) exited, and reaped the old service.
    wait_until("old service reaped", || init.find("--self-fork").len() == 1);
    assert_eq!(zombies_under(init.pid()), 0);
    init.signal(libc::SIGTERM);
    assert_eq!(
        init.wait_exit(),
        0,
        "the survivor's status\n{}",
        init.logs()
    );
    assert!(init.logs().contains("graceful shutdown complete"));
}

#[test]
fn self_forking_service_is_followed_through_mainpid() {
    need_unshare!();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let p = port.to_string();
    let bind = format!("127.0.0.1:{p}");
    let dir = TempDir::new();
    let mut init = Sup::start_in(
        dir,
        &[
            "--ready",
            "notify",
            "--",
            SVC,
            "http",
            "--bind",
            &bind,
            "--self-fork",
        ],
        Opts::default(),
    )
    .init;
    wait_until("service up", || TcpStream::connect(addr).is_ok());
    let first = field(&get(addr, "/"), "pid");
    init.signal(libc::SIGHUP);
    wait_until("the copy serves", || field(&get(addr, "/"), "pid") != first);
    init.wait_for_output("main pid is now");
    wait_until("old one gone", || init.find("--self-fork").len() == 1);
    init.stop_cleanly();
}

#[test]
fn resources_stay_flat_over_200_handoffs() {
    need_unshare!();
    let sup = Sup::start(
        &["--listen", "tcp://127.0.0.1:0", "-q", "--", SVC, "http"],
        true,
    );
    sup.wait_serving(1);
    let pid = sup.init.pid();
    let rss = || {
        status_field(pid, "VmRSS")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    // Warm up: the allocator settles after the first handoffs.
    for _ in 0..20 {
        assert_eq!(sup.reload().0, 0);
    }
    wait_until("drained", || {
        sup.status().matches("generation ").count() == 1
    });
    let (fds_before, rss_before) = (fds(pid), rss());
    for _ in 0..200 {
        let (code, out) = sup.reload();
        assert_eq!(code, 0, "{out}");
    }
    wait_until("drained", || {
        sup.status().matches("generation ").count() == 1
    });
    wait_until("zero zombies", || zombies_under(pid) == 0);
    assert_eq!(fds(pid), fds_before, "init's fds changed");
    let (before, after) = (rss_before, rss());
    eprintln!("init VmRSS {before} kB -> {after} kB over 200 handoffs");
    assert!(
        after <= before + 64,
        "init's RSS grew from {before} kB to {after} kB"
    );
    assert!(sup.status().contains("handoffs: 220 done, 0 failed"));
}

#[test]
fn restart_on_failure_keeps_the_socket_and_clients_queue() {
    need_unshare!();
    let dir = TempDir::new();
    let count = dir.path("count");
    // Crashes twice (exit 1 after serving one request's worth of time), then serves.
    let start = dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}\nif [ $n -lt 2 ]; then exit 1; fi\nexec {SVC} http\n",
            c = count.display()
        ),
    );
    let sup = Sup::script(&start, &["--restart", "on-failure"]);
    let addr = sup.addr();
    // Connections made while no generation runs are queued by the kernel on the held socket.
    assert!(get(addr, "/").contains("gen=3"));
    assert_eq!(fs::read_to_string(&count).unwrap().trim(), "3");
    assert!(
        sup.init
            .stderr()
            .contains("no older generation: restarting in 100ms")
    );
    assert!(
        sup.init
            .stderr()
            .contains("no older generation: restarting in 200ms")
    );
}

/// A real third-party LISTEN_FDS consumer: gunicorn (from PyPI, installed by scripts/setup.sh)
/// takes the held socket, tells READY=1, and drains on SIGTERM.
#[test]
fn gunicorn_handoffs_under_load_fail_no_request() {
    need_unshare!();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let have = Command::new("python3")
        .args(["-c", "import gunicorn"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(have, "gunicorn is not installed: run scripts/setup.sh");
    let sup = Sup::start(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--",
            "python3",
            "-m",
            "gunicorn",
            "--chdir",
            fixtures,
            "--workers",
            "2",
            "--graceful-timeout",
            "20",
            "--log-level",
            "warning",
            "wsgi_app:application",
        ],
        true,
    );
    let addr = sup.addr();
    sup.wait_serving(1);
    let load = busy(addr, 16, 100);
    for n in 1..=10u32 {
        handoff_seen_by_clients(&sup, &load, n);
    }
    no_failed_request(load, 11);
}

#[test]
fn control_and_notify_sockets_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let sup = Sup::start(&["--ready", "delay:0s", "--", SVC, "wait"], false);
    sup.status();
    let rt = sup.control.parent().unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(rt), 0o700);
    assert_eq!(mode(&sup.control), 0o600);
    // Another user cannot use the control socket.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            INIT,
            "ctl",
            "status",
            "--control",
        ])
        .arg(&sup.control)
        .output()
        .expect("setpriv from util-linux");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach"),
        "{out:?}"
    );
}

#[test]
fn exec_probe_decides_readiness_per_generation() {
    need_unshare!();
    let flags = TempDir::new();
    let dir = flags.0.display().to_string();
    // The probe passes once a file for the probed generation exists; the service never notifies.
    let probe = format!("exec:test -e {dir}/ready-$HANDOFF_GENERATION");
    let sup = Sup::start(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--ready",
            &probe,
            "--",
            SVC,
            "wait",
        ],
        true,
    );
    fs::write(flags.path("ready-1"), "").unwrap();
    sup.wait_serving(1);
    sup.init.signal(libc::SIGHUP);
    wait_until("generation 2 starting", || {
        sup.status().contains("generation 2 pid")
    });
    // Generation 2 stays starting while its probe fails, and generation 1 keeps serving.
    let status = sup.status();
    assert!(
        status.contains("starting") && status.contains("generation 1 pid"),
        "{status}"
    );
    fs::write(flags.path("ready-2"), "").unwrap();
    sup.wait_serving(2);
    wait_until("generation 1 drained", || {
        !sup.status().contains("generation 1 pid")
    });
}

#[test]
fn delay_readiness_for_services_that_do_not_notify() {
    need_unshare!();
    let sup = Sup::start(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--ready",
            "delay:200ms",
            "--",
            SVC,
            "wait",
        ],
        true,
    );
    sup.wait_serving(1);
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: generation 2 serving"), "{out}");
    // The same answer as JSON, for scripts.
    let (code, out) = sup.ctl(&["reload", "--json"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("{\"ok\":true,\"generation\":3,\"pid\":"),
        "{out}"
    );
}

#[test]
fn pidfile_follows_a_daemonizing_command() {
    need_unshare!();
    let dir = TempDir::new();
    let (pidfile, report) = (dir.path("svc.pid"), dir.path("r"));
    // The command starts the service in the background, writes its pid and exits at once.
    let start = dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\n{SVC} wait --exit-code 5 --report {r} &\necho $! > {p}\n",
            r = report.display(),
            p = pidfile.display()
        ),
    );
    let mut init = Sup::start_in(
        dir,
        &[
            "--pidfile",
            pidfile.to_str().unwrap(),
            "--",
            start.to_str().unwrap(),
        ],
        Opts::default(),
    )
    .init;
    wait_until("service up", || {
        fs::read_to_string(&report).is_ok_and(|r| r.contains("waiting"))
    });
    init.wait_for_output("following pid");
    init.signal(libc::SIGUSR1);
    wait_until("USR1 forwarded to the followed service", || {
        fs::read_to_string(&report).is_ok_and(|r| r.contains("got SIGUSR1"))
    });
    init.signal(libc::SIGTERM);
    assert_eq!(
        init.wait_exit(),
        5,
        "the followed service's status\n{}",
        init.logs()
    );
}

#[test]
fn no_listen_pid_serves_a_service_behind_a_forking_wrapper() {
    need_unshare!();
    // sh runs the service as a child (no exec): LISTEN_PID would name sh, so it is left out.
    let wrapper = format!("{SVC} http");
    let sup = Sup::start(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--no-listen-pid",
            "--",
            "sh",
            "-c",
            &wrapper,
        ],
        true,
    );
    let addr = sup.addr();
    sup.wait_serving(1);
    assert!(get(addr, "/").contains("gen=1"));
    let svc = sup
        .init
        .find("handoff-testsvc http")
        .into_iter()
        .find(|p| {
            fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(SVC.as_bytes()))
        })
        .expect("the service, child of sh");
    let env = fs::read(format!("/proc/{svc}/environ")).unwrap();
    let env = String::from_utf8_lossy(&env);
    assert!(
        env.contains("LISTEN_FDS=1") && !env.contains("LISTEN_PID="),
        "{env}"
    );
}

#[test]
fn what_a_drained_generation_leaves_behind_is_killed_at_the_drain_deadline() {
    need_unshare!();
    let dir = TempDir::new();
    // Generation 1 starts a helper that ignores SIGTERM, in its process group, then the service.
    let start = dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\nif [ \"$HANDOFF_GENERATION\" = 1 ]; then sh -c 'trap \"\" TERM; : > {trapped}; while :; do sleep 0.05; done' & fi\nexec {SVC} http\n",
            trapped = dir.path("trapped").display()
        ),
    );
    let sup = Sup::script(&start, &["--drain-timeout", "500ms"]);
    sup.wait_serving(1);
    // Once its trap is set: a SIGTERM before that would simply end it.
    wait_until("the helper ignores SIGTERM", || {
        dir.path("trapped").exists()
    });
    let stubborn = sup.init.find_one("trap");
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{out}");
    // Generation 1's service drains and exits; its helper stays until the drain deadline.
    wait_until("generation 1 gone", || {
        !sup.status().contains("generation 1 pid")
    });
    assert!(
        !procs_alive(stubborn),
        "the helper outlived its generation's drain deadline"
    );
    assert!(
        sup.init.stderr().contains("generation 1: drain timeout"),
        "{}",
        sup.init.stderr()
    );
}

fn procs_alive(pid: i32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

#[test]
fn ready_is_passed_upstream_once_the_first_generation_is_ready() {
    need_unshare!();
    let dir = TempDir::new();
    let upstream_path = dir.path("upstream.sock");
    let upstream = std::os::unix::net::UnixDatagram::bind(&upstream_path).unwrap();
    upstream.set_read_timeout(Some(DEADLINE)).unwrap();
    let up = upstream_path.to_str().unwrap();
    let sup = Sup::start_env(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--",
            SVC,
            "http",
            "--start-delay",
            "300",
        ],
        true,
        &[("NOTIFY_SOCKET", up)],
    );
    let mut buf = [0u8; 512];
    let n = upstream.recv(&mut buf).expect("READY=1 from handoff-init");
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(msg.starts_with("READY=1\n"), "{msg}");
    // By then generation 1 is serving, and the service got init's own NOTIFY_SOCKET.
    assert!(sup.status().contains("generation 1 pid"));
    let svc = sup.init.find_one("handoff-testsvc http");
    let env =
        String::from_utf8_lossy(&fs::read(format!("/proc/{svc}/environ")).unwrap()).into_owned();
    assert!(env.contains("NOTIFY_SOCKET=") && !env.contains(up), "{env}");
}

#[test]
fn track_group_exits_with_the_status_of_the_service_behind_a_script() {
    need_unshare!();
    let dir = TempDir::new();
    let report = dir.path("r");
    // The seed pitfall's script (no exec); the service takes 300 ms to shut down, then exits 7.
    let start = dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\n{SVC} wait --cleanup 300 --exit-code 7 --report {}\n",
            report.display()
        ),
    );
    let mut init = Sup::start_in(
        dir,
        &["--track", "group", "--", start.to_str().unwrap()],
        Opts::default(),
    )
    .init;
    wait_until("service up", || {
        fs::read_to_string(&report).is_ok_and(|r| r.contains("waiting"))
    });
    init.signal(libc::SIGTERM);
    // sh dies of SIGTERM at once (143); the generation lasts until its group is empty, and its
    // status is the service's.
    assert_eq!(init.wait_exit(), 7, "{}", init.logs());
}

#[test]
fn custom_handoff_and_stop_signals() {
    need_unshare!();
    let sup = Sup::start(
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--handoff-signal",
            "USR2",
            "--stop-signal",
            "QUIT",
            "--",
            SVC,
            "http",
        ],
        true,
    );
    sup.wait_serving(1);
    // HUP is not the handoff signal here: it is forwarded to the service.
    sup.init.signal(libc::SIGHUP);
    sup.init.wait_for_output("got SIGHUP from pid 1");
    sup.init.signal(libc::SIGUSR2);
    sup.wait_serving(2);
    // The old generation is drained with SIGQUIT.
    sup.init.wait_for_output("got SIGQUIT from pid 1");
    wait_until("generation 1 gone", || {
        !sup.status().contains("generation 1 pid")
    });
    assert!(
        !sup.init.stderr().contains("got SIGTERM"),
        "{}",
        sup.init.stderr()
    );
}

#[test]
fn after_a_handoff_the_terminal_belongs_to_the_new_generation() {
    need_unshare!();
    let dir = TempDir::new();
    let (rt, log) = (dir.path("rt"), dir.path("log"));
    let control = rt.join("control.sock");
    let cmd = format!(
        "unshare --pid --fork --mount-proc {INIT} -v --runtime-dir {} --listen tcp://127.0.0.1:0 -- {SVC} http 2>{}",
        rt.display(),
        log.display()
    );
    let script = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("script(1) from util-linux");
    let mut script = Guard(script);
    let ctl = |verb: &str| {
        let out = Command::new(INIT)
            .args(["ctl", verb, "--control"])
            .arg(&control)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let logs = || fs::read_to_string(&log).unwrap_or_default();
    wait_until("generation 1 ready", || logs().contains("ready gen=1"));
    let (code, out) = ctl("reload");
    assert_eq!(code, Some(0), "{out}");
    wait_until("the terminal handed to generation 2", || {
        logs().contains("generation 2: now the terminal's foreground group")
    });
    let svc = descendants(script.0.id() as i32)
        .into_iter()
        .filter(|&p| {
            fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(SVC.as_bytes()))
        })
        .find(|&p| {
            state(p).is_some_and(|s| s != 'Z')
                && fs::read(format!("/proc/{p}/environ"))
                    .is_ok_and(|e| String::from_utf8_lossy(&e).contains("HANDOFF_GENERATION=2"))
        })
        .expect("generation 2's service");
    let (_, _, pgrp, _, tpgid) = stat(svc).unwrap();
    assert_eq!(
        tpgid, pgrp,
        "generation 2's group is the terminal's foreground group"
    );
    // Ctrl-C now reaches generation 2 (it drains on SIGINT).
    script.0.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let ns_pid = status_field(svc, "NSpid").unwrap();
    let ns_pid = ns_pid.split_whitespace().last().unwrap().to_string();
    let line = format!("testsvc[{ns_pid}]: got SIGINT");
    wait_until("SIGINT reached generation 2", || logs().contains(&line));
}

#[test]
fn a_non_root_init_keeps_its_sockets_under_tmp_and_ctl_finds_them() {
    // As a user who cannot write /run (Kubernetes' runAsNonRoot), with no --runtime-dir.
    let as_nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let dir = TempDir::new();
    set_mode(&dir.0, 0o777);
    let out = dir.path("out");
    let child = Command::new("setpriv")
        .args(as_nobody)
        .args([INIT, "--listen", "tcp://127.0.0.1:0", "--", SVC, "http"])
        .env_remove("TMPDIR")
        .env_remove("HANDOFF_RUNTIME_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&out).unwrap())
        .spawn()
        .expect("setpriv from util-linux");
    let _guard = Guard(child);
    let logs = || fs::read_to_string(&out).unwrap_or_default();
    wait_until("generation 1 ready", || {
        logs().contains("generation 1: ready")
    });
    assert!(
        logs().contains("runtime dir /tmp/handoff-init-65534"),
        "{}",
        logs()
    );
    let status = Command::new("setpriv")
        .args(as_nobody)
        .args([INIT, "ctl", "status"])
        .env_remove("TMPDIR")
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{status:?}\n{}", logs());
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("generation 1 pid"),
        "{status:?}"
    );
}

/// The accept queue of a held socket is the kernel's maximum (net.core.somaxconn), when it is
/// bound and when init listens again after a generation shut it down: while generations change
/// nobody accepts for a moment, and libc's SOMAXCONN (128 for musl) would drop a burst of
/// clients. In a private network namespace, so somaxconn can be set to a value no libc has.
#[test]
fn held_sockets_queue_up_to_somaxconn_also_after_a_repair() {
    need_unshare!();
    let dir = TempDir::new();
    let go = dir.path("go");
    // Generation 1, once told to, breaks the shared socket with shutdown(2) and crashes;
    // generation 2 serves.
    let svc = dir.script(
        "svc.sh",
        &format!(
            "#!/bin/sh\n\
         if [ \"$HANDOFF_GENERATION\" = 1 ]; then\n\
         while [ ! -e {go} ]; do sleep 0.01; done\n\
         python3 -c 'import socket; socket.socket(fileno=3).shutdown(socket.SHUT_RDWR)'\n\
         exit 1\n\
         fi\n\
         exec sleep 1000\n",
            go = go.display()
        ),
    );
    let init = Sup::start_in(
        dir,
        &[
            "--listen",
            "tcp://0.0.0.0:8080",
            "--restart",
            "on-failure",
            "--",
            svc.to_str().unwrap(),
        ],
        Opts {
            shell_prefix: Some(
                "exec unshare --net sh -c 'echo 6000 > /proc/sys/net/core/somaxconn && exec \"$@\"'",
            ),
            ..Opts::default()
        },
    )
    .init;
    let netns = format!("--net=/proc/{}/ns/net", init.pid());
    // ss shows a listener's accept queue limit (sk_max_ack_backlog) as its Send-Q.
    let backlog = || {
        let out = Command::new("nsenter")
            .args([netns.as_str(), "ss", "-Hltn", "sport = :8080"])
            .output()
            .expect("nsenter and ss");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .map(String::from)
    };
    wait_until("generation 1 running", || !init.find("svc.sh").is_empty());
    assert_eq!(
        backlog().as_deref(),
        Some("6000"),
        "as bound\n{}",
        init.logs()
    );
    fs::write(&go, "").unwrap();
    init.wait_for_output("listener tcp-8080 was shut down by a generation; listening again");
    init.wait_for_output("generation 2");
    wait_until("generation 2 running", || {
        !init.find("sleep 1000").is_empty()
    });
    assert_eq!(
        backlog().as_deref(),
        Some("6000"),
        "repaired\n{}",
        init.logs()
    );
}
