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
use std::path::{Path, PathBuf};

/// More than this many open control connections: the oldest is dropped.
const MAX_CLIENTS: usize = 32;

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
}

pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
    next_id: u64,
}

impl Server {
    pub fn bind(path: &Path) -> Result<Server, String> {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another handoff-init answers on {} (use --runtime-dir or --control)",
                path.display()
            ));
        }
        std::fs::remove_file(path).ok();
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("cannot bind control socket {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).ok();
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket: {e}"))?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            clients: Vec::new(),
            next_id: 1,
        })
    }

    /// What to poll: the listener, then clients whose request is not complete yet.
    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = vec![self.listener.as_fd()];
        v.extend(
            self.clients
                .iter()
                .filter(|c| !c.busy)
                .map(|c| c.stream.as_fd()),
        );
        v
    }

    /// Accepts and reads whatever is there; returns complete requests.
    pub fn service(&mut self) -> Vec<Request> {
        while let Ok((stream, _)) = self.listener.accept() {
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
            if self.clients.len() >= MAX_CLIENTS {
                self.clients.remove(0);
            }
            self.clients.push(Client {
                json: false,
                id: self.next_id,
                stream,
                buf: Vec::new(),
                busy: false,
            });
            self.next_id += 1;
        }
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for c in self.clients.iter_mut().filter(|c| !c.busy) {
            let mut chunk = [0u8; 256];
            match c.stream.read(&mut chunk) {
                Ok(0) => gone.push(c.id),
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => gone.push(c.id),
            }
            if c.buf.len() > 1024 {
                gone.push(c.id);
                continue;
            }
            if let Some(end) = c.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&c.buf[..end]).trim().to_string();
                c.busy = true;
                match parse_request(&line) {
                    Some(Ask::Reload { json, in_place }) => {
                        c.json = json;
                        out.push(Request::Reload {
                            client: c.id,
                            json,
                            in_place,
                        });
                    }
                    Some(Ask::Status { json }) => {
                        c.json = json;
                        out.push(Request::Status { client: c.id, json });
                    }
                    None => {
                        c.stream.set_nonblocking(false).ok();
                        writeln!(
                            c.stream,
                            "error: unknown request '{line}' (reload or status)"
                        )
                        .ok();
                        gone.push(c.id);
                    }
                }
            }
        }
        self.clients.retain(|c| !gone.contains(&c.id));
        out
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

impl Drop for Server {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
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
            "--control" => control = it.next().cloned(),
            s if s.starts_with("--control=") => control = Some(s[10..].to_string()),
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
