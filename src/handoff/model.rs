//! Model-based test: random sequences of what a world of processes can do (generations become
//! ready, exit, fork helpers that stay in the group or leave it, ignore the stop signal; time
//! passes; triggers and a shutdown arrive; pid files and MAINPID= name processes) drive the
//! machine through a simulated executor, and the machine's promises are checked after every step.
//! proptest shrinks a failing sequence to the shortest one.

use super::*;
use proptest::prelude::*;
use proptest::strategy::Strategy;
use std::collections::{BTreeMap, BTreeSet};

/// The in-place reload signal the model configures (SIGUSR1).
const RELOAD: i32 = 10;

#[derive(Clone, Debug)]
enum Op {
    Ready(u8),
    MainExits(u8, u8),
    HelperExits(u8),
    /// A process of the generation forks a helper: in its group, or (setsid) outside it.
    Fork(u8, bool),
    Advance(u16),
    Trigger(bool),
    Shutdown,
    Probe(u8, bool),
    /// A pid file or MAINPID= names some process.
    NamePid(u8, u8, bool),
    Extend(u8, u16),
    /// WATCHDOG=1 (0), WATCHDOG=trigger (1), WATCHDOG_USEC= (2: a new interval, 3: off).
    Ping(u8, u8),
    /// `ctl reload --in-place`, with or without a waiter.
    ReloadInPlace(bool),
    /// RELOADING=1 then, later, READY=1 (the Ready op).
    Reloading(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Ready),
        3 => (any::<u8>(), prop::sample::select(vec![0u8, 1, 3, 137, 143])).prop_map(|(g, c)| Op::MainExits(g, c)),
        2 => any::<u8>().prop_map(Op::HelperExits),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(g, s)| Op::Fork(g, s)),
        4 => (0u16..12_000).prop_map(Op::Advance),
        4 => any::<bool>().prop_map(Op::Trigger),
        1 => Just(Op::Shutdown),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(g, ok)| Op::Probe(g, ok)),
        1 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(g, p, f)| Op::NamePid(g, p, f)),
        1 => (any::<u8>(), any::<u16>()).prop_map(|(g, s)| Op::Extend(g, s)),
        3 => (any::<u8>(), 0u8..4).prop_map(|(g, k)| Op::Ping(g, k)),
        1 => any::<bool>().prop_map(Op::ReloadInPlace),
        1 => any::<u8>().prop_map(Op::Reloading),
    ]
}

#[derive(Clone, Debug)]
struct Setup {
    ready: ReadyKind,
    restart: bool,
    track: Track,
    ready_timeout_ms: u64,
    drain_ms: u64,
    /// Whether the executor has a cgroup per generation (it then knows setsid helpers).
    cgroups: bool,
    watchdog_ms: Option<u64>,
    reload_signal: bool,
    /// Per spawn, in order: whether exec fails.
    spawn_fails: Vec<bool>,
    /// Per spawned process, in order: whether it ignores the stop signal.
    stubborn: Vec<bool>,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![
            Just(ReadyKind::Immediately),
            Just(ReadyKind::Told),
            (100u64..3000).prop_map(|ms| ReadyKind::Delay(Duration::from_millis(ms))),
            Just(ReadyKind::Probe(Duration::from_millis(100))),
        ],
        any::<bool>(),
        prop_oneof![Just(Track::Main), Just(Track::Group)],
        500u64..10_000,
        500u64..8_000,
        any::<bool>(),
        prop::collection::vec(prop::bool::weighted(0.1), 64),
        prop::collection::vec(prop::bool::weighted(0.2), 64),
        (prop::option::of(200u64..5000), any::<bool>()),
    )
        .prop_map(
            |(
                ready,
                restart,
                track,
                ready_timeout_ms,
                drain_ms,
                cgroups,
                spawn_fails,
                stubborn,
                (watchdog_ms, reload_signal),
            )| {
                Setup {
                    ready,
                    restart,
                    track,
                    ready_timeout_ms,
                    drain_ms,
                    cgroups,
                    watchdog_ms,
                    reload_signal,
                    spawn_fails,
                    stubborn,
                }
            },
        )
}

#[derive(Clone, Debug)]
struct Proc {
    pid: i32,
    pgid: i32,
    generation: u32,
    /// Left its group with setsid(2): only a cgroup still knows it is the generation's.
    setsid: bool,
    alive: bool,
    /// Ended, not reaped yet.
    zombie: bool,
    stubborn: bool,
    code: u8,
}

