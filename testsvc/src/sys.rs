//! Every `unsafe` call of the test service lives here, each with the reason it is sound.
//!
//! The rest of the test service speaks in safe types: signal numbers, `OwnedFd`s, pids.

use std::ffi::{CStr, CString, c_int};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

/// Signal mask and ignored set as the process received them from its parent (bit N-1 = signal N,
/// the layout of `SigBlk`/`SigIgn` in /proc/PID/status).
static INHERITED_BLOCKED: AtomicU64 = AtomicU64::new(0);
static INHERITED_IGNORED: AtomicU64 = AtomicU64::new(0);

/// Runs from `.init_array`, before Rust's runtime start-up sets SIGPIPE to ignored, so that
/// `wait --print-self` reports what the init really handed over, not what Rust changed.
extern "C" fn capture_inherited_signal_state() {
    let mut ignored = 0u64;
    let mut blocked = 0u64;
    // SAFETY: sigset_t and sigaction are plain C structs for which all-zero is a valid value.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: pthread_sigmask(3) with a null new set only reads the current mask into `mask`.
    let mask_ok = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, ptr::null(), &mut mask) } == 0;
    for sig in 1..=64 {
        // SAFETY: as above, all-zero is a valid sigaction.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: sigaction(2) with a null new action only queries; invalid numbers fail (EINVAL).
        if unsafe { libc::sigaction(sig, ptr::null(), &mut old) } == 0
            && old.sa_sigaction == libc::SIG_IGN
        {
            ignored |= 1 << (sig - 1);
        }
        // SAFETY: `mask` was filled by pthread_sigmask above; sigismember(3) only reads it.
        if mask_ok && unsafe { libc::sigismember(&mask, sig) } == 1 {
            blocked |= 1 << (sig - 1);
        }
    }
    INHERITED_BLOCKED.store(blocked, Ordering::Relaxed);
    INHERITED_IGNORED.store(ignored, Ordering::Relaxed);
}

#[used]
#[unsafe(link_section = ".init_array")]
static CAPTURE_INHERITED_SIGNAL_STATE: extern "C" fn() = capture_inherited_signal_state;

/// (blocked, ignored) signal sets as inherited at exec time.
pub fn inherited_signal_state() -> (u64, u64) {
    (
        INHERITED_BLOCKED.load(Ordering::Relaxed),
        INHERITED_IGNORED.load(Ordering::Relaxed),
    )
}

/// "SIGTERM", or "SIGRTMIN+N" for real-time signals.
pub fn signal_name(signo: c_int) -> String {
    match Signal::try_from(signo) {
        Ok(sig) => sig.as_str().to_string(),
        Err(_) => {
            let rtmin = libc::SIGRTMIN();
            if signo >= rtmin {
                format!("SIGRTMIN+{}", signo - rtmin)
            } else {
                format!("SIG{signo}")
            }
        }
    }
}

/// Every signal number the kernel lets a process catch (1..=SIGRTMAX without KILL and STOP).
pub fn catchable_signals() -> impl Iterator<Item = c_int> {
    (1..=libc::SIGRTMAX()).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
}

/// Sets every catchable signal back to SIG_DFL, undoing dispositions inherited as ignored (and
/// Rust's own SIGPIPE=ignored), so that a signal sent while blocked stays pending for sigwaitinfo.
pub fn reset_all_dispositions() {
    for sig in catchable_signals() {
        // SAFETY: signal(2) with SIG_DFL installs no Rust code as handler; numbers the C
        // library reserves for itself (32, 33) fail with EINVAL and are left alone.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// Waits for one signal of `set` (which the calling thread must have blocked).
/// `None` on timeout or interruption. The answer is (signal number, sender pid).
pub fn wait_signal(set: &SigSet, timeout: Option<Duration>) -> Option<(c_int, libc::pid_t)> {
    // SAFETY: all-zero is a valid siginfo_t; the kernel fills it on success.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let signo = match timeout {
        None => {
            // SAFETY: sigwaitinfo(2) reads the set and writes `info`, both valid for the call.
            unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) }
        }
        Some(timeout) => {
            let ts = libc::timespec {
                tv_sec: timeout
                    .as_secs()
                    .min(i32::MAX as u64)
                    .try_into()
                    .unwrap_or(0),
                tv_nsec: timeout.subsec_nanos().into(),
            };
            // SAFETY: as above, plus a valid timespec.
            unsafe { libc::sigtimedwait(set.as_ref(), &mut info, &ts) }
        }
    };
    if signo < 0 {
        return None;
    }
    // SAFETY: si_pid is valid to read for signals sent by kill(2)/sigqueue(3); for others the
    // field holds whatever the kernel zero-filled, which is only used for a log line.
    let sender = unsafe { info.si_pid() };
    Some((signo, sender))
}

