//! Where the service's listening sockets come from: LISTEN_FDS, as every systemd consumer takes
//! them, or `--bind` when it runs without a socket-passing init.
//!
//! The LISTEN_FDS logic follows libsystemd's sd_listen_fds(3) and the `listenfd` crate
//! (`get_fds`, `validate_socket`): LISTEN_PID, when set, must be our own pid; LISTEN_FDS counts
//! fds from 3; each gets FD_CLOEXEC (so they do not leak into anything we exec); the LISTEN_*
//! variables are removed; every fd must be a socket.

use std::fmt;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};
use nix::sys::stat::{SFlag, fstat};

use crate::sys;

/// First fd of the LISTEN_FDS range (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: RawFd = 3;

/// One listening stream socket the service accepts on.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An accepted connection.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

#[derive(Debug)]
pub enum ListenError {
    BadListenPid(String),
    BadListenFds(String),
    Fd { fd: RawFd, source: io::Error },
    NotASocket(RawFd),
    Bind { addr: String, source: io::Error },
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::BadListenPid(v) => write!(f, "LISTEN_PID={v:?} is not a pid"),
            ListenError::BadListenFds(v) => write!(f, "LISTEN_FDS={v:?} is not a count"),
            ListenError::Fd { fd, source } => write!(f, "fd {fd}: {source}"),
            ListenError::NotASocket(fd) => write!(f, "fd {fd} is not a socket"),
            ListenError::Bind { addr, source } => write!(f, "cannot bind {addr}: {source}"),
        }
    }
}

/// What LISTEN_FDS gave us: the fds we serve plus a description of each fd for the log.
pub struct Inherited {
    pub listeners: Vec<(String, Listener)>,
    pub notes: Vec<String>,
}

/// Takes the sockets passed by LISTEN_FDS. `Ok(None)` when there are none for this process.
/// `require_pid` makes a missing LISTEN_PID mean "not for us", as libsystemd does; without it a
/// missing LISTEN_PID is accepted, as the `listenfd` crate does.
///
/// Must be called while the process has a single thread (it edits the environment).
pub fn take_listen_fds(require_pid: bool) -> Result<Option<Inherited>, ListenError> {
    let fds = std::env::var("LISTEN_FDS").ok();
    let pid = std::env::var("LISTEN_PID").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    // sd_listen_fds(unset_environment=1) removes them whatever the outcome, so that nothing we
    // start later mistakes them for its own.
    for key in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        sys::unset_env_single_threaded(key);
    }
    let Some(fds) = fds else { return Ok(None) };
    match pid.as_deref() {
        None | Some("") if require_pid => return Ok(None),
        None | Some("") => {}
        Some(text) => {
            let pid: u32 = text
                .parse()
                .map_err(|_| ListenError::BadListenPid(text.to_string()))?;
            if pid != std::process::id() {
                crate::log(&format!(
                    "LISTEN_PID={pid} is not our pid: ignoring LISTEN_FDS={fds}"
                ));
                return Ok(None);
            }
        }
    }
    let count: usize = fds
        .parse()
        .map_err(|_| ListenError::BadListenFds(fds.clone()))?;
    let names: Vec<String> = match names {
        Some(n) if n.split(':').count() == count => n.split(':').map(str::to_string).collect(),
        Some(n) => {
            crate::log(&format!(
                "LISTEN_FDNAMES={n:?} does not name {count} fds: names ignored"
            ));
            vec!["unknown".to_string(); count]
        }
        None => vec!["unknown".to_string(); count],
    };
    let mut inherited = Inherited {
        listeners: Vec::new(),
        notes: Vec::new(),
    };
    for (i, name) in names.into_iter().enumerate() {
        let fd = LISTEN_FDS_START + i as RawFd;
        let owned = sys::adopt_inherited_fd(fd).map_err(|source| ListenError::Fd { fd, source })?;
        fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| ListenError::Fd {
            fd,
            source: e.into(),
        })?;
        match classify(fd, owned)? {
            Ok(listener) => {
                inherited
                    .notes
                    .push(format!("fd={fd} name={name} {}", describe(&listener)));
                inherited.listeners.push((name, listener));
            }
            Err(what) => inherited
                .notes
                .push(format!("fd={fd} name={name} {what} (not served)")),
        }
    }
    Ok(Some(inherited))
}

