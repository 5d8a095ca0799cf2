//! `handoff-testsvc http`: a small HTTP/1.1 server with the lifecycle of a real service
//! (sockets from LISTEN_FDS, READY=1 when it starts accepting, graceful drain on SIGTERM) and
//! knobs to make it misbehave in the ways the init must survive.
//!
//! Threads: the main thread owns the lifecycle and is the only one that takes signals
//! (sigtimedwait, everything blocked); one accept thread per listener; one thread per connection.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::listen::{self, Conn, Listener};
use crate::notify::Notifier;
use crate::{HttpArgs, log, selffork, sys};

/// How long a connection may take to send one request head (or body) once it started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections are closed after this when not draining.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// What the connection threads share with the main thread.
struct Shared {
    pid: u32,
    generation: u64,
    request_delay: Duration,
    drain_idle: Duration,
    /// Shared with the health port, which answers 503 once it is set.
    draining: Arc<AtomicBool>,
    drain_started: OnceLock<Instant>,
    /// Read end of a pipe whose write end the main thread closes when draining starts: every
    /// idle connection thread polls it, so they all wake at once (POLLHUP) without a timer.
    drain_wakeup: OwnedFd,
    connections: Mutex<usize>,
    connections_done: Condvar,
}

/// What the main thread does with a signal.
enum Action {
    Drain,
    SelfFork,
    Reap,
    /// SIGUSR1: reload in place (Type=notify-reload): RELOADING=1, then READY=1.
    Reload,
    Nothing,
}

pub fn run(args: HttpArgs) -> i32 {
    let generation = std::env::var("HANDOFF_GENERATION")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(0u64);
    let parent = selffork::take_parent_marker();
    let listeners = match take_listeners(&args) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // Before any thread exists, so that every thread inherits the mask and only the main
    // thread ever takes a process-directed signal.
    let signals = handled_signals();
    if let Err(e) = signals.thread_block() {
        log(&format!("cannot block signals: {e}"));
        return 1;
    }
    if let Err(e) = sys::install_wake_handler() {
        log(&format!("cannot install the wake handler: {e}"));
        return 1;
    }
    let notifier = Notifier::from_env();

    if args.start_delay > 0 {
        // Signals are handled from here on (tests wait for this line before they send one).
        log(&format!("start delay {} ms", args.start_delay));
    }
    let start_deadline = Instant::now() + Duration::from_millis(args.start_delay);
    while let Some(left) = remaining(start_deadline) {
        if let Some(signo) = next_signal(&signals, Some(left))
            && matches!(decide(&args, signo, false), Action::Drain)
        {
            log("graceful shutdown complete");
            return 0;
        }
    }
    if args.fail_start {
        log("failing start as asked (--fail-start)");
        return 3;
    }
    if let Some(ms) = args.ready_then_exit {
        notifier.send(&format!("READY=1\nSTATUS=serving gen {generation}"));
        log(&format!(
            "ready gen={generation}, exiting in {ms} ms (--ready-then-exit)"
        ));
        let _ = next_signal(&signals, Some(Duration::from_millis(ms)));
        log("exiting with status 3 (--ready-then-exit)");
        return 3;
    }
    if args.never_ready {
        log("never ready (--never-ready): serving nothing");
        loop {
            if let Some(signo) = next_signal(&signals, None)
                && matches!(decide(&args, signo, false), Action::Drain)
            {
                log("graceful shutdown complete");
                return 0;
            }
        }
    }
    serve(args, generation, parent, listeners, &signals, &notifier)
}

