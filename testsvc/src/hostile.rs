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
//! - `hold-exec [--report FILE] -- CMD…`: run CMD with every execve(2) of it and its descendants
//!   passed through this process (seccomp user notification), and stop the first one that a
//!   freshly forked init child makes (comm `handoff-init`, parent's comm `handoff-init`) inside
//!   that execve with SIGSTOP: the child of init stopped between fork and exec, on purpose. Its
//!   pid (in our PID namespace) is logged as `held PID` and appended to FILE. Every other exec,
//!   and that one's restart once it is continued, goes on unchanged. Exits with CMD's status.

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
    if let Err(e) = crate::oldkernel::fail_close_range(einval_for_flags) {
        crate::log(&format!(
            "old-kernel: cannot install the seccomp filter: {e}"
        ));
        return 1;
    }
    let e = std::process::Command::new(program).args(args).exec();
    crate::log(&format!("old-kernel: cannot run {program}: {e}"));
    127
}

pub fn hold_exec(report: Option<&std::path::Path>, command: &[String]) -> i32 {
    use std::os::fd::AsFd;
    if command.is_empty() {
        crate::log("hold-exec: missing command");
        return 2;
    }
    let Ok(argv) = command
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        crate::log("hold-exec: NUL byte in the command");
        return 2;
    };
    let (ours, theirs) = match std::os::unix::net::UnixStream::pair() {
        Ok(p) => p,
        Err(e) => {
            crate::log(&format!("hold-exec: socketpair: {e}"));
            return 1;
        }
    };
    let child = match crate::sys::fork_under_exec_listener(&argv, theirs.as_fd()) {
        Ok(pid) => nix::unistd::Pid::from_raw(pid),
        Err(e) => {
            crate::log(&format!("hold-exec: fork: {e}"));
            return 1;
        }
    };
    drop(theirs);
    let listener = match crate::sys::recv_fd(ours.as_fd()) {
        Ok(fd) => fd,
        Err(e) => {
            crate::log(&format!(
                "hold-exec: cannot install the seccomp filter: {e}"
            ));
            return exit_code(nix::sys::wait::waitpid(child, None));
        }
    };
    let mut held = false;
    loop {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            other => return exit_code(other),
        }
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                crate::log(&format!("hold-exec: poll: {e}"));
                return exit_code(waitpid(child, None));
            }
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if !revents.contains(PollFlags::POLLIN) {
            // POLLHUP: no process is left under the filter.
            return exit_code(waitpid(child, None));
        }
        let (id, pid) = match crate::sys::notif_recv(listener.as_fd()) {
            Ok(n) => n,
            // ENOENT: the caller was interrupted before we read its notification.
            Err(_) => continue,
        };
        if !held && forked_by_init(pid) {
            held = true;
            // The stop interrupts its wait for our answer: it stops inside execve, before the
            // exec, and restarts the syscall (a new notification) once continued. This
            // notification is never answered.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGSTOP,
            );
            crate::log(&format!("held {pid}"));
            if let Some(path) = report {
                let line = format!("held {pid}\n");
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
            }
            continue;
        }
        // ENOENT: the caller is gone or was interrupted meanwhile; nothing to answer.
        let _ = crate::sys::notif_continue(listener.as_fd(), id);
    }
}

/// Whether `pid` is a child of handoff-init that has not exec'd yet: its comm and its parent's
/// are both `handoff-init`.
fn forked_by_init(pid: u32) -> bool {
    let comm = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().nth(1).map(String::from)
        });
    let is_init = |c: Option<String>| c.is_some_and(|c| c.trim_end() == "handoff-init");
    is_init(comm(&pid.to_string())) && ppid.is_some_and(|p| is_init(comm(&p)))
}

/// The exit code a shell would give for a child's wait status.
fn exit_code(status: nix::Result<nix::sys::wait::WaitStatus>) -> i32 {
    use nix::sys::wait::WaitStatus;
    match status {
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        _ => 1,
    }
}
