//! What the state machine tells the executor to log: one value per lifecycle event, with its
//! level and its text. The machine only returns these; `init` writes them.

use super::{PidSource, Start, State};
use crate::log::{Level, dur};
use std::fmt;
use std::time::Duration;

/// Why a new generation did not become the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its tracked processes ended, with this status, before it was ready.
    Exited(u8),
    /// Not ready within the readiness timeout.
    NotReady(Duration),
    /// The command could not be started (exec failed: 126/127).
    Spawn { error: String, code: u8 },
}

impl Why {
    /// The status it stands for, as init would exit with it.
    pub fn code(&self) -> u8 {
        match self {
            Why::Exited(c) => *c,
            Why::NotReady(_) => 1,
            Why::Spawn { code, .. } => *code,
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Exited(c) => write!(f, "exited with status {c} before it was ready"),
            Why::NotReady(t) => write!(f, "not ready within {}", dur(*t)),
            Why::Spawn { error, .. } => f.write_str(error),
        }
    }
}

/// What happens after a new generation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Then {
    /// Rolled back: this older generation keeps serving.
    Serving(u32),
    /// Nothing older serves: restarting after this backoff (`--restart on-failure`).
    Restart(Duration),
    /// Nothing older serves and nothing restarts it.
    NoFallback,
}

