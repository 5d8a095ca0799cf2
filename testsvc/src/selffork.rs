//! `--self-fork`: the endless/grace/tableflip way of restarting. On SIGHUP the service forks and
//! execs a copy of itself (same executable, same argv) that inherits the listening sockets with
//! LISTEN_FDS/LISTEN_FDNAMES and a LISTEN_PID naming the copy's own pid, exactly what an init
//! would pass. The copy also gets TESTSVC_PARENT_PID=<parent pid>; once ready it sends
//! `MAINPID=<own pid>` + `READY=1` to $NOTIFY_SOCKET and SIGTERM to that parent, which drains.

use std::ffi::CString;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use nix::unistd::{Pid, getppid};

use crate::listen::Listener;
use crate::sys::{self, ExecPlan};

const PARENT_VAR: &str = "TESTSVC_PARENT_PID";

/// If we are a self-fork copy, the parent to stop once ready. The variable is removed so that a
/// later copy of this copy is told about its own parent only. A parent that is no longer our
/// parent (it died, we were reparented) is never signalled: its pid may be someone else's now.
/// Must be called while the process has a single thread.
pub fn take_parent_marker() -> Option<Pid> {
    let value = std::env::var(PARENT_VAR).ok();
    sys::unset_env_single_threaded(PARENT_VAR);
    let parent = Pid::from_raw(value?.parse().ok()?);
    if getppid() == parent {
        Some(parent)
    } else {
        crate::log(&format!(
            "{PARENT_VAR}={parent} is not our parent any more: not stopping it"
        ));
        None
    }
}

/// Forks and execs the copy; returns its pid.
pub fn spawn_copy(listeners: &[(String, Arc<Listener>)]) -> io::Result<Pid> {
    let cstring = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| io::Error::other("NUL byte in argv or environment"))
    };
    let exe = std::env::current_exe()?;
    let path = cstring(exe.as_os_str().as_bytes())?;
    let argv = std::env::args_os()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let mut env = Vec::new();
    for (key, value) in std::env::vars_os() {
        let key = key.as_bytes();
        if key.starts_with(b"LISTEN_") || key == PARENT_VAR.as_bytes() {
            continue;
        }
        env.push(cstring(&[key, b"=", value.as_bytes()].concat())?);
    }
    let names: Vec<&str> = listeners.iter().map(|(name, _)| name.as_str()).collect();
    env.push(cstring(
        format!("LISTEN_FDS={}", listeners.len()).as_bytes(),
    )?);
    env.push(cstring(
        format!("LISTEN_FDNAMES={}", names.join(":")).as_bytes(),
    )?);
    env.push(cstring(
        format!("{PARENT_VAR}={}", std::process::id()).as_bytes(),
    )?);
    let fds: Vec<BorrowedFd<'_>> = listeners.iter().map(|(_, l)| l.fd()).collect();
    let pid = ExecPlan::new(path, argv, env, &fds)?.spawn()?;
    Ok(Pid::from_raw(pid))
}
