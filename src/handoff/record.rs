//! The generation record: everything about one generation's life, owned by the machine.

use crate::config::Track;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Spawned (or being spawned), not ready yet.
    Starting,
    /// The service. At most one generation serves at a time.
    Serving,
    /// Replaced by a newer generation: it got the stop signal and SIGKILL follows at its deadline.
    Draining,
    /// Failed to start while an older generation served: stopped like a drained generation.
    Failed,
    /// Its tracked processes ended while it was the service (or the only candidate for it);
    /// anything it left behind is being stopped.
    Exited,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Serving => "serving",
            State::Draining => "draining",
            State::Failed => "failed",
            State::Exited => "exited",
        }
    }

    /// Starting or serving: the generation is, or is about to become, the service.
    pub fn live(self) -> bool {
        matches!(self, State::Starting | State::Serving)
    }
}

/// Why a generation was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    First,
    /// A trigger, with a serving generation to hand over from.
    Handoff,
    /// After a crash (`--restart on-failure`), or a trigger while a restart was waiting.
    Restart,
    /// The serving generation missed its watchdog keep-alive (or sent WATCHDOG=trigger).
    Watchdog,
}

impl Start {
    pub fn name(self) -> &'static str {
        match self {
            Start::First => "first",
            Start::Handoff => "handoff",
            Start::Restart => "restart",
            Start::Watchdog => "watchdog",
        }
    }
}

/// Where a generation's main pid came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidSource {
    Spawned,
    PidFile,
    MainPid,
}

#[derive(Clone, Debug)]
pub struct Gen {
    pub id: u32,
    pub start: Start,
    pub state: State,
    /// Its process group: the spawned child's pid. 0 until spawned.
    pub pgid: i32,
    /// The process it is tracked by: the spawned child, or what the pid file or MAINPID= named.
    pub main: i32,
    pub main_source: PidSource,
    /// The main pid is init's own child, so its end arrives as a reap (no /proc lookup needed).
    pub main_is_child: bool,
    pub main_gone: bool,
    pub main_code: Option<u8>,
    /// The status of the last other member of its group reaped (the service a start script ran
    /// without exec outlives the shell: with `--track group` its status is the generation's).
    pub member_code: Option<u8>,
    /// Nothing of it is left but possibly the main pid: its process group (and its cgroup where
    /// init made one) has no live or unreaped member.
    pub group_empty: bool,
    pub started: Instant,
    pub ready_at: Option<Instant>,
    /// Starting: the readiness deadline.
    pub ready_deadline: Option<Instant>,
    /// `delay:` readiness: when it counts as ready.
    pub ready_after: Option<Instant>,
    pub probe_at: Option<Instant>,
    pub probing: bool,
    /// Draining, Failed, or Exited with processes left: when they get SIGKILL.
    pub kill_at: Option<Instant>,
    pub killed: bool,
    /// The last STATUS= it sent.
    pub status: Option<String>,
    /// Its watchdog interval (`--watchdog`, or what it set with WATCHDOG_USEC=); None: off.
    pub watchdog: Option<Duration>,
    /// Serving with a watchdog: when it is declared hung without a keep-alive (WATCHDOG=1).
    pub watchdog_at: Option<Instant>,
    pub last_keepalive: Option<Instant>,
    /// Declared hung by its watchdog: it is replaced, and gets SIGABRT instead of the stop signal.
    pub hung: bool,
    /// An in-place reload (`--reload-signal`) under way: its deadline, and whether RELOADING=1
    /// has been seen since the signal.
    pub reload_deadline: Option<Instant>,
    pub reloading: bool,
}

impl Gen {
    pub fn target(&self) -> Target {
        Target {
            generation: self.id,
            pgid: self.pgid,
            main: self.main,
        }
    }

    /// Whether the processes it is tracked by have ended.
    pub(super) fn tracked_ended(&self, track: Track) -> bool {
        self.pgid != 0
            && self.main_gone
            && (track == Track::Main || self.main_source != PidSource::Spawned || self.group_empty)
    }

    /// Nothing of it is left.
    pub(super) fn gone(&self) -> bool {
        self.main_gone && self.group_empty
    }

    /// Its status: the main process's, or with `--track group` the last member's.
    pub(super) fn code(&self, track: Track) -> u8 {
        let main = self.main_code.unwrap_or(0);
        match track {
            Track::Group if self.main_source == PidSource::Spawned => {
                self.member_code.unwrap_or(main)
            }
            _ => main,
        }
    }
}

/// Whom a signal or a kill is for: the pids travel with the action, so executing it never
/// depends on a record that a later fact may drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub generation: u32,
    pub pgid: i32,
    pub main: i32,
}
