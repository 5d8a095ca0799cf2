//! The machine's rules, one path at a time, without a process.

use super::*;

const TERM: i32 = 15;

fn settings(ready: ReadyKind) -> Settings {
    Settings {
        ready,
        ready_timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(3),
        stop_signal: TERM,
        restart_on_failure: false,
        track: Track::Main,
        watchdog: None,
        reload_signal: None,
    }
}

/// A machine and a clock the tests move by hand.
struct Rig {
    m: Machine,
    t: Instant,
}

impl Rig {
    fn new(s: Settings) -> Rig {
        Rig {
            m: Machine::new(s),
            t: Instant::now(),
        }
    }

    /// Actions for `fact`, without the log events.
    fn on(&mut self, fact: Fact) -> Vec<Action> {
        self.m
            .handle(fact, self.t)
            .into_iter()
            .filter(|a| !matches!(a, Action::Log(_)))
            .collect()
    }

    /// Everything for `fact`, log events too.
    fn all(&mut self, fact: Fact) -> Vec<Action> {
        self.m.handle(fact, self.t)
    }

    fn after(&mut self, d: Duration) -> Vec<Action> {
        self.t += d;
        self.on(Fact::Tick)
    }

    fn spawned(&mut self, generation: u32, pid: i32) -> Vec<Action> {
        self.on(Fact::Spawned { generation, pid })
    }

    fn ready(&mut self, generation: u32) -> Vec<Action> {
        self.on(Fact::Ready { generation })
    }

    fn reaped(&mut self, pid: i32, code: u8) -> Vec<Action> {
        self.on(Fact::Reaped {
            pid,
            code,
            pgrp: None,
        })
    }

    /// The generation's main process `pid` exits with `code`, and nothing of it is left.
    fn exits(&mut self, generation: u32, pid: i32, code: u8) -> Vec<Action> {
        let facts = [
            Fact::Reaped {
                pid,
                code,
                pgrp: None,
            },
            Fact::GroupEmpty { generation },
        ];
        self.m
            .handle_all(facts, self.t)
            .into_iter()
            .filter(|a| !matches!(a, Action::Log(_)))
            .collect()
    }

    fn empty(&mut self, generation: u32) -> Vec<Action> {
        self.on(Fact::GroupEmpty { generation })
    }

    fn trigger(&mut self, waiter: Option<Waiter>) -> Vec<Action> {
        self.on(Fact::Trigger { waiter })
    }

    fn state(&self, generation: u32) -> Option<State> {
        self.m.generation(generation).map(|g| g.state)
    }

    /// Generation 1 started as pid 100 and ready.
    fn serving(s: Settings) -> Rig {
        let mut r = Rig::new(s);
        let t = r.t;
        let start: Vec<Action> =
            r.m.start(t)
                .into_iter()
                .filter(|a| !matches!(a, Action::Log(_)))
                .collect();
        assert_eq!(start, vec![Action::Spawn { generation: 1 }]);
        r.spawned(1, 100);
        assert_eq!(r.ready(1), vec![Action::FirstReady { generation: 1 }]);
        r
    }
}

fn target(generation: u32, pid: i32) -> Target {
    Target {
        generation,
        pgid: pid,
        main: pid,
    }
}

