//! Listening sockets that init holds for its whole life and passes to every generation.
//!
//! Bound once, before the first generation, with SOCK_CLOEXEC, then moved to fd numbers from
//! `HIGH_FD` up, so the child's dup2 down to 3, 4, … can never clobber one of them (see
//! DESIGN.md, "The LISTEN_FDS contract"). One socket shared by all generations is what makes a
//! handoff lossless: the kernel keeps queueing connections on it while generations change.
//! No SO_REUSEPORT: each such socket has its own queue, and closing one drops what it queued.

use crate::sys;
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
    UnixAddr, sockopt,
};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// sun_path holds 108 bytes with the terminating NUL (unix(7)); an abstract name has one byte
/// less too, for its leading NUL.
pub const MAX_UNIX_PATH: usize = 107;

/// Listeners live at this fd number and above in init.
pub const HIGH_FD: RawFd = 100;

#[derive(Debug, Clone, PartialEq)]
pub enum Addr {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    Unix(PathBuf),
    /// Linux abstract namespace, `unix://@name`.
    Abstract(String),
}

/// A `--listen [NAME=]URL` as given.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub addr: Addr,
}

impl Spec {
    pub fn parse(text: &str, index: usize) -> Result<Spec, String> {
        let bad = |why: &str| format!("invalid --listen '{text}': {why}");
        let name = explicit_name(text);
        let url = name.map_or(text, |n| &text[n.len() + 1..]);
        let (scheme, rest) = url
            .split_once("://")
            .or_else(|| url.strip_prefix("unix:").map(|r| ("unix", r)))
            .ok_or_else(|| bad("expected tcp://HOST:PORT, udp://HOST:PORT or unix:///PATH"))?;
        let inet = |rest: &str| -> Result<SocketAddr, String> {
            let rest = rest.trim_end_matches('/');
            let rest = if rest.starts_with(':') {
                format!("0.0.0.0{rest}")
            } else {
                rest.to_string()
            };
            rest.parse().map_err(|_| {
                bad("expected an IP address and port, e.g. 127.0.0.1:8080 or [::]:8080")
            })
        };
        let addr = match scheme {
            "tcp" => Addr::Tcp(inet(rest)?),
            "udp" => Addr::Udp(inet(rest)?),
            "unix" => match rest.strip_prefix('@') {
                _ if rest.len() > MAX_UNIX_PATH => {
                    return Err(bad(&format!(
                        "a unix socket path has at most {MAX_UNIX_PATH} bytes (unix(7))"
                    )));
                }
                Some(a) if !a.is_empty() => Addr::Abstract(a.to_string()),
                _ if rest.starts_with('/') && rest.len() > 1 => Addr::Unix(rest.into()),
                _ => return Err(bad("expected unix:///absolute/path or unix://@abstract")),
            },
            other => return Err(bad(&format!("unknown scheme '{other}'"))),
        };
        let name = match name {
            Some(n) => {
                valid_name(n).map_err(|e| bad(&e))?;
                n.to_string()
            }
            None => match &addr {
                Addr::Tcp(a) => format!("tcp-{}", a.port()),
                Addr::Udp(a) => format!("udp-{}", a.port()),
                Addr::Unix(_) | Addr::Abstract(_) => format!("unix-{index}"),
            },
        };
        Ok(Spec { name, addr })
    }
}

/// The NAME of `NAME=URL`, if one is given (a name has no ':' or '/', a URL does).
pub fn explicit_name(text: &str) -> Option<&str> {
    text.split_once('=')
        .map(|(n, _)| n)
        .filter(|n| !n.contains(':') && !n.contains('/'))
}

/// LISTEN_FDNAMES rules (sd_listen_fds(3)): ASCII, printable, no ':', at most 255 characters.
pub fn valid_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 255 || !n.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(format!(
            "name '{n}' must be 1-255 printable ASCII characters without ':'"
        ));
    }
    Ok(())
}

/// The accept queue of a held socket: the kernel's maximum, net.core.somaxconn. listen(2)
/// caps any larger value at it, and -1 is the largest (the kernel compares it unsigned). Not
/// libc's SOMAXCONN, which is 128 for musl (4096 for glibc): while generations change, nobody
/// accepts for a moment, and a burst of clients beyond 128 would be dropped and retry their
/// SYN a second later.
const BACKLOG: Backlog = Backlog::MAXALLOWABLE;

