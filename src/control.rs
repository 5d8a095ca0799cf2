//! The control socket (`handoff-init ctl reload|status`) and its client.
//!
//! A Unix stream socket, mode 0600, in init's private runtime directory; a peer whose uid is
//! neither root nor init's own is refused (SO_PEERCRED). One request line per connection:
//! `reload`, `reload json`, `reload in-place [json]`, `status`, `status json`. A reload's answer comes when the handoff has
//! finished; the connection stays open until then. Non-blocking throughout: a silent client
//! costs a slot, never a stall of the loop.

use nix::sys::socket::{self, sockopt};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Idle connections (no complete request yet) at most, whatever the fd limit allows.
const MAX_IDLE: usize = 32;
/// Connections waiting for a reload's answer at most; they are never evicted by idle ones.
const MAX_WAITING: usize = 64;
/// Connections accepted per wake-up at most.
const ACCEPT_BATCH: usize = 16;
/// A client has this long from connect to send its request line.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// With no fd to spare even for the reserve trick, the listener rests this long.
const PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, PartialEq)]
pub enum Request {
    /// `reload`, or with `in-place` the serving generation's own reload (`--reload-signal`).
    Reload {
        client: u64,
        json: bool,
        in_place: bool,
    },
    Status {
        client: u64,
        json: bool,
    },
}

/// What a request line asks for, before it is tied to a connection.
#[derive(Debug, PartialEq)]
pub enum Ask {
    Reload { json: bool, in_place: bool },
    Status { json: bool },
}

/// Parses one request line (without its newline); None for an unknown request. Pure, so the
/// fuzz target `control_request` reaches it.
pub fn parse_request(line: &str) -> Option<Ask> {
    let json = line.ends_with(" json");
    match line.split_whitespace().next()? {
        "reload" => Some(Ask::Reload {
            json,
            in_place: line.split_whitespace().any(|w| w == "in-place"),
        }),
        "status" => Some(Ask::Status { json }),
        _ => None,
    }
}

struct Client {
    id: u64,
    stream: UnixStream,
    buf: Vec<u8>,
    /// Request read; waiting for the answer.
    busy: bool,
    /// The request asked for JSON.
    json: bool,
    /// Closed if no whole request line came by then.
    deadline: Instant,
}

pub struct Server {
    listener: UnixListener,
    /// Removed on drop, if it is still our socket.
    _file: crate::listen::SocketFile,
    clients: Vec<Client>,
    next_id: u64,
    /// Idle connections allowed: MAX_IDLE, fewer under a low RLIMIT_NOFILE.
    idle_cap: usize,
    /// An fd held in reserve (/dev/null): when accept(2) fails with EMFILE, closing it makes
    /// room to accept and at once close the connection, so the listener stops being readable
    /// instead of waking init in a busy loop.
    reserve: Option<std::os::fd::OwnedFd>,
    /// The listener is not polled until then (no fd at all could be freed).
    paused_until: Option<Instant>,
}

fn open_reserve() -> Option<std::os::fd::OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(Into::into)
}

