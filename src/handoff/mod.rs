//! The supervisor's state machine: every generation of the service, from its spawn to the last of
//! its processes, and the handoff between them.
//!
//! Sans-I/O: the executor (`init`) reports observed facts ([`Fact`]: a child was spawned or
//! reaped, a generation has no process left, a notify message, a timer, a trigger, a shutdown
//! signal) with the time, and carries out the [`Action`]s it gets back (spawn, signal or kill a
//! generation, probe, reply, log an [`Event`]). The machine makes no syscall, reads no clock and
//! writes no log line, so unit tests and the model-based test (`model.rs`) drive it through
//! every path without a process.
//!
//! ```text
//! trigger ─► N+1 Starting ── ready ──► Serving; N ─► Draining (stop signal; SIGKILL at deadline) ─► gone
//!              ├── fails while N serves (exits, not ready in time) ─► Failed (stop, SIGKILL) ─► gone
//!              └── fails with nothing older serving ─► Exited ─► restart (on-failure) or over
//! ```
//!
//! Rules that hold throughout (checked by `model.rs` after every step):
//! - one generation starts at a time; triggers during a start coalesce into one more start;
//! - a generation's record lives until nothing of it is left (its main process and its whole
//!   group, and cgroup where there is one), so every signal it needs goes out while it is known;
//!   every action names its target's pids, and `Forget` is the last word on a record;
//! - whether a failed start is rolled back depends only on whether an older generation serves.

mod event;
#[cfg(test)]
mod model;
mod record;
#[cfg(test)]
mod tests;

pub use event::{Event, Then, Why};
pub use record::{Gen, PidSource, Start, State, Target};

use crate::config::Track;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyKind {
    /// Ready as soon as it runs (plain init mode).
    Immediately,
    /// Ready when the executor reports it (READY=1 on the notify socket).
    Told,
    Delay(Duration),
    /// A probe run every interval until it succeeds.
    Probe(Duration),
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub ready: ReadyKind,
    pub ready_timeout: Duration,
    pub drain_timeout: Duration,
    pub stop_signal: i32,
    pub restart_on_failure: bool,
    pub track: Track,
    /// `--watchdog`: the keep-alive interval each generation gets (WATCHDOG_USEC).
    pub watchdog: Option<Duration>,
    /// `--reload-signal`: what `ctl reload --in-place` sends to the serving generation.
    pub reload_signal: Option<i32>,
}

pub type Waiter = u64;

/// What a watchdog message says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    /// WATCHDOG=1: alive.
    Alive,
    /// WATCHDOG=trigger: declare itself hung.
    Trigger,
    /// WATCHDOG_USEC=: its new interval (0 turns its watchdog off).
    Interval(Duration),
}