impl fmt::Display for Then {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Then::Serving(old) => write!(f, "generation {old} keeps serving"),
            Then::Restart(after) => write!(f, "no older generation: restarting in {}", dur(*after)),
            Then::NoFallback => f.write_str("no older generation to fall back to"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A generation is about to be spawned, and why.
    Starting {
        generation: u32,
        start: Start,
    },
    Started {
        generation: u32,
        pid: i32,
    },
    /// A trigger arrived while `starting` starts: it will start one more afterwards.
    Queued {
        starting: u32,
    },
    Ready {
        generation: u32,
        pid: i32,
    },
    /// The only candidate was not ready in time: nothing older to fall back to, so it serves.
    ServingUnready {
        generation: u32,
        timeout: Duration,
    },
    Draining {
        generation: u32,
        pid: i32,
        kill_in: Duration,
        hung: bool,
    },
    /// The serving generation missed its keep-alive (or sent WATCHDOG=trigger).
    WatchdogFired {
        generation: u32,
        trigger: bool,
    },
    /// A hung generation whose replacement failed: SIGABRT, SIGKILL in `kill_in`.
    HungAborted {
        generation: u32,
        kill_in: Duration,
    },
    /// `--reload-signal` (`signal`) sent for an in-place reload; the service's RELOADING=1 that
    /// follows is part of this event, not one of its own.
    Reloading {
        generation: u32,
        signal: i32,
    },
    Reloaded {
        generation: u32,
    },
    ReloadFailed {
        generation: u32,
        timeout: Duration,
    },
    HandoffDone {
        generation: u32,
    },
    /// A new generation failed to become the service.
    Failed {
        generation: u32,
        why: Why,
        then: Then,
    },
    /// Its tracked processes ended.
    Ended {
        generation: u32,
        pid: i32,
        code: u8,
        was: State,
    },
    /// A serving generation ended with a failure and is restarted after `after`.
    Crashed {
        generation: u32,
        code: u8,
        after: Duration,
    },
    /// What an ended generation left behind got the stop signal; SIGKILL follows in `kill_in`.
    StoppingLeftovers {
        generation: u32,
        kill_in: Duration,
    },
    /// Its deadline passed with processes left: SIGKILL to all of them.
    KillTimeout {
        generation: u32,
        was: State,
    },
    MainPid {
        generation: u32,
        pid: i32,
        source: PidSource,
    },
    MainPidRefused {
        generation: u32,
        pid: i32,
    },
    /// A member of a generation's group other than its main process ended.
    MemberExited {
        generation: u32,
        pid: i32,
        code: u8,
    },
    /// A process that belongs to no generation was reaped (an orphan, or a probe's child).
    Orphan {
        pid: i32,
        code: u8,
    },
    /// Nothing of the generation is left; its record is dropped.
    Gone {
        generation: u32,
    },
}

impl Event {
    pub fn level(&self) -> Level {
        match self {
            Event::ServingUnready { .. }
            | Event::Failed { .. }
            | Event::Crashed { .. }
            | Event::KillTimeout { .. }
            | Event::WatchdogFired { .. }
            | Event::HungAborted { .. }
            | Event::ReloadFailed { .. }
            | Event::MainPidRefused { .. } => Level::Warn,
            Event::MemberExited { .. } | Event::Orphan { .. } | Event::Gone { .. } => Level::Debug,
            Event::Starting {
                start: Start::First,
                ..
            } => Level::Debug,
            _ => Level::Info,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Starting { generation, start } => match start {
                Start::First => write!(f, "starting generation {generation}"),
                Start::Handoff => write!(f, "handoff: starting generation {generation}"),
                Start::Restart => write!(f, "restarting: generation {generation}"),
                Start::Watchdog => write!(f, "watchdog: starting generation {generation}"),
            },
            Event::Started { generation, pid } => {
                write!(f, "generation {generation}: started pid {pid}")
            }
            Event::Queued { starting } => {
                write!(
                    f,
                    "handoff requested while generation {starting} starts: queued"
                )
            }
            Event::Ready { generation, pid } => {
                write!(f, "generation {generation}: ready (pid {pid})")
            }
            Event::ServingUnready {
                generation,
                timeout,
            } => write!(
                f,
                "generation {generation}: not ready within {}; serving anyway (nothing older to fall back to)",
                dur(*timeout)
            ),
            Event::Draining {
                generation,
                pid,
                kill_in,
                hung,
            } => write!(
                f,
                "generation {generation}: {} (pid {pid}), SIGKILL in {}",
                if *hung { "hung: SIGABRT" } else { "draining" },
                dur(*kill_in)
            ),
            Event::WatchdogFired {
                generation,
                trigger,
            } => write!(
                f,
                "generation {generation}: {}; starting its replacement",
                if *trigger {
                    "WATCHDOG=trigger"
                } else {
                    "watchdog timeout (no WATCHDOG=1)"
                }
            ),
            Event::HungAborted {
                generation,
                kill_in,
            } => write!(
                f,
                "generation {generation}: hung and its replacement failed: SIGABRT, SIGKILL in {}",
                dur(*kill_in)
            ),
            Event::Reloading { generation, signal } => write!(
                f,
                "generation {generation}: reloading in place (sent {})",
                crate::signals::name(*signal)
            ),
            Event::Reloaded { generation } => write!(f, "generation {generation}: reloaded"),
            Event::ReloadFailed {
                generation,
                timeout,
            } => write!(
                f,
                "generation {generation}: not reloaded within {}",
                dur(*timeout)
            ),
            Event::HandoffDone { generation } => {
                write!(f, "handoff to generation {generation} done")
            }
            Event::Failed {
                generation,
                why,
                then,
            } => write!(f, "generation {generation} failed: {why}; {then}"),
            Event::Ended {
                generation,
                pid,
                code,
                was,
            } => write!(
                f,
                "generation {generation}: ended with status {code} (pid {pid}, was {})",
                was.name()
            ),
            Event::Crashed {
                generation,
                code,
                after,
            } => write!(
                f,
                "generation {generation} crashed (status {code}); restarting in {}",
                dur(*after)
            ),
            Event::StoppingLeftovers {
                generation,
                kill_in,
            } => write!(
                f,
                "generation {generation}: stopping the processes it left; SIGKILL in {}",
                dur(*kill_in)
            ),
            Event::KillTimeout { generation, was } => write!(
                f,
                "generation {generation}: {} timeout; SIGKILL to what is left of it",
                if *was == State::Draining {
                    "drain"
                } else {
                    "stop"
                }
            ),
            Event::MainPid {
                generation,
                pid,
                source,
            } => match source {
                PidSource::PidFile => {
                    write!(
                        f,
                        "generation {generation}: following pid {pid} from the pid file"
                    )
                }
                _ => write!(
                    f,
                    "generation {generation}: main pid is now {pid} (MAINPID)"
                ),
            },
            Event::MainPidRefused { generation, pid } => write!(
                f,
                "generation {generation}: ignored MAINPID={pid}: not a live process of the generation"
            ),
            Event::MemberExited {
                generation,
                pid,
                code,
            } => write!(
                f,
                "generation {generation}: pid {pid} exited with status {code}"
            ),
            Event::Orphan { pid, code } => write!(f, "reaped zombie pid {pid} (status {code})"),
            Event::Gone { generation } => write!(f, "generation {generation}: no process left"),
        }
    }
}