/// The signal the service uses to interrupt its own blocked accept() calls.
pub fn wake_signal() -> c_int {
    libc::SIGRTMIN() + 4
}

extern "C" fn ignore_wake(_: c_int) {}

/// Installs a do-nothing handler for the wake signal, without SA_RESTART, so that a blocked
/// accept4(2) returns EINTR when the signal is sent to its thread.
pub fn install_wake_handler() -> io::Result<()> {
    // SAFETY: all-zero is a valid sigaction; the handler only returns (async-signal-safe).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = ignore_wake as *const () as libc::sighandler_t;
    // SAFETY: sa_mask is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs a handler that touches no state; the old action is not needed.
    if unsafe { libc::sigaction(wake_signal(), &action, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lets only the wake signal through on the calling thread.
pub fn unblock_wake_signal() -> nix::Result<()> {
    sigset_of(std::iter::once(wake_signal())).thread_unblock()
}

/// Sends the wake signal to a thread of this process.
pub fn wake_thread(thread: std::os::unix::thread::RawPthread) {
    // std's RawPthread is an integer everywhere; libc's pthread_t is one on glibc and a pointer
    // on musl, so this cast is a no-op on one and needed on the other.
    #[allow(clippy::unnecessary_cast)]
    let thread = thread as libc::pthread_t;
    // SAFETY: the caller passes the id of a thread it has not joined yet, so it is still valid
    // (pthread_kill(3) on a thread that finished but is not joined is allowed).
    unsafe { libc::pthread_kill(thread, wake_signal()) };
}

/// accept4(2) with CLOEXEC that, unlike std's accept, returns EINTR instead of retrying, so a
/// draining service can take its accept thread back.
pub fn accept_interruptible(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed by accept4(2) when the peer address is unused.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            ptr::null_mut(),
            ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of an inherited fd if it is open.
///
/// Used for LISTEN_FDS: sd_listen_fds(3) hands fds 3..3+N to the process, nothing else in this
/// program refers to them, so owning them is sound once we know they are open.
pub fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and passed to this process by the protocol.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes an environment variable. Must only be called while the process has one thread
/// (main calls it before it starts any).
pub fn unset_env_single_threaded(key: &str) {
    // SAFETY: no other thread exists yet that could read the environment concurrently.
    unsafe { std::env::remove_var(key) };
}

/// Numbers of the fds open in this process, read from /proc/self/fd without counting the fd
/// used to read the directory itself.
pub fn open_fds() -> Vec<RawFd> {
    let mut fds = Vec::new();
    // SAFETY: opendir(3) with a NUL-terminated path; a null result is checked.
    let dir = unsafe { libc::opendir(c"/proc/self/fd".as_ptr()) };
    if dir.is_null() {
        return fds;
    }
    // SAFETY: `dir` is a valid DIR* until closedir below.
    let own = unsafe { libc::dirfd(dir) };
    loop {
        // SAFETY: readdir(3) on a valid DIR*; the entry stays valid until the next call.
        let entry = unsafe { libc::readdir(dir) };
        if entry.is_null() {
            break;
        }
        // SAFETY: d_name is a NUL-terminated array inside the valid entry.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if let Some(fd) = name.to_str().ok().and_then(|s| s.parse::<RawFd>().ok())
            && fd != own
        {
            fds.push(fd);
        }
    }
    // SAFETY: closes the DIR* opened above exactly once.
    unsafe { libc::closedir(dir) };
    fds.sort_unstable();
    fds
}

/// Everything a forked child needs to exec a copy of this service with its listeners at fds
/// 3.., prepared before fork so that the child allocates nothing (fork(2) in a threaded
/// process: only async-signal-safe calls until execve).
pub struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// "LISTEN_PID=" followed by room for the digits and the NUL, filled in by the child.
    listen_pid: Vec<u8>,
    /// Listener duplicates at fds above 3+N, so dup2 down to 3.. never clobbers a source.
    sources: Vec<OwnedFd>,
}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

impl ExecPlan {
    /// `env` must not contain LISTEN_PID; the plan adds it.
    pub fn new(
        path: CString,
        argv: Vec<CString>,
        env: Vec<CString>,
        listeners: &[BorrowedFd<'_>],
    ) -> io::Result<ExecPlan> {
        let min_fd = 3 + listeners.len() as c_int;
        let mut sources = Vec::with_capacity(listeners.len());
        for fd in listeners {
            // SAFETY: F_DUPFD_CLOEXEC on an open fd returns a new fd we own.
            let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min_fd) };
            if dup < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the fd was just created for us.
            sources.push(unsafe { OwnedFd::from_raw_fd(dup) });
        }
        let mut listen_pid = LISTEN_PID_PREFIX.to_vec();
        listen_pid.resize(LISTEN_PID_PREFIX.len() + 24, 0);
        Ok(ExecPlan {
            path,
            argv,
            env,
            listen_pid,
            sources,
        })
    }

    /// Forks; the child puts the listeners at 3.., writes its pid into LISTEN_PID, resets the
    /// signal mask and SIGPIPE, and execs. Returns the child's pid.
    pub fn spawn(mut self) -> io::Result<libc::pid_t> {
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(ptr::null());
        let pid_slot = self.listen_pid.as_mut_ptr();
        let mut envp: Vec<*const libc::c_char> = self.env.iter().map(|e| e.as_ptr()).collect();
        envp.push(pid_slot as *const libc::c_char);
        envp.push(ptr::null());
        let sources: Vec<RawFd> = self.sources.iter().map(|fd| fd.as_raw_fd()).collect();
        // SAFETY: fork(2); the child branch below only calls async-signal-safe functions
        // (getpid, dup2, signal, sigemptyset, pthread_sigmask, execve, _exit) and writes to
        // memory prepared before the fork, as signal-safety(7) requires in a threaded process.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                // SAFETY: see above; `pid_slot` has room for "LISTEN_PID=" + 24 bytes.
                unsafe { exec_child(self.path.as_ptr(), &argv, &envp, pid_slot, &sources) }
            }
            pid => Ok(pid),
        }
    }
}

