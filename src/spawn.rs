//! Starting the service: the only module that forks and execs.
//!
//! Everything the child needs — resolved path, argv, envp with reserved `LISTEN_PID=` and
//! `WATCHDOG_PID=` slots, the fd plan — is built before `fork()`. Between fork and exec the child only makes async-signal-safe
//! syscalls through `libc` (no allocation, no lock, no logging; see signal-safety(7)). An exec
//! failure is reported to the parent through a close-on-exec pipe: EOF means exec succeeded, four
//! bytes are the errno. The parent waits for that answer, so when `spawn` returns the child has
//! already made its own process group (or session) and `kill(-pid)` cannot miss it. The one
//! exception is a child stopped before its exec, which `spawn` does not wait for (see
//! `wait_readable`): a SIGSTOP sent to the new pid can even stop it before setpgid(2).

use nix::errno::Errno;
use nix::sys::signal::SigSet;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The PATH used when the environment has none (the value of glibc's and Debian's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug)]
pub enum SpawnError {
    /// No file of that name in PATH (exit 127).
    NotFound {
        command: String,
    },
    /// The command has a NUL byte in it or its arguments.
    Nul {
        command: String,
    },
    Pipe(Errno),
    Fork(Errno),
    /// execve(2) failed in the child: ENOENT/ENOTDIR give 127, anything else 126.
    Exec {
        command: String,
        errno: Errno,
    },
}

impl SpawnError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotFound { .. } => 127,
            SpawnError::Exec {
                errno: Errno::ENOENT | Errno::ENOTDIR,
                ..
            } => 127,
            SpawnError::Exec { .. } | SpawnError::Nul { .. } => 126,
            SpawnError::Pipe(_) | SpawnError::Fork(_) => 1,
        }
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::NotFound { command } => {
                write!(f, "cannot run '{command}': command not found")
            }
            SpawnError::Nul { command } => {
                write!(f, "cannot run '{command}': argument contains a NUL byte")
            }
            SpawnError::Pipe(e) => write!(f, "cannot create the exec status pipe: {}", e.desc()),
            SpawnError::Fork(e) => write!(f, "cannot fork: {}", e.desc()),
            SpawnError::Exec { command, errno } => {
                let hint = if *errno == Errno::ENOEXEC {
                    " (missing #! line?)"
                } else {
                    ""
                };
                write!(f, "cannot run '{command}': {}{hint}", errno.desc())
            }
        }
    }
}

/// A command ready to be started any number of times.
#[derive(Debug)]
pub struct Command {
    pub display: String,
    path: CString,
    argv: Vec<CString>,
}

impl Command {
    /// Resolves the program through PATH now, as execvp(3) would, so the child needs no lookup.
    pub fn prepare(command: &[OsString]) -> Result<Command, SpawnError> {
        let display = command
            .first()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let nul = || SpawnError::Nul {
            command: display.clone(),
        };
        let argv = command
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| nul()))
            .collect::<Result<Vec<_>, _>>()?;
        let program = command.first().ok_or_else(nul)?;
        let path = resolve(program).ok_or_else(|| SpawnError::NotFound {
            command: display.clone(),
        })?;
        let path = CString::new(path.into_os_string().into_vec()).map_err(|_| nul())?;
        Ok(Command {
            display,
            path,
            argv,
        })
    }
}

/// execvp(3)'s search: a name with a slash is used as it is; otherwise the first executable
/// regular file in PATH, else the first non-executable one (so exec reports EACCES → 126).
fn resolve(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    if program.is_empty() {
        return None;
    }
    let path_var = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut not_executable = None;
    for dir in std::env::split_paths(&path_var) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".").to_path_buf()
        } else {
            dir
        };
        let candidate = dir.join(program);
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() => {
                if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
                    return Some(candidate);
                }
                not_executable.get_or_insert(candidate);
            }
            _ => continue,
        }
    }
    not_executable
}

/// How the child is placed and what it inherits.
pub struct Plan<'a> {
    /// The signal mask init was started with.
    pub mask: &'a SigSet,
    /// Where the child stands to the terminal on stdin, if there is one.
    pub terminal: Terminal,
    /// The environment every child starts from, as NUL-terminated `KEY=VALUE\0` entries.
    pub env: &'a [Vec<u8>],
    /// More NUL-terminated entries for this child (see `env_entry`).
    pub extra_env: Vec<Vec<u8>>,
    /// Variables (`LISTEN_PID=`, `WATCHDOG_PID=`) whose value is the child's own pid, written
    /// by the child between fork and exec; at most `MAX_PID_VARS`.
    pub pid_vars: &'a [&'a [u8]],
    /// Listening sockets that become fds 3, 4, … in the child.
    pub listen_fds: &'a [RawFd],
    /// A `cgroup.procs` file the child moves itself into before anything else (see `cgroup`).
    pub cgroup: Option<&'a std::ffi::CStr>,
}

