//! Thin safe wrappers around the raw syscalls init needs that nix does not cover the way we
//! use them (waitid with WNOWAIT, close_range, prctl, F_DUPFD_CLOEXEC). With `spawn` (fork and
//! exec), this is one of the two modules with `unsafe`; each block says why it is sound.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// kill(2); true if the signal was sent. ESRCH (already gone) is an answer, not a fault.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) takes integers only and has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// What a non-blocking wait found.
pub enum Wait {
    /// A child ended: its pid and wait status.
    Exited(i32, libc::c_int),
    /// Children exist, none has ended.
    Running,
    /// No child at all (ECHILD).
    NoChildren,
}

/// waitpid(2) with WNOHANG on `pid` (-1: any child). __WALL also reaps clone(2) children that
/// were created without SIGCHLD as their exit signal. Retries on EINTR.
pub fn wait_nohang(pid: i32) -> Wait {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer to a local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
        match r {
            0 => return Wait::Running,
            p if p > 0 => return Wait::Exited(p, status),
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return Wait::NoChildren,
        }
    }
}

/// The pid of a child that has ended but is not reaped, without reaping it (waitid(2) with
/// WNOWAIT): any child (`pgid` None) or one in process group `pgid`. `Err` is ECHILD.
pub fn peek_ended(pgid: Option<i32>) -> Result<Option<i32>, Errno> {
    let (idtype, id) = match pgid {
        Some(g) => (libc::P_PGID, g as libc::id_t),
        None => (libc::P_ALL, 0),
    };
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid out-pointer to a local; WNOWAIT leaves the child waitable.
        let r = unsafe {
            libc::waitid(
                idtype,
                id,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
            )
        };
        if r < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        // SAFETY: waitid succeeded, so si_pid is set (0 when no child has ended).
        let pid = unsafe { info.si_pid() };
        return Ok((pid != 0).then_some(pid));
    }
}

/// prctl(PR_SET_CHILD_SUBREAPER): orphans below us are reparented to us, not to PID 1.
pub fn set_child_subreaper() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(drop)
}

/// prctl(PR_SET_PDEATHSIG): `sig` is sent to us when our parent dies.
pub fn set_parent_death_signal(sig: i32) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) })
        .map(drop)
}

/// Closes every fd from `first` up: close_range(2) (Linux 5.9); on older kernels (ENOSYS) each
/// fd that /proc/self/fd lists, as catatonit does. Only for fds nothing in this process owns:
/// called first thing in `main`, while init has one thread.
pub fn close_from(first: u32) {
    // SAFETY: a raw syscall with integer arguments; no Rust object owns these fds yet.
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) } != 0 {
        // SAFETY: as above; `close` is async-signal-safe.
        unsafe { each_fd_from(first as RawFd, close_fd) };
    }
}

fn close_fd(fd: RawFd) {
    // SAFETY: only called by `each_fd_from` on fds no Rust object owns (see its callers).
    unsafe { libc::close(fd) };
}

/// Calls `op` on every open fd ≥ `first`, as listed by getdents64(2) on /proc/self/fd into a
/// stack buffer (opendir(3) would allocate), or without /proc on every number below
/// RLIMIT_NOFILE (at most 65536). The fallback of close_range(2) on kernels before 5.9 (and of
/// CLOSE_RANGE_CLOEXEC before 5.11).
///
/// # Safety
/// Async-signal-safe (raw syscalls and stack memory only), so also usable between fork and
/// exec; `op` must be too, and may act on fds only if no Rust object owns them.
pub unsafe fn each_fd_from(first: RawFd, op: fn(RawFd)) {
    unsafe {
        let dir = libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            let mut lim: libc::rlimit = std::mem::zeroed();
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur.min(65_536) as RawFd
            } else {
                1024
            };
            (first..max).for_each(op);
            return;
        }
        // u64s: struct linux_dirent64 is 8-aligned.
        let mut buf = [0u64; 256];
        loop {
            let n = libc::syscall(
                libc::SYS_getdents64,
                dir,
                buf.as_mut_ptr(),
                std::mem::size_of_val(&buf),
            );
            if n <= 0 {
                break;
            }
            let base = buf.as_ptr().cast::<u8>();
            let mut off = 0usize;
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            while off + 19 < n as usize {
                let reclen = std::ptr::read_unaligned(base.add(off + 16).cast::<u16>()) as usize;
                if reclen == 0 {
                    break;
                }
                let name = base.add(off + 19);
                let (mut fd, mut i): (RawFd, usize) = (0, 0);
                while i + 19 < reclen && (*name.add(i)).is_ascii_digit() {
                    fd = fd
                        .wrapping_mul(10)
                        .wrapping_add((*name.add(i) - b'0') as RawFd);
                    i += 1;
                }
                // "." and ".." have no digits; the directory's own fd is closed below. Closing
                // entries while reading on does not disturb the listing (the kernel walks the
                // fd table by number).
                if i > 0 && fd >= first && fd != dir {
                    op(fd);
                }
                off += reclen;
            }
        }
        libc::close(dir);
    }
}

