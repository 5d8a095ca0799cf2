//! Logging to stderr that can never panic or kill init.
//!
//! Every line is `handoff-init[PID]: message`, written with one `write(2)` so lines from init and
//! its children do not interleave mid-line. Errors (closed stderr, EPIPE) are ignored: init must
//! keep reaping even when nobody reads its logs. SIGPIPE is blocked in init, and a self-inflicted
//! SIGPIPE is filtered out by the signal loop, so a broken pipe costs one failed write, nothing more.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// `base` moved up by each `-v` and down by each `-q`. A plain init starts at warn (quiet, as
/// tini and dumb-init are), the supervisor at info (one line per lifecycle event).
pub fn level_from(base: Level, verbose: u8, quiet: u8) -> Level {
    match base as i16 + i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=0 => Level::Error,
        1 => Level::Warn,
        2 => Level::Info,
        3 => Level::Debug,
        _ => Level::Trace,
    }
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

pub fn write(args: fmt::Arguments<'_>) {
    let mut line = format!("handoff-init[{}]: ", std::process::id());
    fmt::write(&mut line, args).ok();
    line.push('\n');
    std::io::stderr().write_all(line.as_bytes()).ok();
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write(format_args!($($arg)*))
        }
    };
}
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Error, $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Info, $($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log_at!($crate::log::Level::Debug, $($arg)*) }; }

/// A duration for people: `8s`, `500ms`, `1.6s`, `7.99s`.
pub fn dur(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        // Hundredths, rounded half up (1.999 s shows as "2s"); integers keep float formatting,
        // ~7 KB, out of the binary.
        let cs = (d.as_nanos() + 5_000_000) / 10_000_000;
        match cs % 100 {
            0 => format!("{}s", cs / 100),
            f if f % 10 == 0 => format!("{}.{}s", cs / 100, f / 10),
            f => format!("{}.{f:02}s", cs / 100),
        }
    }
}

/// Who sent a signal, for a log line: signalfd reports pid 0 for a sender outside init's PID
/// namespace. Formatted only if the line is written.
pub struct Sender(pub i32);

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("outside the PID namespace"),
            pid => write!(f, "pid {pid}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn levels_move_from_the_base() {
        assert_eq!(level_from(Level::Warn, 0, 0), Level::Warn);
        assert_eq!(level_from(Level::Warn, 1, 0), Level::Info);
        assert_eq!(level_from(Level::Warn, 2, 0), Level::Debug);
        assert_eq!(level_from(Level::Info, 0, 1), Level::Warn);
        assert_eq!(level_from(Level::Warn, 0, 5), Level::Error);
        assert_eq!(level_from(Level::Info, 9, 0), Level::Trace);
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(dur(Duration::from_millis(500)), "500ms");
        assert_eq!(dur(Duration::from_secs(8)), "8s");
        assert_eq!(dur(Duration::from_millis(1600)), "1.6s");
        assert_eq!(dur(Duration::from_millis(7990)), "7.99s");
        // Found by the `duration` fuzz target: these round up to a whole second.
        assert_eq!(dur(Duration::from_millis(1999)), "2s");
        assert_eq!(dur(Duration::from_micros(9_999_900)), "10s");
        assert_eq!(dur(Duration::from_millis(1050)), "1.05s");
        assert_eq!(dur(Duration::from_millis(1004)), "1s");
        assert_eq!(dur(Duration::from_millis(61_500)), "61.5s");
    }
}