/// How a child is placed relative to a terminal on init's stdin. Without a terminal every child
/// gets a session of its own: nothing can send its group a terminal signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// Its own process group in init's session, made the terminal's foreground group, so Ctrl-C
    /// and Ctrl-Z reach it (the first generation; `docker run -it`).
    Take,
    /// Its own process group in init's session; init hands it the terminal once it serves.
    Share,
    /// A session of its own regardless (readiness probes).
    Detach,
}

/// Room for the decimal pid behind `LISTEN_PID=` (pid_max is at most 2^22, 7 digits).
const PID_DIGITS: usize = 10;
pub const LISTEN_PID: &[u8] = b"LISTEN_PID=";
pub const WATCHDOG_PID: &[u8] = b"WATCHDOG_PID=";
const MAX_PID_VARS: usize = 2;

/// `KEY=VALUE\0`, as `Plan` wants environment entries.
pub fn env_entry(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(key.len() + value.len() + 2);
    e.extend_from_slice(key);
    e.push(b'=');
    e.extend_from_slice(value);
    e.push(0);
    e
}

/// Forks and execs `cmd`. Returns the child's pid once it has exec'd or has stopped before it
/// (see `wait_readable`), or the exec error, with the child already reaped.
pub fn spawn(cmd: &Command, plan: &Plan<'_>) -> Result<i32, SpawnError> {
    // Everything the child touches is allocated here, before fork. The environment is not
    // copied: the child gets pointers to init's entries.
    // One `NAME=` slot per variable that holds the child's own pid (LISTEN_PID, WATCHDOG_PID),
    // each with room for the digits; the child fills them in between fork and exec.
    let mut slots: Vec<Vec<u8>> = plan
        .pid_vars
        .iter()
        .map(|name| {
            let mut slot = Vec::with_capacity(name.len() + PID_DIGITS + 1);
            slot.extend_from_slice(name);
            slot.extend_from_slice(&[0; PID_DIGITS + 1]);
            slot
        })
        .collect();
    let mut pid_slots = [std::ptr::null_mut::<u8>(); MAX_PID_VARS];
    for (i, (slot, name)) in slots
        .iter_mut()
        .zip(plan.pid_vars)
        .take(MAX_PID_VARS)
        .enumerate()
    {
        // SAFETY: the slot is the name followed by PID_DIGITS + 1 reserved bytes; it is not
        // resized after this, so the pointer stays valid.
        pid_slots[i] = unsafe { slot.as_mut_ptr().add(name.len()) };
    }
    let mut envp: Vec<*const libc::c_char> =
        Vec::with_capacity(plan.env.len() + plan.extra_env.len() + slots.len() + 1);
    envp.extend(
        plan.env
            .iter()
            .chain(&plan.extra_env)
            .map(|e| e.as_ptr().cast::<libc::c_char>()),
    );
    envp.extend(
        slots
            .iter()
            .take(MAX_PID_VARS)
            .map(|s| s.as_ptr().cast::<libc::c_char>()),
    );
    envp.push(std::ptr::null());
    let mut argv: Vec<*const libc::c_char> = cmd.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    let mut mask: libc::sigset_t = *plan.mask.as_ref();
    // The child's working copy of the fd plan (it moves sources out of 3..3+N before dup2).
    let mut sources: Vec<RawFd> = plan.listen_fds.to_vec();
    let child_plan = ChildPlan {
        path: cmd.path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        pid_slots,
        mask: &mut mask,
        terminal: plan.terminal,
        sources: sources.as_mut_ptr(),
        count: sources.len(),
        status_fd: write_end.as_raw_fd(),
        cgroup: plan.cgroup.map_or(std::ptr::null(), |c| c.as_ptr()),
        _plan: std::marker::PhantomData,
    };

    // SAFETY: init is single-threaded, so the child is a complete copy with no lock held by
    // another thread; the child runs only `exec_child`, which makes async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SpawnError::Fork(Errno::last()));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; see exec_child's contract.
        unsafe { exec_child(&child_plan) }
    }
    drop(write_end);
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        if !wait_readable(&read_end, pid) {
            // Stopped before its exec (`sys::is_stopped`): init must not wait for it.
            return Ok(pid);
        }
        match nix::unistd::read(&read_end, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if got == buf.len() {
        let errno = Errno::from_raw(i32::from_ne_bytes(buf));
        // The child _exits right after writing; reap it here so nobody mistakes it for the service.
        let mut status = 0;
        // SAFETY: plain waitpid on our own child; status is a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        return Err(SpawnError::Exec {
            command: cmd.display.clone(),
            errno,
        });
    }
    Ok(pid)
}