fn logs(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(e) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn plain_mode_is_ready_at_once_and_over_when_it_ends() {
    let mut r = Rig::new(settings(ReadyKind::Immediately));
    r.m.start(r.t);
    assert_eq!(
        r.spawned(1, 100),
        vec![Action::FirstReady { generation: 1 }]
    );
    assert_eq!(r.reaped(100, 3), vec![Action::Over { code: 3 }]);
    // What it left behind is init's shutdown's business; the record goes once it is empty.
    assert_eq!(r.empty(1), vec![Action::Forget { generation: 1 }]);
}

#[test]
fn handoff_drains_the_old_generation_after_the_new_one_is_ready() {
    let mut r = Rig::serving(settings(ReadyKind::Told));
    assert_eq!(r.trigger(Some(7)), vec![Action::Spawn { generation: 2 }]);
    assert!(r.spawned(2, 200).is_empty());
    assert_eq!(
        r.state(1),
        Some(State::Serving),
        "old serves until new is ready"
    );
    assert_eq!(
        r.ready(2),
        vec![
            Action::Signal {
                target: target(1, 100),
                sig: TERM
            },
            Action::Reply {
                waiter: 7,
                result: Ok((2, 200))
            }
        ]
    );
    assert_eq!(r.state(1), Some(State::Draining));
    assert_eq!(r.m.handoffs_done, 1);
    assert_eq!(r.m.next_deadline(), Some(r.t + Duration::from_secs(3)));
    assert_eq!(
        r.after(Duration::from_secs(3)),
        vec![Action::Kill {
            target: target(1, 100)
        }]
    );
    assert!(
        r.reaped(100, 137).is_empty(),
        "a drained generation ending is not the end"
    );
    assert_eq!(
        r.state(1),
        Some(State::Draining),
        "kept until its group is empty"
    );
    assert_eq!(r.empty(1), vec![Action::Forget { generation: 1 }]);
    assert_eq!(r.reaped(200, 0), vec![Action::Over { code: 0 }]);
}

/// Issue case 1: the helper a failed generation started in the background is killed with it,
/// and the record stays until that kill has happened and the group is empty.
#[test]
fn failed_new_generation_is_killed_whole_and_kept_until_its_group_is_empty() {
    let mut r = Rig::serving(settings(ReadyKind::Told));
    r.trigger(Some(1));
    r.spawned(2, 200);
    let out = r.reaped(200, 3);
    assert_eq!(
        out[0],
        Action::Signal {
            target: target(2, 200),
            sig: TERM
        },
        "the group (and the helper in it) is stopped"
    );
    assert!(
        matches!(&out[1], Action::Reply { waiter: 1, result: Err(e) } if e.contains("status 3") && e.contains("generation 1 keeps serving"))
    );
    assert_eq!(
        r.state(2),
        Some(State::Failed),
        "kept: its helper still runs"
    );
    assert_eq!(r.state(1), Some(State::Serving));
    assert_eq!(r.m.handoffs_failed, 1);
    // The helper ignores SIGTERM: SIGKILL at the drain deadline.
    assert_eq!(
        r.after(Duration::from_secs(3)),
        vec![Action::Kill {
            target: target(2, 200)
        }]
    );
    assert_eq!(r.empty(2), vec![Action::Forget { generation: 2 }]);
}

#[test]
fn new_generation_not_ready_in_time_is_killed_and_old_keeps_serving() {
    let mut r = Rig::serving(settings(ReadyKind::Told));
    r.trigger(None);
    r.spawned(2, 200);
    assert_eq!(r.m.next_deadline(), Some(r.t + Duration::from_secs(5)));
    assert_eq!(
        r.after(Duration::from_secs(5)),
        vec![Action::Signal {
            target: target(2, 200),
            sig: TERM
        }]
    );
    assert_eq!(r.state(2), Some(State::Failed));
    assert!(r.reaped(200, 143).is_empty());
    assert_eq!(r.empty(2), vec![Action::Forget { generation: 2 }]);
    assert_eq!(r.state(1), Some(State::Serving));
    // EXTEND_TIMEOUT_USEC pushes the deadline of a starting generation, each message by at
    // most the ready timeout (5 s) from when it arrives.
    r.trigger(None);
    r.spawned(3, 300);
    assert!(r.after(Duration::from_secs(3)).is_empty());
    r.on(Fact::Extend {
        generation: 3,
        by: Duration::from_secs(60),
    });
    assert_eq!(r.m.next_deadline(), Some(r.t + Duration::from_secs(5)));
    assert!(r.after(Duration::from_secs(4)).is_empty());
    r.on(Fact::Extend {
        generation: 3,
        by: Duration::from_micros(u64::MAX),
    });
    assert_eq!(r.m.next_deadline(), Some(r.t + Duration::from_secs(5)));
    assert!(!r.after(Duration::from_secs(5)).is_empty(), "rolled back");
}

#[test]
fn triggers_during_a_handoff_coalesce_into_one_more() {
    let mut r = Rig::serving(settings(ReadyKind::Told));
    r.trigger(Some(1));
    for w in 2..100 {
        assert!(r.trigger(Some(w)).is_empty());
    }
    r.spawned(2, 200);
    let out = r.ready(2);
    assert!(out.contains(&Action::Reply {
        waiter: 1,
        result: Ok((2, 200))
    }));
    assert_eq!(out.last(), Some(&Action::Spawn { generation: 3 }));
    r.spawned(3, 300);
    let out = r.ready(3);
    let replies = out
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Reply {
                    result: Ok((3, 300)),
                    ..
                }
            )
        })
        .count();
    assert_eq!(replies, 98);
    assert!(!out.iter().any(|a| matches!(a, Action::Spawn { .. })));
    assert_eq!(r.m.handoffs_done, 2);
}

