//! The NOTIFY_SOCKET init serves to its generations (sd_notify(3)), and the upstream one init may
//! itself have been given by runc or systemd.
//!
//! An AF_UNIX datagram socket in init's private runtime directory, SO_PASSCRED on, so the kernel
//! attaches the sender's real pid to every message: a message is attributed by that pid, never by
//! a pid written in the payload. Truncated or credential-less datagrams are dropped; fds passed
//! with a message are received close-on-exec and closed unless the fd store keeps them.

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr, sockopt};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A datagram as received: who sent it and its `KEY=VALUE` lines.
#[derive(Debug, Default, PartialEq)]
pub struct Message {
    pub pid: i32,
    pub ready: bool,
    pub reloading: bool,
    pub stopping: bool,
    pub status: Option<String>,
    pub mainpid: Option<i32>,
    pub extend_timeout_usec: Option<u64>,
    /// WATCHDOG=1.
    pub watchdog_alive: bool,
    /// WATCHDOG=trigger.
    pub watchdog_trigger: bool,
    /// WATCHDOG_USEC=.
    pub watchdog_usec: Option<u64>,
    /// FDSTORE=1: park the fds that came with the message.
    pub fdstore: bool,
    /// FDSTOREREMOVE=1: close the stored fds named FDNAME=.
    pub fdstore_remove: bool,
    pub fdname: Option<String>,
    /// FDPOLL=0: keep the fds even when they hang up.
    pub fdpoll: bool,
}

/// Parses the payload; unknown keys are ignored, as systemd does.
pub fn parse(pid: i32, payload: &[u8]) -> Message {
    let mut m = Message {
        pid,
        fdpoll: true,
        ..Message::default()
    };
    for line in String::from_utf8_lossy(payload).lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "READY" => m.ready |= v == "1",
            "RELOADING" => m.reloading |= v == "1",
            "STOPPING" => m.stopping |= v == "1",
            "STATUS" => m.status = Some(v.to_string()),
            "MAINPID" => m.mainpid = crate::procs::parse_pid(v.as_bytes()),
            "EXTEND_TIMEOUT_USEC" => m.extend_timeout_usec = v.parse().ok(),
            "WATCHDOG" => {
                m.watchdog_alive |= v == "1";
                m.watchdog_trigger |= v == "trigger";
            }
            "WATCHDOG_USEC" => m.watchdog_usec = v.parse().ok(),
            "FDSTORE" => m.fdstore |= v == "1",
            "FDSTOREREMOVE" => m.fdstore_remove |= v == "1",
            "FDNAME" => m.fdname = Some(v.to_string()),
            "FDPOLL" => m.fdpoll = v != "0",
            _ => {}
        }
    }
    m
}

pub struct Server {
    pub fd: OwnedFd,
    pub path: PathBuf,
    /// Removed on drop, if it is still our socket.
    _file: crate::listen::SocketFile,
}

impl Server {
    pub fn bind(path: &Path) -> Result<Server, String> {
        let fail = |what: &str, e: nix::Error| {
            format!(
                "cannot {what} notify socket {}: {}",
                path.display(),
                e.desc()
            )
        };
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| fail("create", e))?;
        crate::listen::remove_stale(&path.to_path_buf()).map_err(|e| e.to_string())?;
        let addr = UnixAddr::new(path).map_err(|e| fail("name", e))?;
        socket::bind(fd.as_raw_fd(), &addr).map_err(|e| fail("bind", e))?;
        let file = crate::listen::SocketFile::bound(path);
        socket::setsockopt(&fd, sockopt::PassCred, &true)
            .map_err(|e| fail("set SO_PASSCRED on", e))?;
        Ok(Server {
            fd,
            path: path.to_path_buf(),
            _file: file,
        })
    }

    /// At most `max` datagrams, fewer when the queue empties first, each with the fds sent along
    /// (close-on-exec; closed unless the fd store keeps them); bad ones (truncated, no
    /// credentials) are logged and skipped, their fds closed, but count towards `max`, so one
    /// wake-up's work is bounded whatever a flood holds.
    pub fn recv_batch(&self, max: usize) -> Vec<(Message, Vec<OwnedFd>)> {
        let mut out = Vec::new();
        for _ in 0..max {
            let mut buf = [0u8; 4096];
            let Ok(d) = crate::sys::recv_datagram(&self.fd, &mut buf) else {
                break;
            };
            if d.truncated || d.pid <= 0 {
                crate::debug!(
                    "dropped a notify datagram ({} bytes, truncated={}, sender pid {}, {} fds closed)",
                    d.len,
                    d.truncated,
                    d.pid,
                    d.fds.len()
                );
                continue;
            }
            out.push((parse(d.pid, &buf[..d.len.min(buf.len())]), d.fds));
        }
        out
    }
}

/// Sends `payload` to the NOTIFY_SOCKET init was started with (a path or an @abstract name).
pub fn send_upstream(target: &str, payload: &str) -> Result<(), String> {
    let addr = match target.strip_prefix('@') {
        Some(name) => UnixAddr::new_abstract(name.as_bytes()),
        None => UnixAddr::new(target),
    }
    .map_err(|e| format!("bad NOTIFY_SOCKET '{target}': {}", e.desc()))?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| e.desc().to_string())?;
    socket::sendto(
        fd.as_raw_fd(),
        payload.as_bytes(),
        &addr,
        MsgFlags::MSG_NOSIGNAL,
    )
    .map(|_| ())
    .map_err(|e| format!("cannot notify {target}: {}", e.desc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_keys_and_ignores_the_rest() {
        let m = parse(7, b"READY=1\nSTATUS=serving gen 2\nMAINPID=42\nFOO=bar\nnoequals\nEXTEND_TIMEOUT_USEC=5000000\n");
        assert_eq!(
            m,
            Message {
                pid: 7,
                ready: true,
                status: Some("serving gen 2".into()),
                mainpid: Some(42),
                extend_timeout_usec: Some(5_000_000),
                fdpoll: true,
                ..Message::default()
            }
        );
        let m = parse(7, b"READY=0\nMAINPID=-3\nSTOPPING=1");
        assert!(!m.ready && m.stopping && m.mainpid.is_none());
        assert_eq!(
            parse(1, b"\xff\xfe"),
            Message {
                pid: 1,
                fdpoll: true,
                ..Message::default()
            }
        );
        let m = parse(7, b"FDSTORE=1\nFDNAME=conn-1\nFDPOLL=0");
        assert!(m.fdstore && !m.fdpoll && m.fdname.as_deref() == Some("conn-1"));
        assert!(parse(7, b"FDSTOREREMOVE=1\nFDNAME=x").fdstore_remove);
    }
}
