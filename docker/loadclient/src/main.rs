//! HTTP load for rolling-update tests (docker/e2e.sh case f): CLIENTS threads, each doing one
//! request per connection, resolving the target name again for every connection and taking its
//! addresses in turn, as a client of a Swarm `dnsrr` service does. Each request asks the test
//! service to hold its answer for DELAY ms, so requests are in flight whenever a task is stopped;
//! the clients start one after another over that time.
//!
//! While running, STATUS (when given) holds one line `requests failed addresses newest_gen`,
//! replaced atomically every 100 ms. At the end one line on stdout:
//! `requests=N failed=M addresses=K gens=A-B`; the first failures are on stderr. Exit status 0
//! when nothing failed, 1 when something did, 2 for a usage error.

mod dns;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: handoff-loadclient --target HOST:PORT [--clients N] [--delay MS] \
[--interval MS] [--timeout MS] [--seconds S] [--stop-file PATH] [--status-file PATH] \
[--nameserver IP[:PORT]]";

/// Failures printed to stderr (the count covers all of them).
const SHOWN_FAILURES: u64 = 10;

#[derive(Debug, PartialEq)]
struct Args {
    host: String,
    port: u16,
    clients: usize,
    delay_ms: u64,
    interval: Duration,
    timeout: Duration,
    seconds: Option<u64>,
    stop_file: Option<PathBuf>,
    status_file: Option<PathBuf>,
    nameserver: Option<SocketAddr>,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut args = Args {
        host: String::new(),
        port: 0,
        clients: 4,
        delay_ms: 20,
        interval: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
        seconds: None,
        stop_file: None,
        status_file: None,
        nameserver: None,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value:?}"))
        };
        match flag.as_str() {
            "--target" => {
                let (host, port) = value
                    .rsplit_once(':')
                    .ok_or_else(|| format!("--target {value:?}: want HOST:PORT"))?;
                args.host = host.trim_matches(['[', ']']).to_string();
                args.port = port
                    .parse()
                    .map_err(|_| format!("--target {value:?}: bad port"))?;
            }
            "--clients" => args.clients = number()?.clamp(1, 256) as usize,
            "--delay" => args.delay_ms = number()?,
            "--interval" => args.interval = Duration::from_millis(number()?),
            "--timeout" => args.timeout = Duration::from_millis(number()?.max(1)),
            "--seconds" => args.seconds = Some(number()?),
            "--stop-file" => args.stop_file = Some(value.into()),
            "--status-file" => args.status_file = Some(value.into()),
            "--nameserver" => {
                let ns = value
                    .parse::<SocketAddr>()
                    .or_else(|_| value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
                args.nameserver =
                    Some(ns.map_err(|_| format!("--nameserver {value:?}: bad address"))?);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if args.host.is_empty() {
        return Err("--target HOST:PORT is required".into());
    }
    if args.seconds.is_none() && args.stop_file.is_none() {
        return Err("give --seconds or --stop-file (or both): when to stop".into());
    }
    Ok(args)
}

/// Where connections go: a fixed address, or a name resolved for each connection.
enum Target {
    Fixed(IpAddr),
    Name(String, SocketAddr),
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    failed: AtomicU64,
    /// Every address that answered, and every generation (`gen=` of the body).
    seen: Mutex<(BTreeSet<IpAddr>, BTreeSet<u64>)>,
}

impl Counts {
    fn snapshot(&self) -> (u64, u64, usize, Option<(u64, u64)>) {
        let (addrs, gens) = &*self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let gens = gens.first().zip(gens.last()).map(|(a, b)| (*a, *b));
        (
            self.requests.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            addrs.len(),
            gens,
        )
    }

    /// The status file's line: `requests failed addresses newest_gen`.
    fn status(&self) -> String {
        let (r, f, a, gens) = self.snapshot();
        format!("{r} {f} {a} {}\n", gens.map_or(0, |g| g.1))
    }

    /// The result line: `requests=N failed=M addresses=K gens=A-B`.
    fn summary(&self) -> String {
        let (r, f, a, gens) = self.snapshot();
        let gens = gens.map_or("none".to_string(), |(lo, hi)| format!("{lo}-{hi}"));
        format!("requests={r} failed={f} addresses={a} gens={gens}")
    }
}

struct Load {
    args: Args,
    target: Target,
    counts: Counts,
    stop: AtomicBool,
    turn: AtomicUsize,
    started: Instant,
}

impl Load {
    /// The addresses for the next connection.
    fn addresses(&self) -> Result<Vec<IpAddr>, String> {
        match &self.target {
            Target::Fixed(ip) => Ok(vec![*ip]),
            Target::Name(name, server) => {
                let id = (self.turn.load(Ordering::Relaxed) as u16)
                    ^ (self.started.elapsed().subsec_nanos() as u16);
                let mut addrs = dns::resolve(
                    *server,
                    name,
                    id,
                    self.args.timeout.min(Duration::from_secs(2)),
                )
                .map_err(|e| format!("resolve {name}: {e}"))?;
                // The server shuffles them (round robin); sorted, turns spread evenly.
                addrs.sort();
                Ok(addrs.into_iter().map(IpAddr::V4).collect())
            }
        }
    }

    /// One request on a new connection; the generation that answered.
    fn request(&self) -> Result<(IpAddr, u64), String> {
        let addrs = self.addresses()?;
        let ip = addrs[self.turn.fetch_add(1, Ordering::Relaxed) % addrs.len()];
        let addr = SocketAddr::new(ip, self.args.port);
        let t = self.args.timeout;
        let fail = |what: &str, e: std::io::Error| format!("{addr}: {what}: {e}");
        let mut conn = TcpStream::connect_timeout(&addr, t).map_err(|e| fail("connect", e))?;
        conn.set_read_timeout(Some(t))
            .map_err(|e| fail("set timeout", e))?;
        conn.set_write_timeout(Some(t))
            .map_err(|e| fail("set timeout", e))?;
        let head = format!(
            "GET /load?delay={} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.args.delay_ms, self.args.host
        );
        conn.write_all(head.as_bytes())
            .map_err(|e| fail("send", e))?;
        let mut reply = Vec::new();
        conn.take(64 * 1024)
            .read_to_end(&mut reply)
            .map_err(|e| fail("receive", e))?;
        let text = String::from_utf8_lossy(&reply);
        let generation = answered_generation(&text).ok_or_else(|| {
            let first = text.lines().next().unwrap_or("");
            format!("{addr}: bad reply {first:?} ({} bytes)", reply.len())
        })?;
        Ok((ip, generation))
    }

    /// Client `index` of `--clients`: the clients' first requests are spread over one request's
    /// length, so with long requests some are always at every stage, not all in step.
    fn client(&self, index: usize) {
        let clients = self.args.clients as u64;
        thread::sleep(Duration::from_millis(
            self.args.delay_ms * index as u64 / clients,
        ));
        while !self.stop.load(Ordering::SeqCst) {
            let result = self.request();
            let n = self.counts.requests.fetch_add(1, Ordering::SeqCst);
            match result {
                Ok((ip, generation)) => {
                    let mut seen = self.counts.seen.lock().unwrap_or_else(|p| p.into_inner());
                    seen.0.insert(ip);
                    seen.1.insert(generation);
                }
                Err(why) => {
                    let failed = self.counts.failed.fetch_add(1, Ordering::SeqCst);
                    if failed < SHOWN_FAILURES {
                        let at = self.started.elapsed().as_secs_f64();
                        let _ = writeln!(
                            std::io::stderr(),
                            "load: request {n} failed at {at:.3}s: {why}"
                        );
                    }
                }
            }
            thread::sleep(self.args.interval);
        }
    }

    fn write_status(&self) {
        if let Some(path) = &self.args.status_file {
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, self.counts.status()).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }

    /// Until the stop file appears or the time is up: writes the status file, then stops the clients.
    fn watch(&self) {
        let deadline = self
            .args
            .seconds
            .map(|s| self.started + Duration::from_secs(s));
        loop {
            self.write_status();
            let stop_file = self.args.stop_file.as_ref().is_some_and(|p| p.exists());
            if stop_file || deadline.is_some_and(|d| Instant::now() >= d) {
                self.stop.store(true, Ordering::SeqCst);
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The `gen=` of a 200 answer from the test service (`pid=P gen=G path=…`).
fn answered_generation(reply: &str) -> Option<u64> {
    if !reply.starts_with("HTTP/1.1 200 ") {
        return None;
    }
    let body = reply.split_once("\r\n\r\n")?.1;
    let rest = body.strip_prefix("pid=")?.split_once(" gen=")?.1;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn target_of(args: &Args) -> Result<Target, String> {
    if let Ok(ip) = args.host.parse::<IpAddr>() {
        return Ok(Target::Fixed(ip));
    }
    let server = match args.nameserver {
        Some(s) => s,
        None => {
            let conf = std::fs::read_to_string("/etc/resolv.conf")
                .map_err(|e| format!("/etc/resolv.conf: {e}"))?;
            dns::nameserver(&conf).ok_or("/etc/resolv.conf names no nameserver")?
        }
    };
    Ok(Target::Name(args.host.clone(), server))
}

fn run(args: Args) -> Result<Counts, String> {
    let target = target_of(&args)?;
    let load = Arc::new(Load {
        args,
        target,
        counts: Counts::default(),
        stop: AtomicBool::new(false),
        turn: AtomicUsize::new(0),
        started: Instant::now(),
    });
    let clients: Vec<_> = (0..load.args.clients)
        .map(|index| {
            let load = Arc::clone(&load);
            thread::spawn(move || load.client(index))
        })
        .collect();
    load.watch();
    for c in clients {
        let _ = c.join();
    }
    load.write_status();
    Arc::try_unwrap(load)
        .map(|l| l.counts)
        .map_err(|_| "a client thread is still running".to_string())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "handoff-loadclient: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(counts) => {
            let _ = writeln!(std::io::stdout(), "{}", counts.summary());
            ExitCode::from(u8::from(counts.failed.load(Ordering::SeqCst) > 0))
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "handoff-loadclient: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests;