/// Listeners from LISTEN_FDS, or bound from `--bind`. `Err` is the exit code.
fn take_listeners(args: &HttpArgs) -> Result<Vec<(String, Arc<Listener>)>, i32> {
    let listeners = match listen::take_listen_fds(args.require_listen_pid) {
        Err(e) => {
            log(&format!("LISTEN_FDS: {e}"));
            return Err(1);
        }
        Ok(Some(inherited)) => {
            for note in &inherited.notes {
                log(&format!("listening on {note}"));
            }
            inherited.listeners
        }
        Ok(None) => match listen::bind_all(&args.bind) {
            Err(e) => {
                log(&e.to_string());
                return Err(1);
            }
            Ok(bound) => {
                let mut named = Vec::new();
                for (i, (addr, listener)) in bound.into_iter().enumerate() {
                    log(&format!(
                        "listening on bind={addr} {}",
                        listen::describe(&listener)
                    ));
                    named.push((format!("bound{i}"), listener));
                }
                named
            }
        },
    };
    if listeners.is_empty()
        && !args.fail_start
        && !args.never_ready
        && args.ready_then_exit.is_none()
    {
        log("no listening socket: no LISTEN_FDS for this process and no --bind");
        return Err(1);
    }
    Ok(listeners
        .into_iter()
        .map(|(name, l)| (name, Arc::new(l)))
        .collect())
}

/// Everything but the synchronous fault signals (a real fault must kill us, as tini does) and
/// the private wake signal.
fn handled_signals() -> SigSet {
    let faults = [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGABRT,
        libc::SIGTRAP,
        libc::SIGSYS,
    ];
    let wake = sys::wake_signal();
    sys::sigset_of(sys::catchable_signals().filter(|s| !faults.contains(s) && *s != wake))
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

/// Takes one signal and logs it.
fn next_signal(signals: &SigSet, timeout: Option<Duration>) -> Option<i32> {
    let (signo, from) = sys::wait_signal(signals, timeout)?;
    log(&format!("got {} from pid {from}", sys::signal_name(signo)));
    Some(signo)
}

fn decide(args: &HttpArgs, signo: i32, serving: bool) -> Action {
    match signo {
        libc::SIGTERM if args.ignore_term => {
            log("SIGTERM ignored (--ignore-term)");
            Action::Nothing
        }
        libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => Action::Drain,
        libc::SIGHUP if args.self_fork && serving => Action::SelfFork,
        libc::SIGCHLD => Action::Reap,
        libc::SIGUSR1 if serving => Action::Reload,
        _ => Action::Nothing,
    }
}

fn serve(
    args: HttpArgs,
    generation: u64,
    parent: Option<Pid>,
    listeners: Vec<(String, Arc<Listener>)>,
    signals: &SigSet,
    notifier: &Notifier,
) -> i32 {
    let (drain_wakeup, drain_trigger) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            log(&format!("pipe2: {e}"));
            return 1;
        }
    };
    let shared = Arc::new(Shared {
        pid: std::process::id(),
        generation,
        request_delay: Duration::from_millis(args.request_delay),
        drain_idle: Duration::from_millis(args.drain_idle),
        draining: Arc::new(AtomicBool::new(false)),
        drain_started: OnceLock::new(),
        drain_wakeup,
        connections: Mutex::new(0),
        connections_done: Condvar::new(),
    });
    let mut acceptors = Vec::new();
    for (name, listener) in &listeners {
        let (s, l) = (shared.clone(), listener.clone());
        match thread::Builder::new()
            .name(format!("accept-{name}"))
            .spawn(move || accept_loop(&s, &l))
        {
            Ok(handle) => acceptors.push(handle),
            Err(e) => {
                log(&format!("cannot start the accept thread for {name}: {e}"));
                return 1;
            }
        }
    }
    if let Some(spec) = &args.health
        && let Err(e) = crate::health::start(spec, generation, shared.draining.clone())
    {
        log(&format!("health port {spec}: {e}"));
        return 1;
    }
    let mainpid = match parent {
        Some(_) => format!("MAINPID={}\n", shared.pid),
        None => String::new(),
    };
    notifier.send(&format!(
        "{mainpid}READY=1\nSTATUS=serving gen {generation}"
    ));
    log(&format!("ready gen={generation} fds={}", listeners.len()));
    if let Some(parent) = parent {
        log(&format!("self-fork copy ready: stopping parent {parent}"));
        if let Err(e) = kill(parent, Signal::SIGTERM) {
            log(&format!("kill({parent}, SIGTERM): {e}"));
        }
    }

    let mut copy: Option<Pid> = None;
    let mut watchdog = Watchdog::from_env(&args);
    loop {
        let Some(signo) = next_signal(signals, watchdog.due(&shared, notifier)) else {
            continue;
        };
        match decide(&args, signo, true) {
            Action::Drain => break,
            Action::SelfFork if copy.is_some() => log("a self-fork copy is already starting"),
            Action::SelfFork => match selffork::spawn_copy(&listeners) {
                Ok(pid) => {
                    log(&format!("self-fork: started copy {pid}"));
                    copy = Some(pid);
                }
                Err(e) => log(&format!("self-fork failed: {e}")),
            },
            Action::Reap => reap(&mut copy),
            Action::Reload if args.no_reload => log("reload asked: ignored (--no-reload)"),
            Action::Reload => {
                // sd_notify(3): RELOADING=1 with the CLOCK_MONOTONIC time, then READY=1.
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: clock_gettime with a valid out-pointer to a local.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
                let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
                notifier.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
                log("reloading");
                notifier.send(&format!(
                    "READY=1\nSTATUS=serving gen {generation}, reloaded"
                ));
                log("reloaded");
            }
            Action::Nothing => {}
        }
    }
    drain(&shared, drain_trigger, acceptors, listeners, notifier);
    0
}

