//! Job control in plain mode: dumb-init's "shell background support". A shell that runs init as
//! a job (`handoff-init -- cmd`, then Ctrl-Z, `fg`) sees init stop when the job stops and
//! continues it with SIGCONT; init passes both on, so the job stops and resumes as one.
//!
//! - SIGTSTP, SIGTTIN or SIGTTOU sent to init: forwarded (in group mode rewritten to SIGSTOP by
//!   default, as dumb-init's setsid mode does, `-r` overrides), then init stops itself.
//! - With a terminal, the command's group is the terminal's foreground group, so Ctrl-Z stops
//!   the command and not init: init sees that stop (waitid(2) WSTOPPED) and stops itself too,
//!   so its parent shell gets the terminal back.
//! - SIGCONT to init: the command's group gets the terminal back, then the CONT is forwarded.
//!
//! As PID 1 init cannot stop: the kernel ignores SIGSTOP that a namespace's init sends itself
//! (signal(7), "unkillable" init), as it does for dumb-init. The job still stops and resumes.
//! With the supervisor on none of this applies: stopping init would stall every deadline.

use crate::{debug, sys};

pub struct JobCtl {
    /// stdin is a terminal that init handed to the command's group.
    terminal: bool,
    /// Init stopped with the job and has not been continued since (a stop report of the job
    /// that arrives meanwhile is the same stop, not a new one to follow).
    stopped: bool,
}

/// The signals that stop a job from its terminal, and init with it.
pub fn is_stop(sig: i32) -> bool {
    matches!(sig, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)
}

impl JobCtl {
    pub fn new(terminal: bool) -> JobCtl {
        JobCtl {
            terminal,
            stopped: false,
        }
    }

    /// Stops init until a SIGCONT (not as PID 1: see the module comment).
    pub fn stop_self(&mut self) {
        self.stopped = true;
        if std::process::id() == 1 {
            debug!("job stopped; PID 1 itself cannot stop");
            return;
        }
        debug!("job stopped: stopping init too");
        sys::kill(std::process::id() as i32, libc::SIGSTOP);
    }

    /// After reaping: if the command was stopped from its terminal (Ctrl-Z), init stops too.
    pub fn follow(&mut self, main: i32) {
        if !self.terminal || main <= 1 {
            return;
        }
        if let Some(sig) = sys::stop_signal_of(main)
            && is_stop(sig)
            && !self.stopped
        {
            debug!("pid {main} stopped by {}", crate::signals::name(sig));
            self.stop_self();
        }
    }

    /// Init got SIGCONT (a shell's `fg` or `bg`, or `kill -CONT`). After `fg` the terminal's
    /// foreground group is init's own: the command's group takes it back before the CONT is
    /// forwarded, so it does not wake in the background and stop again on its first read.
    /// After `bg` the shell keeps the terminal.
    pub fn resumed(&mut self, pgid: i32) {
        self.stopped = false;
        let stdin = std::io::stdin();
        if self.terminal
            && pgid > 1
            && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|fg| fg == nix::unistd::getpgrp())
        {
            nix::unistd::tcsetpgrp(&stdin, nix::unistd::Pid::from_raw(pgid)).ok();
        }
    }
}
