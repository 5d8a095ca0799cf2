//! The init's life: start the service, then one loop that reaps, forwards signals, runs the
//! supervisor's state machine (`handoff`) and shuts the whole tree down within the grace period.
//! Single thread, one `poll()` over the signalfd, the notify socket and the control socket, with
//! the earliest deadline as timeout: no wake-up at all while idle.
//!
//! Before the first generation is started every error is fatal and nothing is left behind. After
//! it, init never bails out: failures (ESRCH on kill, a failed generation, a write to a closed
//! stderr) are at most a log line.

use crate::cli::ForwardTo;
use crate::config::{Config, Ready, Track};
use crate::handoff::{Action, Machine, ReadyKind, Settings, State};
use crate::spawn::{self, Command, Plan, Terminal};
use crate::{debug, error, info, warn};
use crate::{notify, procs, signals, sys};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::SignalFd;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

mod supervisor;
use supervisor::Sup;

/// Runs the command under init and returns init's exit code.
pub fn run(cfg: Config, mask: SigSet) -> u8 {
    match Init::start(cfg, mask) {
        Ok(mut init) => init.serve(),
        Err(code) => code,
    }
}

/// The processes one live generation is tracked by.
struct Tracked {
    generation: u32,
    pgid: i32,
    /// The command init started, or what MAINPID= / --pidfile pointed to since.
    main: i32,
    main_reaped: bool,
    /// The main pid is init's own child: alive until reaped, no /proc lookup needed.
    main_is_child: bool,
    /// Status of the main pid.
    code: Option<u8>,
    /// With --track group: status of the last other member of the group reaped. The service a
    /// start script ran without exec outlives the shell, so its status is the generation's.
    member_code: Option<u8>,
}

struct Init {
    cfg: Config,
    mask: SigSet,
    sfd: SignalFd,
    command: Command,
    /// The environment every generation starts from.
    env: Vec<Vec<u8>>,
    sup: Option<Sup>,
    machine: Machine,
    tracked: Vec<Tracked>,
    /// Readiness probes running: (pid, generation).
    probes: Vec<(i32, u32)>,
    /// The service is over: init's exit code; the rest of the tree is being stopped.
    over: Option<u8>,
    /// When leftovers get SIGKILL; set by the first shutdown signal or the end of the service.
    deadline: Option<Instant>,
    killed: bool,
    /// Whether the last reap found children left: with none, there is no tree to stop.
    children_left: bool,
    /// With a terminal on stdin: the generation whose group is its foreground group.
    terminal_holder: Option<u32>,
    started: Instant,
}

use crate::sys::kill;

fn env_entry(k: &str, v: &str) -> Vec<u8> {
    spawn::env_entry(k.as_bytes(), v.as_bytes())
}

impl Init {
    fn start(cfg: Config, mask: SigSet) -> Result<Init, u8> {
        let fatal = |msg: String| {
            error!("{msg}");
            1
        };
        let sfd = signals::signalfd()
            .map_err(|e| fatal(format!("cannot create signalfd: {}", e.desc())))?;
        if std::process::id() != 1 {
            // Orphans of the service are reparented to us rather than to the real PID 1, so we
            // can reap them and stop them at shutdown (prctl(2) PR_SET_CHILD_SUBREAPER).
            if let Err(e) = sys::set_child_subreaper() {
                warn!("cannot become child subreaper: {}", e.desc());
            }
        }
        if let Some(sig) = cfg.pdeathsig {
            sys::set_parent_death_signal(sig)
                .map_err(|e| fatal(format!("cannot set the parent-death signal: {}", e.desc())))?;
        }
        let command = Command::prepare(&cfg.command).map_err(|e| {
            error!("{e}");
            e.exit_code()
        })?;
        let sup = match &cfg.supervise {
            Some(opts) => Some(Sup::open(opts).map_err(fatal)?),
            None => None,
        };
        let protocol = [
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
        ];
        let env: Vec<Vec<u8>> = std::env::vars_os()
            .filter(|(k, _)| sup.is_none() || !protocol.iter().any(|p| k == p))
            .map(|(k, v)| spawn::env_entry(k.as_bytes(), v.as_bytes()))
            .collect();
        let settings = match &cfg.supervise {
            None => Settings {
                ready: ReadyKind::Immediately,
                ready_timeout: Duration::ZERO,
                drain_timeout: Duration::ZERO,
                stop_signal: libc::SIGTERM,
                restart_on_failure: false,
            },
            Some(o) => Settings {
                ready: match o.ready {
                    Ready::Notify => ReadyKind::Told,
                    Ready::Delay(d) => ReadyKind::Delay(d),
                    Ready::Exec(_) => ReadyKind::Probe(Duration::from_millis(100)),
                },
                ready_timeout: o.ready_timeout,
                drain_timeout: o.drain_timeout,
                stop_signal: o.stop_signal,
                restart_on_failure: o.restart == crate::config::Restart::OnFailure,
            },
        };
        let mut init = Init {
            cfg,
            mask,
            sfd,
            command,
            env,
            sup,
            machine: Machine::new(settings),
            tracked: Vec::new(),
            probes: Vec::new(),
            over: None,
            deadline: None,
            killed: false,
            children_left: true,
            // The first generation takes the terminal itself (Terminal::Take).
            terminal_holder: nix::unistd::isatty(std::io::stdin())
                .unwrap_or(false)
                .then_some(1),
            started: Instant::now(),
        };
        let first = init.machine.start(Instant::now());
        init.exec(first);
        if init.tracked.is_empty() {
            // The command could not be started: nothing was left running.
            return Err(init.over.unwrap_or(1));
        }
        // From here on init does not bail out: it reaps and forwards until nothing is left.
        Ok(init)
    }