/// sd_watchdog_enabled(3): WATCHDOG=1 every half WATCHDOG_USEC when WATCHDOG_PID is ours;
/// with --hang-after, the service hangs then: no keep-alive and no accept any more (in-flight
/// requests finish), as a deadlocked server would — or with --watchdog-trigger it says so.
struct Watchdog {
    every: Option<Duration>,
    next: Instant,
    hang_at: Option<Instant>,
    trigger: bool,
    hung: bool,
}

impl Watchdog {
    fn from_env(args: &HttpArgs) -> Watchdog {
        let ours = std::env::var("WATCHDOG_PID").ok() == Some(std::process::id().to_string());
        let every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| ours)
            .map(|us| Duration::from_micros(us / 2));
        let now = Instant::now();
        Watchdog {
            every,
            next: now,
            hang_at: args.hang_after.map(|ms| now + Duration::from_millis(ms)),
            trigger: args.watchdog_trigger,
            hung: false,
        }
    }

    /// Does what is due; returns how long until the next thing is.
    fn due(&mut self, shared: &Shared, notifier: &Notifier) -> Option<Duration> {
        let now = Instant::now();
        if !self.hung && self.hang_at.is_some_and(|t| t <= now) {
            self.hung = true;
            shared.draining.store(true, Ordering::SeqCst);
            if self.trigger {
                notifier.send("WATCHDOG=trigger");
            }
            log("hung (--hang-after): no more WATCHDOG=1, no more accepts");
        }
        if self.hung {
            return None;
        }
        let every = self.every?;
        if self.next <= now {
            notifier.send("WATCHDOG=1");
            self.next = now + every;
        }
        let until = self.hang_at.map_or(self.next, |h| h.min(self.next));
        Some(until.saturating_duration_since(now))
    }
}

/// Collects exited children (self-fork copies that failed before taking over).
fn reap(copy: &mut Option<Pid>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                log(&format!("child exited: {status:?}"));
                if status.pid().is_some() && status.pid() == *copy {
                    *copy = None;
                }
            }
        }
    }
}