/// Opens /dev/null on whichever of fds 0-2 is closed, so nothing init opens later takes a
/// standard fd's number and every child starts with the three of them.
pub fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD on an integer is harmless; open with a static C string. The new fd is
        // the lowest free one, i.e. the missing standard fd, and stays open for init's life.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

/// Whether poll(2)'s `revents` say an fd is gone, asked for no events or not: hung up or reset
/// (POLLHUP, POLLERR: a peer gone, a listener a generation shut down), or not an open fd
/// (POLLNVAL). Init's loop polls held listeners and stored fds this way.
pub fn hung_up(revents: Option<nix::poll::PollFlags>) -> bool {
    use nix::poll::PollFlags;
    revents.is_some_and(|r| {
        r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
    })
}

/// Whether the receive side of `fd` is shut down (shutdown(2) with SHUT_RD or SHUT_RDWR):
/// poll(2) for POLLRDHUP, not waiting.
pub fn read_shut_down(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: poll(2) on one valid pollfd, with a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

/// Puts `fresh` in place of `target`, at `target`'s fd number (dup3(2), close-on-exec): what
/// `target` was is closed, atomically, and `fresh` can be dropped.
pub fn replace_fd(fresh: &OwnedFd, target: &OwnedFd) -> Result<(), Errno> {
    // SAFETY: dup3(2) on two valid fds, borrowed for the call; `target` keeps owning its number.
    Errno::result(unsafe { libc::dup3(fresh.as_raw_fd(), target.as_raw_fd(), libc::O_CLOEXEC) })
        .map(drop)
}

/// A close-on-exec duplicate of `fd` at the lowest free number ≥ `min`; None if the fd limit is
/// lower than that.
pub fn dup_at_least(fd: &OwnedFd, min: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd, borrowed for the call.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    // SAFETY: `high` was just returned by fcntl; nothing else owns it.
    (high >= 0).then(|| unsafe { OwnedFd::from_raw_fd(high) })
}

/// Takes ownership of an fd that a protocol handed to this process: a socket activator's
/// LISTEN_FDS, or SCM_RIGHTS in a received message. None if `raw` is not open.
pub fn take_fd(raw: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only checks that the fd is open.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the fd is open and was handed over to us (the caller's contract); no other object
    // in this process owns it, so wrapping it gives it exactly one owner.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Reads every pending signal from a non-blocking signalfd in as few read(2) calls as the buffer
/// allows (signalfd(2) returns as many whole records as fit): one call per wake-up in the usual
/// case, where reading one record at a time would take a second call just to learn there is no
/// more. Returns (signal, sender pid) pairs.
pub fn read_signals(fd: &impl std::os::fd::AsFd, out: &mut Vec<(i32, i32)>) {
    const N: usize = 16;
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: an all-zero signalfd_siginfo is a valid value of this plain C struct.
        let mut buf: [libc::signalfd_siginfo; N] = unsafe { std::mem::zeroed() };
        // SAFETY: read into a buffer of exactly size_of_val(&buf) bytes that we own.
        let n = unsafe {
            libc::read(
                fd.as_fd().as_raw_fd(),
                buf.as_mut_ptr().cast(),
                std::mem::size_of_val(&buf),
            )
        };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        let records = if n > 0 { n as usize / size } else { 0 };
        out.extend(
            buf[..records]
                .iter()
                .map(|i| (i.ssi_signo as i32, i.ssi_pid as i32)),
        );
        if records < N {
            return;
        }
    }
}

/// The signal that stopped child `pid`, if it stopped since the last look (waitid(2) with
/// WSTOPPED only: an exit is neither reported nor reaped here, so the reaper still gets it).
pub fn stop_signal_of(pid: i32) -> Option<i32> {
    stop_report(pid, 0)
}

/// Whether child `pid` is stopped, leaving the report for `stop_signal_of` (WNOWAIT).
pub fn is_stopped(pid: i32) -> bool {
    stop_report(pid, libc::WNOWAIT).is_some()
}

fn stop_report(pid: i32, flags: libc::c_int) -> Option<i32> {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a valid out-pointer to a local.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WSTOPPED | libc::WNOHANG | flags,
        )
    };
    // SAFETY: waitid succeeded, so si_pid is set (0 when nothing was reported).
    if r < 0 || unsafe { info.si_pid() } != pid || info.si_code != libc::CLD_STOPPED {
        return None;
    }
    // SAFETY: for CLD_STOPPED, si_status is the stopping signal (waitid(2)).
    Some(unsafe { info.si_status() })
}