/// How long `spawn` waits on the status pipe between two looks at whether the child stopped.
const STOP_CHECK: u16 = 50;

/// Waits until the status pipe has something to read (bytes or EOF): true. False when the child
/// stopped before it got to exec(2).
///
/// A stop signal can reach the child between fork and exec: a Ctrl-Z typed just as the command
/// starts (SIGTSTP to the group that has just become the terminal's foreground group, pending
/// while blocked and delivered when the child restores init's mask), or anyone's SIGSTOP to the
/// new pid. Until a SIGCONT the pipe stays silent, and a blocking read would stall init with it:
/// no signal handled, no deadline, no control request. So the wait is poll(2) in slices, and on
/// each timeout a look with waitid(2) WNOWAIT, which leaves the stop report for `jobctl::follow`.
/// A child found stopped is taken as started. If its exec fails once it is continued, it
/// `_exit`s 127 or 126 (see `fail`), and init takes that as the command's exit status: only
/// the "cannot run" line is lost, in this rare case.
fn wait_readable(read_end: &std::os::fd::OwnedFd, pid: i32) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(STOP_CHECK)) {
            Ok(0) if crate::sys::is_stopped(pid) => return false,
            Ok(0) | Err(Errno::EINTR) => continue,
            // Readable, hung up, or poll itself failed: the read tells.
            _ => return true,
        }
    }
}

struct ChildPlan<'a> {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    pid_slots: [*mut u8; MAX_PID_VARS],
    mask: *mut libc::sigset_t,
    terminal: Terminal,
    /// The fds that become 3, 4, … (`count` of them), writable by the child.
    sources: *mut RawFd,
    count: usize,
    status_fd: RawFd,
    cgroup: *const libc::c_char,
    _plan: std::marker::PhantomData<&'a ()>,
}

/// The child between fork and exec. Never returns.
///
/// # Safety
/// Only to be called in a child just forked from a single-threaded parent. Every call below is
/// async-signal-safe per signal-safety(7) (or a raw syscall); nothing allocates.
unsafe fn exec_child(p: &ChildPlan<'_>) -> ! {
    unsafe {
        // Into the generation's cgroup first, so nothing it forks starts outside it. Writing 0
        // to cgroup.procs moves the writer (cgroups(7)). On failure it runs without one: the
        // process group still tracks it.
        if !p.cgroup.is_null() {
            let fd = libc::open(p.cgroup, libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
        // Own process group (see `Terminal`); tcsetpgrp(3) from a background group is allowed
        // because SIGTTOU is still blocked here.
        let tty = libc::isatty(0) == 1;
        match p.terminal {
            Terminal::Take | Terminal::Share if tty => {
                libc::setpgid(0, 0);
                if p.terminal == Terminal::Take {
                    libc::tcsetpgrp(0, libc::getpid());
                }
            }
            _ => {
                if libc::setsid() < 0 {
                    libc::setpgid(0, 0);
                }
            }
        }

        // Mark every inherited fd above 2 close-on-exec: close_range(2) with CLOSE_RANGE_CLOEXEC
        // (Linux 5.11). Older kernels fail (ENOSYS before 5.9, EINVAL for the flag before 5.11)
        // and get the same from a walk over /proc/self/fd.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            crate::sys::each_fd_from(3, set_cloexec);
        }
        let n = p.count as RawFd;
        let mut status_fd = p.status_fd;
        if status_fd < 3 + n {
            // Keep the status pipe out of the range the listeners are about to take.
            status_fd = libc::fcntl(status_fd, libc::F_DUPFD_CLOEXEC, 3 + n);
        }
        // SAFETY: `sources` points to `count` fds in a Vec the parent keeps alive until spawn
        // returns; this is the child's own copy of that memory.
        let sources = std::slice::from_raw_parts_mut(p.sources, p.count);
        // A source inside 3..3+N (an fd the fd store received low, or a listener the fd limit
        // kept below HIGH_FD) is moved above that range first, so no dup2 clobbers it.
        for (i, fd) in sources.iter_mut().enumerate() {
            if *fd < 3 + n && *fd != 3 + i as RawFd {
                let moved = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3 + n);
                if moved < 0 {
                    fail(status_fd);
                }
                *fd = moved;
            }
        }
        for (i, &fd) in sources.iter().enumerate() {
            let target = 3 + i as RawFd;
            if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0);
            } else if libc::dup2(fd, target) < 0 {
                fail(status_fd);
            }
        }
        let pid = libc::getpid() as u32;
        for &slot in p.pid_slots.iter().filter(|s| !s.is_null()) {
            write_decimal(slot, pid);
        }

        // Rust ignores SIGPIPE before main; the service expects the default. Init installs no
        // other handler, so every other disposition is still what init was started with.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_SETMASK, p.mask, std::ptr::null_mut());

        libc::execve(p.path, p.argv, p.envp);
        fail(status_fd)
    }
}