/// Stop accepting, let in-flight requests finish, close keep-alive connections after their next
/// response or after `--drain-idle`, then return.
fn drain(
    shared: &Arc<Shared>,
    drain_trigger: OwnedFd,
    acceptors: Vec<JoinHandle<()>>,
    listeners: Vec<(String, Arc<Listener>)>,
    notifier: &Notifier,
) {
    let _ = shared.drain_started.set(Instant::now());
    shared.draining.store(true, Ordering::SeqCst);
    drop(drain_trigger);
    // Logged once the flag is set: from this line on, every response says Connection: close.
    log("draining");
    notifier.send("STOPPING=1");
    stop_acceptors(acceptors);
    // Closing our fds is all "stop listening" may mean: the init holds the same sockets for
    // the next generation, and shutdown(2) on a listener would break them for everybody.
    drop(listeners);
    let mut open = shared
        .connections
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    while *open > 0 {
        open = shared
            .connections_done
            .wait(open)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    log("graceful shutdown complete");
}

/// Interrupts every accept thread until it has seen the drain flag and returned. The signal is
/// re-sent because one sent just before a thread enters accept4 is consumed by the handler
/// without interrupting anything.
fn stop_acceptors(acceptors: Vec<JoinHandle<()>>) {
    use std::os::unix::thread::JoinHandleExt;
    while acceptors.iter().any(|h| !h.is_finished()) {
        for handle in acceptors.iter().filter(|h| !h.is_finished()) {
            sys::wake_thread(handle.as_pthread_t());
        }
        thread::sleep(Duration::from_millis(2));
    }
    for handle in acceptors {
        let _ = handle.join();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &Listener) {
    if let Err(e) = sys::unblock_wake_signal() {
        log(&format!("cannot unblock the wake signal: {e}"));
        return;
    }
    while !shared.draining.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok(conn) => start_connection(shared, conn),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if transient_accept_error(&e) => {
                log(&format!("accept: {e} (retrying)"));
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                log(&format!(
                    "accept on {} failed: {e}; no longer accepting on it",
                    listen::describe(listener)
                ));
                return;
            }
        }
    }
}

/// accept(2) errors after which the listener is still fine (see its ERRORS section).
fn transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EPROTO
                | libc::EPERM
                | libc::ETIMEDOUT
                | libc::EAGAIN
        )
    )
}

/// Counts the connection before its thread runs, so that the drain, which waits for the count
/// to reach zero after the accept threads are joined, cannot miss it.
fn start_connection(shared: &Arc<Shared>, conn: Conn) {
    *shared
        .connections
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) += 1;
    let s = shared.clone();
    let spawned = thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            serve_connection(&s, conn);
            s.connection_finished();
        });
    if let Err(e) = spawned {
        log(&format!("cannot start a connection thread: {e}"));
        shared.connection_finished();
    }
}

