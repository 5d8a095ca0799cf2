//! The init's life: start the command, then one loop that reaps, forwards signals and shuts the
//! whole tree down within the grace period. Single thread, one `poll()`, no timer while idle.
//!
//! Before the command is started every error is fatal and nothing is left behind. After it, init
//! never bails out: failures (ESRCH on kill, a write to a closed stderr) are at most a log line.

use crate::cli::ForwardTo;
use crate::config::Config;
use crate::procs;
use crate::signals;
use crate::spawn::{self, Command, Plan};
use crate::{debug, error, info, warn};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::SignalFd;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

/// Runs the command under init and returns init's exit code.
pub fn run(cfg: Config, mask: SigSet) -> u8 {
    match Init::start(cfg, mask) {
        Ok(mut init) => init.serve(),
        Err(code) => code,
    }
}

struct Init {
    cfg: Config,
    sfd: SignalFd,
    /// The command init started; `None` once it has exited.
    main: Option<i32>,
    main_code: Option<u8>,
    /// When leftovers get SIGKILL; set by the first shutdown signal or the command's exit.
    deadline: Option<Instant>,
    killed: bool,
}

impl Init {
    fn start(cfg: Config, mask: SigSet) -> Result<Init, u8> {
        let fatal = |what: &str, e: Errno| {
            error!("{what}: {}", e.desc());
            1
        };
        let sfd = signals::signalfd().map_err(|e| fatal("cannot create signalfd", e))?;
        if std::process::id() != 1 {
            // Orphans of the service are reparented to us rather than to the real PID 1, so we
            // can reap them and stop them at shutdown (prctl(2) PR_SET_CHILD_SUBREAPER).
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
                warn!("cannot become child subreaper: {}", Errno::last().desc());
            }
        }
        if let Some(sig) = cfg.pdeathsig {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(fatal("cannot set the parent-death signal", Errno::last()));
            }
        }
        let command = Command::prepare(&cfg.command).map_err(|e| {
            error!("{e}");
            e.exit_code()
        })?;
        let env: Vec<Vec<u8>> = std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.into_vec());
                kv
            })
            .collect();
        let plan = Plan {
            mask: &mask,
            foreground: true,
            env,
            listen_fds: &[],
        };
        let pid = spawn::spawn(&command, &plan).map_err(|e| {
            error!("{e}");
            e.exit_code()
        })?;
        info!("started '{}' as pid {pid}", command.display);
        // From here on init does not bail out: it reaps and forwards until nothing is left.
        Ok(Init {
            cfg,
            sfd,
            main: Some(pid),
            main_code: None,
            deadline: None,
            killed: false,
        })
    }

    fn serve(&mut self) -> u8 {
        loop {
            let children_left = procs::reap(|pid, status| self.on_exit(pid, status));
            if let Some(code) = self.main_code
                && !children_left
            {
                let code = self.cfg.remap(code);
                info!("exiting with status {code}");
                return code;
            }
            let timeout = match self.deadline {
                Some(d) if !self.killed => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.kill_leftovers();
                        continue;
                    }
                    Some(left)
                }
                _ => None,
            };
            self.wait(timeout);
            while let Ok(Some(info)) = self.sfd.read_signal() {
                self.on_signal(info.ssi_signo as i32, info.ssi_pid as i32);
            }
        }
    }

    /// Sleeps until a signal arrives or `timeout` passes; no timeout means no wake-up at all.
    fn wait(&self, timeout: Option<Duration>) {
        let timeout = match timeout {
            // Round up so we never wake a millisecond early and spin.
            Some(t) => {
                PollTimeout::try_from(t.as_millis().saturating_add(1).min(i32::MAX as u128) as i32)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => warn!("poll failed: {}", e.desc()),
        }
    }

    fn on_exit(&mut self, pid: i32, status: libc::c_int) {
        let code = procs::exit_code(status);
        if Some(pid) == self.main {
            info!("command (pid {pid}) exited with status {code}");
            self.main = None;
            self.main_code = Some(code);
            self.begin_shutdown("the command exited");
            if procs::signal_all(libc::SIGTERM) > 0 {
                info!(
                    "sent SIGTERM to the remaining processes; SIGKILL in {:?}",
                    self.left()
                );
                procs::signal_all(libc::SIGCONT);
            }
        } else if self.cfg.warn_on_reap {
            warn!("reaped zombie pid {pid} (status {code})");
        } else {
            debug!("reaped pid {pid} (status {code})");
        }
    }

    fn on_signal(&mut self, sig: i32, sender: i32) {
        if sig == libc::SIGCHLD {
            return;
        }
        if sender == std::process::id() as i32 {
            // Our own doing: SIGPIPE from a log line written to a broken stderr. Not logged,
            // since that write would raise the next one.
            return;
        }
        let from = crate::log::sender(sender);
        let to = self.cfg.rewrite.get(sig as usize).copied().unwrap_or(sig);
        if to == 0 {
            info!(
                "received {} from {from}; dropped (--rewrite)",
                signals::name(sig)
            );
            return;
        }
        let shown = if to == sig {
            String::new()
        } else {
            format!(" as {}", signals::name(to))
        };
        match self.main {
            Some(pid) => {
                let (target, what) = match self.cfg.forward_to {
                    ForwardTo::Group => (-pid, "process group"),
                    ForwardTo::Child => (pid, "pid"),
                };
                info!(
                    "received {} from {from}; forwarding{shown} to {what} {pid}",
                    signals::name(sig)
                );
                // SAFETY: kill(2) has no memory-safety preconditions; ESRCH is harmless.
                unsafe { libc::kill(target, to) };
            }
            None => {
                info!(
                    "received {} from {from}; forwarding{shown} to all remaining processes",
                    signals::name(sig)
                );
                procs::signal_all(to);
            }
        }
        if signals::is_shutdown(sig) {
            self.begin_shutdown(&format!("{} received", signals::name(sig)));
        }
    }

    /// Starts the grace period once; later reasons keep the first deadline.
    fn begin_shutdown(&mut self, why: &str) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.cfg.grace);
            debug!("shutdown: {why}; grace {}", crate::log::dur(self.cfg.grace));
        }
    }

    fn left(&self) -> Duration {
        self.deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    fn kill_leftovers(&mut self) {
        self.killed = true;
        let n = procs::signal_all(libc::SIGKILL);
        warn!(
            "grace period of {:?} is over; sent SIGKILL to {n} processes",
            self.cfg.grace
        );
    }
}
