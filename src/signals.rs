//! Signal names, the init's signal mask and the signalfd it reads them from.
//!
//! Init blocks every signal first thing in `main` and reads them from a signalfd (signalfd(2)).
//! Blocking the fault signals too is safe: a real fault (SIGSEGV from a bad access, SIGBUS, …) is
//! forced by the kernel, which unblocks it and resets it to SIG_DFL (force_sig_info), so a real
//! fault in init is never masked; only a fault-class signal *sent with kill* stays pending and is
//! read here, and init forwards it like any other signal.

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Standard signal names in number order (x86_64/aarch64 numbering, signal(7)).
const NAMES: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Highest signal number on Linux (SIGRTMAX).
pub const MAX: i32 = 64;

/// Whether init can ever see `sig` on its signalfd: not KILL or STOP (signal(7): they cannot be
/// caught or blocked), not CHLD (init's own: it reaps).
pub fn receivable(sig: i32) -> bool {
    !matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGCHLD)
}

/// Parses `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN+2`. `0` is accepted only when `allow_zero`.
pub fn parse(text: &str, allow_zero: bool) -> Result<i32, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return match n {
            0 if allow_zero => Ok(0),
            1..=MAX => Ok(n),
            _ => Err(format!("unknown signal '{text}'")),
        };
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(n);
    }
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off = if rest.is_empty() {
            Some(0)
        } else {
            rest.strip_prefix('+').and_then(|r| r.parse::<i32>().ok())
        };
        if let Some(off) = off {
            let n = libc::SIGRTMIN() + off;
            if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) {
                return Ok(n);
            }
        }
    }
    Err(format!("unknown signal '{text}'"))
}

/// `SIGTERM`, or `SIGRTMIN+3`, or `signal 99` for anything else.
pub fn name(sig: i32) -> String {
    if let Some((n, _)) = NAMES.iter().find(|(_, n)| *n == sig) {
        return format!("SIG{n}");
    }
    if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) {
        return format!("SIGRTMIN+{}", sig - libc::SIGRTMIN());
    }
    format!("signal {sig}")
}

/// Blocks every signal and returns the mask init was started with, which children get back.
pub fn block_all() -> nix::Result<SigSet> {
    let mut old = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )?;
    Ok(old)
}

/// A non-blocking, close-on-exec signalfd for every signal (SIGKILL and SIGSTOP are silently
/// left out by the kernel).
pub fn signalfd() -> nix::Result<SignalFd> {
    SignalFd::with_flags(
        &SigSet::all(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
}

/// Signals that start a shutdown when init receives them: what `docker stop`, Kubernetes and a
/// terminal send to end a container.
pub fn is_shutdown(sig: i32) -> bool {
    matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGQUIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_numbers_and_prefixes() {
        assert_eq!(parse("TERM", false), Ok(libc::SIGTERM));
        assert_eq!(parse("SIGTERM", false), Ok(libc::SIGTERM));
        assert_eq!(parse("sigquit", false), Ok(libc::SIGQUIT));
        assert_eq!(parse("15", false), Ok(15));
        assert_eq!(parse("0", true), Ok(0));
        assert_eq!(parse("RTMIN+2", false), Ok(libc::SIGRTMIN() + 2));
        assert_eq!(parse("RTMIN", false), Ok(libc::SIGRTMIN()));
    }

    #[test]
    fn rejects_unknown() {
        assert!(parse("FOO", false).is_err());
        assert!(parse("0", false).is_err());
        assert!(parse("65", false).is_err());
        assert!(parse("-1", true).is_err());
        assert!(parse("", false).is_err());
        assert!(parse("RTMIN+99", false).is_err());
        assert_eq!(
            parse("SIGFOO", false),
            Err("unknown signal 'SIGFOO'".to_string())
        );
    }

    #[test]
    fn names_round_trip() {
        for sig in 1..=31 {
            assert_eq!(parse(&name(sig), false), Ok(sig), "{sig}");
        }
        assert_eq!(name(libc::SIGRTMIN() + 1), "SIGRTMIN+1");
    }
}
