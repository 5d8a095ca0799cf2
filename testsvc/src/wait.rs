//! `handoff-testsvc wait`: no sockets; reports every signal it receives, so tests can check what
//! the init forwards, rewrites and drops.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::{WaitArgs, sys};

pub fn run(args: WaitArgs) -> i32 {
    let report = args.report.as_deref();
    if args.print_self {
        say(&print_self(), report);
    }
    // Block first, then reset dispositions: in the other order a signal arriving in between
    // could stop or kill us with its default action. Blocked signals stay pending even when
    // their default action is to ignore them, so sigwaitinfo sees every one.
    let all = sys::sigset_of(sys::catchable_signals());
    if let Err(e) = all.thread_block() {
        crate::log(&format!("cannot block signals: {e}"));
        return 1;
    }
    sys::reset_all_dispositions();
    say("waiting", report);
    loop {
        let Some((signo, _)) = sys::wait_signal(&all, None) else {
            continue;
        };
        say(&format!("got {}", sys::signal_name(signo)), report);
        if signo == libc::SIGINT || (signo == libc::SIGTERM && !args.ignore_term) {
            // A real service takes a moment to shut down (flush, close connections).
            std::thread::sleep(std::time::Duration::from_millis(args.cleanup_ms));
            say("graceful shutdown complete", report);
            return args.exit_code;
        }
    }
}

/// The process state as inherited: what the init's spawn hygiene is judged by.
fn print_self() -> String {
    let (blocked, ignored) = sys::inherited_signal_state();
    let fds: Vec<String> = sys::open_fds().iter().map(|fd| fd.to_string()).collect();
    let pgid = nix::unistd::getpgrp();
    let sid = nix::unistd::getsid(None).map_or(-1, |p| p.as_raw());
    format!(
        "sigblk={blocked:016x} sigign={ignored:016x} fds={} pgid={pgid} sid={sid}",
        fds.join(",")
    )
}

/// One line to stdout (flushed at once: tests read it through a pipe) and to the report file.
fn say(msg: &str, report: Option<&Path>) {
    let line = format!("testsvc[{}]: {msg}\n", std::process::id());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    if let Some(path) = report {
        let appended = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            crate::log(&format!("cannot append to {}: {e}", path.display()));
        }
    }
}
