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
use crate::handoff::{Action, Event, Fact, Machine, ReadyKind, Settings, Target};
use crate::spawn::{self, Command, Plan, Terminal};
use crate::{debug, error, info, warn};
use crate::{notify, procs, signals, sys};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::SignalFd;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

mod jobctl;
mod supervisor;
use supervisor::Sup;

/// Runs the command under init and returns init's exit code.
pub fn run(cfg: Config, mask: SigSet) -> u8 {
    match Init::start(cfg, mask) {
        Ok(mut init) => init.serve(),
        Err(code) => code,
    }
}

struct Init {
    cfg: Config,
    mask: SigSet,
    sfd: SignalFd,
    command: Command,
    /// The environment every generation starts from.
    env: Vec<Vec<u8>>,
    sup: Option<Sup>,
    /// Every generation's record and the rules of their lives; this file only observes facts
    /// for it and carries out its actions.
    machine: Machine,
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
    /// `--stop-delay`: the first SIGTERM is held until then (its sender kept for the log).
    delayed_stop: Option<(Instant, i32)>,
    /// The stop delay was used (once per life).
    stop_delay_spent: bool,
    /// Plain mode only: stopping and continuing with the job (see `jobctl`).
    jobctl: Option<jobctl::JobCtl>,
}

use crate::sys::kill;