/// A socket init holds.
#[derive(Debug)]
pub struct Listener {
    pub name: String,
    /// What it is bound to, with the real port when 0 was asked for.
    pub url: String,
    pub fd: OwnedFd,
    pub stream: bool,
    /// A socket file init created and removes when it exits.
    pub _unlink: Option<SocketFile>,
    /// Polled for a hang-up (a stream listener init can repair).
    pub watch: bool,
    /// The address it is bound to, to bind it again after a shutdown(2).
    pub local: Option<SockaddrStorage>,
}

/// What `Listener::repair` found and did.
#[derive(Debug, PartialEq)]
pub enum Repair {
    /// Not shut down (or not a stream socket).
    Intact,
    /// A TCP listener listens again, the same socket: every generation holding it has it back.
    Relistened,
    /// A unix listener at a path: a shut-down unix socket never takes a connection again, so a
    /// fresh one is bound at the path (the generations started from now on get it; the ones
    /// holding the old one keep it, broken).
    Rebound,
    /// Shut down, and nothing init may do helps (the text says why).
    Failed(String),
}

impl Listener {
    /// Repairs the socket if a generation broke it with shutdown(2), which takes it out of
    /// service for every process holding it.
    pub fn repair(&mut self) -> Repair {
        if !self.stream {
            return Repair::Intact;
        }
        let unix = self
            .local
            .as_ref()
            .is_some_and(|a| a.as_unix_addr().is_some());
        if unix {
            // A unix listener stays in the listening state; its receive side is what is shut.
            if !sys::read_shut_down(&self.fd) {
                return Repair::Intact;
            }
            return match self.rebind_unix() {
                Ok(()) => Repair::Rebound,
                Err(why) => Repair::Failed(why),
            };
        }
        if socket::getsockopt(&self.fd, sockopt::AcceptConn).unwrap_or(true) {
            return Repair::Intact;
        }
        // The kernel let go of a port it picked (port 0 asked for) with the connection state:
        // bind it again, so the address stays the one clients were given. A port asked for is
        // still bound, and this bind fails (EINVAL) harmlessly.
        if let Some(addr) = &self.local {
            socket::bind(self.fd.as_raw_fd(), addr).ok();
        }
        match socket::listen(&self.fd, BACKLOG) {
            Ok(()) => Repair::Relistened,
            Err(e) => Repair::Failed(format!("listen: {}", e.desc())),
        }
    }

    /// A fresh socket at the path init bound, in place of the shut-down one and at its fd number,
    /// with the mode and owner the socket file has now; only while the path still names the
    /// socket file init created (same device and inode): anything else there is left alone.
    fn rebind_unix(&mut self) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let Some(file) = &self._unlink else {
            // An abstract name stays taken by the shut-down socket; an adopted socket's file is
            // not ours.
            return Err("it has no socket file of init's to bind again".into());
        };
        let path = file.path.clone();
        let meta = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| file.id != (0, 0) && (m.dev(), m.ino()) == file.id)
            .ok_or_else(|| format!("{} is no longer the socket init bound", path.display()))?;
        let fresh = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("socket: {}", e.desc()))?;
        let addr = UnixAddr::new(&path).map_err(|e| e.desc().to_string())?;
        std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?;
        // Created with the old file's permission bits exactly (bind(2) applies the umask to
        // 0777): never more open than it was, not even for a moment.
        // SAFETY: umask(2) only swaps the process's file mode mask; init is single-threaded.
        let old_mask = unsafe { libc::umask(!meta.mode() & 0o777) };
        let bound = socket::bind(fresh.as_raw_fd(), &addr);
        // SAFETY: as above, restoring the mask.
        unsafe { libc::umask(old_mask) };
        bound.map_err(|e| format!("bind {}: {}", path.display(), e.desc()))?;
        // From here on the file is ours again: removed on exit, also if what follows fails.
        self._unlink = Some(SocketFile::bound(&path));
        // The owner too, if it is not what bind(2) gave (an operator's chown, a setgid dir).
        let now =
            std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if (now.uid(), now.gid()) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::lchown(&path, Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
        socket::listen(&fresh, BACKLOG).map_err(|e| format!("listen: {}", e.desc()))?;
        sys::replace_fd(&fresh, &self.fd).map_err(|e| format!("dup3: {}", e.desc()))?;
        Ok(())
    }
}