impl Server {
    pub fn bind(path: &Path) -> Result<Server, String> {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another handoff-init answers on {} (use --runtime-dir or --control)",
                path.display()
            ));
        }
        // Only a stale socket is removed; a file, a symlink or a live socket is an error.
        crate::listen::remove_stale(&path.to_path_buf())
            .map_err(|e| format!("control socket: {e}"))?;
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("cannot bind control socket {}: {e}", path.display()))?;
        let file = crate::listen::SocketFile::bound(path);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).ok();
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket: {e}"))?;
        // A quarter of what is left above init's own few fds, so clients alone never exhaust
        // the table (spawning a generation needs a pipe, notify fds are closed at once).
        let nofile = crate::sys::nofile_limit();
        let idle_cap = (nofile.saturating_sub(16) / 4).clamp(2, MAX_IDLE);
        Ok(Server {
            listener,
            _file: file,
            clients: Vec::new(),
            next_id: 1,
            idle_cap,
            reserve: open_reserve(),
            paused_until: None,
        })
    }

    /// What to poll: the listener (unless it rests), then clients whose request is not
    /// complete yet.
    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = Vec::new();
        if self.paused_until.is_none() {
            v.push(self.listener.as_fd());
        }
        v.extend(
            self.clients
                .iter()
                .filter(|c| !c.busy)
                .map(|c| c.stream.as_fd()),
        );
        v
    }

    /// When the loop must wake for us: the earliest request deadline, or the end of a pause.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter(|c| !c.busy)
            .map(|c| c.deadline)
            .chain(self.paused_until)
            .min()
    }

    /// Reads what clients sent, accepts a bounded batch of new ones, drops those past their
    /// deadline; returns the complete requests.
    pub fn service(&mut self) -> Vec<Request> {
        let now = Instant::now();
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
        }
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for c in self.clients.iter_mut().filter(|c| !c.busy) {
            read_request(c, &mut out, &mut gone);
        }
        self.clients.retain(|c| !gone.contains(&c.id));
        for _ in 0..ACCEPT_BATCH {
            if self.paused_until.is_some() {
                break;
            }
            let Some(stream) = self.accept() else { break };
            let me = nix::unistd::geteuid().as_raw();
            let uid = socket::getsockopt(&stream, sockopt::PeerCredentials)
                .map(|c| c.uid())
                .unwrap_or(u32::MAX);
            if uid != 0 && uid != me {
                crate::warn!("control: refused a client with uid {uid}");
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let mut c = Client {
                json: false,
                id: self.next_id,
                stream,
                buf: Vec::new(),
                busy: false,
                deadline: now + REQUEST_DEADLINE,
            };
            self.next_id += 1;
            // The request is usually there already: read it before anyone can be evicted.
            let mut gone = Vec::new();
            read_request(&mut c, &mut out, &mut gone);
            if gone.is_empty() {
                self.clients.push(c);
                self.evict_idle(self.idle_cap);
            }
        }
        // Past the deadline without a whole request line: closed (a waiting reload has sent
        // its request and has no deadline).
        self.clients.retain(|c| c.busy || c.deadline > now);
        let waiting = self.clients.iter().filter(|c| c.busy).count();
        if waiting > MAX_WAITING {
            let extra: Vec<u64> = out
                .iter()
                .rev()
                .take(waiting - MAX_WAITING)
                .map(|r| match r {
                    Request::Reload { client, .. } | Request::Status { client, .. } => *client,
                })
                .collect();
            out.retain(|r| match r {
                Request::Reload { client, .. } | Request::Status { client, .. } => {
                    !extra.contains(client)
                }
            });
            for id in extra {
                self.reply(id, "error: too many control clients waiting\n");
            }
        }
        out
    }

    /// One connection from the listener. On EMFILE/ENFILE the oldest idle client makes room;
    /// with none, the reserve fd does (the connection is accepted and closed at once); with no
    /// reserve either, the listener rests for PAUSE. Never leaves it readable and unserved.
    fn accept(&mut self) -> Option<UnixStream> {
        match self.listener.accept() {
            Ok((s, _)) => Some(s),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                if self.evict_idle(self.idle_count().saturating_sub(1)) {
                    return self.listener.accept().ok().map(|(s, _)| s);
                }
                if self.reserve.take().is_some() {
                    drop(self.listener.accept());
                    self.reserve = open_reserve();
                    crate::warn!("control: out of fds; refused a connection");
                    if self.reserve.is_some() {
                        return None;
                    }
                }
                self.paused_until = Some(Instant::now() + PAUSE);
                None
            }
            Err(_) => None,
        }
    }

    fn idle_count(&self) -> usize {
        self.clients.iter().filter(|c| !c.busy).count()
    }

    /// Closes the oldest idle clients until at most `keep` are left; true if it closed one.
    fn evict_idle(&mut self, keep: usize) -> bool {
        let mut evicted = false;
        while self.idle_count() > keep {
            match self.clients.iter().position(|c| !c.busy) {
                Some(i) => {
                    self.clients.remove(i);
                    evicted = true;
                }
                None => break,
            }
        }
        evicted
    }

    /// Sends the answer and closes the connection.
    /// Answers a reload: the new generation and its pid, or why the handoff failed; as text or
    /// JSON, as the client asked.
    pub fn reply_reload(&mut self, client: u64, result: Result<(u32, i32), String>) {
        let json = self.clients.iter().any(|c| c.id == client && c.json);
        let text = match (result, json) {
            (Ok((g, p)), false) => format!("ok: generation {g} serving, pid {p}\n"),
            (Err(e), false) => format!("error: {e}\n"),
            (Ok((g, p)), true) => format!("{{\"ok\":true,\"generation\":{g},\"pid\":{p}}}\n"),
            (Err(e), true) => format!("{{\"ok\":false,\"error\":{}}}\n", crate::status::str(&e)),
        };
        self.reply(client, &text);
    }

    pub fn reply(&mut self, client: u64, text: &str) {
        if let Some(i) = self.clients.iter().position(|c| c.id == client) {
            let mut c = self.clients.remove(i);
            // A short blocking write: answers are small and the peer is a local client.
            c.stream.set_nonblocking(false).ok();
            c.stream
                .set_write_timeout(Some(std::time::Duration::from_secs(1)))
                .ok();
            c.stream.write_all(text.as_bytes()).ok();
        }
    }
}

