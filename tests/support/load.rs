//! A small HTTP/1.1 load client for the integration tests: N client threads, each sending
//! `GET path` to the service in a loop, every request judged strictly.
//!
//! A request is OK only when a complete `200` response with its whole body (Content-Length) was
//! read. Everything else (connect refused, reset, EOF mid-response, timeout, other status) is a
//! failure, recorded with its reason and never retried: a request written on a keep-alive
//! connection the server had already closed counts as failed, because a service that drains
//! correctly (answers with `Connection: close` first) never causes one. After a `Connection:
//! close` response the client opens a new connection for its next request; that is not a
//! failure.
//!
//! Use it from a test crate as `#[path = "support/load.rs"] mod load;` (or `pub mod load;` in
//! tests/support/mod.rs). Not every test uses every item, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Where the service listens.
#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// How clients use connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnMode {
    /// One connection reused until the server says `Connection: close` (or it fails).
    KeepAlive,
    /// A new connection per request, sent with `Connection: close`.
    NewPerRequest,
    /// Even-numbered clients keep alive, odd-numbered ones connect per request.
    Mixed,
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: Target,
    pub clients: usize,
    pub mode: ConnMode,
    /// Request target, e.g. `/` or `/slow?delay=200`.
    pub path: String,
    /// Bound on connecting and on each whole request (write + complete response).
    pub timeout: Duration,
    /// Stop after this many requests in total (the clients then finish on their own).
    pub max_requests: Option<u64>,
    /// Pause between two requests of one client (zero: as fast as possible).
    pub pause: Duration,
}

impl LoadConfig {
    /// 4 clients, mixed keep-alive and per-request connections, `GET /`, 10 s timeout, no limit.
    pub fn new(addr: SocketAddr) -> LoadConfig {
        LoadConfig::for_target(Target::Tcp(addr))
    }

    pub fn unix(path: impl Into<PathBuf>) -> LoadConfig {
        LoadConfig::for_target(Target::Unix(path.into()))
    }

    fn for_target(target: Target) -> LoadConfig {
        LoadConfig {
            target,
            clients: 4,
            mode: ConnMode::Mixed,
            path: "/".to_string(),
            timeout: Duration::from_secs(10),
            max_requests: None,
            pause: Duration::ZERO,
        }
    }
}

/// One failed request.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Since the load started.
    pub at: Duration,
    pub client: usize,
    pub reason: String,
}

/// Counts so far, for waiting on conditions while the load runs.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    /// `gen=` values in order of first appearance, with the OK responses that carried each.
    pub gens: Vec<(u64, u64)>,
    /// Requests finished (answered or failed), per client.
    pub done_by_client: Vec<u64>,
}

impl Progress {
    /// OK responses that came from generation `generation`.
    pub fn ok_from_gen(&self, generation: u64) -> u64 {
        self.gens
            .iter()
            .find(|(g, _)| *g == generation)
            .map_or(0, |(_, n)| *n)
    }
}

/// The outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub total: u64,
    pub ok: u64,
    pub failures: Vec<Failure>,
    /// `gen=` values in order of first appearance, with counts.
    pub gens: Vec<(u64, u64)>,
    /// `pid=` values in order of first appearance, with counts.
    pub pids: Vec<(u32, u64)>,
    /// (ok, failed) per second of the run, index = second since start.
    pub per_second: Vec<(u64, u64)>,
    /// Responses that carried `Connection: close` on a keep-alive connection.
    pub closes_by_server: u64,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn gen_values(&self) -> Vec<u64> {
        self.gens.iter().map(|(g, _)| *g).collect()
    }

    /// One line for assertion messages, with the first few failures and a count of reasons.
    pub fn summary(&self) -> String {
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &self.failures {
            *reasons.entry(f.reason.as_str()).or_default() += 1;
        }
        format!(
            "total={} ok={} failed={} gens={:?} pids={:?} server_closes={} elapsed={:?} reasons={:?} first={:?}",
            self.total,
            self.ok,
            self.failures.len(),
            self.gens,
            self.pids,
            self.closes_by_server,
            self.elapsed,
            reasons,
            self.failures.iter().take(5).collect::<Vec<_>>()
        )
    }

    /// `second ok failed` lines, for plots.
    pub fn per_second_table(&self) -> String {
        self.per_second
            .iter()
            .enumerate()
            .map(|(s, (ok, failed))| format!("{s} {ok} {failed}\n"))
            .collect()
    }
}

