//! The supervisor's state machine: generations of the service and the handoff between them.
//!
//! Pure: events in (spawned, ready, ended, trigger, shutdown, time), actions out (spawn, signal,
//! kill, probe, reply, over). No syscalls and no clock of its own, so unit tests drive it through
//! every path without a process. `init` executes the actions.
//!
//! ```text
//! trigger ─► generation N+1 Starting ── ready ──► Serving; generation N ─► Draining (stop signal) ─► ended
//!                          └── exits / not ready in time ─► killed; generation N keeps serving
//! ```
//! One start at a time; triggers during one coalesce into at most one more.

use crate::{info, warn};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Starting,
    Serving,
    Draining,
    /// Failed to become ready; killed, waiting for its processes to end.
    Failed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Serving => "serving",
            State::Draining => "draining",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Gen {
    pub id: u32,
    pub pid: i32,
    pub state: State,
    /// Started by a trigger (as opposed to the first start or a restart after a crash).
    pub handoff: bool,
    pub started: Instant,
    /// Starting: the readiness deadline. Draining: when its group gets SIGKILL.
    pub deadline: Option<Instant>,
    /// `delay:` readiness: when it counts as ready.
    pub ready_after: Option<Instant>,
    pub probe_at: Option<Instant>,
    pub probing: bool,
    pub ready_at: Option<Instant>,
    /// The last STATUS= it sent.
    pub status: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyKind {
    /// Ready as soon as it runs (plain init mode).
    Immediately,
    /// Ready when `init` reports it (READY=1 on the notify socket).
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
}

pub type Waiter = u64;

#[derive(Debug, PartialEq)]
pub enum Action {
    Spawn {
        generation: u32,
    },
    /// To the generation's process group.
    Signal {
        generation: u32,
        sig: i32,
    },
    /// SIGKILL to the generation's process group.
    Kill {
        generation: u32,
    },
    Probe {
        generation: u32,
    },
    Reply {
        waiter: Waiter,
        result: Result<(u32, i32), String>,
    },
    /// The first generation is ready (tell an upstream NOTIFY_SOCKET).
    FirstReady {
        generation: u32,
    },
    /// No generation is left and none will start: init stops the rest and exits with `code`.
    Over {
        code: u8,
    },
}

/// Restart backoff: 100 ms doubling per crash in a row, capped at 10 s.
pub fn backoff(crashes: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << crashes.min(7))).min(Duration::from_secs(10))
}

/// A generation that served at least this long resets the crash count.
const STABLE: Duration = Duration::from_secs(10);