    fn serve(&mut self) -> u8 {
        loop {
            self.reap();
            self.check_tracked();
            self.hand_over_terminal();
            if let Some(code) = self.over
                && !self.children_left
            {
                let code = self.cfg.remap(code);
                info!("exiting with status {code}");
                return code;
            }
            let now = Instant::now();
            let due = self.machine.tick(now);
            self.exec(due);
            if !self.killed && self.deadline.is_some_and(|d| d <= now) {
                self.kill_leftovers();
                continue;
            }
            let grace = self.deadline.filter(|_| !self.killed);
            let next = [grace, self.machine.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            self.wait(next.map(|t| t.saturating_duration_since(Instant::now())));
            let mut signals = Vec::new();
            sys::read_signals(&self.sfd, &mut signals);
            for (sig, sender) in signals {
                self.on_signal(sig, sender);
            }
            self.service_sockets();
        }
    }

    /// Sleeps until a signal or a message arrives or `timeout` passes; no timeout, no wake-up.
    fn wait(&self, timeout: Option<Duration>) {
        let timeout = match timeout {
            // Round up so we never wake a millisecond early and spin.
            Some(t) => {
                PollTimeout::try_from(t.as_millis().saturating_add(1).min(i32::MAX as u128) as i32)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(sup) = &self.sup {
            fds.push(PollFd::new(sup.notify.fd.as_fd(), PollFlags::POLLIN));
            fds.extend(
                sup.control
                    .poll_fds()
                    .into_iter()
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
            );
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => warn!("poll failed: {}", e.desc()),
        }
    }

    /// Reaps every ended child and records whether any child is left.
    fn reap(&mut self) {
        let want_group = self
            .sup
            .as_ref()
            .is_some_and(|s| s.opts.track == Track::Group);
        let mut exits = Vec::new();
        self.children_left = procs::reap(want_group, |pid, status, pgrp| {
            exits.push((pid, status, pgrp))
        });
        for (pid, status, pgrp) in exits {
            let code = procs::exit_code(status);
            if let Some(i) = self.probes.iter().position(|&(p, _)| p == pid) {
                let (_, generation) = self.probes.remove(i);
                debug!("generation {generation}: readiness probe exited with status {code}");
                let acts = self
                    .machine
                    .probe_result(generation, code == 0, Instant::now());
                self.exec(acts);
            } else if let Some(t) = self.tracked.iter_mut().find(|t| t.main == pid) {
                t.main_reaped = true;
                t.code = Some(code);
            } else if let Some(t) = self.tracked.iter_mut().find(|t| pgrp == Some(t.pgid)) {
                t.member_code = Some(code);
                debug!(
                    "generation {}: pid {pid} exited with status {code}",
                    t.generation
                );
            } else if self.cfg.warn_on_reap {
                warn!("reaped zombie pid {pid} (status {code})");
            } else {
                debug!("reaped pid {pid} (status {code})");
            }
        }
    }

    /// Generations whose tracked processes are all gone have ended.
    fn check_tracked(&mut self) {
        let track = self.sup.as_ref().map_or(Track::Main, |s| s.opts.track);
        let pidfile = self.sup.as_ref().and_then(|s| s.opts.pidfile.clone());
        let mut ended = Vec::new();
        let newest = self.tracked.last().map(|t| t.generation);
        for t in &mut self.tracked {
            let mut alive = !t.main_reaped && (t.main_is_child || procs::alive(t.main));
            // A generation on its way out (draining, or killed for failing) is over only when
            // its whole group is: what its main process leaves behind still gets the drain
            // deadline's SIGKILL instead of lingering unowned.
            let leaving = self
                .machine
                .generation(t.generation)
                .is_some_and(|g| matches!(g.state, State::Draining | State::Failed));
            if !alive && (track == Track::Group || leaving) {
                // A member that ended after this turn's reaping is still to be reaped (its
                // SIGCHLD wakes the loop): the generation has not ended before its status is in.
                alive = kill(-t.pgid, 0) || procs::unreaped_in_group(t.pgid);
            }
            // The pid file names the newest generation's main process; it is read on every
            // turn of the loop (never while idle), so a service that rewrites it is followed.
            if Some(t.generation) == newest
                && let Some(p) = pidfile.as_deref().and_then(read_pidfile)
                && p != t.main
                && procs::alive(p)
            {
                info!(
                    "generation {}: following pid {p} from {}",
                    t.generation,
                    pidfile
                        .as_deref()
                        .map_or(String::new(), |f| f.display().to_string())
                );
                t.main = p;
                t.main_reaped = false;
                t.main_is_child = false;
                alive = true;
                self.machine.set_pid(t.generation, p);
            }
            if !alive {
                let code = match track {
                    Track::Group => t.member_code.or(t.code),
                    Track::Main => t.code,
                };
                ended.push((t.generation, code.unwrap_or(0)));
            }
        }
        if ended.is_empty() {
            return;
        }
        self.tracked
            .retain(|t| !ended.iter().any(|&(g, _)| g == t.generation));
        if let Some(sup) = &self.sup {
            for l in sup.listeners.iter().filter(|l| l.repair()) {
                warn!(
                    "listener {} was shut down by a generation; listening again",
                    l.name
                );
            }
        }
        for (generation, code) in ended {
            let acts = self.machine.ended(generation, code, Instant::now());
            self.exec(acts);
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
        let from = crate::log::Sender(sender);
        let handoff_signal = self.sup.as_ref().and_then(|s| s.opts.handoff_signal);
        if Some(sig) == handoff_signal && self.over.is_none() {
            info!("received {} from {from}: handoff", signals::name(sig));
            let acts = self.machine.trigger(None, Instant::now());
            self.exec(acts);
            return;
        }
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
        if self.over.is_some() || self.tracked.is_empty() {
            procs::signal_all(to);
            info!(
                "received {} from {from}; forwarded{shown} to all remaining processes",
                signals::name(sig)
            );
        } else {
            for t in &self.tracked {
                let (target, what) = match self.cfg.forward_to {
                    ForwardTo::Group => (-t.pgid, "process group"),
                    ForwardTo::Child => (t.main, "pid"),
                };
                // Deliver first, then log: the log line's formatting and write cost the
                // service nothing this way.
                kill(target, to);
                info!(
                    "received {} from {from}; forwarded{shown} to {what} {} (generation {})",
                    signals::name(sig),
                    target.abs(),
                    t.generation
                );
            }
        }
        if signals::is_shutdown(sig) {
            self.begin_grace();
            let acts = self.machine.shutdown();
            self.exec(acts);
        }
    }

    fn exec(&mut self, actions: Vec<Action>) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(a) = queue.pop_front() {
            let now = Instant::now();
            let more = match a {
                Action::Spawn { generation } => self.spawn_gen(generation, now),
                Action::Signal { generation, sig } => {
                    if let Some(t) = self.tracked.iter().find(|t| t.generation == generation) {
                        kill(-t.pgid, sig);
                    }
                    Vec::new()
                }
                Action::Kill { generation } => {
                    if let Some(t) = self.tracked.iter().find(|t| t.generation == generation) {
                        kill(-t.pgid, libc::SIGKILL);
                        kill(t.main, libc::SIGKILL);
                    }
                    Vec::new()
                }
                Action::Probe { generation } => self.probe(generation, now),
                Action::Reply { waiter, result } => {
                    if let Some(sup) = &mut self.sup {
                        sup.control.reply_reload(waiter, result);
                    }
                    Vec::new()
                }
                Action::FirstReady { generation } => {
                    if let Some(up) = self.sup.as_ref().and_then(|s| s.upstream.clone()) {
                        let msg = format!(
                            "READY=1\nSTATUS=generation {generation} serving\nMAINPID={}",
                            std::process::id()
                        );
                        if let Err(e) = notify::send_upstream(&up, &msg) {
                            warn!("{e}");
                        }
                    }
                    Vec::new()
                }
                Action::Over { code } => {
                    self.over = Some(code);
                    self.begin_grace();
                    // No child at all means no descendant either (orphans are reparented to
                    // init): skip the walk over /proc.
                    if self.children_left && procs::signal_all(libc::SIGTERM) > 0 {
                        info!(
                            "sent SIGTERM to the remaining processes; SIGKILL in {}",
                            crate::log::dur(self.left())
                        );
                        procs::signal_all(libc::SIGCONT);
                    }
                    Vec::new()
                }
            };
            queue.extend(more);
        }
    }

    fn spawn_gen(&mut self, generation: u32, now: Instant) -> Vec<Action> {
        let mut extra = Vec::new();
        let mut fds = Vec::new();
        let mut listen_pid = false;
        if let Some(sup) = &self.sup {
            if !sup.listeners.is_empty() {
                use std::os::fd::AsRawFd;
                fds = sup.listeners.iter().map(|l| l.fd.as_raw_fd()).collect();
                extra.push(env_entry("LISTEN_FDS", &fds.len().to_string()));
                let names: Vec<&str> = sup.listeners.iter().map(|l| l.name.as_str()).collect();
                extra.push(env_entry("LISTEN_FDNAMES", &names.join(":")));
                listen_pid = sup.opts.listen_pid;
            }
            extra.push(spawn::env_entry(
                b"NOTIFY_SOCKET",
                sup.notify.path.as_os_str().as_bytes(),
            ));
            extra.push(env_entry("HANDOFF_GENERATION", &generation.to_string()));
        }
        let plan = Plan {
            mask: &self.mask,
            terminal: if generation == 1 {
                Terminal::Take
            } else {
                Terminal::Share
            },
            env: &self.env,
            extra_env: extra,
            listen_pid,
            listen_fds: &fds,
        };
        match spawn::spawn(&self.command, &plan) {
            Ok(pid) => {
                self.tracked.push(Tracked {
                    generation,
                    pgid: pid,
                    main: pid,
                    main_reaped: false,
                    main_is_child: true,
                    code: None,
                    member_code: None,
                });
                if self.sup.is_none() {
                    info!("started '{}' as pid {pid}", self.command.display);
                }
                self.machine.spawned(generation, pid, now)
            }
            Err(e) => {
                error!("generation {generation}: {e}");
                self.machine
                    .spawn_failed(generation, e.to_string(), e.exit_code(), now)
            }
        }
    }

    /// With a terminal on stdin, the newest serving generation's group is its foreground group,
    /// so Ctrl-C and Ctrl-Z keep reaching the service after a handoff. Init is in the terminal's
    /// session with SIGTTOU blocked, so tcsetpgrp(3) is allowed from the background.
    fn hand_over_terminal(&mut self) {
        let Some(holder) = self.terminal_holder else {
            return;
        };
        let newest = self
            .machine
            .gens
            .iter()
            .filter(|g| g.state == State::Serving)
            .map(|g| g.id)
            .max();
        let Some(newest) = newest.filter(|&g| g != holder) else {
            return;
        };
        if let Some(t) = self.tracked.iter().find(|t| t.generation == newest) {
            let pgid = nix::unistd::Pid::from_raw(t.pgid);
            match nix::unistd::tcsetpgrp(std::io::stdin(), pgid) {
                Ok(()) => debug!("generation {newest}: now the terminal's foreground group"),
                Err(e) => debug!(
                    "generation {newest}: cannot take the terminal: {}",
                    e.desc()
                ),
            }
            self.terminal_holder = Some(newest);
        }
    }

    /// Starts the grace period once; later reasons keep the first deadline.
    fn begin_grace(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.cfg.grace);
            debug!("shutdown: grace {}", crate::log::dur(self.cfg.grace));
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
            "grace period of {} is over; sent SIGKILL to {n} processes",
            crate::log::dur(self.cfg.grace)
        );
    }
}

fn read_pidfile(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&p: &i32| p > 1)
}
