//! Small tools for the hardening tests: what a misbehaving service or an old kernel does to init.
//!
//! - `notify STATE`: one sd_notify datagram from this process (it belongs to the generation that
//!   ran it), e.g. `STATUS=` with control characters or `EXTEND_TIMEOUT_USEC=18446744073709551615`.
//! - `flood COUNT SIZE`: COUNT datagrams of `STATUS=` and SIZE bytes, as fast as the socket takes.
//! - `shutdown-fd N`: shutdown(2) on the inherited listening fd N, as a buggy service might, then
//!   wait up to 10 s until the socket listens again (init repairs it), or for a unix socket at a
//!   path until that path takes connections again (init binds a fresh socket there); exit 0 if
//!   it does, 1 if not.
//! - `old-kernel 4.18|5.10 -- CMD…`: exec CMD under a seccomp filter that makes close_range(2)
//!   fail as on that kernel: ENOSYS (no close_range before 5.9), or EINVAL for any flag
//!   (no CLOSE_RANGE_CLOEXEC before 5.11). The filter is inherited by everything CMD starts.

use crate::notify::Notifier;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

pub fn notify(state: &str) -> i32 {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        crate::log("notify: no NOTIFY_SOCKET");
        return 1;
    }
    Notifier::from_env().send(state);
    0
}

pub fn flood(count: usize, size: usize) -> i32 {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        crate::log("flood: no NOTIFY_SOCKET");
        return 1;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            crate::log(&format!("flood: {e}"));
            return 1;
        }
    };
    let mut payload = b"STATUS=".to_vec();
    payload.resize(size.max(8), b'x');
    for _ in 0..count {
        if let Err(e) = sock.send_to(&payload, &target) {
            crate::log(&format!("flood: {e}"));
            return 1;
        }
    }
    0
}

pub fn shutdown_fd(fd: i32) -> i32 {
    use nix::sys::socket::{Shutdown, getsockopt, shutdown, sockopt};
    let owned = match crate::sys::adopt_inherited_fd(fd) {
        Ok(f) => f,
        Err(e) => {
            crate::log(&format!("shutdown-fd: fd {fd}: {e}"));
            return 1;
        }
    };
    if let Err(e) = shutdown(fd, Shutdown::Both) {
        crate::log(&format!("shutdown-fd: shutdown({fd}): {e}"));
        return 1;
    }
    crate::log(&format!("shut down fd {fd}"));
    // A unix socket at a path is never repaired: init binds a fresh one there.
    let path = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd)
        .ok()
        .and_then(|a| a.path().map(|p| p.to_path_buf()));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        match &path {
            Some(p) if std::os::unix::net::UnixStream::connect(p).is_ok() => {
                crate::log(&format!("{} takes connections again", p.display()));
                return 0;
            }
            Some(_) => {}
            None if getsockopt(&owned, sockopt::AcceptConn).unwrap_or(false) => {
                crate::log(&format!("fd {fd} listens again"));
                return 0;
            }
            None => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    crate::log(&format!("fd {fd} still does not listen"));
    1
}

pub fn old_kernel(kernel: &str, command: &[String]) -> i32 {
    let einval_for_flags = match kernel {
        "4.18" | "5.4" => false,
        "5.10" => true,
        other => {
            crate::log(&format!(
                "old-kernel: unknown kernel {other:?} (4.18, 5.4 or 5.10)"
            ));
            return 2;
        }
    };
    let Some((program, args)) = command.split_first() else {
        crate::log("old-kernel: missing command");
        return 2;
    };
    if let Err(e) = crate::sys::fail_close_range(einval_for_flags) {
        crate::log(&format!(
            "old-kernel: cannot install the seccomp filter: {e}"
        ));
        return 1;
    }
    let e = std::process::Command::new(program).args(args).exec();
    crate::log(&format!("old-kernel: cannot run {program}: {e}"));
    127
}