pub struct Machine {
    s: Settings,
    pub gens: Vec<Gen>,
    next_id: u32,
    /// The generation being started, if any, and who waits for it.
    starting: Option<u32>,
    waiters: Vec<Waiter>,
    /// Triggers that arrived during a start: one more start, for all of them.
    pending: Option<Vec<Waiter>>,
    pub handoffs_done: u32,
    pub handoffs_failed: u32,
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
            starting: None,
            waiters: Vec::new(),
            pending: None,
            handoffs_done: 0,
            handoffs_failed: 0,
            shutting_down: false,
            over: false,
            first_ready_sent: false,
            restart_at: None,
            crashes: 0,
            last_code: None,
        }
    }

    pub fn generation(&self, id: u32) -> Option<&Gen> {
        self.gens.iter().find(|g| g.id == id)
    }

    fn gen_mut(&mut self, id: u32) -> Option<&mut Gen> {
        self.gens.iter_mut().find(|g| g.id == id)
    }

    /// The first generation.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        vec![self.new_gen(false, now)]
    }

    fn new_gen(&mut self, handoff: bool, now: Instant) -> Action {
        let id = self.next_id;
        self.next_id += 1;
        self.gens.push(Gen {
            id,
            pid: 0,
            state: State::Starting,
            handoff,
            started: now,
            deadline: None,
            ready_after: None,
            probe_at: None,
            probing: false,
            ready_at: None,
            status: None,
        });
        self.starting = Some(id);
        Action::Spawn { generation: id }
    }

    pub fn spawned(&mut self, id: u32, pid: i32, now: Instant) -> Vec<Action> {
        let s = self.s.clone();
        let Some(g) = self.gen_mut(id) else {
            return Vec::new();
        };
        g.pid = pid;
        g.started = now;
        info!("generation {id}: started pid {pid}");
        match s.ready {
            ReadyKind::Immediately => return self.ready(id, now),
            ReadyKind::Told => {}
            ReadyKind::Delay(d) => g.ready_after = Some(now + d),
            ReadyKind::Probe(every) => g.probe_at = Some(now + every),
        }
        g.deadline = Some(now + s.ready_timeout);
        Vec::new()
    }

    pub fn spawn_failed(&mut self, id: u32, error: String, code: u8, now: Instant) -> Vec<Action> {
        let Some(g) = self.generation(id) else {
            return Vec::new();
        };
        let handoff = g.handoff;
        self.gens.retain(|g| g.id != id);
        let mut out = Vec::new();
        if handoff {
            self.fail_start(id, error, &mut out, now);
        } else {
            // The command cannot run at all: restarting would only repeat the error.
            self.starting = None;
            self.last_code = Some(code);
            self.restart_at = None;
            self.check_over(&mut out);
        }
        out
    }

    pub fn ready(&mut self, id: u32, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let stop = self.s.stop_signal;
        let drain = self.s.drain_timeout;
        let Some(g) = self.gen_mut(id).filter(|g| g.state == State::Starting) else {
            return out;
        };
        g.state = State::Serving;
        g.ready_at = Some(now);
        g.deadline = None;
        g.ready_after = None;
        g.probe_at = None;
        let (handoff, pid) = (g.handoff, g.pid);
        info!("generation {id}: ready (pid {pid})");
        if self.starting == Some(id) {
            self.starting = None;
        }
        if !self.first_ready_sent {
            self.first_ready_sent = true;
            out.push(Action::FirstReady { generation: id });
        }
        for old in self
            .gens
            .iter_mut()
            .filter(|o| o.id < id && o.state == State::Serving)
        {
            old.state = State::Draining;
            old.deadline = Some(now + drain);
            info!(
                "generation {}: draining (pid {}), SIGKILL in {}",
                old.id,
                old.pid,
                crate::log::dur(drain)
            );
            out.push(Action::Signal {
                generation: old.id,
                sig: stop,
            });
        }
        if handoff {
            self.handoffs_done += 1;
            info!("handoff to generation {id} done");
        }
        for w in self.waiters.drain(..) {
            out.push(Action::Reply {
                waiter: w,
                result: Ok((id, pid)),
            });
        }
        self.start_pending(&mut out, now);
        out
    }

    /// A trigger: `kill -HUP`, or `ctl reload` (with a waiter for the answer).
    pub fn trigger(&mut self, waiter: Option<Waiter>, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.shutting_down || self.over {
            if let Some(w) = waiter {
                out.push(Action::Reply {
                    waiter: w,
                    result: Err("init is shutting down".into()),
                });
            }
            return out;
        }
        if self.starting.is_some() {
            let p = self.pending.get_or_insert_with(Vec::new);
            p.extend(waiter);
            info!(
                "handoff requested while generation {} starts: queued",
                self.starting.unwrap_or(0)
            );
            return out;
        }
        self.restart_at = None;
        self.waiters.extend(waiter);
        info!("handoff: starting generation {}", self.next_id);
        out.push(self.new_gen(true, now));
        out
    }

    fn start_pending(&mut self, out: &mut Vec<Action>, now: Instant) {
        if let Some(waiters) = self.pending.take() {
            if self.shutting_down {
                return;
            }
            self.waiters = waiters;
            info!("handoff: starting queued generation {}", self.next_id);
            out.push(self.new_gen(true, now));
        }
    }

    /// A handoff's new generation failed: kill it; the old one keeps serving.
    fn fail_start(&mut self, id: u32, why: String, out: &mut Vec<Action>, now: Instant) {
        warn!("generation {id} failed: {why}; the previous generation keeps serving");
        self.handoffs_failed += 1;
        if self.starting == Some(id) {
            self.starting = None;
        }
        for w in self.waiters.drain(..) {
            out.push(Action::Reply {
                waiter: w,
                result: Err(format!("generation {id} failed: {why}")),
            });
        }
        self.start_pending(out, now);
        self.check_over(out);
    }

    /// Every process the generation is tracked by has ended, with `code`.
    pub fn ended(&mut self, id: u32, code: u8, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(g) = self.generation(id).cloned() else {
            return out;
        };
        self.gens.retain(|x| x.id != id);
        info!(
            "generation {id}: ended with status {code} (pid {}, was {})",
            g.pid,
            g.state.name()
        );
        match g.state {
            State::Starting if g.handoff => {
                out.push(Action::Kill { generation: id });
                self.fail_start(
                    id,
                    format!("exited with status {code} before it was ready"),
                    &mut out,
                    now,
                );
                return out;
            }
            State::Starting | State::Serving => {
                self.last_code = Some(code);
                if self.starting == Some(id) {
                    self.starting = None;
                }
                if g.ready_at.is_some_and(|r| now.duration_since(r) >= STABLE) {
                    self.crashes = 0;
                }
                let newest_serving = !self
                    .gens
                    .iter()
                    .any(|o| o.id > id && o.state == State::Serving);
                if !self.shutting_down
                    && code != 0
                    && self.s.restart_on_failure
                    && newest_serving
                    && self.starting.is_none()
                {
                    let wait = backoff(self.crashes);
                    self.crashes += 1;
                    warn!(
                        "generation {id} crashed; restarting in {}",
                        crate::log::dur(wait)
                    );
                    self.restart_at = Some(now + wait);
                }
            }
            State::Draining | State::Failed => {}
        }
        self.check_over(&mut out);
        out
    }

    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        self.shutting_down = true;
        self.restart_at = None;
        let pending = self.pending.take().unwrap_or_default();
        for w in self.waiters.drain(..).chain(pending) {
            out.push(Action::Reply {
                waiter: w,
                result: Err("init is shutting down".into()),
            });
        }
        self.check_over(&mut out);
        out
    }

    fn check_over(&mut self, out: &mut Vec<Action>) {
        if !self.over
            && self.restart_at.is_none()
            && !self.gens.iter().any(|g| g.state != State::Failed)
        {
            self.over = true;
            out.push(Action::Over {
                code: self.last_code.unwrap_or(0),
            });
        }
    }

    pub fn probe_result(&mut self, id: u32, ok: bool, now: Instant) -> Vec<Action> {
        let every = match self.s.ready {
            ReadyKind::Probe(every) => every,
            _ => Duration::from_millis(200),
        };
        let Some(g) = self.gen_mut(id) else {
            return Vec::new();
        };
        g.probing = false;
        if ok {
            return self.ready(id, now);
        }
        if g.state == State::Starting {
            g.probe_at = Some(now + every);
        }
        Vec::new()
    }

    /// EXTEND_TIMEOUT_USEC: the readiness deadline becomes at least now + usec.
    pub fn extend(&mut self, id: u32, by: Duration, now: Instant) {
        if let Some(g) = self.gen_mut(id).filter(|g| g.state == State::Starting) {
            g.deadline = g.deadline.map(|d| d.max(now + by));
        }
    }

    pub fn set_status(&mut self, id: u32, status: String) {
        if let Some(g) = self.gen_mut(id) {
            g.status = Some(status);
        }
    }

    pub fn set_pid(&mut self, id: u32, pid: i32) {
        if let Some(g) = self.gen_mut(id) {
            g.pid = pid;
        }
    }

    /// Deadlines that have passed.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let ids: Vec<u32> = self.gens.iter().map(|g| g.id).collect();
        let timeout = self.s.ready_timeout;
        for id in ids {
            let Some(g) = self.gen_mut(id) else { continue };
            match g.state {
                State::Starting => {
                    if g.ready_after.is_some_and(|t| t <= now) {
                        out.extend(self.ready(id, now));
                        continue;
                    }
                    if g.probe_at.is_some_and(|t| t <= now) && !g.probing {
                        g.probe_at = None;
                        g.probing = true;
                        out.push(Action::Probe { generation: id });
                    }
                    let Some(g) = self.gen_mut(id) else { continue };
                    if g.deadline.is_some_and(|t| t <= now) {
                        let why = format!("not ready within {}", crate::log::dur(timeout));
                        if g.handoff {
                            g.state = State::Failed;
                            g.deadline = None;
                            out.push(Action::Kill { generation: id });
                            self.fail_start(id, why, &mut out, now);
                        } else {
                            // Nothing older to fall back to: killing it would turn a slow start
                            // into an outage. Serve, and say so.
                            warn!(
                                "generation {id}: {why}; serving anyway (nothing older to fall back to)"
                            );
                            out.extend(self.ready(id, now));
                        }
                    }
                }
                State::Draining if g.deadline.is_some_and(|t| t <= now) => {
                    g.deadline = None;
                    warn!("generation {id}: drain timeout; SIGKILL to its process group");
                    out.push(Action::Kill { generation: id });
                }
                _ => {}
            }
        }
        if self.restart_at.is_some_and(|t| t <= now) {
            self.restart_at = None;
            info!("restarting: generation {}", self.next_id);
            out.push(self.new_gen(false, now));
        }
        out
    }

    /// The earliest time `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let gens = self.gens.iter().flat_map(|g| {
            [
                g.deadline,
                g.ready_after,
                if g.probing { None } else { g.probe_at },
            ]
        });
        gens.chain([self.restart_at]).flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: i32 = 15;

    fn machine(ready: ReadyKind) -> Machine {
        Machine::new(Settings {
            ready,
            ready_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(3),
            stop_signal: TERM,
            restart_on_failure: false,
        })
    }

    /// Starts generation 1 with `pid` and makes it ready.
    fn serving(m: &mut Machine, t: Instant) {
        assert_eq!(m.start(t), vec![Action::Spawn { generation: 1 }]);
        assert!(m.spawned(1, 100, t).is_empty());
        assert_eq!(m.ready(1, t), vec![Action::FirstReady { generation: 1 }]);
    }

    #[test]
    fn plain_mode_is_ready_at_once_and_over_when_it_ends() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Immediately);
        m.start(t);
        assert_eq!(
            m.spawned(1, 100, t),
            vec![Action::FirstReady { generation: 1 }]
        );
        assert_eq!(m.ended(1, 3, t), vec![Action::Over { code: 3 }]);
    }

    #[test]
    fn handoff_drains_the_old_generation_after_the_new_one_is_ready() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Told);
        serving(&mut m, t);
        assert_eq!(m.trigger(Some(7), t), vec![Action::Spawn { generation: 2 }]);
        assert!(m.spawned(2, 200, t).is_empty());
        assert_eq!(
            m.generation(1).unwrap().state,
            State::Serving,
            "old serves until new is ready"
        );
        assert_eq!(
            m.ready(2, t),
            vec![
                Action::Signal {
                    generation: 1,
                    sig: TERM
                },
                Action::Reply {
                    waiter: 7,
                    result: Ok((2, 200))
                }
            ]
        );
        assert_eq!(m.generation(1).unwrap().state, State::Draining);
        assert_eq!(m.handoffs_done, 1);
        // Drain timeout: SIGKILL.
        assert_eq!(m.next_deadline(), Some(t + Duration::from_secs(3)));
        assert_eq!(
            m.tick(t + Duration::from_secs(3)),
            vec![Action::Kill { generation: 1 }]
        );
        assert!(
            m.ended(1, 137, t).is_empty(),
            "a drained generation ending is not the end"
        );
        assert_eq!(m.ended(2, 0, t), vec![Action::Over { code: 0 }]);
    }

    #[test]
    fn new_generation_that_exits_before_ready_is_rolled_back() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Told);
        serving(&mut m, t);
        m.trigger(Some(1), t);
        m.spawned(2, 200, t);
        let out = m.ended(2, 3, t);
        assert_eq!(out[0], Action::Kill { generation: 2 });
        assert!(
            matches!(&out[1], Action::Reply { waiter: 1, result: Err(e) } if e.contains("status 3"))
        );
        assert_eq!(m.generation(1).unwrap().state, State::Serving);
        assert_eq!(m.handoffs_failed, 1);
    }

    #[test]
    fn new_generation_not_ready_in_time_is_killed_and_old_keeps_serving() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Told);
        serving(&mut m, t);
        m.trigger(None, t);
        m.spawned(2, 200, t);
        assert_eq!(m.next_deadline(), Some(t + Duration::from_secs(5)));
        assert_eq!(
            m.tick(t + Duration::from_secs(5)),
            vec![Action::Kill { generation: 2 }]
        );
        assert_eq!(m.generation(2).unwrap().state, State::Failed);
        assert!(m.ended(2, 137, t).is_empty());
        assert_eq!(m.generation(1).unwrap().state, State::Serving);
        // EXTEND_TIMEOUT_USEC pushes the deadline of a starting generation.
        m.trigger(None, t);
        m.spawned(3, 300, t);
        m.extend(3, Duration::from_secs(60), t);
        assert!(m.tick(t + Duration::from_secs(6)).is_empty());
    }

    #[test]
    fn triggers_during_a_handoff_coalesce_into_one_more() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Told);
        serving(&mut m, t);
        m.trigger(Some(1), t);
        assert!(m.trigger(Some(2), t).is_empty());
        assert!(m.trigger(Some(3), t).is_empty());
        m.spawned(2, 200, t);
        let out = m.ready(2, t);
        assert!(out.contains(&Action::Reply {
            waiter: 1,
            result: Ok((2, 200))
        }));
        assert_eq!(out.last(), Some(&Action::Spawn { generation: 3 }));
        m.spawned(3, 300, t);
        let out = m.ready(3, t);
        assert!(out.contains(&Action::Reply {
            waiter: 2,
            result: Ok((3, 300))
        }));
        assert!(out.contains(&Action::Reply {
            waiter: 3,
            result: Ok((3, 300))
        }));
        assert!(!out.iter().any(|a| matches!(a, Action::Spawn { .. })));
        assert_eq!(m.handoffs_done, 2);
    }

    #[test]
    fn shutdown_during_a_handoff_waits_for_both_and_keeps_the_newest_status() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Told);
        serving(&mut m, t);
        m.trigger(Some(9), t);
        m.spawned(2, 200, t);
        let out = m.shutdown();
        assert_eq!(
            out,
            vec![Action::Reply {
                waiter: 9,
                result: Err("init is shutting down".into())
            }]
        );
        assert!(m.ended(1, 0, t).is_empty());
        assert!(matches!(
            m.trigger(Some(4), t)[..],
            [Action::Reply {
                waiter: 4,
                result: Err(_)
            }]
        ));
        assert_eq!(
            m.ended(2, 143, t),
            vec![Action::Kill { generation: 2 }, Action::Over { code: 0 }]
        );
    }

    #[test]
    fn crash_without_restart_is_over_with_its_code() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Told);
        serving(&mut m, t);
        assert_eq!(m.ended(1, 139, t), vec![Action::Over { code: 139 }]);
    }

    #[test]
    fn crash_with_restart_on_failure_backs_off_and_clean_exit_ends() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Told);
        m.s.restart_on_failure = true;
        serving(&mut m, t);
        assert!(m.ended(1, 1, t).is_empty());
        assert_eq!(m.next_deadline(), Some(t + backoff(0)));
        assert_eq!(
            m.tick(t + backoff(0)),
            vec![Action::Spawn { generation: 2 }]
        );
        m.spawned(2, 200, t);
        assert!(m.ended(2, 1, t).is_empty());
        assert_eq!(m.next_deadline(), Some(t + backoff(1)));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(30), Duration::from_secs(10));
        m.tick(t + backoff(1));
        m.spawned(3, 300, t);
        m.ready(3, t);
        assert_eq!(m.ended(3, 0, t), vec![Action::Over { code: 0 }]);
    }

    #[test]
    fn first_generation_not_ready_in_time_serves_anyway() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Told);
        m.start(t);
        m.spawned(1, 100, t);
        let out = m.tick(t + Duration::from_secs(5));
        assert_eq!(out, vec![Action::FirstReady { generation: 1 }]);
        assert_eq!(m.generation(1).unwrap().state, State::Serving);
    }

    #[test]
    fn delay_and_probe_readiness() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Delay(Duration::from_millis(500)));
        m.start(t);
        m.spawned(1, 100, t);
        assert_eq!(m.next_deadline(), Some(t + Duration::from_millis(500)));
        assert_eq!(
            m.tick(t + Duration::from_millis(500)),
            vec![Action::FirstReady { generation: 1 }]
        );

        let mut m = machine(ReadyKind::Probe(Duration::from_millis(100)));
        m.start(t);
        m.spawned(1, 100, t);
        let t1 = t + Duration::from_millis(100);
        assert_eq!(m.tick(t1), vec![Action::Probe { generation: 1 }]);
        assert!(m.tick(t1).is_empty(), "one probe at a time");
        assert!(m.probe_result(1, false, t1).is_empty());
        assert_eq!(m.next_deadline(), Some(t1 + Duration::from_millis(100)));
        m.tick(t1 + Duration::from_millis(100));
        assert_eq!(
            m.probe_result(1, true, t1),
            vec![Action::FirstReady { generation: 1 }]
        );
    }

    #[test]
    fn exec_failure_of_the_first_generation_is_over_with_its_code() {
        let t = Instant::now();
        let mut m = machine(ReadyKind::Told);
        m.start(t);
        assert_eq!(
            m.spawn_failed(1, "not found".into(), 127, t),
            vec![Action::Over { code: 127 }]
        );
        let mut m = machine(ReadyKind::Told);
        serving(&mut m, t);
        m.trigger(Some(2), t);
        let out = m.spawn_failed(2, "not found".into(), 127, t);
        assert!(matches!(
            &out[..],
            [Action::Reply {
                waiter: 2,
                result: Err(_)
            }]
        ));
        assert_eq!(m.generation(1).unwrap().state, State::Serving);
    }
}