/// `validate_socket` of listenfd: a socket (fstat), its type (SO_TYPE), its family
/// (getsockname), and whether it listens (SO_ACCEPTCONN). Inner `Err` = kept but not served.
fn classify(fd: RawFd, owned: OwnedFd) -> Result<Result<Listener, String>, ListenError> {
    let err = |e: nix::Error| ListenError::Fd {
        fd,
        source: e.into(),
    };
    let stat = fstat(&owned).map_err(err)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(ListenError::NotASocket(fd));
    }
    let ty = getsockopt(&owned, sockopt::SockType).map_err(err)?;
    let addr: SockaddrStorage = getsockname(fd_raw(owned.as_fd())).map_err(err)?;
    let family = addr.family();
    let listening = getsockopt(&owned, sockopt::AcceptConn).map_err(err)?;
    if ty != SockType::Stream || !listening {
        // Datagram sockets (udp://) and non-listening streams are valid LISTEN_FDS entries
        // that an HTTP server has no use for; keeping the fd open is what a real one does.
        std::mem::forget(owned);
        return Ok(Err(format!("{family:?} {ty:?} listening={listening}")));
    }
    Ok(match family {
        Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
            Ok(Listener::Tcp(TcpListener::from(owned)))
        }
        Some(AddressFamily::Unix) => Ok(Listener::Unix(UnixListener::from(owned))),
        other => {
            std::mem::forget(owned);
            Err(format!("{other:?} stream"))
        }
    })
}

fn fd_raw(fd: BorrowedFd<'_>) -> RawFd {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

/// Binds `--bind` addresses: `HOST:PORT` (port 0 picks a free one) or `unix:/path`.
pub fn bind_all(addrs: &[String]) -> Result<Vec<(String, Listener)>, ListenError> {
    addrs
        .iter()
        .map(|addr| {
            let bind_err = |source| ListenError::Bind {
                addr: addr.clone(),
                source,
            };
            let listener = match addr.strip_prefix("unix:") {
                Some(path) => {
                    // A stale socket file from an earlier run would make bind fail.
                    let _ = std::fs::remove_file(path);
                    Listener::Unix(UnixListener::bind(path).map_err(bind_err)?)
                }
                None => Listener::Tcp(TcpListener::bind(addr.as_str()).map_err(bind_err)?),
            };
            Ok((addr.clone(), listener))
        })
        .collect()
}

/// "tcp 127.0.0.1:8080" or "unix /path" for log lines.
pub fn describe(listener: &Listener) -> String {
    match listener {
        Listener::Tcp(l) => match l.local_addr() {
            Ok(a) => format!("tcp {a}"),
            Err(e) => format!("tcp ?({e})"),
        },
        Listener::Unix(l) => match l.local_addr() {
            Ok(a) => match a.as_pathname() {
                Some(p) => format!("unix {}", p.display()),
                None => format!("unix {a:?}"),
            },
            Err(e) => format!("unix ?({e})"),
        },
    }
}

impl Listener {
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }

    /// One accept that a wake signal can interrupt (EINTR), see `sys::accept_interruptible`.
    pub fn accept(&self) -> io::Result<Conn> {
        let fd = sys::accept_interruptible(self.fd())?;
        Ok(match self {
            Listener::Tcp(_) => {
                let s = TcpStream::from(fd);
                // Small responses; Nagle would only add latency to keep-alive clients.
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }
            Listener::Unix(_) => Conn::Unix(UnixStream::from(fd)),
        })
    }
}

impl Conn {
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Tcp(s) => s.as_fd(),
            Conn::Unix(s) => s.as_fd(),
        }
    }

    /// Half-close after the last response, so the client reads EOF right after it.
    pub fn shutdown_write(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl io::Write for Conn {
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
