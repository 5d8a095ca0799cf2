//! Self-tests of the load client (tests/support/load.rs) against the real test service, and of
//! the test service's own LISTEN_FDS and drain behaviour, without handoff-init: the test holds
//! the listening socket itself, the way the init does.

mod common;
#[path = "support/load.rs"]
mod load;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use load::{ConnMode, LoadConfig};

use common::SVC as TESTSVC;
/// Generous: the machine may be loaded and the service is a debug build.
const DEADLINE: Duration = Duration::from_secs(30);

/// A running test service; its stderr lines are collected; killed on drop.
struct Svc {
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    reader: thread::JoinHandle<()>,
}

impl Svc {
    /// Runs `handoff-testsvc ARGS` binding its own socket.
    fn bound(args: &[&str]) -> Svc {
        Svc::spawn(Command::new(TESTSVC).args(args))
    }

    /// Runs `handoff-testsvc http ARGS` with `listener` as LISTEN_FDS=1 (fd 3) and LISTEN_PID
    /// set to the service's own pid: `sh` learns its pid ($$) and execs the service, which
    /// keeps it, just as an init sets LISTEN_PID between fork and exec.
    fn with_listener(listener: &TcpListener, generation: u64, args: &[&str]) -> Svc {
        let fd = listener.as_raw_fd();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\"")
            .arg(TESTSVC)
            .arg("http")
            .args(args)
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", "web")
            .env("HANDOFF_GENERATION", generation.to_string());
        // SAFETY: between fork and exec only async-signal-safe dup2/fcntl run.
        unsafe {
            cmd.pre_exec(move || pass_as_fd3(fd));
        }
        Svc::spawn(&mut cmd)
    }

    fn spawn(cmd: &mut Command) -> Svc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start handoff-testsvc");
        let stderr = child.stderr.take().expect("stderr pipe");
        let (tx, lines) = channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Svc {
            child,
            lines,
            log,
            reader,
        }
    }

    /// The first stderr line (from now on) containing `needle`.
    fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {needle:?}; log: {:#?}", self.log()),
            }
        }
    }

    /// Waits for `listening on ... tcp ADDR` and `ready`; returns ADDR.
    fn wait_ready(&self) -> SocketAddr {
        let line = self.wait_line("listening on");
        let addr = line
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        self.wait_line("ready gen=");
        addr
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, which is not reaped before wait_exit.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for the exit and for the end of its stderr, so that `log()` is then complete.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                while !self.reader.is_finished() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(5));
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "service did not exit; log: {:#?}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Child side of `pre_exec`: put `fd` at 3 without FD_CLOEXEC.
fn pass_as_fd3(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2(2)/fcntl(2) on fds this process owns; both are async-signal-safe.
    let rc = unsafe {
        if fd == 3 {
            // dup2(3, 3) would keep FD_CLOEXEC set; clear it instead.
            libc::fcntl(3, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, 3)
        }
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn shared_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

#[test]
fn steady_load_has_no_failures() {
    let mut svc = Svc::bound(&["http", "--bind", "127.0.0.1:0"]);
    let addr = svc.wait_ready();
    let mut cfg = LoadConfig::new(addr);
    cfg.mode = ConnMode::Mixed;
    cfg.max_requests = Some(1500);
    let load = load::start(cfg);
    assert!(load.wait_done(DEADLINE), "load did not finish");
    let report = load.stop();
    assert!(report.failures.is_empty(), "{}", report.summary());
    assert_eq!(report.total, 1500, "{}", report.summary());
    assert_eq!(report.ok, 1500, "{}", report.summary());
    assert_eq!(report.gens, vec![(0, 1500)], "{}", report.summary());
    assert_eq!(report.pids, vec![(svc.child.id(), 1500)]);
    let per_second: u64 = report.per_second.iter().map(|(ok, _)| ok).sum();
    assert_eq!(per_second, 1500);

    svc.signal(libc::SIGTERM);
    assert_eq!(svc.wait_exit().code(), Some(0));
    assert!(
        svc.log()
            .iter()
            .any(|l| l.ends_with("graceful shutdown complete"))
    );
}

#[test]
fn killing_the_server_mid_load_is_reported_as_failures() {
    let mut svc = Svc::bound(&["http", "--bind", "127.0.0.1:0"]);
    let addr = svc.wait_ready();
    let load = load::start(LoadConfig::new(addr));
    assert!(load.wait_until(DEADLINE, |p| p.ok >= 100), "no progress");
    svc.signal(libc::SIGKILL);
    svc.wait_exit();
    // Nothing listens any more: every request from now on must fail.
    assert!(
        load.wait_until(DEADLINE, |p| p.failed >= 20),
        "the client did not report failures"
    );
    let report = load.stop();
    assert!(report.ok >= 100, "{}", report.summary());
    assert!(report.failures.len() >= 20, "{}", report.summary());
    assert_eq!(report.total, report.ok + report.failures.len() as u64);
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.reason.starts_with("connect: ConnectionRefused")),
        "{}",
        report.summary()
    );
}

