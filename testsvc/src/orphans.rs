//! `handoff-testsvc orphans N [--linger]`: makes N processes whose parent exits at once, so they
//! are reparented to the init (or nearest subreaper), then waits until the init has reaped them
//! all (kill(pid, 0) answers ESRCH; a zombie still counts as present).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2};

use crate::sys::{self, OrphanKind};
use crate::{OrphansArgs, log};

/// How often the reaping is checked: the init gives no event for a process that is not ours.
const CHECK_EVERY: Duration = Duration::from_millis(20);

pub fn run(args: OrphansArgs) -> i32 {
    let stop = sys::sigset_of([libc::SIGTERM, libc::SIGINT].into_iter());
    if let Err(e) = stop.thread_block() {
        log(&format!("cannot block signals: {e}"));
        return 1;
    }
    let pids = match spawn(&args) {
        Ok(p) => p,
        Err(e) => {
            log(&format!("cannot make orphans: {e}"));
            return 1;
        }
    };
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    say(&format!("orphans={} pids={}", pids.len(), list.join(",")));
    // Without --linger they exit at once, so a missing reaper shows as a timeout; lingering ones
    // wait for a SIGTERM that only the init's shutdown sends.
    let timeout = args
        .timeout
        .or((!args.linger).then_some(10_000))
        .map(Duration::from_millis);
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&p| sys::process_exists(p))
            .collect();
        if left.is_empty() {
            say(&format!("all {} orphans reaped", pids.len()));
            return 0;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            say(&format!(
                "{} orphans still present (not reaped?): {:?}",
                left.len(),
                left
            ));
            return 1;
        }
        if let Some((signo, _)) = sys::wait_signal(&stop, Some(CHECK_EVERY)) {
            say(&format!("got {}", sys::signal_name(signo)));
            say("graceful shutdown complete");
            return 0;
        }
    }
}

/// Forks the helper that forks the orphans; reads their pids; reaps the helper.
fn spawn(args: &OrphansArgs) -> std::io::Result<Vec<i32>> {
    let kind = if args.linger {
        OrphanKind::LingerUntilTerm
    } else {
        OrphanKind::ExitNow
    };
    let (rx, tx) = pipe2(OFlag::O_CLOEXEC)?;
    let helper = {
        use std::os::fd::AsFd;
        sys::fork_orphan_maker(args.count, kind, tx.as_fd())?
    };
    // Our copy of the write end must be closed, or reading would never see EOF.
    drop(tx);
    let mut bytes = Vec::new();
    std::fs::File::from(rx).read_to_end(&mut bytes)?;
    waitpid(Pid::from_raw(helper), None)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn say(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "testsvc[{}]: {msg}", std::process::id());
    let _ = out.flush();
}