/// A socket file init bound, removed on drop only if the path still names that very socket
/// (same device and inode): whatever replaced it since is not ours to delete.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    /// Right after bind(2) at `path`.
    pub fn bound(path: &std::path::Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            id: file_id(path).unwrap_or((0, 0)),
        }
    }
}

fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.id != (0, 0) && file_id(&self.path) == Some(self.id) {
            std::fs::remove_file(&self.path).ok();
        }
    }
}

/// Why a listener could not be had; init exits 1 with this as its one line.
#[derive(Debug)]
pub enum Error {
    /// A socket call failed: `step` is what was being done ("bind", "listen on", …).
    Socket {
        step: &'static str,
        addr: String,
        source: nix::Error,
    },
    /// A live socket answers at this path.
    InUse { path: PathBuf },
    /// Something other than a socket is at this path.
    NotASocket { path: PathBuf },
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The socket activator's LISTEN_FDS could not be taken over.
    Adopt { why: String },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Socket { step, addr, source } => {
                write!(f, "cannot {step} {addr}: {}", source.desc())
            }
            Error::InUse { path } => {
                write!(f, "cannot bind unix://{}: address in use", path.display())
            }
            Error::NotASocket { path } => {
                write!(
                    f,
                    "cannot bind unix://{}: a file that is not a socket is in the way",
                    path.display()
                )
            }
            Error::RemoveStale { path, source } => {
                write!(f, "cannot remove stale socket {}: {source}", path.display())
            }
            Error::Adopt { why } => write!(f, "cannot take over LISTEN_FDS: {why}"),
        }
    }
}

/// Makes sure no listener sits in 3..3+N, where the child dup2(2)s them: one there at another
/// listener's target would be overwritten before it is moved (a low RLIMIT_NOFILE can keep
/// `HIGH_FD` out of reach). Each goes to HIGH_FD or, when the limit is lower, just below the
/// limit; if even that leaves no room above 3+N, a clear error.
pub fn place(listeners: &mut [Listener]) -> Result<(), String> {
    let n = listeners.len();
    let limit = sys::nofile_limit();
    let range_end = 3 + n as RawFd;
    let base = (HIGH_FD as usize).min(limit.saturating_sub(n)) as RawFd;
    for l in listeners
        .iter_mut()
        .filter(|l| l.fd.as_raw_fd() < range_end)
    {
        match sys::dup_at_least(&l.fd, base.max(range_end)) {
            Some(fd) => l.fd = fd,
            None => {
                return Err(format!(
                    "the fd limit (RLIMIT_NOFILE {limit}) leaves no room to hold {n} listeners above fd {}; raise it (ulimit -n) to at least {}",
                    range_end - 1,
                    2 * n + 16
                ));
            }
        }
    }
    Ok(())
}

/// Binds every spec, in order. On error, what was bound is closed (and unlinked) by Drop.
pub fn bind_all(specs: &[Spec]) -> Result<Vec<Listener>, Error> {
    specs.iter().map(bind).collect()
}