/// The child side of [`ExecPlan::spawn`]. Never returns.
///
/// # Safety
/// Must only run in a freshly forked child, with pointers prepared before the fork.
unsafe fn exec_child(
    path: *const libc::c_char,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    pid_slot: *mut u8,
    sources: &[RawFd],
) -> ! {
    unsafe {
        write_decimal(pid_slot.add(LISTEN_PID_PREFIX.len()), libc::getpid() as u64);
        for (i, &src) in sources.iter().enumerate() {
            // dup2 clears FD_CLOEXEC on the new fd, exactly what LISTEN_FDS needs.
            if libc::dup2(src, 3 + i as c_int) < 0 {
                libc::_exit(126);
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
        libc::execve(path, argv.as_ptr(), envp.as_ptr());
        libc::_exit(127)
    }
}

/// Writes `n` in decimal followed by NUL at `out` (needs 21 bytes), without allocating.
///
/// # Safety
/// `out` must be valid for 21 bytes of writes.
unsafe fn write_decimal(out: *mut u8, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: i < 20 < 21 bytes the caller guarantees.
        unsafe { *out.add(i) = digits[len - 1 - i] };
    }
    // SAFETY: len <= 20, so this is within the 21 bytes.
    unsafe { *out.add(len) = 0 };
}

/// What a forked orphan-making helper runs in its grandchildren.
#[derive(Clone, Copy)]
pub enum OrphanKind {
    /// `_exit(0)` at once.
    ExitNow,
    /// setsid(), then wait for SIGTERM and `_exit(0)`.
    LingerUntilTerm,
}

/// Forks a child that forks `count` grandchildren, writes their pids (native-endian i32) to
/// `report`, and exits without waiting for them, so they are reparented to the nearest
/// subreaper (the init under test). Returns the child's pid.
pub fn fork_orphan_maker(
    count: usize,
    kind: OrphanKind,
    report: BorrowedFd<'_>,
) -> io::Result<libc::pid_t> {
    let report = report.as_raw_fd();
    // SAFETY: fork(2); the child and grandchildren only call async-signal-safe functions
    // (fork, write, close, open, dup2, setsid, pthread_sigmask, sigwaitinfo, _exit) on stack
    // data.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => unsafe {
            for _ in 0..count {
                let pid = libc::fork();
                if pid == 0 {
                    orphan_body(kind, report);
                }
                if pid > 0 {
                    let bytes = pid.to_ne_bytes();
                    libc::write(report, bytes.as_ptr().cast(), bytes.len());
                }
            }
            libc::_exit(0)
        },
        pid => Ok(pid),
    }
}

