//! What the supervisor tests share: handoff-init with a private runtime dir and its control
//! client, HTTP requests to the test service, and load that must fail no request.
#![allow(dead_code)]

use crate::common::*;
use crate::load::{self, ConnMode, LoadConfig};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// handoff-init with a private runtime dir inside the test's temp dir.
pub struct Sup {
    pub init: Init,
    pub control: PathBuf,
}

impl Sup {
    pub fn start(args: &[&str], pid1: bool) -> Sup {
        Sup::start_env(args, pid1, &[])
    }

    pub fn start_env(args: &[&str], pid1: bool, env: &[(&str, &str)]) -> Sup {
        Sup::start_in(
            TempDir::new(),
            args,
            Opts {
                pid1,
                env,
                shell_prefix: None,
            },
        )
    }

    /// Starts `handoff-init --runtime-dir DIR/rt ARGS` in `dir` (where the test may have written
    /// its scripts first).
    pub fn start_in(dir: TempDir, args: &[&str], opts: Opts<'_>) -> Sup {
        let rt = dir.path("rt");
        let control = rt.join("control.sock");
        let mut all = vec!["--runtime-dir", rt.to_str().unwrap()];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        let init = Init::start_in(dir, &refs, opts);
        Sup { init, control }
    }

    /// `handoff-init --listen tcp://127.0.0.1:0 FLAGS -- START` as PID 1: a start script
    /// supervised with one TCP listener on a free port.
    pub fn script(start: &Path, flags: &[&str]) -> Sup {
        let mut args = vec!["--listen", "tcp://127.0.0.1:0"];
        args.extend_from_slice(flags);
        args.extend(["--", start.to_str().unwrap()]);
        Sup::start(&args, true)
    }

    /// Runs `handoff-init ctl ARGS`; returns (exit code, stdout).
    pub fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(INIT)
            .arg("ctl")
            .args(args)
            .arg("--control")
            .arg(&self.control)
            .output()
            .expect("run ctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn status(&self) -> String {
        let mut out = String::new();
        wait_until("control socket answers", || {
            let (code, text) = self.ctl(&["status"]);
            out = text;
            code == 0
        });
        out
    }

    /// Waits until generation `id` is serving.
    pub fn wait_serving(&self, id: u32) {
        let want = format!("\"generation\":{id},");
        wait_until(&format!("generation {id} serving"), || {
            let j = self.ctl(&["status", "--json"]).1;
            j.split("},{")
                .any(|g| g.contains(&want) && g.contains("\"state\":\"serving\""))
        });
    }

    /// The TCP address of the first listener, read from `ctl status` (tests bind port 0).
    pub fn addr(&self) -> SocketAddr {
        let status = self.status();
        let url = status
            .lines()
            .find_map(|l| {
                l.strip_prefix("listener ")
                    .and_then(|r| r.split_whitespace().nth(1))
            })
            .unwrap_or_else(|| panic!("no listener in status:\n{status}"));
        url.trim_start_matches("tcp://")
            .parse()
            .expect("listener address")
    }

    pub fn reload(&self) -> (i32, String) {
        self.ctl(&["reload"])
    }
}

/// start.sh in `dir`: generation `generation` runs the test service as `http ARGS`, every other
/// generation runs it plainly.
pub fn gen_script(dir: &TempDir, generation: u32, args: &str) -> PathBuf {
    dir.script(
        "start.sh",
        &format!(
            "#!/bin/sh\nif [ \"$HANDOFF_GENERATION\" = {generation} ]; then exec {SVC} http {args}; fi\nexec {SVC} http\n"
        ),
    )
}

/// One HTTP/1.1 GET on a new connection; returns the body.
pub fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp.split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// One request on a kept-alive connection; returns the body.
pub fn request(conn: &mut TcpStream, path: &str) -> String {
    write!(conn, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(conn).expect("response")
}

/// Reads one HTTP/1.1 response with Content-Length; returns its body if the status is 200.
pub fn read_response(conn: &mut TcpStream) -> Option<String> {
    conn.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })?
        .parse()
        .ok()?;
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).ok()?;
    head.starts_with("HTTP/1.1 200")
        .then(|| String::from_utf8_lossy(&body).into_owned())
}

pub fn field(body: &str, key: &str) -> u64 {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {body:?}"))
}

/// Handoff `n` by `ctl reload`, then waits until clients are answered by generation n+1.
pub fn handoff_seen_by_clients(sup: &Sup, load: &load::LoadHandle, n: u32) {
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "handoff {n}: {out}\n{}", sup.init.logs());
    assert!(
        out.starts_with(&format!("ok: generation {} serving", n + 1)),
        "{out}"
    );
    let next = u64::from(n) + 1;
    assert!(
        load.wait_until(DEADLINE, |p| p.ok_from_gen(next) > 0),
        "gen {next} never answered"
    );
}

/// Stops the load: every request was answered, and generations 1..=`gens` all answered some.
pub fn no_failed_request(load: load::LoadHandle, gens: u64) {
    let report = load.stop();
    eprintln!("{}", report.summary());
    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        &report.failures[..report.failures.len().min(10)]
    );
    assert_eq!(report.total, report.ok);
    let seen = report.gen_values();
    for g in 1..=gens {
        assert!(seen.contains(&g), "generation {g} never answered: {seen:?}");
    }
}

/// Starts `clients` clients (keep-alive and new connections mixed) and waits until `ok`
/// requests have been answered.
pub fn busy(addr: SocketAddr, clients: usize, ok: u64) -> load::LoadHandle {
    let load = load::start(LoadConfig {
        clients,
        mode: ConnMode::Mixed,
        ..LoadConfig::new(addr)
    });
    assert!(
        load.wait_until(DEADLINE, |p| p.ok >= ok),
        "load never got going"
    );
    load
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