/// Reads what one idle client sent; a complete line becomes a request (or an error answer).
fn read_request(c: &mut Client, out: &mut Vec<Request>, gone: &mut Vec<u64>) {
    let mut chunk = [0u8; 256];
    match c.stream.read(&mut chunk) {
        Ok(0) => return gone.push(c.id),
        Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => return gone.push(c.id),
    }
    let Some(end) = c.buf.iter().position(|&b| b == b'\n') else {
        if c.buf.len() > 1024 {
            gone.push(c.id);
        }
        return;
    };
    let line = String::from_utf8_lossy(&c.buf[..end]).trim().to_string();
    let request = match parse_request(&line) {
        Some(Ask::Reload { json, in_place }) => Request::Reload {
            client: c.id,
            json,
            in_place,
        },
        Some(Ask::Status { json }) => Request::Status { client: c.id, json },
        None => {
            c.stream.set_nonblocking(false).ok();
            c.stream
                .set_write_timeout(Some(Duration::from_secs(1)))
                .ok();
            let answer = format!(
                "error: unknown request '{}' (reload or status)\n",
                crate::status::printable(&line)
            );
            c.stream.write_all(answer.as_bytes()).ok();
            return gone.push(c.id);
        }
    };
    c.busy = true;
    c.json = matches!(request, Request::Reload { json: true, .. });
    out.push(request);
}

/// `handoff-init ctl …`: returns the exit code (0 ok, 1 failed or unreachable, 2 usage).
pub fn client(args: &[String]) -> u8 {
    let mut control: Option<String> = std::env::var("HANDOFF_CONTROL")
        .ok()
        .filter(|v| !v.is_empty());
    let mut json = false;
    let mut in_place = false;
    let mut verb = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--in-place" => in_place = true,
            s if s == "--control" || s.starts_with("--control=") => {
                let value = match s.strip_prefix("--control=") {
                    Some(v) => Some(v),
                    None => it.next().map(String::as_str),
                };
                match value.filter(|v| !v.is_empty()) {
                    Some(v) => control = Some(v.to_string()),
                    None => {
                        crate::log::write(format_args!("ctl: --control needs a path"));
                        return 2;
                    }
                }
            }
            "reload" | "status" if verb.is_none() => verb = Some(a.clone()),
            "-h" | "--help" => {
                return out("usage: handoff-init ctl reload [--in-place]|status [--json] [--control PATH]\n")
                    .map_or(1, |()| 0);
            }
            other => {
                crate::log::write(format_args!(
                    "ctl: unexpected '{other}' (usage: ctl reload [--in-place]|status [--json] [--control PATH])"
                ));
                return 2;
            }
        }
    }
    let Some(verb) = verb else {
        crate::log::write(format_args!(
            "ctl: missing reload or status (try ctl --help)"
        ));
        return 2;
    };
    let runtime = std::env::var("HANDOFF_RUNTIME_DIR")
        .ok()
        .filter(|v| !v.is_empty());
    let candidates = crate::config::control_paths(control.as_deref(), runtime.as_deref());
    // The first that exists (init falls back from /run to $TMPDIR when /run is not writable).
    let path = candidates
        .iter()
        .find(|p| p.exists())
        .unwrap_or(&candidates[0])
        .clone();
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            crate::log::write(format_args!(
                "ctl: cannot reach handoff-init at {}: {e}",
                path.display()
            ));
            return 1;
        }
    };
    if in_place && verb != "reload" {
        crate::log::write(format_args!("ctl: --in-place goes with reload"));
        return 2;
    }
    let request = format!(
        "{verb}{}{}\n",
        if in_place { " in-place" } else { "" },
        if json { " json" } else { "" }
    );
    let mut answer = String::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_string(&mut answer).is_err()
    {
        crate::log::write(format_args!(
            "ctl: the connection to {} failed",
            path.display()
        ));
        return 1;
    }
    let failed =
        answer.is_empty() || answer.starts_with("error") || answer.starts_with("{\"ok\":false");
    match out(&answer) {
        Ok(()) => u8::from(failed),
        // Nobody reads the answer (`ctl status | true`): nothing to say, and nowhere to say it.
        Err(()) => 1,
    }
}

/// Writes to stdout; a closed or broken stdout is an error, never a panic.
fn out(text: &str) -> Result<(), ()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(drop)
}