/// What one wait's poll(2) found hung up besides what is ready to read.
struct Woke {
    /// Held listeners (indices), to listen again on.
    listeners: Vec<usize>,
    /// The fd store's watched fds (raw, as polled), to drop.
    stored: Vec<RawFd>,
}

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
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
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
                track: Track::Main,
                watchdog: None,
                reload_signal: None,
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
                track: o.track,
                watchdog: o.watchdog,
                reload_signal: o.reload_signal,
            },
        };
        let tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
        let jobctl = sup.is_none().then(|| jobctl::JobCtl::new(tty));
        let mut init = Init {
            cfg,
            mask,
            sfd,
            command,
            env,
            sup,
            machine: Machine::new(settings),
            probes: Vec::new(),
            over: None,
            deadline: None,
            killed: false,
            children_left: true,
            // The first generation takes the terminal itself (Terminal::Take).
            terminal_holder: tty.then_some(1),
            started: Instant::now(),
            delayed_stop: None,
            stop_delay_spent: false,
            jobctl,
        };
        let first = init.machine.start(Instant::now());
        init.exec(first);
        if init.over.is_some() && init.machine.generations().is_empty() {
            // The command could not be started: nothing was left running.
            return Err(init.over.unwrap_or(1));
        }
        if init.sup.is_none() {
            // As dumb-init: init does not hold the image's working directory (a volume that
            // could not be unmounted, or a deleted directory) for its whole life; the command
            // keeps its own. The supervisor stays: every generation starts where init started.
            if let Err(e) = nix::unistd::chdir("/") {
                debug!("cannot change to /: {}", e.desc());
            }
        }
        // From here on init does not bail out: it reaps and forwards until nothing is left.
        Ok(init)
    }

    fn serve(&mut self) -> u8 {
        loop {
            self.observe();
            self.hand_over_terminal();
            if let Some(code) = self.over
                && !self.children_left
            {
                let code = self.cfg.remap(code);
                info!("exiting with status {code}");
                return code;
            }
            let now = Instant::now();
            if let Some((_, sender)) = self.delayed_stop.filter(|&(at, _)| at <= now) {
                self.delayed_stop = None;
                info!("stop delay over: stopping");
                self.deliver(libc::SIGTERM, sender);
            }
            if self.machine.next_deadline().is_some_and(|t| t <= now) {
                self.apply(Fact::Tick);
            }
            if !self.killed && self.deadline.is_some_and(|d| d <= now) {
                self.kill_leftovers();
                continue;
            }
            let grace = self.deadline.filter(|_| !self.killed);
            let delayed = self.delayed_stop.map(|(at, _)| at);
            let control = self.sup.as_ref().and_then(|s| s.control.next_deadline());
            let next = [grace, delayed, self.machine.next_deadline(), control]
                .into_iter()
                .flatten()
                .min();
            let woke = self.wait(next.map(|t| t.saturating_duration_since(Instant::now())));
            if !woke.listeners.is_empty() {
                self.repair_listeners(&woke.listeners);
            }
            // Before anything this turn adds to the store or removes from it (the notify
            // messages below), so the fds reported are the fds polled.
            if let Some(sup) = &mut self.sup {
                for name in sup.fdstore.drop_hung_up(&woke.stored) {
                    debug!("fd store: '{name}' hung up; closed");
                }
            }
            let mut signals = Vec::new();
            sys::read_signals(&self.sfd, &mut signals);
            for (sig, sender) in signals {
                self.on_signal(sig, sender);
            }
            self.service_sockets();
        }
    }

    /// Hands one fact to the state machine and carries out what it decides.
    fn apply(&mut self, fact: Fact) {
        let actions = self.machine.handle(fact, Instant::now());
        self.exec(actions);
    }

    /// Sleeps until a signal or a message arrives or `timeout` passes; no timeout, no wake-up.
    /// Returns the held listeners and stored fds the same poll(2) found hung up.
    fn wait(&self, timeout: Option<Duration>) -> Woke {
        let timeout = match timeout {
            // Round up so we never wake a millisecond early and spin.
            Some(t) => {
                PollTimeout::try_from(t.as_millis().saturating_add(1).min(i32::MAX as u128) as i32)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN)];
        let mut watched = Vec::new();
        let mut stored_from = fds.len();
        if let Some(sup) = &self.sup {
            fds.push(PollFd::new(sup.notify.fd.as_fd(), PollFlags::POLLIN));
            // Held listeners with no events asked: poll(2) still reports POLLHUP/POLLERR, which
            // is what a TCP listener a generation shut down (shutdown(2)) turns into.
            for (i, l) in sup.listeners.iter().enumerate().filter(|(_, l)| l.watch) {
                watched.push(i);
                fds.push(PollFd::new(l.fd.as_fd(), PollFlags::empty()));
            }
            fds.extend(
                sup.control
                    .poll_fds()
                    .into_iter()
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
            );
            // No events asked: poll(2) reports POLLHUP/POLLERR anyway, and the fd store drops
            // those fds in the same turn (`Woke::stored`), so this cannot spin.
            stored_from = fds.len();
            fds.extend(
                sup.fdstore
                    .watched()
                    .map(|fd| PollFd::new(fd, PollFlags::empty())),
            );
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => warn!("poll failed: {}", e.desc()),
        }
        let listeners = watched
            .into_iter()
            .zip(fds.iter().skip(2))
            .filter(|(_, p)| sys::hung_up(p.revents()))
            .map(|(i, _)| i)
            .collect();
        let stored = fds[stored_from..]
            .iter()
            .filter(|p| sys::hung_up(p.revents()))
            .map(|p| p.as_fd().as_raw_fd())
            .collect();
        Woke { listeners, stored }
    }

    /// Reaps every ended child, then reports one turn's observations to the state machine at
    /// once: the pid file, the reaped pids, main pids that are not init's children, and groups
    /// found empty.
    fn observe(&mut self) {
        let want_group = self
            .sup
            .as_ref()
            .is_some_and(|s| s.opts.track == Track::Group);
        let mut exits = Vec::new();
        self.children_left = procs::reap(want_group, |pid, status, pgrp| {
            exits.push((pid, status, pgrp))
        });
        if let (Some(j), Some(g)) = (&mut self.jobctl, self.machine.generations().first()) {
            j.follow(g.main);
        }
        // The pid file before the reaps: a daemonizing command's parent exits once its daemon
        // runs, and the daemon must be followed before that exit ends the generation.
        let mut facts: Vec<Fact> = self.pidfile_fact().into_iter().collect();
        for (pid, status, pgrp) in exits {
            let code = procs::exit_code(status);
            if let Some(i) = self.probes.iter().position(|&(p, _)| p == pid) {
                let (_, generation) = self.probes.remove(i);
                debug!("generation {generation}: readiness probe exited with status {code}");
                facts.push(Fact::ProbeDone {
                    generation,
                    ok: code == 0,
                });
            } else {
                facts.push(Fact::Reaped { pid, code, pgrp });
            }
        }
        // A main pid that is not our child ends without a reap: look in /proc. One that is a
        // zombie of ours is still to be reaped (its SIGCHLD wakes the loop), status and all.
        let me = std::process::id() as i32;
        for g in self.machine.generations().iter().filter(|g| g.pgid != 0) {
            if !g.main_gone
                && !g.main_is_child
                && !procs::alive(g.main)
                && procs::ppid(g.main) != Some(me)
            {
                facts.push(Fact::MainGone {
                    generation: g.id,
                    pid: g.main,
                });
            }
            if !g.group_empty && self.group_is_empty(g.id, g.pgid) {
                facts.push(Fact::GroupEmpty { generation: g.id });
            }
        }
        if !facts.is_empty() {
            let actions = self.machine.handle_all(facts, Instant::now());
            self.exec(actions);
        }
    }

    /// Whether nothing of a generation is left in its process group (live or unreaped: a
    /// member that ended after this turn's reaping still has its status to give) or its cgroup.
    fn group_is_empty(&self, generation: u32, pgid: i32) -> bool {
        if pgid <= 1 || kill(-pgid, 0) || procs::unreaped_in_group(pgid) {
            return pgid <= 1;
        }
        self.cgroups().is_none_or(|c| c.is_empty(generation))
    }

    /// The pid file names the newest generation's main process. It is read on every turn of the
    /// loop (never while idle), so a service that rewrites it is followed.
    fn pidfile_fact(&self) -> Option<Fact> {
        let path = self.sup.as_ref()?.opts.pidfile.as_deref()?;
        let g = self.machine.newest_live().filter(|g| g.pgid != 0)?;
        let pid = read_pidfile(path).filter(|&p| p != g.main && procs::alive(p))?;
        Some(self.main_pid_fact(g.id, pid, crate::handoff::PidSource::PidFile))
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
        if let Some(delay) = self.cfg.stop_delay
            && sig == libc::SIGTERM
            && !self.stop_delay_spent
            && self.over.is_none()
        {
            // Kubernetes sends SIGTERM while endpoints are still being removed: keep serving
            // for a while, within the grace period, instead of refusing what still arrives.
            self.stop_delay_spent = true;
            self.delayed_stop = Some((Instant::now() + delay, sender));
            self.begin_grace();
            info!(
                "received SIGTERM from {}: serving {} more (--stop-delay), then stopping",
                crate::log::Sender(sender),
                crate::log::dur(delay)
            );
            return;
        }
        if self.delayed_stop.is_some() && signals::is_shutdown(sig) {
            // A second SIGTERM, or SIGINT/SIGQUIT: no more delay.
            self.delayed_stop = None;
            info!("stop delay skipped");
        }
        if sig == libc::SIGCONT
            && let Some(j) = &mut self.jobctl
        {
            j.resumed(self.machine.generations().first().map_or(0, |g| g.pgid));
        }
        self.deliver(sig, sender);
        if let Some(j) = self.jobctl.as_mut().filter(|_| jobctl::is_stop(sig)) {
            j.stop_self();
        }
    }

    /// A signal for the service (or a trigger, or the start of a shutdown).
    fn deliver(&mut self, sig: i32, sender: i32) {
        let from = crate::log::Sender(sender);
        let handoff_signal = self.sup.as_ref().and_then(|s| s.opts.handoff_signal);
        if Some(sig) == handoff_signal && self.over.is_none() {
            info!("received {} from {from}: handoff", signals::name(sig));
            self.apply(Fact::Trigger { waiter: None });
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
        let targets: Vec<Target> = self
            .machine
            .generations()
            .iter()
            .filter(|g| g.pgid > 1)
            .map(|g| g.target())
            .collect();
        let shutdown = signals::is_shutdown(sig);
        if self.over.is_some() || targets.is_empty() {
            procs::signal_all(to);
            if shutdown {
                // A stopped process acts on the TERM only once continued.
                procs::continue_stopped();
            }
            info!(
                "received {} from {from}; forwarded{shown} to all remaining processes",
                signals::name(sig)
            );
        } else {
            for t in targets {
                let (target, what) = match self.cfg.forward_to {
                    ForwardTo::Group => (-t.pgid, "process group"),
                    ForwardTo::Child => (t.main, "pid"),
                };
                // Deliver first, then log: the log line's formatting and write cost the
                // service nothing this way.
                kill(target, to);
                if shutdown {
                    // A stopped job acts on the TERM only once continued: TERM first, then CONT,
                    // to the same target, as systemd does (a running process ignores it). One
                    // kill(2): a walk over /proc here delays the TERM's receipt (bench/run.sh's
                    // forwarding latency).
                    kill(target, libc::SIGCONT);
                }
                let generation = match self.sup {
                    Some(_) => format!(" (generation {})", t.generation),
                    None => String::new(),
                };
                info!(
                    "received {} from {from}; forwarded{shown} to {what} {}{generation}",
                    signals::name(sig),
                    target.abs(),
                );
            }
        }
        if shutdown {
            self.begin_grace();
            self.apply(Fact::Shutdown);
        }
    }

    fn exec(&mut self, actions: Vec<Action>) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(a) = queue.pop_front() {
            let fact = match a {
                Action::Spawn { generation } => Some(self.spawn_gen(generation)),
                Action::Signal { target, sig } => {
                    self.signal_gen(&target, sig);
                    // A stopped member acts on it only once it runs. To all of the generation
                    // (a running process ignores it): a kill(2) each, no walk over /proc.
                    self.signal_gen(&target, libc::SIGCONT);
                    None
                }
                Action::Reload { target, sig } => {
                    self.signal_gen(&target, sig);
                    None
                }
                Action::Kill { target } => {
                    self.kill_gen(&target);
                    None
                }
                Action::Probe { generation, main } => self.probe(generation, main),
                Action::Reply { waiter, result } => {
                    if let Some(sup) = &mut self.sup {
                        sup.control.reply_reload(waiter, result);
                    }
                    None
                }
                Action::FirstReady { generation } => {
                    self.first_ready(generation);
                    None
                }
                Action::Forget { generation } => {
                    if let Some(c) = self.cgroups() {
                        c.remove(generation);
                    }
                    None
                }
                Action::Log(event @ Event::Ended { .. }) => {
                    self.log_event(&event);
                    self.repair_listeners(&[]);
                    None
                }
                Action::Over { code } => {
                    self.over = Some(code);
                    self.stop_the_rest();
                    None
                }
                Action::Log(event) => {
                    self.log_event(&event);
                    None
                }
            };
            if let Some(fact) = fact {
                queue.extend(self.machine.handle(fact, Instant::now()));
            }
        }
    }

    /// A generation that called shutdown(2) on a held socket broke it for every generation:
    /// listen again on it (TCP) or bind a fresh one at its path (unix), as soon as poll reports
    /// it (`hung_up`), when a generation ends and before one starts. One that hangs up without
    /// being repairable is no longer watched, so it cannot keep waking init.
    fn repair_listeners(&mut self, hung_up: &[usize]) {
        use crate::listen::Repair;
        let Some(sup) = &mut self.sup else { return };
        for (i, l) in sup.listeners.iter_mut().enumerate() {
            match l.repair() {
                Repair::Intact if hung_up.contains(&i) => {
                    warn!(
                        "listener {} reports a hang-up init cannot repair; no longer watched",
                        l.name
                    );
                    l.watch = false;
                }
                Repair::Intact => {}
                Repair::Relistened => warn!(
                    "listener {} was shut down by a generation; listening again",
                    l.name
                ),
                Repair::Rebound => warn!(
                    "listener {} was shut down by a generation; a fresh socket is bound at {} for the generations started from now on",
                    l.name, l.url
                ),
                Repair::Failed(why) => {
                    warn!(
                        "listener {} was shut down by a generation and cannot be repaired ({why}); no longer watched",
                        l.name
                    );
                    l.watch = false;
                }
            }
        }
    }

    fn log_event(&self, event: &Event) {
        if self.sup.is_none() {
            // Plain mode runs one command, not generations: say it in those words, or not at
            // all where "started" was already said.
            match event {
                Event::Ended { pid, code, .. } => {
                    info!(
                        "'{}' (pid {pid}) ended with status {code}",
                        self.command.display
                    );
                    return;
                }
                Event::MemberExited { pid, code, .. } => {
                    debug!("pid {pid} exited with status {code}");
                    return;
                }
                Event::Starting { .. }
                | Event::Started { .. }
                | Event::Ready { .. }
                | Event::Gone { .. } => return,
                _ => {}
            }
        }
        let level = match event {
            Event::Orphan { .. } if self.cfg.warn_on_reap => crate::log::Level::Warn,
            e => e.level(),
        };
        crate::log_at!(level, "{event}");
    }

    /// The service is over: the rest of the tree gets SIGTERM now and SIGKILL at the grace
    /// deadline.
    fn stop_the_rest(&mut self) {
        self.begin_grace();
        // No child at all means no descendant either (orphans are reparented to init): skip the
        // walk over /proc.
        if self.children_left && procs::terminate_all() > 0 {
            info!(
                "sent SIGTERM to the remaining processes; SIGKILL in {}",
                crate::log::dur(self.left())
            );
        }
    }

    /// `sig` to a generation: its process group, its main pid when that left the group, and
    /// with a cgroup every other process in it (processes that called setsid(2)).
    fn signal_gen(&self, t: &Target, sig: i32) {
        if t.pgid > 1 {
            kill(-t.pgid, sig);
        }
        let outside = |pid: i32| pid > 1 && pid != t.pgid && procs::pgrp(pid) != Some(t.pgid);
        if outside(t.main) {
            kill(t.main, sig);
        }
        if let Some(c) = self.cgroups() {
            for pid in c.members(t.generation) {
                if pid != t.main && outside(pid) {
                    kill(pid, sig);
                }
            }
        }
    }

    /// SIGKILL to all of a generation.
    fn kill_gen(&self, t: &Target) {
        if let Some(c) = self.cgroups() {
            c.kill(t.generation);
        }
        if t.pgid > 1 {
            kill(-t.pgid, libc::SIGKILL);
        }
        if t.main > 1 {
            kill(t.main, libc::SIGKILL);
        }
    }

    fn cgroups(&self) -> Option<&crate::cgroup::Cgroups> {
        self.sup.as_ref().and_then(|s| s.cgroups.as_ref())
    }

    fn first_ready(&self, generation: u32) {
        if let Some(up) = self.sup.as_ref().and_then(|s| s.upstream.clone()) {
            let msg = format!(
                "READY=1\nSTATUS=generation {generation} serving\nMAINPID={}",
                std::process::id()
            );
            if let Err(e) = notify::send_upstream(&up, &msg) {
                warn!("{e}");
            }
        }
    }

    /// Starts a generation; the fact says how that went.
    fn spawn_gen(&mut self, generation: u32) -> Fact {
        // Never hand a broken socket on.
        self.repair_listeners(&[]);
        let mut extra = Vec::new();
        let mut fds = Vec::new();
        let mut pid_vars: Vec<&[u8]> = Vec::new();
        let mut cgroup = None;
        if let Some(sup) = &self.sup {
            // The listeners, then the fd store's fds (sd_listen_fds(3) order, as systemd).
            let mut names: Vec<&str> = Vec::new();
            for l in &sup.listeners {
                fds.push(l.fd.as_raw_fd());
                names.push(&l.name);
            }
            for (fd, name) in sup.fdstore.entries() {
                fds.push(fd);
                names.push(name);
            }
            if !fds.is_empty() {
                extra.push(env_entry("LISTEN_FDS", &fds.len().to_string()));
                extra.push(env_entry("LISTEN_FDNAMES", &names.join(":")));
                if sup.opts.listen_pid {
                    pid_vars.push(spawn::LISTEN_PID);
                }
            }
            // sd_watchdog_enabled(3): the interval, and the pid it is meant for.
            if let Some(w) = sup.opts.watchdog {
                extra.push(env_entry("WATCHDOG_USEC", &w.as_micros().to_string()));
                pid_vars.push(spawn::WATCHDOG_PID);
            }
            extra.push(spawn::env_entry(
                b"NOTIFY_SOCKET",
                sup.notify.path.as_os_str().as_bytes(),
            ));
            extra.push(env_entry("HANDOFF_GENERATION", &generation.to_string()));
            cgroup = sup.cgroups.as_ref().and_then(|c| c.create(generation));
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
            pid_vars: &pid_vars,
            listen_fds: &fds,
            cgroup: cgroup.as_deref(),
        };
        match spawn::spawn(&self.command, &plan) {
            Ok(pid) => {
                if self.sup.is_none() {
                    info!("started '{}' as pid {pid}", self.command.display);
                }
                Fact::Spawned { generation, pid }
            }
            Err(e) => {
                error!("generation {generation}: {e}");
                Fact::SpawnFailed {
                    generation,
                    error: e.to_string(),
                    code: e.exit_code(),
                }
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
        let Some(g) = self.machine.serving().filter(|g| g.id != holder) else {
            return;
        };
        let (newest, pgid) = (g.id, nix::unistd::Pid::from_raw(g.pgid));
        match nix::unistd::tcsetpgrp(std::io::stdin(), pgid) {
            Ok(()) => debug!("generation {newest}: now the terminal's foreground group"),
            Err(e) => debug!(
                "generation {newest}: cannot take the terminal: {}",
                e.desc()
            ),
        }
        self.terminal_holder = Some(newest);
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

/// The pid in a pid file. Only a regular file, opened without blocking and read up to 64 bytes:
/// a FIFO or /dev/zero named by mistake must not stall or fill init.
fn read_pidfile(path: &std::path::Path) -> Option<i32> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = [0u8; 64];
    let n = (&file).read(&mut buf).ok()?;
    procs::parse_pid(&buf[..n])
}