fn bind(spec: &Spec) -> Result<Listener, Error> {
    let fail = |step: &'static str, source: nix::Error| Error::Socket {
        step,
        addr: show(&spec.addr),
        source,
    };
    let (family, ty) = match &spec.addr {
        Addr::Tcp(a) => (
            if a.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            },
            SockType::Stream,
        ),
        Addr::Udp(a) => (
            if a.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            },
            SockType::Datagram,
        ),
        Addr::Unix(_) | Addr::Abstract(_) => (AddressFamily::Unix, SockType::Stream),
    };
    let fd = socket::socket(family, ty, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| fail("create a socket for", e))?;
    let mut unlink = None;
    match &spec.addr {
        Addr::Tcp(a) | Addr::Udp(a) => {
            if ty == SockType::Stream {
                // Rebinding right after a previous init exited must not fail on TIME_WAIT.
                socket::setsockopt(&fd, sockopt::ReuseAddr, &true)
                    .map_err(|e| fail("set SO_REUSEADDR on", e))?;
            }
            match a {
                SocketAddr::V4(v4) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(*v4)),
                SocketAddr::V6(v6) => socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(*v6)),
            }
            .map_err(|e| fail("bind", e))?;
        }
        Addr::Unix(path) => {
            remove_stale(path)?;
            let ua = UnixAddr::new(path).map_err(|e| fail("use", e))?;
            socket::bind(fd.as_raw_fd(), &ua).map_err(|e| fail("bind", e))?;
            unlink = Some(SocketFile::bound(path));
        }
        Addr::Abstract(name) => {
            let ua = UnixAddr::new_abstract(name.as_bytes()).map_err(|e| fail("use", e))?;
            socket::bind(fd.as_raw_fd(), &ua).map_err(|e| fail("bind", e))?;
        }
    }
    let local = socket::getsockname(fd.as_raw_fd()).ok();
    // From here on a failure must still remove the socket file: build the Listener first.
    let mut l = Listener {
        name: spec.name.clone(),
        url: String::new(),
        fd,
        stream: ty == SockType::Stream,
        _unlink: unlink,
        watch: ty == SockType::Stream,
        local,
    };
    if l.stream {
        socket::listen(&l.fd, BACKLOG).map_err(|e| fail("listen on", e))?;
    }
    l.url = local_url(&l.fd, l.stream).unwrap_or_else(|| show(&spec.addr));
    if let Some(high) = sys::dup_at_least(&l.fd, HIGH_FD) {
        l.fd = high;
    }
    Ok(l)
}

/// A socket file left by a previous run blocks bind(2) with EADDRINUSE. Remove it only if it is a
/// socket nobody accepts on; a live one is an error, and so is any other kind of file.
pub fn remove_stale(path: &PathBuf) -> Result<(), Error> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket { path: path.clone() });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(Error::InUse { path: path.clone() });
    }
    std::fs::remove_file(path).map_err(|source| Error::RemoveStale {
        path: path.clone(),
        source,
    })
}

fn show(a: &Addr) -> String {
    match a {
        Addr::Tcp(a) => format!("tcp://{a}"),
        Addr::Udp(a) => format!("udp://{a}"),
        Addr::Unix(p) => format!("unix://{}", p.display()),
        Addr::Abstract(n) => format!("unix://@{n}"),
    }
}

fn local_url(fd: &OwnedFd, stream: bool) -> Option<String> {
    let ss: SockaddrStorage = socket::getsockname(fd.as_raw_fd()).ok()?;
    let scheme = if stream { "tcp" } else { "udp" };
    if let Some(v4) = ss.as_sockaddr_in() {
        return Some(format!(
            "{scheme}://{}",
            SocketAddr::from(std::net::SocketAddrV4::from(*v4))
        ));
    }
    if let Some(v6) = ss.as_sockaddr_in6() {
        return Some(format!(
            "{scheme}://{}",
            SocketAddr::from(std::net::SocketAddrV6::from(*v6))
        ));
    }
    let un = ss.as_unix_addr()?;
    if let Some(p) = un.path() {
        return Some(format!("unix://{}", p.display()));
    }
    un.as_abstract()
        .map(|a| format!("unix://@{}", String::from_utf8_lossy(a)))
}