impl Shared {
    fn connection_finished(&self) {
        let mut open = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *open -= 1;
        if *open == 0 {
            self.connections_done.notify_all();
        }
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// A parsed request head.
struct Request {
    path: String,
    head_only: bool,
    delay: Option<Duration>,
    close: bool,
    content_length: usize,
}

/// Serves requests on one connection until the client closes it, it must close (Connection:
/// close, drain), or it times out.
fn serve_connection(shared: &Shared, mut conn: Conn) {
    let mut buf = Vec::with_capacity(1024);
    let mut drain_seen = false;
    loop {
        let Some(head_len) = read_head(shared, &mut conn, &mut buf, &mut drain_seen) else {
            return;
        };
        let request = match parse_head(&buf[..head_len]) {
            Ok(r) => r,
            Err(why) => {
                let _ = respond(&mut conn, 400, "Bad Request", &format!("{why}\n"), true);
                conn.shutdown_write();
                return;
            }
        };
        let total = head_len + request.content_length;
        if !fill(&mut conn, &mut buf, total) {
            return;
        }
        buf.drain(..total);
        let delay = request.delay.unwrap_or(shared.request_delay);
        if !delay.is_zero() {
            // The delay is the request's own work, so it counts as in flight during a drain.
            thread::sleep(delay);
        }
        // Read after the work: a drain that began meanwhile must close this connection.
        let close = request.close || shared.is_draining();
        let body = format!(
            "pid={} gen={} path={}\n",
            shared.pid, shared.generation, request.path
        );
        let sent = if request.head_only {
            respond_head(&mut conn, body.len(), close)
        } else {
            respond(&mut conn, 200, "OK", &body, close)
        };
        if sent.is_err() {
            return;
        }
        if close {
            conn.shutdown_write();
            return;
        }
    }
}

/// Reads until `buf` holds a complete request head; returns its length. `None` = close the
/// connection (EOF, error, timeout, idle past the drain deadline).
fn read_head(
    shared: &Shared,
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    drain_seen: &mut bool,
) -> Option<usize> {
    let started = Instant::now();
    loop {
        if let Some(end) = find_head_end(buf) {
            return Some(end);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let deadline = if !buf.is_empty() {
            started + REQUEST_TIMEOUT
        } else if *drain_seen {
            let drain_started = shared.drain_started.get().copied().unwrap_or(started);
            drain_started + shared.drain_idle
        } else {
            started + IDLE_TIMEOUT
        };
        let left = remaining(deadline)?;
        let (readable, drain_now) = wait_readable(conn, shared, *drain_seen, left)?;
        if drain_now {
            *drain_seen = true;
        }
        if readable && !read_some(conn, buf)? {
            return None;
        }
    }
}

/// Polls the connection (and the drain pipe until the drain was seen). Returns (connection
/// readable, drain started); `None` on a poll error.
fn wait_readable(
    conn: &Conn,
    shared: &Shared,
    drain_seen: bool,
    left: Duration,
) -> Option<(bool, bool)> {
    let mut fds = vec![PollFd::new(conn.fd(), PollFlags::POLLIN)];
    if !drain_seen {
        fds.push(PollFd::new(shared.drain_wakeup.as_fd(), PollFlags::POLLIN));
    }
    let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Some((false, false)),
        Err(_) => return None,
    }
    let fired = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    Some((fired(&fds[0]), fds.get(1).is_some_and(fired)))
}

/// One read into `buf`. `Some(false)` on EOF, `None` on error.
fn read_some(conn: &mut Conn, buf: &mut Vec<u8>) -> Option<bool> {
    let mut chunk = [0u8; 8192];
    match conn.read(&mut chunk) {
        Ok(0) => Some(false),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(true)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Some(true),
        Err(_) => None,
    }
}

/// Reads until `buf` holds `want` bytes (a request body), within REQUEST_TIMEOUT.
fn fill(conn: &mut Conn, buf: &mut Vec<u8>, want: usize) -> bool {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while buf.len() < want {
        let Some(left) = remaining(deadline) else {
            return false;
        };
        let mut fds = [PollFd::new(conn.fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        if poll(&mut fds, timeout).is_err() {
            return false;
        }
        if read_some(conn, buf) != Some(true) {
            return false;
        }
    }
    true
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_head(head: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad request line {request_line:?}"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        other => return Err(format!("unsupported version {other:?}")),
    };
    let (mut close_token, mut keep_alive_token, mut content_length) = (false, false, 0usize);
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "connection" => {
                for token in value.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                    close_token |= token == "close";
                    keep_alive_token |= token == "keep-alive";
                }
            }
            "content-length" => {
                content_length = value
                    .parse()
                    .ok()
                    .filter(|&n| n <= MAX_BODY)
                    .ok_or_else(|| format!("bad Content-Length {value:?}"))?;
            }
            "transfer-encoding" => return Err("Transfer-Encoding is not supported".to_string()),
            _ => {}
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut delay = None;
    for pair in query.split('&') {
        if let Some(ms) = pair.strip_prefix("delay=") {
            let ms: u64 = ms.parse().map_err(|_| format!("bad delay {ms:?}"))?;
            delay = Some(Duration::from_millis(ms));
        }
    }
    Ok(Request {
        path: path.to_string(),
        head_only: method == "HEAD",
        delay,
        // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 closes unless asked.
        close: if http11 {
            close_token
        } else {
            !keep_alive_token
        },
        content_length,
    })
}

fn connection_header(close: bool) -> &'static str {
    if close { "close" } else { "keep-alive" }
}

fn respond(conn: &mut Conn, code: u16, reason: &str, body: &str, close: bool) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
        body.len(),
        connection_header(close)
    );
    conn.write_all(response.as_bytes())
}

fn respond_head(conn: &mut Conn, length: usize, close: bool) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\nConnection: {}\r\n\r\n",
        connection_header(close)
    );
    conn.write_all(response.as_bytes())
}