/// What the executor observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// The generation's command runs as `pid` (its own process group).
    Spawned {
        generation: u32,
        pid: i32,
    },
    /// The command could not be started; nothing of it runs.
    SpawnFailed {
        generation: u32,
        error: String,
        code: u8,
    },
    /// A child of init was reaped; `pgrp` is its process group when it was read before reaping.
    Reaped {
        pid: i32,
        code: u8,
        pgrp: Option<i32>,
    },
    /// A main pid that is not init's child is no longer alive.
    MainGone {
        generation: u32,
        pid: i32,
    },
    /// No live or unreaped process is left in the generation's group (and cgroup).
    GroupEmpty {
        generation: u32,
    },
    /// A pid file or MAINPID= names `pid`; `owner` is the generation the executor attributes
    /// that pid to (by cgroup, main pid, process group or ancestry), if any.
    MainPid {
        generation: u32,
        pid: i32,
        source: PidSource,
        owner: Option<u32>,
        child: bool,
    },
    /// READY=1.
    Ready {
        generation: u32,
    },
    ProbeDone {
        generation: u32,
        ok: bool,
    },
    /// EXTEND_TIMEOUT_USEC=.
    Extend {
        generation: u32,
        by: Duration,
    },
    /// STATUS=.
    Status {
        generation: u32,
        text: String,
    },
    /// WATCHDOG=1, WATCHDOG=trigger or WATCHDOG_USEC=.
    Watchdog {
        generation: u32,
        ping: Ping,
    },
    /// RELOADING=1: the generation is reloading in place.
    Reloading {
        generation: u32,
    },
    /// `ctl reload --in-place`: the serving generation reloads itself (`--reload-signal`).
    ReloadInPlace {
        waiter: Option<Waiter>,
    },
    /// `kill -HUP` (no waiter) or `ctl reload` (a waiter for the answer).
    Trigger {
        waiter: Option<Waiter>,
    },
    /// A shutdown signal reached init (and was forwarded to every generation).
    Shutdown,
    /// Time passed: deadlines that are due.
    Tick,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Spawn {
        generation: u32,
    },
    /// `sig`, which asks the target to end (the stop signal, or the watchdog's SIGABRT), to its
    /// process group (and main pid, and cgroup), then SIGCONT, as systemd sends: a stopped
    /// member acts on it only once it runs.
    Signal {
        target: Target,
        sig: i32,
    },
    /// `--reload-signal` to the target, as `Signal` reaches it but with no SIGCONT after it.
    Reload {
        target: Target,
        sig: i32,
    },
    /// SIGKILL to everything of the target.
    Kill {
        target: Target,
    },
    Probe {
        generation: u32,
        main: i32,
    },
    Reply {
        waiter: Waiter,
        result: Result<(u32, i32), String>,
    },
    /// The first generation is ready (tell an upstream NOTIFY_SOCKET).
    FirstReady {
        generation: u32,
    },
    /// The record is dropped: nothing of the generation is left.
    Forget {
        generation: u32,
    },
    /// No generation is live and none will start: init stops the rest and exits with `code`.
    Over {
        code: u8,
    },
    Log(Event),
}

/// Restart backoff: 100 ms doubling per crash in a row, capped at 10 s.
pub fn backoff(crashes: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << crashes.min(7))).min(Duration::from_secs(10))
}

/// A generation that served at least this long resets the crash count.
const STABLE: Duration = Duration::from_secs(10);

/// What a hung generation gets (signal(7)), as systemd's watchdog sends it.
const SIGABRT: i32 = 6;

/// `now + d`, saturating far in the future instead of overflowing.
fn at(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(10 * 365 * 86400)))
        .unwrap_or(now)
}

pub struct Machine {
    s: Settings,
    gens: Vec<Gen>,
    next_id: u32,
    /// Who waits for the generation now starting.
    waiters: Vec<Waiter>,
    /// Triggers that arrived during a start: one more start, for all of them.
    pending: Option<Vec<Waiter>>,
    pub handoffs_done: u32,
    pub handoffs_failed: u32,
    /// Generations replaced because their watchdog fired.
    pub watchdog_recoveries: u32,
    /// Who waits for the in-place reload under way.
    reload_waiters: Vec<Waiter>,
    shutting_down: bool,
    over: bool,
    first_ready_sent: bool,
    restart_at: Option<Instant>,
    crashes: u32,
    last_code: Option<u8>,
}

impl Machine {
    pub fn new(s: Settings) -> Machine {
        Machine {
            s,
            gens: Vec::new(),
            next_id: 1,
            waiters: Vec::new(),
            pending: None,
            handoffs_done: 0,
            handoffs_failed: 0,
            watchdog_recoveries: 0,
            reload_waiters: Vec::new(),
            shutting_down: false,
            over: false,
            first_ready_sent: false,
            restart_at: None,
            crashes: 0,
            last_code: None,
        }
    }

    pub fn generations(&self) -> &[Gen] {
        &self.gens
    }

    pub fn generation(&self, id: u32) -> Option<&Gen> {
        self.gens.iter().find(|g| g.id == id)
    }

    fn gen_mut(&mut self, id: u32) -> Option<&mut Gen> {
        self.gens.iter_mut().find(|g| g.id == id)
    }

    /// The newest generation that is (or is becoming) the service.
    pub fn newest_live(&self) -> Option<&Gen> {
        self.gens.iter().rev().find(|g| g.state.live())
    }

    /// The newest serving generation.
    pub fn serving(&self) -> Option<&Gen> {
        self.gens.iter().rev().find(|g| g.state == State::Serving)
    }

    fn starting(&self) -> Option<u32> {
        self.gens
            .iter()
            .find(|g| g.state == State::Starting)
            .map(|g| g.id)
    }