/// If init itself was socket-activated (LISTEN_PID is our pid), adopt fds 3..3+LISTEN_FDS as
/// listeners, named by LISTEN_FDNAMES, exactly as sd_listen_fds(3) would hand them to a service.
pub fn adopt() -> Result<Vec<Listener>, Error> {
    let (Ok(pid), Ok(n)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(Vec::new());
    };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let n: RawFd = n.parse().map_err(|_| Error::Adopt {
        why: format!("LISTEN_FDS '{n}' is not a number"),
    })?;
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(String::from).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..n {
        let raw = 3 + i;
        // The socket activation protocol hands us fds 3..3+n (main kept them open).
        let fd = sys::take_fd(raw).ok_or_else(|| Error::Adopt {
            why: format!("fd {raw} is not open"),
        })?;
        let ty = socket::getsockopt(&fd, sockopt::SockType).map_err(|e| Error::Adopt {
            why: format!("fd {raw} is not a socket: {}", e.desc()),
        })?;
        let stream = ty == SockType::Stream;
        let url = local_url(&fd, stream).unwrap_or_else(|| format!("fd://{raw}"));
        let name = names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        let local = socket::getsockname(fd.as_raw_fd()).ok();
        let fd = sys::dup_at_least(&fd, HIGH_FD).unwrap_or(fd);
        out.push(Listener {
            name,
            url,
            fd,
            stream,
            _unlink: None,
            watch: stream,
            local,
        });
    }
    // The generations' environment leaves out the LISTEN_* variables init was given.
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unix listener a generation shut down gets a fresh socket at its path, at the same fd
    /// number, only while the path is still init's socket file; whatever replaced it is left
    /// as it is, and so is an abstract name.
    #[test]
    fn a_shut_down_unix_listener_is_bound_again_only_at_its_own_file() {
        use std::os::unix::net::UnixStream;
        let dir = std::env::temp_dir().join(format!("handoff-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.sock");
        let spec = |addr| Spec {
            name: "a".into(),
            addr,
        };
        let mut l = bind(&spec(Addr::Unix(path.clone()))).unwrap();
        assert_eq!(l.repair(), Repair::Intact);
        let raw = l.fd.as_raw_fd();
        socket::shutdown(raw, socket::Shutdown::Read).unwrap();
        assert!(UnixStream::connect(&path).is_err());
        assert_eq!(l.repair(), Repair::Rebound);
        assert_eq!(l.fd.as_raw_fd(), raw);
        assert!(UnixStream::connect(&path).is_ok());
        assert_eq!(l.repair(), Repair::Intact);

        socket::shutdown(raw, socket::Shutdown::Both).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "not init's").unwrap();
        assert!(matches!(l.repair(), Repair::Failed(_)));
        drop(l);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not init's");

        let name = format!("handoff-listen-{}", std::process::id());
        let mut l = bind(&spec(Addr::Abstract(name))).unwrap();
        socket::shutdown(l.fd.as_raw_fd(), socket::Shutdown::Both).unwrap();
        assert!(matches!(l.repair(), Repair::Failed(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_urls_and_names() {
        let s = Spec::parse("web=tcp://127.0.0.1:8080", 0).unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.addr, Addr::Tcp("127.0.0.1:8080".parse().unwrap()));
        let s = Spec::parse("tcp://[::]:8080", 0).unwrap();
        assert_eq!(s.name, "tcp-8080");
        assert_eq!(s.addr, Addr::Tcp("[::]:8080".parse().unwrap()));
        assert_eq!(
            Spec::parse("udp://0.0.0.0:5353", 0).unwrap().addr,
            Addr::Udp("0.0.0.0:5353".parse().unwrap())
        );
        assert_eq!(
            Spec::parse("unix:///run/app.sock", 2).unwrap().addr,
            Addr::Unix("/run/app.sock".into())
        );
        assert_eq!(
            Spec::parse("unix:///run/app.sock", 2).unwrap().name,
            "unix-2"
        );
        let longest = format!("/{}", "x".repeat(106));
        assert_eq!(
            Spec::parse(&format!("unix://{longest}"), 0).unwrap().addr,
            Addr::Unix(longest.into())
        );
        assert_eq!(
            Spec::parse("unix://@app", 0).unwrap().addr,
            Addr::Abstract("app".into())
        );
        assert_eq!(
            Spec::parse("tcp://:80", 0).unwrap().addr,
            Addr::Tcp("0.0.0.0:80".parse().unwrap())
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://x:1",
            "tcp://localhost",
            "tcp://1.2.3.4",
            "tcp://1.2.3.4:99999",
            "unix://relative",
            "8080",
            "a:b=tcp://1.2.3.4:1",
            "bad name=tcp://127.0.0.1:1",
            &format!("unix:///{}", "x".repeat(107)),
            &format!("unix://@{}", "x".repeat(108)),
        ] {
            assert!(Spec::parse(bad, 0).is_err(), "{bad}");
        }
        assert!(
            Spec::parse("http://x:1", 0)
                .unwrap_err()
                .contains("http://x:1")
        );
    }
}