/// # Safety
/// Only in a freshly forked grandchild.
unsafe fn orphan_body(kind: OrphanKind, report: RawFd) -> ! {
    unsafe {
        // The parent reads the report pipe until EOF: a grandchild holding the write end would
        // keep it waiting for as long as the grandchild lives.
        libc::close(report);
        if let OrphanKind::LingerUntilTerm = kind {
            libc::setsid();
            // Nor may a lingering orphan hold the caller's stdout/stderr pipes open: a test that
            // reads them to EOF would wait for it.
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            for fd in 0..3 {
                if null >= 0 {
                    libc::dup2(null, fd);
                } else {
                    libc::close(fd);
                }
            }
            if null > 2 {
                libc::close(null);
            }
            let mut term: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut term);
            libc::sigaddset(&mut term, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_SETMASK, &term, ptr::null_mut());
            let mut info: libc::siginfo_t = std::mem::zeroed();
            while libc::sigwaitinfo(&term, &mut info) != libc::SIGTERM {}
        }
        libc::_exit(0)
    }
}

/// Whether a process with this pid still exists (a zombie counts: it has not been reaped).
pub fn process_exists(pid: libc::pid_t) -> bool {
    // SAFETY: kill(2) with signal 0 only checks existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A signal set holding exactly these signal numbers (nix's `SigSet::add` only takes the
/// named signals, not the real-time ones).
pub fn sigset_of(signals: impl Iterator<Item = c_int>) -> SigSet {
    // SAFETY: all-zero is valid storage for sigemptyset(3) to initialise.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: initialises the set.
    unsafe { libc::sigemptyset(&mut set) };
    for sig in signals {
        // SAFETY: sigaddset(3) on an initialised set; invalid numbers fail with EINVAL.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    // SAFETY: `set` was initialised by sigemptyset above.
    unsafe { SigSet::from_sigset_t_unchecked(set) }
}

/// AUDIT_ARCH_* of this build, as `struct seccomp_data` reports it.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

/// Forks a child that installs a seccomp filter answering execve(2) and execveat(2) with
/// SECCOMP_RET_USER_NOTIF (everything else allowed), sends the filter's listener fd over `sock`
/// (SCM_RIGHTS), and execs `argv` (that exec is the first notification). The filter is
/// inherited by everything the child starts. Returns the child's pid.
pub fn fork_under_exec_listener(argv: &[CString], sock: BorrowedFd<'_>) -> io::Result<libc::pid_t> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // struct seccomp_data: nr at 0, arch at 4.
    let mut prog = [
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ_K, 0, 3, AUDIT_ARCH),
        op(LD_W_ABS, 0, 0, 0),
        op(JEQ_K, 2, 0, libc::SYS_execve as u32),
        op(JEQ_K, 1, 0, libc::SYS_execveat as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        op(RET_K, 0, 0, libc::SECCOMP_RET_USER_NOTIF),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(ptr::null());
    let sock = sock.as_raw_fd();
    // SAFETY: fork(2) from a single-threaded process (hold-exec forks before anything else); the
    // child only makes raw syscalls on data prepared above and then execs or _exits.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => unsafe {
            // No setuid gains from here on: required to load a filter without CAP_SYS_ADMIN.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(1);
            }
            // `fprog` points at `prog`, a live array of `len` instructions; the kernel copies it.
            let listener = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &fprog as *const libc::sock_fprog,
            ) as RawFd;
            if listener < 0 {
                libc::_exit(1);
            }
            // One byte of data carrying the listener in an SCM_RIGHTS message.
            let mut byte = [0u8; 1];
            let mut iov = libc::iovec {
                iov_base: byte.as_mut_ptr().cast(),
                iov_len: 1,
            };
            let mut space = [0u64; 8];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), listener);
            if libc::sendmsg(sock, &msg, 0) != 1 {
                libc::_exit(1);
            }
            libc::close(listener);
            libc::execvp(ptrs[0], ptrs.as_ptr());
            libc::_exit(127)
        },
        pid => Ok(pid),
    }
}

/// Receives the fd that `fork_under_exec_listener`'s child sends.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut space = [0u64; 8];
    // SAFETY: msghdr is a plain C struct for which all-zero is valid; it points at the live
    // locals above, and the cmsg walk stays inside `space` (CMSG_FIRSTHDR checks the length).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&space) as _;
        if libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) != 1 {
            return Err(io::Error::other("no listener fd came"));
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::other("no listener fd came"));
        }
        let fd = ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The next seccomp user notification on `listener`: (id, pid of the caller in our namespace).
pub fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<(u64, u32)> {
    // SAFETY: seccomp_notif is a plain C struct; the kernel wants it zeroed (else EINVAL).
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: SECCOMP_IOCTL_NOTIF_RECV fills the struct that `n` is, and nothing else.
    if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n.id, n.pid))
}

/// Lets the notified syscall `id` go on as if there were no filter.
pub fn notif_continue(listener: BorrowedFd<'_>, id: u64) -> io::Result<()> {
    let resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: SECCOMP_IOCTL_NOTIF_SEND reads the struct that `resp` is.
    if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
