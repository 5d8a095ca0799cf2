//! `--health ADDR`: a separate port a readiness probe can ask. It is bound only when the
//! service becomes ready (so a probe gets "connection refused" before), answers `GET /` with
//! 200 while serving and 503 while draining. A probe against a socket the init holds would prove
//! nothing: the kernel accepts into the backlog with nobody serving.
//!
//! Two generations run side by side during a handoff, so ADDR may name a per-generation port:
//! `127.0.0.1:9100+gen` binds 9100+HANDOFF_GENERATION, and `{gen}` in `unix:/run/h-{gen}.sock`
//! is replaced by the generation.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::log;

enum HealthListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Binds the health port and serves it from a thread of its own until the process exits.
pub fn start(spec: &str, generation: u64, draining: Arc<AtomicBool>) -> io::Result<()> {
    let listener = bind(spec, generation)?;
    log(&format!("health port on {}", resolve(spec, generation)?));
    thread::Builder::new()
        .name("health".to_string())
        .spawn(move || {
            loop {
                let answered = match &listener {
                    HealthListener::Tcp(l) => l.accept().and_then(|(s, _)| {
                        s.set_read_timeout(Some(Duration::from_secs(2)))?;
                        answer(s, &draining)
                    }),
                    HealthListener::Unix(l) => l.accept().and_then(|(s, _)| {
                        s.set_read_timeout(Some(Duration::from_secs(2)))?;
                        answer(s, &draining)
                    }),
                };
                if let Err(e) = answered {
                    log(&format!("health: {e}"));
                }
            }
        })?;
    Ok(())
}

/// The address after `+gen` / `{gen}` substitution.
fn resolve(spec: &str, generation: u64) -> io::Result<String> {
    if let Some(path) = spec.strip_prefix("unix:") {
        return Ok(format!(
            "unix:{}",
            path.replace("{gen}", &generation.to_string())
        ));
    }
    match spec.strip_suffix("+gen") {
        Some(base) => {
            let (host, port) = base
                .rsplit_once(':')
                .ok_or_else(|| io::Error::other(format!("no port in {spec:?}")))?;
            let port: u64 = port
                .parse()
                .map_err(|_| io::Error::other(format!("bad port in {spec:?}")))?;
            let port = u16::try_from(port + generation)
                .map_err(|_| io::Error::other(format!("{spec:?}: port out of range")))?;
            Ok(format!("{host}:{port}"))
        }
        None => Ok(spec.to_string()),
    }
}

fn bind(spec: &str, generation: u64) -> io::Result<HealthListener> {
    let addr = resolve(spec, generation)?;
    Ok(match addr.strip_prefix("unix:") {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            HealthListener::Unix(UnixListener::bind(path)?)
        }
        None => HealthListener::Tcp(TcpListener::bind(addr.as_str())?),
    })
}

trait Stream: Read + Write {}
impl Stream for TcpStream {}
impl Stream for UnixStream {}

/// Reads one request head (any path) and answers it, closing the connection.
fn answer(mut stream: impl Stream, draining: &AtomicBool) -> io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let (status, body) = if draining.load(Ordering::SeqCst) {
        ("503 Service Unavailable", "draining\n")
    } else {
        ("200 OK", "ready\n")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