/// Issue case 6: a shutdown during a handoff is a shutdown, not a failed handoff.
#[test]
fn shutdown_during_a_handoff_is_not_a_failure_and_keeps_the_serving_status() {
    let mut r = Rig::serving(settings(ReadyKind::Told));
    r.trigger(Some(9));
    r.spawned(2, 200);
    assert_eq!(
        r.on(Fact::Shutdown),
        vec![Action::Reply {
            waiter: 9,
            result: Err("init is shutting down".into())
        }]
    );
    assert!(r.reaped(100, 0).is_empty());
    assert!(matches!(
        r.trigger(Some(4))[..],
        [Action::Reply {
            waiter: 4,
            result: Err(_)
        }]
    ));
    let out = r.all(Fact::Reaped {
        pid: 200,
        code: 143,
        pgrp: None,
    });
    assert!(out.contains(&Action::Over { code: 0 }), "{out:?}");
    assert!(!out.iter().any(|a| matches!(a, Action::Kill { .. })));
    assert!(
        !logs(&out).iter().any(|l| l.contains("failed")),
        "{:?}",
        logs(&out)
    );
    assert_eq!(r.m.handoffs_failed, 0);
    assert!(
        r.m.next_deadline().is_none(),
        "no readiness deadline after shutdown"
    );
}

#[test]
fn crash_without_restart_is_over_with_its_code() {
    let mut r = Rig::serving(settings(ReadyKind::Told));
    assert_eq!(r.reaped(100, 139), vec![Action::Over { code: 139 }]);
}

#[test]
fn crash_with_restart_on_failure_backs_off_and_clean_exit_ends() {
    let mut r = Rig::serving(Settings {
        restart_on_failure: true,
        ..settings(ReadyKind::Told)
    });
    assert_eq!(r.exits(1, 100, 1), vec![Action::Forget { generation: 1 }]);
    assert_eq!(r.m.next_deadline(), Some(r.t + backoff(0)));
    assert_eq!(r.after(backoff(0)), vec![Action::Spawn { generation: 2 }]);
    r.spawned(2, 200);
    assert_eq!(r.exits(2, 200, 1), vec![Action::Forget { generation: 2 }]);
    assert_eq!(r.m.next_deadline(), Some(r.t + backoff(1)));
    assert_eq!(backoff(1), Duration::from_millis(200));
    assert_eq!(backoff(30), Duration::from_secs(10));
    r.after(backoff(1));
    r.spawned(3, 300);
    r.ready(3);
    assert_eq!(r.reaped(300, 0), vec![Action::Over { code: 0 }]);
}

/// Issue case 2: a reload during the restart backoff starts the restart now; when that fails
/// too, it is a crash like any other, and init keeps restarting instead of exiting.
#[test]
fn reload_during_restart_backoff_restarts_now_and_a_failure_backs_off_again() {
    let mut r = Rig::serving(Settings {
        restart_on_failure: true,
        ..settings(ReadyKind::Told)
    });
    r.reaped(100, 1);
    assert_eq!(r.trigger(Some(5)), vec![Action::Spawn { generation: 2 }]);
    assert_eq!(r.m.generation(2).map(|g| g.start), Some(Start::Restart));
    r.spawned(2, 200);
    let out = r.all(Fact::Reaped {
        pid: 200,
        code: 1,
        pgrp: None,
    });
    assert!(
        !out.iter().any(|a| matches!(a, Action::Over { .. })),
        "{out:?}"
    );
    assert!(
        out.iter().any(|a| matches!(a, Action::Reply { waiter: 5, result: Err(e) } if e.contains("no older generation: restarting in 200ms"))),
        "{out:?}"
    );
    assert!(
        logs(&out)
            .iter()
            .any(|l| l == "generation 2 failed: exited with status 1 before it was ready; no older generation: restarting in 200ms"),
        "{:?}",
        logs(&out)
    );
    assert_eq!(r.after(backoff(1)), vec![Action::Spawn { generation: 3 }]);
}

#[test]
fn first_generation_not_ready_in_time_serves_anyway() {
    let mut r = Rig::new(settings(ReadyKind::Told));
    r.m.start(r.t);
    r.spawned(1, 100);
    let out = r.after(Duration::from_secs(5));
    assert_eq!(out, vec![Action::FirstReady { generation: 1 }]);
    assert_eq!(r.state(1), Some(State::Serving));
}