    /// An older generation that serves, which a failed start of `id` falls back to; a hung
    /// one (its watchdog fired) is none.
    fn older_serving(&self, id: u32) -> Option<u32> {
        self.gens
            .iter()
            .find(|g| g.id < id && g.state == State::Serving && !g.hung)
            .map(|g| g.id)
    }

    /// The first generation.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.new_gen(Start::First, now, &mut out);
        out
    }

    /// One observed fact in, the actions it calls for out.
    pub fn handle(&mut self, fact: Fact, now: Instant) -> Vec<Action> {
        self.handle_all([fact], now)
    }

    /// Facts observed together (one turn's reaps, the groups found empty after them) in, the
    /// actions they call for out: the rules are applied once all of them are in, so a main
    /// pid's exit and its group's emptiness seen in one look count as one change.
    pub fn handle_all(
        &mut self,
        facts: impl IntoIterator<Item = Fact>,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        for fact in facts {
            self.fact(fact, now, &mut out);
        }
        self.settle(now, &mut out);
        out
    }

    fn fact(&mut self, fact: Fact, now: Instant, out: &mut Vec<Action>) {
        match fact {
            Fact::Spawned { generation, pid } => self.spawned(generation, pid, now, out),
            Fact::SpawnFailed {
                generation,
                error,
                code,
            } => {
                if let Some(g) = self
                    .gen_mut(generation)
                    .filter(|g| g.pgid == 0 && g.state == State::Starting)
                {
                    g.main_gone = true;
                    g.group_empty = true;
                    self.lost(generation, Why::Spawn { error, code }, now, out);
                }
            }
            Fact::Reaped { pid, code, pgrp } => self.reaped(pid, code, pgrp, out),
            Fact::MainGone { generation, pid } => {
                if let Some(g) = self
                    .gen_mut(generation)
                    .filter(|g| g.main == pid && g.pgid != 0)
                {
                    g.main_gone = true;
                }
            }
            Fact::GroupEmpty { generation } => {
                if let Some(g) = self.gen_mut(generation).filter(|g| g.pgid != 0) {
                    g.group_empty = true;
                }
            }
            Fact::MainPid {
                generation,
                pid,
                source,
                owner,
                child,
            } => self.main_pid(generation, pid, source, owner, child, out),
            Fact::Ready { generation } => self.ready(generation, now, out),
            Fact::ProbeDone { generation, ok } => self.probe_done(generation, ok, now, out),
            Fact::Extend { generation, by } => {
                // systemd.service(5): "extend the timeout by the given time from now". One
                // message buys at most one more --ready-timeout, so a bogus value (u64::MAX)
                // cannot park the handoff, and `ctl reload`, forever.
                let by = by.min(self.s.ready_timeout);
                if let Some(g) = self
                    .gen_mut(generation)
                    .filter(|g| g.state == State::Starting)
                {
                    let later = at(now, by);
                    g.ready_deadline = g.ready_deadline.map(|d| d.max(later));
                }
            }
            Fact::Status { generation, text } => {
                if let Some(g) = self.gen_mut(generation) {
                    g.status = Some(text);
                }
            }
            Fact::Watchdog { generation, ping } => self.watchdog(generation, ping, now, out),
            Fact::Reloading { generation } => {
                if let Some(g) = self
                    .gen_mut(generation)
                    .filter(|g| g.reload_deadline.is_some())
                {
                    g.reloading = true;
                }
            }
            Fact::ReloadInPlace { waiter } => self.reload_in_place(waiter, now, out),
            Fact::Trigger { waiter } => self.trigger(waiter, now, out),
            Fact::Shutdown => self.shutdown(out),
            Fact::Tick => self.tick(now, out),
        }
    }

    fn new_gen(&mut self, start: Start, now: Instant, out: &mut Vec<Action>) {
        let id = self.next_id;
        self.next_id += 1;
        self.gens.push(Gen {
            id,
            start,
            state: State::Starting,
            pgid: 0,
            main: 0,
            main_source: PidSource::Spawned,
            main_is_child: true,
            main_gone: false,
            main_code: None,
            member_code: None,
            group_empty: false,
            started: now,
            ready_at: None,
            ready_deadline: None,
            ready_after: None,
            probe_at: None,
            probing: false,
            kill_at: None,
            killed: false,
            status: None,
            watchdog: self.s.watchdog,
            watchdog_at: None,
            last_keepalive: None,
            hung: false,
            reload_deadline: None,
            reloading: false,
        });
        // Triggers queued during the previous start wait for this one.
        self.waiters.extend(self.pending.take().unwrap_or_default());
        out.push(Action::Log(Event::Starting {
            generation: id,
            start,
        }));
        out.push(Action::Spawn { generation: id });
    }

    fn spawned(&mut self, id: u32, pid: i32, now: Instant, out: &mut Vec<Action>) {
        let s = self.s.clone();
        let Some(g) = self
            .gen_mut(id)
            .filter(|g| g.pgid == 0 && g.state == State::Starting && pid > 1)
        else {
            return;
        };
        g.pgid = pid;
        g.main = pid;
        g.started = now;
        out.push(Action::Log(Event::Started {
            generation: id,
            pid,
        }));
        match s.ready {
            ReadyKind::Immediately => return self.ready(id, now, out),
            ReadyKind::Told => {}
            ReadyKind::Delay(d) => g.ready_after = Some(at(now, d)),
            ReadyKind::Probe(every) => g.probe_at = Some(at(now, every)),
        }
        g.ready_deadline = Some(at(now, s.ready_timeout));
    }

    fn reaped(&mut self, pid: i32, code: u8, pgrp: Option<i32>, out: &mut Vec<Action>) {
        if let Some(g) = self
            .gens
            .iter_mut()
            .find(|g| g.main == pid && g.pgid != 0 && !g.main_gone)
        {
            g.main_gone = true;
            g.main_code = Some(code);
            if !g.state.live() {
                // A drained, failed or exited generation's main process ending is news too
                // (a live one's end is logged when the machine decides what it means).
                out.push(Action::Log(Event::Ended {
                    generation: g.id,
                    pid,
                    code,
                    was: g.state,
                }));
            }
        } else if let Some(g) = pgrp.and_then(|p| self.gens.iter_mut().find(|g| g.pgid == p)) {
            g.member_code = Some(code);
            out.push(Action::Log(Event::MemberExited {
                generation: g.id,
                pid,
                code,
            }));
        } else {
            out.push(Action::Log(Event::Orphan { pid, code }));
        }
    }

    fn main_pid(
        &mut self,
        id: u32,
        pid: i32,
        source: PidSource,
        owner: Option<u32>,
        child: bool,
        out: &mut Vec<Action>,
    ) {
        let newest = self.newest_live().map(|g| g.id);
        let Some(g) = self.gen_mut(id).filter(|g| g.pgid != 0) else {
            return;
        };
        if pid == g.main {
            return;
        }
        let ours = pid > 1
            && match source {
                PidSource::MainPid => owner == Some(id),
                // A pid file is the newest generation's, and may name a daemon that left every
                // trace of the generation (setsid, its parent gone); never another generation's.
                PidSource::PidFile => Some(id) == newest && owner.is_none_or(|o| o == id),
                PidSource::Spawned => false,
            };
        if !ours {
            if source == PidSource::MainPid {
                out.push(Action::Log(Event::MainPidRefused {
                    generation: id,
                    pid,
                }));
            }
            return;
        }
        g.main = pid;
        g.main_source = source;
        g.main_is_child = child;
        g.main_gone = false;
        g.main_code = None;
        out.push(Action::Log(Event::MainPid {
            generation: id,
            pid,
            source,
        }));
    }

    fn ready(&mut self, id: u32, now: Instant, out: &mut Vec<Action>) {
        if self.shutting_down {
            return;
        }
        let stop = self.s.stop_signal;
        let drain = self.s.drain_timeout;
        // READY=1 after RELOADING=1 ends an in-place reload.
        if let Some(g) = self
            .gen_mut(id)
            .filter(|g| g.state == State::Serving && g.reload_deadline.is_some() && g.reloading)
        {
            g.reload_deadline = None;
            g.reloading = false;
            let pid = g.main;
            out.push(Action::Log(Event::Reloaded { generation: id }));
            self.reply_reload(Ok((id, pid)), out);
            return;
        }
        let Some(g) = self
            .gen_mut(id)
            .filter(|g| g.state == State::Starting && g.pgid != 0)
        else {
            return;
        };
        g.state = State::Serving;
        g.ready_at = Some(now);
        g.ready_deadline = None;
        g.ready_after = None;
        g.probe_at = None;
        g.watchdog_at = g.watchdog.map(|d| at(now, d));
        let pid = g.main;
        out.push(Action::Log(Event::Ready {
            generation: id,
            pid,
        }));
        if !self.first_ready_sent {
            self.first_ready_sent = true;
            out.push(Action::FirstReady { generation: id });
        }
        let mut drained = false;
        for old in self
            .gens
            .iter_mut()
            .filter(|o| o.id < id && o.state == State::Serving)
        {
            old.state = State::Draining;
            old.kill_at = Some(at(now, drain));
            old.watchdog_at = None;
            out.push(Action::Log(Event::Draining {
                generation: old.id,
                pid: old.main,
                kill_in: drain,
                hung: old.hung,
            }));
            // A hung generation gets SIGABRT, for a core dump, as systemd's watchdog does.
            out.push(Action::Signal {
                target: old.target(),
                sig: if old.hung { SIGABRT } else { stop },
            });
            drained = true;
        }
        if drained {
            self.handoffs_done += 1;
            out.push(Action::Log(Event::HandoffDone { generation: id }));
        }
        for w in self.waiters.drain(..) {
            out.push(Action::Reply {
                waiter: w,
                result: Ok((id, pid)),
            });
        }
        self.start_pending(now, out);
    }

    fn watchdog(&mut self, id: u32, ping: Ping, now: Instant, out: &mut Vec<Action>) {
        let shutting_down = self.shutting_down;
        let Some(g) = self.gen_mut(id).filter(|g| g.pgid != 0) else {
            return;
        };
        // After a shutdown signal nothing is replaced, so no watchdog deadline is kept.
        let armed = g.state == State::Serving && !g.hung && !shutting_down;
        match ping {
            Ping::Alive => {
                g.last_keepalive = Some(now);
                if armed {
                    g.watchdog_at = g.watchdog.map(|d| at(now, d));
                }
            }
            Ping::Interval(d) => {
                g.watchdog = (!d.is_zero()).then_some(d);
                if armed {
                    g.watchdog_at = g.watchdog.map(|d| at(now, d));
                }
            }
            Ping::Trigger if armed => self.fire_watchdog(id, true, now, out),
            Ping::Trigger => {}
        }
    }

    /// The serving generation is hung: start its replacement; it is killed (SIGABRT first)
    /// only once the replacement is ready.
    fn fire_watchdog(&mut self, id: u32, trigger: bool, now: Instant, out: &mut Vec<Action>) {
        let shutting_down = self.shutting_down;
        let Some(g) = self.gen_mut(id) else { return };
        g.watchdog_at = None;
        if shutting_down {
            return;
        }
        g.hung = true;
        self.watchdog_recoveries += 1;
        out.push(Action::Log(Event::WatchdogFired {
            generation: id,
            trigger,
        }));
        if self.starting().is_none() {
            self.new_gen(Start::Watchdog, now, out);
        }
    }

    /// Hung serving generations whose replacement failed: with nothing to hand over to they
    /// are stopped (SIGABRT, SIGKILL at the drain deadline), and the restart policy decides.
    fn abort_hung(&mut self, now: Instant, out: &mut Vec<Action>) {
        let drain = self.s.drain_timeout;
        for g in self
            .gens
            .iter_mut()
            .filter(|g| g.state == State::Serving && g.hung)
        {
            g.state = State::Draining;
            g.kill_at = Some(at(now, drain));
            out.push(Action::Log(Event::HungAborted {
                generation: g.id,
                kill_in: drain,
            }));
            out.push(Action::Signal {
                target: g.target(),
                sig: SIGABRT,
            });
        }
    }

    fn reload_in_place(&mut self, waiter: Option<Waiter>, now: Instant, out: &mut Vec<Action>) {
        let refuse = |why: &str, out: &mut Vec<Action>| {
            if let Some(w) = waiter {
                out.push(Action::Reply {
                    waiter: w,
                    result: Err(why.into()),
                });
            }
        };
        if self.shutting_down || self.over {
            return refuse("init is shutting down", out);
        }
        let Some(sig) = self.s.reload_signal else {
            return refuse("in-place reloads are off (no --reload-signal)", out);
        };
        let timeout = self.s.ready_timeout;
        let Some(g) = self
            .gens
            .iter_mut()
            .rev()
            .find(|g| g.state == State::Serving && !g.hung)
        else {
            return refuse("no generation is serving", out);
        };
        self.reload_waiters.extend(waiter);
        if g.reload_deadline.is_some() {
            // One reload at a time: a request during one waits for it.
            return;
        }
        g.reload_deadline = Some(at(now, timeout));
        g.reloading = false;
        out.push(Action::Log(Event::Reloading {
            generation: g.id,
            signal: sig,
        }));
        out.push(Action::Reload {
            target: g.target(),
            sig,
        });
    }

    fn reply_reload(&mut self, result: Result<(u32, i32), String>, out: &mut Vec<Action>) {
        for w in self.reload_waiters.drain(..) {
            out.push(Action::Reply {
                waiter: w,
                result: result.clone(),
            });
        }
    }

    fn probe_done(&mut self, id: u32, ok: bool, now: Instant, out: &mut Vec<Action>) {
        let every = match self.s.ready {
            ReadyKind::Probe(every) => every,
            _ => Duration::from_millis(200),
        };
        let shutting_down = self.shutting_down;
        let Some(g) = self.gen_mut(id).filter(|g| g.probing) else {
            return;
        };
        g.probing = false;
        if ok {
            return self.ready(id, now, out);
        }
        if g.state == State::Starting && !shutting_down {
            g.probe_at = Some(at(now, every));
        }
    }

    fn trigger(&mut self, waiter: Option<Waiter>, now: Instant, out: &mut Vec<Action>) {
        if self.shutting_down || self.over {
            if let Some(w) = waiter {
                out.push(Action::Reply {
                    waiter: w,
                    result: Err("init is shutting down".into()),
                });
            }
            return;
        }
        if let Some(starting) = self.starting() {
            self.pending.get_or_insert_with(Vec::new).extend(waiter);
            out.push(Action::Log(Event::Queued { starting }));
            return;
        }
        self.waiters.extend(waiter);
        if self.serving().is_some() {
            self.new_gen(Start::Handoff, now, out);
        } else {
            // Waiting out a restart backoff: the operator asked for a generation now.
            self.restart_at = None;
            self.new_gen(Start::Restart, now, out);
        }
    }

    fn start_pending(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.pending.is_some() && !self.shutting_down && self.starting().is_none() {
            let start = if self.serving().is_some() {
                Start::Handoff
            } else {
                Start::Restart
            };
            self.restart_at = None;
            self.new_gen(start, now, out);
        }
    }

    /// A live generation stopped being the service, or the candidate for it: it ended, could
    /// not be spawned, or (with an older one serving) was not ready in time.
    fn lost(&mut self, id: u32, why: Why, now: Instant, out: &mut Vec<Action>) {
        let older = self.older_serving(id);
        let other_live = self.gens.iter().any(|o| o.id != id && o.state.live());
        let track = self.s.track;
        let (stop, drain) = (self.s.stop_signal, self.s.drain_timeout);
        let shutting_down = self.shutting_down;
        let Some(g) = self.gen_mut(id).filter(|g| g.state.live()) else {
            return;
        };
        let was = g.state;
        let code = match why {
            Why::Exited(_) => g.code(track),
            _ => why.code(),
        };
        g.ready_deadline = None;
        g.ready_after = None;
        g.probe_at = None;
        if g.pgid != 0 && matches!(why, Why::Exited(_)) {
            out.push(Action::Log(Event::Ended {
                generation: id,
                pid: g.main,
                code,
                was,
            }));
        }
        if shutting_down {
            // Stopping because init is: not a failure. Its status counts if it was the service.
            g.state = State::Exited;
            if was == State::Serving || self.last_code.is_none() {
                self.last_code = Some(code);
            }
            return;
        }
        if was == State::Starting
            && let Some(old) = older
        {
            // Rolled back: the older generation keeps serving. All of this one is stopped like
            // a drained generation — the stop signal first, so what it accepted on the shared
            // sockets is finished rather than reset; SIGKILL at the drain deadline.
            g.state = State::Failed;
            if !g.gone() {
                g.kill_at = Some(at(now, drain));
                out.push(Action::Signal {
                    target: g.target(),
                    sig: stop,
                });
            }
            self.handoffs_failed += 1;
            let then = Then::Serving(old);
            self.reply_failed(id, &why, &then, out);
            out.push(Action::Log(Event::Failed {
                generation: id,
                why,
                then,
            }));
            self.start_pending(now, out);
            return;
        }
        // Nothing older serves: this was the service (or its replacement, while a hung one
        // still nominally serves: nothing to hand over to, so that one is stopped as well).
        g.state = State::Exited;
        let stable = g.ready_at.is_some_and(|r| now.duration_since(r) >= STABLE);
        let gone = g.gone();
        let target = g.target();
        if was == State::Starting {
            self.abort_hung(now, out);
        }
        let other_live = other_live && self.gens.iter().any(|o| o.id != id && o.state.live());
        self.last_code = Some(code);
        if stable {
            self.crashes = 0;
        }
        let spawn_error = matches!(why, Why::Spawn { .. });
        // A command that cannot be started at all would only fail again.
        let restart = code != 0 && self.s.restart_on_failure && !other_live && !spawn_error;
        let after = backoff(self.crashes);
        if restart {
            self.crashes += 1;
            self.restart_at = Some(at(now, after));
        }
        if was == State::Starting {
            let then = if restart {
                Then::Restart(after)
            } else {
                Then::NoFallback
            };
            self.reply_failed(id, &why, &then, out);
            out.push(Action::Log(Event::Failed {
                generation: id,
                why,
                then,
            }));
        } else if restart {
            out.push(Action::Log(Event::Crashed {
                generation: id,
                code,
                after,
            }));
        }
        // What it left behind is stopped like a drained generation; when nothing else goes on,
        // init's own shutdown of the whole tree does that instead.
        if !gone && (restart || other_live) {
            if let Some(g) = self.gen_mut(id) {
                g.kill_at = Some(at(now, drain));
            }
            out.push(Action::Log(Event::StoppingLeftovers {
                generation: id,
                kill_in: drain,
            }));
            out.push(Action::Signal { target, sig: stop });
        }
        // Triggers queued meanwhile ride along with the restart; without one there is nothing to
        // start them from.
        if !restart {
            self.reply_pending(&Then::NoFallback.to_string(), out);
        }
    }

    fn reply_pending(&mut self, why: &str, out: &mut Vec<Action>) {
        for w in self.pending.take().unwrap_or_default() {
            out.push(Action::Reply {
                waiter: w,
                result: Err(why.to_string()),
            });
        }
    }

    fn reply_failed(&mut self, id: u32, why: &Why, then: &Then, out: &mut Vec<Action>) {
        for w in self.waiters.drain(..) {
            out.push(Action::Reply {
                waiter: w,
                result: Err(format!("generation {id} failed: {why}; {then}")),
            });
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Action>) {
        self.shutting_down = true;
        self.restart_at = None;
        let pending = self.pending.take().unwrap_or_default();
        for w in self.waiters.drain(..).chain(pending) {
            out.push(Action::Reply {
                waiter: w,
                result: Err("init is shutting down".into()),
            });
        }
        self.reply_reload(Err("init is shutting down".into()), out);
        for g in &mut self.gens {
            g.watchdog_at = None;
            g.reload_deadline = None;
        }
        // The stop signal reached every generation: no readiness deadline applies any more.
        for g in &mut self.gens {
            g.ready_deadline = None;
            g.ready_after = None;
            g.probe_at = None;
        }
    }

    /// Deadlines that have passed.
    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let ids: Vec<u32> = self.gens.iter().map(|g| g.id).collect();
        let timeout = self.s.ready_timeout;
        for id in ids {
            let older = self.older_serving(id);
            let Some(g) = self.gen_mut(id) else { continue };
            match g.state {
                State::Starting if g.pgid != 0 => {
                    if g.ready_after.is_some_and(|t| t <= now) {
                        self.ready(id, now, out);
                        continue;
                    }
                    if g.probe_at.is_some_and(|t| t <= now) && !g.probing {
                        g.probe_at = None;
                        g.probing = true;
                        out.push(Action::Probe {
                            generation: id,
                            main: g.main,
                        });
                    }
                    if g.ready_deadline.is_some_and(|t| t <= now) {
                        g.ready_deadline = None;
                        if older.is_some() {
                            self.lost(id, Why::NotReady(timeout), now, out);
                        } else {
                            // Nothing older to fall back to: killing it would turn a slow start
                            // into an outage. Serve, and say so.
                            out.push(Action::Log(Event::ServingUnready {
                                generation: id,
                                timeout,
                            }));
                            self.ready(id, now, out);
                        }
                    }
                }
                State::Serving => {
                    if g.reload_deadline.is_some_and(|t| t <= now) {
                        g.reload_deadline = None;
                        g.reloading = false;
                        let why = format!(
                            "generation {id} not reloaded within {}",
                            crate::log::dur(timeout)
                        );
                        out.push(Action::Log(Event::ReloadFailed {
                            generation: id,
                            timeout,
                        }));
                        self.reply_reload(Err(why), out);
                    }
                    if self
                        .generation(id)
                        .is_some_and(|g| g.watchdog_at.is_some_and(|t| t <= now))
                    {
                        self.fire_watchdog(id, false, now, out);
                    }
                }
                State::Draining | State::Exited | State::Failed
                    if !g.killed && g.kill_at.is_some_and(|t| t <= now) =>
                {
                    g.killed = true;
                    g.kill_at = None;
                    out.push(Action::Log(Event::KillTimeout {
                        generation: id,
                        was: g.state,
                    }));
                    out.push(Action::Kill { target: g.target() });
                }
                _ => {}
            }
        }
        if self.restart_at.is_some_and(|t| t <= now) {
            self.restart_at = None;
            self.new_gen(Start::Restart, now, out);
        }
    }

    /// After every fact: live generations whose processes ended are lost, records of which
    /// nothing is left are dropped, and with nothing live and nothing to start, it is over.
    fn settle(&mut self, now: Instant, out: &mut Vec<Action>) {
        let track = self.s.track;
        while let Some(id) = self
            .gens
            .iter()
            .find(|g| g.state.live() && g.tracked_ended(track))
            .map(|g| g.id)
        {
            let code = self.generation(id).map_or(0, |g| g.code(track));
            self.lost(id, Why::Exited(code), now, out);
        }
        if let Some(g) = self
            .gens
            .iter_mut()
            .find(|g| g.reload_deadline.is_some() && g.state != State::Serving)
        {
            g.reload_deadline = None;
            let why = format!("generation {} stopped serving during its reload", g.id);
            self.reply_reload(Err(why), out);
        }
        let gone: Vec<u32> = self
            .gens
            .iter()
            .filter(|g| !g.state.live() && g.gone())
            .map(|g| g.id)
            .collect();
        for id in gone {
            self.gens.retain(|g| g.id != id);
            out.push(Action::Log(Event::Gone { generation: id }));
            out.push(Action::Forget { generation: id });
        }
        if !self.over && self.restart_at.is_none() && !self.gens.iter().any(|g| g.state.live()) {
            self.over = true;
            let why = "init is exiting: no generation is left";
            for w in std::mem::take(&mut self.waiters) {
                out.push(Action::Reply {
                    waiter: w,
                    result: Err(why.into()),
                });
            }
            self.reply_pending(why, out);
            out.push(Action::Over {
                code: self.last_code.unwrap_or(0),
            });
        }
    }

    /// The earliest time `Tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let gens = self.gens.iter().flat_map(|g| match g.state {
            State::Starting if g.pgid != 0 => [
                g.ready_deadline,
                g.ready_after,
                g.probe_at.filter(|_| !g.probing),
            ],
            State::Serving => [g.watchdog_at, g.reload_deadline, None],
            State::Draining | State::Exited | State::Failed if !g.killed => [g.kill_at, None, None],
            _ => [None, None, None],
        });
        gens.chain([self.restart_at]).flatten().min()
    }
}
