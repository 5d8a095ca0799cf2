//! Reaping and the process tree: who is left, and signalling all of it.

use crate::{signals, sys};

/// How a process ended, as a shell reports it: its exit code, or 128+N for signal N.
pub fn exit_code(status: libc::c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        (128 + libc::WTERMSIG(status)) as u8
    } else {
        1
    }
}

/// Reaps every child that has ended, calling `on_exit(pid, status, pgrp)` for each. SIGCHLD
/// coalesces, so one notification may stand for many exits: loop until the kernel has nothing
/// more. With `want_group`, each zombie's process group is read from /proc before it is reaped
/// (waitid(2) WNOWAIT leaves it in place), so a group's last exit can be attributed.
/// Returns false once init has no children at all (ECHILD).
pub fn reap(want_group: bool, mut on_exit: impl FnMut(i32, libc::c_int, Option<i32>)) -> bool {
    loop {
        let mut pgrp = None;
        let mut target = -1;
        if want_group {
            match sys::peek_ended(None) {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(pid)) => {
                    pgrp = self::pgrp(pid);
                    target = pid;
                }
            }
        }
        match sys::wait_nohang(target) {
            sys::Wait::Exited(pid, status) => on_exit(pid, status, pgrp),
            sys::Wait::Running => return true,
            sys::Wait::NoChildren => return false,
        }
    }
}

/// Whether a child of init in process group `pgid` has ended but is not reaped yet. Such a
/// zombie is the group's last word: its status is still to be reaped.
pub fn unreaped_in_group(pgid: i32) -> bool {
    matches!(sys::peek_ended(Some(pgid)), Ok(Some(_)))
}

/// A pid file's content: a decimal pid above 1 (1 is init itself), with surrounding whitespace.
pub fn parse_pid(text: &[u8]) -> Option<i32> {
    std::str::from_utf8(text)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&p: &i32| p > 1)
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    pid > 0 && stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Process group of `pid`, from /proc/PID/stat.
pub fn pgrp(pid: i32) -> Option<i32> {
    stat_field(pid, 2)
}

/// Parent of `pid`, from /proc/PID/stat.
pub fn ppid(pid: i32) -> Option<i32> {
    stat_field(pid, 1)
}

fn stat_field(pid: i32, index: usize) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..]
        .split_whitespace()
        .nth(index)?
        .parse()
        .ok()
}

/// Every live descendant of this process, found through /proc's parent links. Orphans of the
/// tree are reparented to init (as PID 1 or child subreaper), and processes that called setsid(2)
/// keep their parent, so this reaches processes that left the service's process group too.
pub fn descendants() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut links: Vec<(i32, i32)> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some((state, ppid)) = stat(pid)
            && state != 'Z'
            && state != 'X'
        {
            links.push((pid, ppid));
        }
    }
    let mut found = vec![me];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            links
                .iter()
                .filter(|&&(_, pp)| pp == parent)
                .map(|&(p, _)| p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// State letter and parent pid from /proc/PID/stat (proc(5)); the command name may contain
/// spaces and parentheses, so parse after the last ')'.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// SIGTERM to everything init started, then SIGCONT to those of them that are stopped, so they
/// wake to act on it. In this order a stopped process finds TERM pending when it resumes and,
/// of pending standard signals, the kernel hands over the lowest number first (signal(7)): TERM
/// (15) is what it sees before CONT (18); a running one gets no CONT at all.
pub fn terminate_all() -> usize {
    let n = signal_all(libc::SIGTERM);
    continue_stopped();
    n
}

/// SIGCONT to every stopped process init started (state T in /proc/PID/stat).
pub fn continue_stopped() {
    for pid in descendants() {
        if stat(pid).is_some_and(|(state, _)| state == 'T') {
            sys::kill(pid, libc::SIGCONT);
        }
    }
}

/// Sends `sig` to everything init started that is still alive; returns how many were signalled.
/// As PID 1 that is every other process of the PID namespace, and kill(-1) reaches them all in
/// one call, including any forked while we look (kill(2)); elsewhere each descendant is signalled.
pub fn signal_all(sig: i32) -> usize {
    let targets = descendants();
    if std::process::id() == 1 {
        sys::kill(-1, sig);
    } else {
        for &pid in &targets {
            sys::kill(pid, sig);
        }
    }
    crate::debug!("sent {} to {} processes", signals::name(sig), targets.len());
    targets.len()
}