struct World {
    s: Setup,
    m: Machine,
    t: Instant,
    procs: Vec<Proc>,
    next_pid: i32,
    spawns: usize,
    next_waiter: Waiter,
    replies: BTreeMap<Waiter, u32>,
    shutdown: bool,
    over: Option<u8>,
    first_ready: u32,
    forgotten: BTreeSet<u32>,
    killed: BTreeSet<u32>,
    stopped: BTreeSet<u32>,
    pgids: BTreeMap<u32, i32>,
    trace: Vec<String>,
    t0: Instant,
    /// Highest state rank each generation reached (Draining/Failed/Exited never go back).
    seen: BTreeMap<u32, State>,
    last_spawn_failed: bool,
    steps: u64,
}

impl World {
    fn new(s: Setup) -> World {
        let settings = Settings {
            ready: s.ready,
            ready_timeout: Duration::from_millis(s.ready_timeout_ms),
            drain_timeout: Duration::from_millis(s.drain_ms),
            stop_signal: 15,
            restart_on_failure: s.restart,
            track: s.track,
            watchdog: s.watchdog_ms.map(Duration::from_millis),
            reload_signal: s.reload_signal.then_some(RELOAD),
        };
        World {
            s,
            m: Machine::new(settings),
            t: Instant::now(),
            procs: Vec::new(),
            next_pid: 100,
            spawns: 0,
            next_waiter: 1,
            replies: BTreeMap::new(),
            shutdown: false,
            over: None,
            first_ready: 0,
            forgotten: BTreeSet::new(),
            killed: BTreeSet::new(),
            stopped: BTreeSet::new(),
            pgids: BTreeMap::new(),
            trace: Vec::new(),
            t0: Instant::now(),
            seen: BTreeMap::new(),
            last_spawn_failed: false,
            steps: 0,
        }
    }

    fn gen_ids(&self) -> Vec<u32> {
        self.m.generations().iter().map(|g| g.id).collect()
    }

    /// A generation by a random selector, among all records (also ones on their way out).
    fn pick(&self, sel: u8) -> Option<u32> {
        let ids = self.gen_ids();
        (!ids.is_empty()).then(|| ids[sel as usize % ids.len()])
    }

    fn feed(&mut self, facts: Vec<Fact>) {
        let starting_before = self
            .m
            .generations()
            .iter()
            .any(|g| g.state == State::Starting);
        let is_trigger = facts.iter().any(|f| matches!(f, Fact::Trigger { .. }));
        let actions = self.m.handle_all(facts, self.t);
        if is_trigger && starting_before {
            assert!(
                !actions.iter().any(|a| matches!(a, Action::Spawn { .. })),
                "a trigger during a start must coalesce: {actions:?}"
            );
        }
        self.run(actions);
    }