/// FD_CLOEXEC on `fd`; async-signal-safe.
fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl(2) F_SETFD on an integer; a closed fd gives EBADF. Only the fd flag changes.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Reports errno to the parent and exits; async-signal-safe.
unsafe fn fail(status_fd: RawFd) -> ! {
    unsafe {
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        // No SIGPIPE even when the parent no longer reads (a child stopped before its exec, see
        // `wait_readable`): the exec failed, so this process still holds the read end too.
        libc::write(status_fd, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(if errno == libc::ENOENT || errno == libc::ENOTDIR {
            127
        } else {
            126
        })
    }
}

/// Writes `n` in decimal followed by NUL at `dst` (room for PID_DIGITS bytes plus NUL is
/// reserved by `spawn`); no allocation.
unsafe fn write_decimal(dst: *mut u8, mut n: u32) {
    let mut digits = [0u8; PID_DIGITS];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
        if n == 0 || len == PID_DIGITS {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: dst has PID_DIGITS + 1 bytes; len <= PID_DIGITS.
        unsafe { *dst.add(i) = digits[len - 1 - i] };
    }
    // SAFETY: as above, index len <= PID_DIGITS.
    unsafe { *dst.add(len) = 0 };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_through_path() {
        assert_eq!(resolve(OsStr::new("./x")), Some(PathBuf::from("./x")));
        assert!(resolve(OsStr::new("sh")).is_some());
        assert_eq!(resolve(OsStr::new("no-such-command-anywhere")), None);
        assert_eq!(resolve(OsStr::new("")), None);
    }

    /// Where close_range(2) cannot mark fds close-on-exec (kernels before 5.11), the child does it
    /// over /proc/self/fd: an fd open in init without FD_CLOEXEC does not reach the program.
    #[test]
    fn on_old_kernels_an_fd_without_cloexec_does_not_reach_the_child() {
        for einval_for_flags in [false, true] {
            // A thread of its own: the filter stays on the thread that installs it.
            let (leaked, status) = std::thread::spawn(move || {
                // The filter `handoff-testsvc old-kernel` installs for init, on this thread.
                crate::oldkernel::fail_close_range(einval_for_flags).unwrap();
                // SAFETY: open(2) with a valid path; the fd is closed below.
                let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
                assert!(fd > 2);
                let script = format!("[ -e /proc/self/fd/{fd} ] && exit 7; exit 0");
                let argv: Vec<OsString> = ["sh", "-c", &script].iter().map(Into::into).collect();
                let cmd = Command::prepare(&argv).unwrap();
                let mask = SigSet::empty();
                let plan = Plan {
                    mask: &mask,
                    terminal: Terminal::Detach,
                    env: &[],
                    extra_env: Vec::new(),
                    pid_vars: &[],
                    listen_fds: &[],
                    cgroup: None,
                };
                let pid = spawn(&cmd, &plan).unwrap();
                // SAFETY: closes the fd opened above, which nothing else owns.
                unsafe { libc::close(fd) };
                let mut status = 0;
                // SAFETY: waitpid(2) on our own child, with a valid out-pointer.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                (fd, status)
            })
            .join()
            .unwrap();
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "kernel {}: fd {leaked} reached the child (wait status {status:#x})",
                if einval_for_flags { "5.10" } else { "4.18" }
            );
        }
    }

    #[test]
    fn decimal_writer() {
        let mut buf = [b'x'; PID_DIGITS + 1];
        // SAFETY: buf has PID_DIGITS + 1 bytes.
        unsafe { write_decimal(buf.as_mut_ptr(), 4194304) };
        assert_eq!(&buf[..8], b"4194304\0");
        unsafe { write_decimal(buf.as_mut_ptr(), 0) };
        assert_eq!(&buf[..2], b"0\0");
    }
}