/// What the client threads record into.
#[derive(Default)]
struct Stats {
    report: LoadReport,
    done_by_client: Vec<u64>,
}

impl Stats {
    fn record(&mut self, at: Duration, client: usize, outcome: Result<Response, String>) {
        let second = at.as_secs() as usize;
        if self.report.per_second.len() <= second {
            self.report.per_second.resize(second + 1, (0, 0));
        }
        self.report.total += 1;
        if self.done_by_client.len() <= client {
            self.done_by_client.resize(client + 1, 0);
        }
        self.done_by_client[client] += 1;
        match outcome {
            Ok(response) => {
                self.report.ok += 1;
                self.report.per_second[second].0 += 1;
                bump(&mut self.report.gens, response.generation);
                bump(&mut self.report.pids, response.pid);
            }
            Err(reason) => {
                self.report.per_second[second].1 += 1;
                self.report.failures.push(Failure { at, client, reason });
            }
        }
    }
}

fn bump<K: PartialEq>(counts: &mut Vec<(K, u64)>, key: K) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key, 1)),
    }
}

/// A running load; `stop()` ends it and returns the report.
pub struct LoadHandle {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

/// Starts the client threads.
pub fn start(cfg: LoadConfig) -> LoadHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(Stats::default()));
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cfg = Arc::new(cfg);
    let threads = (0..cfg.clients)
        .map(|client| {
            let (cfg, stop, stats, issued) =
                (cfg.clone(), stop.clone(), stats.clone(), issued.clone());
            thread::Builder::new()
                .name(format!("load-{client}"))
                .spawn(move || {
                    Client::new(client, &cfg, started).run(&stop, &stats, &issued);
                })
                .expect("spawn a load client thread")
        })
        .collect();
    LoadHandle {
        stop,
        stats,
        threads,
        started,
    }
}