#[test]
fn delay_and_probe_readiness() {
    let mut r = Rig::new(settings(ReadyKind::Delay(Duration::from_millis(500))));
    r.m.start(r.t);
    r.spawned(1, 100);
    assert_eq!(r.m.next_deadline(), Some(r.t + Duration::from_millis(500)));
    assert_eq!(
        r.after(Duration::from_millis(500)),
        vec![Action::FirstReady { generation: 1 }]
    );

    let mut r = Rig::new(settings(ReadyKind::Probe(Duration::from_millis(100))));
    r.m.start(r.t);
    r.spawned(1, 100);
    assert_eq!(
        r.after(Duration::from_millis(100)),
        vec![Action::Probe {
            generation: 1,
            main: 100
        }]
    );
    assert!(r.after(Duration::ZERO).is_empty(), "one probe at a time");
    assert!(
        r.on(Fact::ProbeDone {
            generation: 1,
            ok: false
        })
        .is_empty()
    );
    assert_eq!(r.m.next_deadline(), Some(r.t + Duration::from_millis(100)));
    r.after(Duration::from_millis(100));
    assert_eq!(
        r.on(Fact::ProbeDone {
            generation: 1,
            ok: true
        }),
        vec![Action::FirstReady { generation: 1 }]
    );
}

#[test]
fn exec_failure_of_the_first_generation_is_over_with_its_code() {
    let mut r = Rig::new(settings(ReadyKind::Told));
    r.m.start(r.t);
    let out = r.on(Fact::SpawnFailed {
        generation: 1,
        error: "not found".into(),
        code: 127,
    });
    assert_eq!(
        out,
        vec![Action::Forget { generation: 1 }, Action::Over { code: 127 }]
    );
    let mut r = Rig::serving(settings(ReadyKind::Told));
    r.trigger(Some(2));
    let out = r.on(Fact::SpawnFailed {
        generation: 2,
        error: "not found".into(),
        code: 127,
    });
    assert!(
        matches!(
            &out[..],
            [
                Action::Reply {
                    waiter: 2,
                    result: Err(_)
                },
                Action::Forget { generation: 2 }
            ]
        ),
        "{out:?}"
    );
    assert_eq!(r.state(1), Some(State::Serving));
}

/// Issue case 4: right after a handoff the pid file still names the old generation's process:
/// the new generation must not adopt it.
#[test]
fn pid_file_naming_another_generations_process_is_not_followed() {
    let mut r = Rig::serving(settings(ReadyKind::Told));
    r.trigger(None);
    r.spawned(2, 200);
    let pidfile = |pid, owner| Fact::MainPid {
        generation: 2,
        pid,
        source: PidSource::PidFile,
        owner,
        child: true,
    };
    r.on(pidfile(100, Some(1)));
    assert_eq!(r.m.generation(2).unwrap().main, 200);
    // A daemon that left every trace (setsid, parent gone) is the newest generation's.
    r.on(pidfile(250, None));
    assert_eq!(r.m.generation(2).unwrap().main, 250);
    // Now the spawned child's exit is a member's, not the end of the generation.
    r.reaped(200, 0);
    assert_eq!(r.state(2), Some(State::Starting));
    // Only the newest generation follows the pid file.
    r.on(Fact::MainPid {
        generation: 1,
        pid: 260,
        source: PidSource::PidFile,
        owner: None,
        child: true,
    });
    assert_eq!(r.m.generation(1).unwrap().main, 100);
    // MAINPID= needs a process that is the generation's own.
    let out = r.all(Fact::MainPid {
        generation: 2,
        pid: 1,
        source: PidSource::MainPid,
        owner: None,
        child: false,
    });
    assert!(logs(&out).iter().any(|l| l.contains("ignored MAINPID=1")));
}

/// Issue case 5's rule: a drained generation is gone only when nothing of it is left, and
/// until then its deadline's SIGKILL still reaches it.
#[test]
fn a_drained_generation_lives_until_its_group_is_empty() {
    let mut r = Rig::serving(settings(ReadyKind::Told));
    r.trigger(None);
    r.spawned(2, 200);
    r.ready(2);
    r.reaped(100, 0);
    assert_eq!(r.state(1), Some(State::Draining));
    assert_eq!(
        r.after(Duration::from_secs(3)),
        vec![Action::Kill {
            target: target(1, 100)
        }]
    );
    assert_eq!(r.empty(1), vec![Action::Forget { generation: 1 }]);
    assert!(r.m.generation(1).is_none());
}

/// A serving generation's main exits while it left processes behind, and a restart follows:
/// the leftovers get the stop signal and SIGKILL at the drain deadline.
#[test]
fn leftovers_of_a_crashed_generation_are_stopped_before_the_restart_serves() {
    let mut r = Rig::serving(Settings {
        restart_on_failure: true,
        ..settings(ReadyKind::Told)
    });
    assert_eq!(
        r.reaped(100, 2),
        vec![Action::Signal {
            target: target(1, 100),
            sig: TERM
        }]
    );
    assert_eq!(r.state(1), Some(State::Exited));
    r.after(backoff(0));
    r.spawned(2, 200);
    assert_eq!(
        r.after(Duration::from_secs(3)),
        vec![Action::Kill {
            target: target(1, 100)
        }]
    );
}