/// Most fds one message can carry (SCM_MAX_FD in the kernel's include/net/scm.h).
pub const SCM_MAX_FD: usize = 253;

/// A datagram as recvmsg(2) left it: its length, whether it or its ancillary data were cut
/// (MSG_TRUNC / MSG_CTRUNC), the sender's pid from SCM_CREDENTIALS (0: none, or the sender is
/// not visible in our PID namespace) and every fd the kernel installed for us (SCM_RIGHTS).
pub struct Datagram {
    pub len: usize,
    pub truncated: bool,
    pub pid: i32,
    pub fds: Vec<OwnedFd>,
}

/// One recvmsg(2), non-blocking, fds received close-on-exec (MSG_CMSG_CLOEXEC). The control
/// buffer has room for credentials and SCM_MAX_FD fds; when the kernel still truncates it (no
/// room in our fd table) the fds it did install are walked and returned all the same, so that
/// none is ever leaked: the caller owns them, and dropping them closes them.
pub fn recv_datagram(fd: &impl std::os::fd::AsFd, buf: &mut [u8]) -> Result<Datagram, Errno> {
    // u64s: cmsghdr alignment. Room for CMSG_SPACE(ucred) (32 bytes on 64-bit) and
    // CMSG_SPACE(SCM_MAX_FD fds) (16 + 4 per fd, rounded up), with some to spare.
    let mut control = [0u64; (64 + SCM_MAX_FD * 4) / 8 + 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let flags = libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC;
    let n = loop {
        // SAFETY: msg points at a live iovec over `buf` and at `control`, with their lengths.
        let n = unsafe { libc::recvmsg(fd.as_fd().as_raw_fd(), &mut msg, flags) };
        match n {
            n if n >= 0 => break n as usize,
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return Err(Errno::last()),
        }
    };
    let mut out = Datagram {
        len: n,
        truncated: msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0,
        pid: 0,
        fds: Vec::new(),
    };
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the headers within msg_controllen, which the
    // kernel set to what it wrote; each header's cmsg_len covers only data it wrote (truncated
    // data included, cmsg(3)), and the data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            let len = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    for i in 0..len / std::mem::size_of::<RawFd>() {
                        let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        // The kernel installed this fd for us: nobody else owns it.
                        out.fds.push(OwnedFd::from_raw_fd(raw));
                    }
                }
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
                    if len >= std::mem::size_of::<libc::ucred>() =>
                {
                    out.pid = std::ptr::read_unaligned(data.cast::<libc::ucred>()).pid;
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(out)
}

/// The soft RLIMIT_NOFILE: fd numbers below it can be opened (getrlimit(2)).
pub fn nofile_limit() -> usize {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft.min(1 << 20) as usize)
}