fn lock(stats: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

impl LoadHandle {
    pub fn progress(&self) -> Progress {
        let stats = lock(&self.stats);
        Progress {
            total: stats.report.total,
            ok: stats.report.ok,
            failed: stats.report.failures.len() as u64,
            gens: stats.report.gens.clone(),
            done_by_client: stats.done_by_client.clone(),
        }
    }

    /// Waits until every client has finished `n` more requests than now. With `n` ≥ 2 each
    /// client has then finished a request it sent after this call: whatever a server sent
    /// before it (a response in a socket buffer, read late by a starved client) is counted.
    pub fn wait_each_client(&self, timeout: Duration, n: u64) -> bool {
        let clients = self.threads.len();
        let mut base = self.progress().done_by_client;
        base.resize(clients, 0);
        self.wait_until(timeout, |p| {
            (0..clients).all(|c| p.done_by_client.get(c).copied().unwrap_or(0) >= base[c] + n)
        })
    }

    /// Polls `cond` (every 10 ms) until it holds or `timeout` passes; returns whether it held.
    pub fn wait_until(&self, timeout: Duration, cond: impl Fn(&Progress) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.progress()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until every client has finished (only happens with `max_requests`).
    pub fn wait_done(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.threads.iter().any(|t| !t.is_finished()) {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Ends the run: no new requests start; requests in flight finish (bounded by the timeout).
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
        let mut report = std::mem::take(&mut lock(&self.stats).report);
        report.elapsed = self.started.elapsed();
        report
    }
}

/// A parsed OK response.
struct Response {
    pid: u32,
    generation: u64,
    close: bool,
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Conn::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Client<'a> {
    id: usize,
    cfg: &'a LoadConfig,
    keep_alive: bool,
    started: Instant,
    conn: Option<Conn>,
}

impl<'a> Client<'a> {
    fn new(id: usize, cfg: &'a LoadConfig, started: Instant) -> Client<'a> {
        let keep_alive = match cfg.mode {
            ConnMode::KeepAlive => true,
            ConnMode::NewPerRequest => false,
            ConnMode::Mixed => id.is_multiple_of(2),
        };
        Client {
            id,
            cfg,
            keep_alive,
            started,
            conn: None,
        }
    }

    fn run(&mut self, stop: &AtomicBool, stats: &Mutex<Stats>, issued: &AtomicU64) {
        while !stop.load(Ordering::SeqCst) {
            if let Some(max) = self.cfg.max_requests
                && issued.fetch_add(1, Ordering::SeqCst) >= max
            {
                return;
            }
            let outcome = self.request();
            let at = self.started.elapsed();
            if let Ok(r) = &outcome
                && r.close
                && self.keep_alive
            {
                lock(stats).report.closes_by_server += 1;
            }
            lock(stats).record(at, self.id, outcome);
            if !self.cfg.pause.is_zero() {
                thread::sleep(self.cfg.pause);
            }
        }
    }

    /// One request; the connection is kept only after a response that allows it.
    fn request(&mut self) -> Result<Response, String> {
        let deadline = Instant::now() + self.cfg.timeout;
        let reused = self.conn.is_some();
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let tag = if reused { " (reused connection)" } else { "" };
        let result = self.exchange(&mut conn, deadline).map_err(|e| e + tag);
        if let Ok(r) = &result
            && self.keep_alive
            && !r.close
        {
            self.conn = Some(conn);
        }
        result
    }

    fn connect(&self) -> Result<Conn, String> {
        let conn = match &self.cfg.target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, self.cfg.timeout)
                    .map_err(|e| format!("connect: {}", describe(&e)))?;
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }
            Target::Unix(path) => Conn::Unix(
                UnixStream::connect(path).map_err(|e| format!("connect: {}", describe(&e)))?,
            ),
        };
        Ok(conn)
    }

    fn exchange(&self, conn: &mut Conn, deadline: Instant) -> Result<Response, String> {
        let connection = if self.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: load\r\nConnection: {connection}\r\n\r\n",
            self.cfg.path
        );
        conn.set_timeouts(left(deadline)?)
            .map_err(|e| format!("set timeout: {}", describe(&e)))?;
        conn.write_all(request.as_bytes())
            .map_err(|e| format!("write: {}", describe(&e)))?;
        read_response(conn, deadline)
    }
}

fn left(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("timeout".to_string());
    }
    Ok(left)
}

/// Error text without the varying OS error number, so that reasons group well.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout".to_string(),
        kind => format!("{kind:?}"),
    }
}

/// Reads one whole response: head, then exactly Content-Length body bytes.
fn read_response(conn: &mut Conn, deadline: Instant) -> Result<Response, String> {
    let mut buf = Vec::with_capacity(512);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head too long".to_string());
        }
        read_more(conn, &mut buf, deadline, "head")?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    let http10 = status.starts_with("HTTP/1.0");
    let (mut length, mut close, mut keep_alive) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "connection" => {
                close |= value.split(',').any(|t| t.trim() == "close");
                keep_alive |= value.split(',').any(|t| t.trim() == "keep-alive");
            }
            _ => {}
        }
    }
    let length = length.ok_or_else(|| format!("no Content-Length in {status:?}"))?;
    while buf.len() < head_end + length {
        read_more(conn, &mut buf, deadline, "body")?;
    }
    if code != "200" {
        return Err(format!("status {code}"));
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    let field = |name: &str| {
        body.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(pid), Some(generation)) = (field("pid="), field("gen=")) else {
        return Err(format!("unexpected body {body:?}"));
    };
    Ok(Response {
        pid: pid as u32,
        generation,
        close: close || (http10 && !keep_alive),
    })
}

fn read_more(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    deadline: Instant,
    part: &str,
) -> Result<(), String> {
    conn.set_timeouts(left(deadline)?)
        .map_err(|e| format!("set timeout: {}", describe(&e)))?;
    let mut chunk = [0u8; 4096];
    match conn.read(&mut chunk) {
        Ok(0) if buf.is_empty() => Err("eof before response".to_string()),
        Ok(0) => Err(format!("eof in {part} after {} bytes", buf.len())),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(format!("read {part}: {}", describe(&e))),
    }
}