#[test]
fn track_group_ends_when_the_group_does_with_the_last_members_status() {
    let mut r = Rig::serving(Settings {
        track: Track::Group,
        ..settings(ReadyKind::Told)
    });
    assert!(
        r.reaped(100, 143).is_empty(),
        "the shell ended, the service runs"
    );
    assert!(
        r.on(Fact::Reaped {
            pid: 101,
            code: 7,
            pgrp: Some(100)
        })
        .is_empty()
    );
    assert_eq!(
        r.empty(1),
        vec![Action::Forget { generation: 1 }, Action::Over { code: 7 }]
    );
}

#[test]
fn events_say_what_is_true() {
    let mut r = Rig::serving(settings(ReadyKind::Told));
    r.trigger(None);
    r.spawned(2, 200);
    let out = r.all(Fact::Reaped {
        pid: 200,
        code: 3,
        pgrp: None,
    });
    assert_eq!(
        logs(&out),
        vec![
            "generation 2: ended with status 3 (pid 200, was starting)",
            "generation 2 failed: exited with status 3 before it was ready; generation 1 keeps serving"
        ]
    );
    let out = r.all(Fact::Reaped {
        pid: 100,
        code: 9,
        pgrp: None,
    });
    assert_eq!(
        logs(&out),
        vec!["generation 1: ended with status 9 (pid 100, was serving)"]
    );
}

fn watched(every: u64) -> Settings {
    Settings {
        watchdog: Some(Duration::from_secs(every)),
        ..settings(ReadyKind::Told)
    }
}

fn ping(r: &mut Rig, generation: u32, ping: Ping) -> Vec<Action> {
    r.on(Fact::Watchdog { generation, ping })
}

/// The watchdog is armed at READY=1 (as systemd arms it when the service runs), pushed by each
/// keep-alive, re-timed by WATCHDOG_USEC=; a miss starts the replacement, and the hung one gets
/// SIGABRT once that one is ready.
#[test]
fn watchdog_keepalives_push_the_deadline_and_a_miss_replaces_the_generation() {
    let mut r = Rig::serving(watched(2));
    assert_eq!(r.m.next_deadline(), Some(r.t + Duration::from_secs(2)));
    r.t += Duration::from_millis(1500);
    assert!(ping(&mut r, 1, Ping::Alive).is_empty());
    assert_eq!(r.m.next_deadline(), Some(r.t + Duration::from_secs(2)));
    // The service asks for 5 s from now on.
    assert!(ping(&mut r, 1, Ping::Interval(Duration::from_secs(5))).is_empty());
    assert_eq!(r.m.next_deadline(), Some(r.t + Duration::from_secs(5)));
    assert!(r.after(Duration::from_millis(4999)).is_empty());
    assert_eq!(
        r.after(Duration::from_millis(1)),
        vec![Action::Spawn { generation: 2 }]
    );
    assert_eq!(r.m.watchdog_recoveries, 1);
    // A late keep-alive does not un-hang it: the replacement goes on.
    assert!(ping(&mut r, 1, Ping::Alive).is_empty());
    r.spawned(2, 200);
    assert_eq!(
        r.ready(2),
        vec![Action::Signal {
            target: target(1, 100),
            sig: SIGABRT
        }]
    );
    assert_eq!(r.state(1), Some(State::Draining));
    // Generation 2 is watched from its own READY=1.
    assert_eq!(
        r.m.generation(2).and_then(|g| g.watchdog_at),
        Some(r.t + Duration::from_secs(2))
    );
}

/// Before READY=1 nothing is armed; a trigger while starting does nothing, and none after a
/// shutdown signal (nothing is replaced then).
#[test]
fn watchdog_is_not_armed_before_ready_nor_after_shutdown() {
    let mut r = Rig::new(watched(1));
    r.m.start(r.t);
    r.spawned(1, 100);
    assert!(ping(&mut r, 1, Ping::Trigger).is_empty());
    assert!(r.after(Duration::from_secs(3)).is_empty());
    assert_eq!(r.m.watchdog_recoveries, 0);
    r.ready(1);
    r.on(Fact::Shutdown);
    assert!(ping(&mut r, 1, Ping::Trigger).is_empty());
    assert_eq!(r.m.watchdog_recoveries, 0);
}
