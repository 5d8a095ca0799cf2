//! The old-kernel filter: close_range(2) fails under it as on kernels before 5.9 or 5.11.
//! Shared by `handoff-testsvc old-kernel` and the unit tests of handoff-init's spawn (which
//! include this file with `#[path]`), so both test the same filter. std and libc only.

use std::io;

/// Installs a seccomp filter (seccomp(2), SECCOMP_MODE_FILTER) under which close_range(2) fails
/// as on an older kernel: with ENOSYS, or with `einval_for_flags` EINVAL whenever its flags
/// argument is not 0. Every other syscall is allowed. Inherited across fork and exec.
pub fn fail_close_range(einval_for_flags: bool) -> io::Result<()> {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // struct seccomp_data: nr at 0, arch at 4, args[] from 16 (args[2] at 32, low word first).
    let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e as u32;
    let nr = libc::SYS_close_range as u32;
    let mut prog = vec![
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ_K, 0, 6, ARCH),
        op(LD_W_ABS, 0, 0, 0),
        op(JEQ_K, 0, 4, nr),
    ];
    if einval_for_flags {
        prog.extend([
            op(LD_W_ABS, 0, 0, 32),
            op(JEQ_K, 1, 0, 0),
            op(RET_K, 0, 0, errno(libc::EINVAL)),
            op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ]);
    } else {
        prog.extend([
            op(RET_K, 0, 0, errno(libc::ENOSYS)),
            op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
            op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
            op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ]);
    }
    prog.push(op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl(2) with integer arguments: no setuid gains from here on, required to load a
    // filter without CAP_SYS_ADMIN.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fprog` points at `prog`, a live array of `len` instructions; the kernel copies it.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // Check that it took: first == last == u32::MAX closes nothing where close_range works.
    let flags = if einval_for_flags {
        libc::CLOSE_RANGE_CLOEXEC
    } else {
        0
    };
    let want = if einval_for_flags {
        libc::EINVAL
    } else {
        libc::ENOSYS
    };
    // SAFETY: a raw syscall with integer arguments on a range with no open fd.
    let r = unsafe { libc::syscall(libc::SYS_close_range, u32::MAX, u32::MAX, flags) };
    if r == 0 || io::Error::last_os_error().raw_os_error() != Some(want) {
        return Err(io::Error::other("close_range still works under the filter"));
    }
    Ok(())
}