    fn run(&mut self, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            self.steps += 1;
            self.trace
                .push(format!("{:?} {a:?}", self.t.duration_since(self.t0)));
            match a {
                Action::Spawn { generation } => {
                    assert!(
                        !self.shutdown,
                        "spawned generation {generation} after a shutdown"
                    );
                    assert!(self.over.is_none(), "spawned after over");
                    let fails = self
                        .s
                        .spawn_fails
                        .get(self.spawns)
                        .copied()
                        .unwrap_or(false);
                    self.spawns += 1;
                    self.last_spawn_failed = fails;
                    let fact = if fails {
                        Fact::SpawnFailed {
                            generation,
                            error: "cannot run".into(),
                            code: 127,
                        }
                    } else {
                        let pid = self.fork(generation, None, false);
                        self.pgids.insert(generation, pid);
                        Fact::Spawned { generation, pid }
                    };
                    queue.extend(self.m.handle(fact, self.t));
                }
                Action::Reload { target, sig } => {
                    self.check_target(&target);
                    assert_eq!(sig, RELOAD, "reload with another signal");
                    assert!(
                        self.s.reload_signal,
                        "reload signal without --reload-signal"
                    );
                }
                Action::Signal { target, sig } => {
                    self.check_target(&target);
                    assert!(sig == 15 || sig == 6, "signal {sig}");
                    self.stopped.insert(target.generation);
                    for p in self.members(&target) {
                        if !self.procs[p].stubborn {
                            self.end(p, 128 + sig as u8);
                        }
                    }
                }
                Action::Kill { target } => {
                    self.check_target(&target);
                    self.killed.insert(target.generation);
                    for p in self.members(&target) {
                        self.end(p, 137);
                    }
                }
                Action::Probe { generation, .. } => {
                    assert!(!self.forgotten.contains(&generation));
                }
                Action::Reply { waiter, .. } => {
                    let n = self.replies.entry(waiter).or_insert(0);
                    *n += 1;
                    assert_eq!(*n, 1, "waiter {waiter} got a second reply");
                }
                Action::FirstReady { .. } => {
                    self.first_ready += 1;
                    assert_eq!(self.first_ready, 1, "FirstReady twice");
                }
                Action::Forget { generation } => {
                    // What init can know of: the generation's group, and its cgroup if any.
                    let pgid = self.pgids.get(&generation).copied().unwrap_or(0);
                    assert!(
                        !self.procs.iter().any(|p| (p.alive || p.zombie)
                            && (p.pgid == pgid || (self.s.cgroups && p.generation == generation))),
                        "generation {generation} forgotten with processes left: {:?}",
                        self.procs
                    );
                    assert!(self.forgotten.insert(generation), "forgotten twice");
                }
                Action::Over { code } => {
                    assert!(self.over.is_none(), "over twice");
                    if self.s.restart && !self.shutdown {
                        assert!(
                            code == 0 || self.last_spawn_failed,
                            "with --restart on-failure and no shutdown, over with status {code}"
                        );
                    }
                    self.over = Some(code);
                    // Init stops the rest: SIGTERM to every process, SIGKILL at the grace end
                    // (taken here as at once for the stubborn ones: the machine must cope).
                    for p in 0..self.procs.len() {
                        if self.procs[p].alive {
                            self.end(p, 143);
                        }
                    }
                }
                Action::Log(e) => {
                    // A hung generation is never what a failed start falls back to.
                    if let Event::Failed {
                        then: Then::Serving(old),
                        ..
                    } = &e
                    {
                        assert!(
                            self.m.generation(*old).is_some_and(|g| !g.hung),
                            "rolled back onto hung generation {old}"
                        );
                    }
                    let _ = e.to_string();
                }
            }
        }
    }

    fn check_target(&self, t: &Target) {
        assert!(
            t.pgid > 1 && t.main > 1,
            "signal to an unspawned target {t:?}"
        );
        assert!(
            !self.forgotten.contains(&t.generation),
            "action for forgotten generation {}",
            t.generation
        );
    }

    /// What a signal to the target reaches.
    fn members(&self, t: &Target) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| {
                let p = &self.procs[i];
                p.alive
                    && (p.pgid == t.pgid
                        || p.pid == t.main
                        || (self.s.cgroups && p.generation == t.generation))
            })
            .collect()
    }

    fn fork(&mut self, generation: u32, pgid: Option<i32>, setsid: bool) -> i32 {
        let pid = self.next_pid;
        self.next_pid += 1;
        let stubborn = self
            .s
            .stubborn
            .get(self.procs.len())
            .copied()
            .unwrap_or(false);
        self.procs.push(Proc {
            pid,
            pgid: if setsid { pid } else { pgid.unwrap_or(pid) },
            generation,
            setsid,
            alive: true,
            zombie: false,
            stubborn,
            code: 0,
        });
        pid
    }

    fn end(&mut self, i: usize, code: u8) {
        let p = &mut self.procs[i];
        if p.alive {
            p.alive = false;
            p.zombie = true;
            p.code = code;
        }
    }

    /// The executor's turn: reap every zombie, report groups found empty and mains gone.
    fn observe(&mut self) {
        let mut facts = Vec::new();
        for p in self.procs.iter_mut().filter(|p| p.zombie) {
            p.zombie = false;
            facts.push(Fact::Reaped {
                pid: p.pid,
                code: p.code,
                pgrp: (self.s.track == Track::Group).then_some(p.pgid),
            });
        }
        for g in self.m.generations().iter().filter(|g| g.pgid != 0) {
            let left = self.procs.iter().any(|p| {
                (p.alive || p.zombie)
                    && (p.pgid == g.pgid || (self.s.cgroups && p.generation == g.id))
            });
            if !g.group_empty && !left {
                facts.push(Fact::GroupEmpty { generation: g.id });
            }
            if !g.main_gone
                && !g.main_is_child
                && !self.procs.iter().any(|p| p.pid == g.main && p.alive)
            {
                facts.push(Fact::MainGone {
                    generation: g.id,
                    pid: g.main,
                });
            }
        }
        if !facts.is_empty() {
            self.feed(facts);
        }
        if self.m.next_deadline().is_some_and(|d| d <= self.t) {
            self.feed(vec![Fact::Tick]);
            if let Some(d) = self.m.next_deadline() {
                assert!(
                    d > self.t,
                    "a deadline still due after Tick: init would spin"
                );
            }
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Ready(sel) => {
                if let Some(g) = self.pick(sel) {
                    self.feed(vec![Fact::Ready { generation: g }]);
                }
            }
            Op::MainExits(sel, code) => {
                if let Some(g) = self.pick(sel)
                    && let Some(main) = self.m.generation(g).map(|g| g.main)
                    && let Some(i) = self.procs.iter().position(|p| p.pid == main && p.alive)
                {
                    self.end(i, code);
                }
            }
            Op::HelperExits(sel) => {
                if let Some(g) = self.pick(sel)
                    && let Some(gen_) = self.m.generation(g)
                    && let Some(i) = self
                        .procs
                        .iter()
                        .position(|p| p.generation == g && p.alive && p.pid != gen_.main)
                {
                    self.end(i, 0);
                }
            }
            Op::Fork(sel, setsid) => {
                // The child is in its parent's group (a group that emptied never comes back).
                if let Some(g) = self.pick(sel)
                    && let Some(parent) = self.procs.iter().find(|p| p.generation == g && p.alive)
                {
                    let pgid = parent.pgid;
                    self.fork(g, Some(pgid), setsid);
                }
            }
            Op::Advance(ms) => self.t += Duration::from_millis(u64::from(ms)),
            Op::Trigger(wait) => {
                let waiter = wait.then(|| {
                    self.next_waiter += 1;
                    self.next_waiter
                });
                self.feed(vec![Fact::Trigger { waiter }]);
            }
            Op::Shutdown => {
                self.shutdown = true;
                // Init forwards the signal to every generation's group first.
                let targets: Vec<Target> = self
                    .m
                    .generations()
                    .iter()
                    .filter(|g| g.pgid > 1)
                    .map(|g| g.target())
                    .collect();
                for t in targets {
                    for p in self.members(&t) {
                        if !self.procs[p].stubborn {
                            self.end(p, 143);
                        }
                    }
                }
                self.feed(vec![Fact::Shutdown]);
            }
            Op::Probe(sel, ok) => {
                if let Some(g) = self.pick(sel)
                    && self.m.generation(g).is_some_and(|g| g.probing)
                {
                    self.feed(vec![Fact::ProbeDone { generation: g, ok }]);
                }
            }
            Op::NamePid(sel, psel, file) => {
                if let Some(g) = self.pick(sel) {
                    let live: Vec<&Proc> = self.procs.iter().filter(|p| p.alive).collect();
                    if let Some(p) = (!live.is_empty()).then(|| live[psel as usize % live.len()]) {
                        let owner = (!p.setsid || self.s.cgroups).then_some(p.generation);
                        let fact = Fact::MainPid {
                            generation: g,
                            pid: p.pid,
                            source: if file {
                                PidSource::PidFile
                            } else {
                                PidSource::MainPid
                            },
                            owner,
                            child: false,
                        };
                        self.feed(vec![fact]);
                    }
                }
            }
            Op::Ping(sel, kind) => {
                if let Some(g) = self.pick(sel) {
                    let ping = match kind {
                        0 => Ping::Alive,
                        1 => Ping::Trigger,
                        2 => Ping::Interval(Duration::from_millis(700)),
                        _ => Ping::Interval(Duration::ZERO),
                    };
                    self.feed(vec![Fact::Watchdog {
                        generation: g,
                        ping,
                    }]);
                }
            }
            Op::ReloadInPlace(wait) => {
                let waiter = wait.then(|| {
                    self.next_waiter += 1;
                    self.next_waiter
                });
                self.feed(vec![Fact::ReloadInPlace { waiter }]);
            }
            Op::Reloading(sel) => {
                if let Some(g) = self.pick(sel) {
                    self.feed(vec![Fact::Reloading { generation: g }]);
                }
            }
            Op::Extend(sel, secs) => {
                if let Some(g) = self.pick(sel) {
                    self.feed(vec![Fact::Extend {
                        generation: g,
                        by: Duration::from_secs(u64::from(secs)),
                    }]);
                }
            }
        }
        self.observe();
        self.check();
    }

    /// Promises that hold after every step.
    fn check(&mut self) {
        let gens = self.m.generations();
        let serving = gens.iter().filter(|g| g.state == State::Serving).count();
        assert!(serving <= 1, "{serving} generations serving");
        for g in gens.iter().filter(|g| g.state == State::Serving) {
            assert!(
                g.watchdog_at.is_none_or(|w| w > self.t),
                "generation {} past its watchdog deadline and not declared hung",
                g.id
            );
        }
        for g in gens {
            let before = self.seen.insert(g.id, g.state);
            if let Some(b) = before {
                let ok = match b {
                    State::Starting => true,
                    State::Serving => g.state != State::Starting,
                    s => g.state == s,
                };
                assert!(ok, "generation {} went from {b:?} to {:?}", g.id, g.state);
            }
            // SIGKILL no later than its deadline: once a tick at or past the deadline ran.
            if matches!(g.state, State::Draining | State::Exited | State::Failed)
                && let Some(k) = g.kill_at
            {
                assert!(
                    k > self.t || self.killed.contains(&g.id),
                    "generation {} past its kill deadline without SIGKILL",
                    g.id
                );
            }
            // Every generation on its way out with processes left was told to stop, and has a
            // SIGKILL deadline or had its SIGKILL (at a shutdown or the end, init's grace
            // period does that for the whole tree).
            if !g.state.live() {
                let left = self.procs.iter().any(|p| {
                    p.alive && (p.pgid == g.pgid || (self.s.cgroups && p.generation == g.id))
                });
                let told = self.stopped.contains(&g.id) || self.killed.contains(&g.id);
                let dealt = g.kill_at.is_some() || self.killed.contains(&g.id);
                assert!(
                    !left || self.over.is_some() || self.shutdown || (told && dealt),
                    "generation {} ({:?}) has processes left and no stop or SIGKILL due\n{:?}\n{:?}\n{}",
                    g.id,
                    g.state,
                    g,
                    self.procs,
                    self.trace.join("\n")
                );
            }
            assert!(
                !self.forgotten.contains(&g.id),
                "a forgotten record is back"
            );
        }
    }

    /// After the sequence: a shutdown, init's grace kill of everything, and time: every waiter
    /// got exactly one answer, every record is gone, and it is over.
    fn finish(&mut self) {
        if !self.shutdown {
            self.step(&Op::Shutdown);
        }
        for _ in 0..4 {
            for i in 0..self.procs.len() {
                self.end(i, 137);
            }
            self.t += Duration::from_secs(60);
            self.observe();
        }
        for w in 2..=self.next_waiter {
            assert_eq!(self.replies.get(&w), Some(&1), "waiter {w} got no answer");
        }
        assert!(
            self.over.is_some(),
            "not over after shutdown and everything gone"
        );
        assert!(
            self.m.generations().is_empty(),
            "records left: {:?}",
            self.gen_ids()
        );
    }
}

/// Thousands of random worlds (HANDOFF_MODEL_CASES, 3000 by default), each up to 80 steps.
#[test]
fn the_machine_keeps_its_promises() {
    use proptest::test_runner::{Config, TestRunner};
    let cases = std::env::var("HANDOFF_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 20_000,
        failure_persistence: None,
        ..Config::default()
    });
    let ops = std::cell::Cell::new(0u64);
    let actions = std::cell::Cell::new(0u64);
    let strategy = (setup(), prop::collection::vec(op(), 1..80));
    let result = runner.run(&strategy, |(s, seq)| {
        let mut w = World::new(s);
        let start = w.m.start(w.t);
        w.run(start);
        w.observe();
        for op in &seq {
            w.step(op);
        }
        w.finish();
        ops.set(ops.get() + seq.len() as u64);
        actions.set(actions.get() + w.steps);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "model: {cases} cases, {} steps, {} actions checked",
        ops.get(),
        actions.get()
    );
}