#[test]
fn handoff_on_a_held_socket_loses_no_request() {
    let listener = shared_listener();
    let addr = listener.local_addr().unwrap();
    let mut gen1 = Svc::with_listener(&listener, 1, &[]);
    assert_eq!(gen1.wait_ready(), addr);
    assert!(gen1.log().iter().any(|l| l.contains("fd=3 name=web tcp")));

    let mut cfg = LoadConfig::new(addr);
    cfg.clients = 6;
    cfg.path = "/handoff?delay=5".to_string();
    let load = load::start(cfg);
    assert!(load.wait_until(DEADLINE, |p| p.ok >= 200), "no progress");

    let mut gen2 = Svc::with_listener(&listener, 2, &[]);
    gen2.wait_ready();
    gen1.signal(libc::SIGTERM);
    gen1.wait_line("draining");
    assert_eq!(gen1.wait_exit().code(), Some(0), "{:#?}", gen1.log());
    assert!(
        gen1.log()
            .iter()
            .any(|l| l.ends_with("graceful shutdown complete"))
    );
    assert!(
        load.wait_until(DEADLINE, |p| p.ok_from_gen(2) >= 200),
        "generation 2 does not serve"
    );
    let report = load.stop();
    assert!(report.failures.is_empty(), "{}", report.summary());
    assert_eq!(report.gen_values(), vec![1, 2], "{}", report.summary());
    // The keep-alive clients were told to reconnect by gen 1's drain.
    assert!(report.closes_by_server >= 1, "{}", report.summary());

    gen2.signal(libc::SIGTERM);
    assert_eq!(gen2.wait_exit().code(), Some(0));
}

#[test]
fn idle_keepalive_connections_are_closed_after_drain_idle() {
    use std::io::{Read, Write};
    let mut svc = Svc::bound(&["http", "--bind", "127.0.0.1:0", "--drain-idle", "300"]);
    let addr = svc.wait_ready();
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("Connection: keep-alive"));
    let started = Instant::now();
    svc.signal(libc::SIGTERM);
    svc.wait_line("draining");
    // Idle past --drain-idle: the server closes it (EOF), then finishes.
    idle.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(svc.wait_exit().code(), Some(0));
}

#[test]
fn keepalive_request_during_drain_is_answered_with_connection_close() {
    use std::io::{Read, Write};
    let mut svc = Svc::bound(&["http", "--bind", "127.0.0.1:0", "--drain-idle", "20000"]);
    let addr = svc.wait_ready();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("keep-alive"));
    svc.signal(libc::SIGTERM);
    svc.wait_line("draining");
    conn.write_all(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.contains("Connection: close"), "{response}");
    assert!(response.ends_with("path=/b\n"), "{response}");
    // Well before --drain-idle: the only connection is done, so the service is too.
    assert_eq!(svc.wait_exit().code(), Some(0));
}

#[test]
fn listen_fds_for_another_pid_are_ignored() {
    let listener = shared_listener();
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(TESTSVC);
    cmd.arg("http")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1");
    // SAFETY: only dup2/fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || pass_as_fd3(fd));
    }
    let mut svc = Svc::spawn(&mut cmd);
    assert_eq!(svc.wait_exit().code(), Some(1));
    let log = svc.log().join("\n");
    assert!(log.contains("LISTEN_PID=1 is not our pid"), "{log}");
    assert!(log.contains("no listening socket"), "{log}");
}

#[test]
fn fail_start_exits_3() {
    let mut svc = Svc::bound(&["http", "--bind", "127.0.0.1:0", "--fail-start"]);
    assert_eq!(svc.wait_exit().code(), Some(3));
    assert!(svc.log().iter().any(|l| l.contains("--fail-start")));
}
