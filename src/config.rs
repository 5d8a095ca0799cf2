//! Validated configuration: durations, signals, rewrite and exit-code rules, parsed from `Cli`.
//!
//! Everything that can be wrong with the command line is found here, before any process exists,
//! and reported as one line with exit code 2.

use crate::cli::{Cli, ForwardTo};
use crate::log::Level;
use crate::signals;
use std::ffi::OsString;
use std::time::Duration;

/// Default grace period. `docker stop` waits 10 s before its own SIGKILL and Kubernetes 30 s;
/// 8 s fits inside the tighter of the two with room for init's own SIGKILL and exit, so it is init
/// (not the kernel) that ends the tree, and the exit status and log say what happened. On
/// Kubernetes with a longer terminationGracePeriodSeconds, raise it to that minus a margin.
pub const DEFAULT_GRACE: &str = "8s";

#[derive(Debug)]
pub struct Config {
    pub command: Vec<OsString>,
    pub forward_to: ForwardTo,
    /// Index = received signal, value = signal to send (0 = drop).
    pub rewrite: [i32; signals::MAX as usize + 1],
    pub grace: Duration,
    /// `--stop-delay`: how long everything keeps serving after the first SIGTERM.
    pub stop_delay: Option<Duration>,
    /// (from, to) pairs applied to the final exit code, first match wins.
    pub remap_exit: Vec<(u8, u8)>,
    pub pdeathsig: Option<i32>,
    pub warn_on_reap: bool,
    pub log_level: Level,
    /// The supervisor's options; `None` in plain init mode (no --listen and no handoff option),
    /// where the command's environment is passed on unchanged and no socket is created.
    pub supervise: Option<Supervise>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ready {
    /// READY=1 on NOTIFY_SOCKET.
    Notify,
    Delay(Duration),
    /// The probe command exits 0.
    Exec(Vec<OsString>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    Never,
    OnFailure,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    Main,
    Group,
}

#[derive(Debug, Clone)]
pub struct Supervise {
    pub listen: Vec<crate::listen::Spec>,
    pub ready: Ready,
    pub ready_timeout: Duration,
    pub handoff_signal: Option<i32>,
    pub stop_signal: i32,
    pub drain_timeout: Duration,
    pub listen_pid: bool,
    pub restart: Restart,
    pub track: Track,
    pub pidfile: Option<std::path::PathBuf>,
    /// A cgroup per generation where possible (see `cgroup`).
    pub cgroup: bool,
    /// The keep-alive interval every generation gets (WATCHDOG_USEC).
    pub watchdog: Option<Duration>,
    /// What `ctl reload --in-place` sends to the serving generation.
    pub reload_signal: Option<i32>,
    /// `--fdstore-max`: how many fds the fd store keeps (0 = off).
    pub fdstore_max: usize,
    /// `--runtime-dir`; None: the first of `runtime_dirs` that init can make its own.
    pub runtime_dir: Option<std::path::PathBuf>,
    /// `--control`; None: `control.sock` in the runtime dir.
    pub control: Option<std::path::PathBuf>,
}

pub const DEFAULT_RUNTIME_DIR: &str = "/run/handoff-init";

/// Where init keeps its sockets, in order of preference: `--runtime-dir` if given, else
/// /run/handoff-init, else (for a service that runs as a user who cannot write /run, as with
/// Kubernetes' runAsNonRoot) $TMPDIR/handoff-init-UID.
pub fn runtime_dirs(explicit: Option<&str>) -> Vec<std::path::PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.into()];
    }
    let tmp = std::env::var_os("TMPDIR")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "/tmp".into());
    let uid = nix::unistd::geteuid();
    vec![
        DEFAULT_RUNTIME_DIR.into(),
        std::path::Path::new(&tmp).join(format!("handoff-init-{uid}")),
    ]
}

/// The control sockets a client should try, in order: --control (or HANDOFF_CONTROL), else
/// `control.sock` in each runtime dir.
pub fn control_paths(explicit: Option<&str>, runtime_dir: Option<&str>) -> Vec<std::path::PathBuf> {
    match explicit {
        Some(p) => vec![p.into()],
        None => runtime_dirs(runtime_dir)
            .into_iter()
            .map(|d| d.join("control.sock"))
            .collect(),
    }
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Config, String> {
        let mut rewrite = [0; signals::MAX as usize + 1];
        for (sig, slot) in rewrite.iter_mut().enumerate() {
            *slot = sig as i32;
        }
        let mut rewritten = Vec::new();
        for rule in &cli.rewrite {
            let (from, to) = parse_rewrite(rule)?;
            rewrite[from as usize] = to;
            rewritten.push(from);
        }
        let mut remap_exit = Vec::new();
        for rule in &cli.remap_exit {
            remap_exit.push(parse_remap(rule)?);
        }
        for code in &cli.expect_exit {
            remap_exit.push((parse_code(code)?, 0));
        }
        let grace = parse_duration(cli.grace.as_deref().unwrap_or(DEFAULT_GRACE))
            .map_err(|e| format!("invalid --grace: {e}"))?;
        let stop_delay = cli
            .stop_delay
            .as_deref()
            .map(|d| parse_duration(d).map_err(|e| format!("invalid --stop-delay: {e}")))
            .transpose()?
            .filter(|d| !d.is_zero());
        if stop_delay.is_some_and(|d| d >= grace) {
            return Err(format!(
                "--stop-delay must be shorter than --grace ({}): it is counted within it",
                crate::log::dur(grace)
            ));
        }
        let forward_to = match cli.forward_to.as_deref() {
            _ if cli.single_child => ForwardTo::Child,
            None | Some("group") => ForwardTo::Group,
            Some("child") => ForwardTo::Child,
            Some(other) => {
                return Err(format!(
                    "invalid --forward-to '{other}': expected group or child"
                ));
            }
        };
        let pdeathsig = match &cli.pdeathsig {
            Some(s) => {
                Some(signals::parse(s, false).map_err(|e| format!("invalid --pdeathsig: {e}"))?)
            }
            None => None,
        };
        let supervise = supervise(&cli)?;
        // dumb-init's setsid mode (signals to the whole group): a job-control stop of init is
        // a stop of the whole job, so it is forwarded as SIGSTOP, which nothing can catch,
        // unless `-r` says otherwise. With the supervisor on they are forwarded as they are.
        if forward_to == ForwardTo::Group && supervise.is_none() {
            for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
                if !rewritten.contains(&sig) {
                    rewrite[sig as usize] = libc::SIGSTOP;
                }
            }
        }
        let base = cli.base_level.unwrap_or(if supervise.is_some() {
            Level::Info
        } else {
            Level::Warn
        });
        Ok(Config {
            command: cli.command,
            forward_to,
            rewrite,
            grace,
            stop_delay,
            remap_exit,
            pdeathsig,
            warn_on_reap: cli.warn_on_reap,
            log_level: crate::log::level_from(base, cli.verbose, cli.quiet),
            supervise,
        })
    }

    /// The exit code after `--remap-exit` / `-e` rules.
    pub fn remap(&self, code: u8) -> u8 {
        self.remap_exit
            .iter()
            .find(|(from, _)| *from == code)
            .map_or(code, |&(_, to)| to)
    }
}

/// `FROM:TO` with signal names or numbers; TO may be 0 (drop).
pub fn parse_rewrite(rule: &str) -> Result<(i32, i32), String> {
    let (from, to) = rule
        .split_once(':')
        .ok_or_else(|| format!("invalid --rewrite '{rule}': expected FROM:TO"))?;
    let from =
        signals::parse(from, false).map_err(|e| format!("invalid --rewrite '{rule}': {e}"))?;
    let to = signals::parse(to, true).map_err(|e| format!("invalid --rewrite '{rule}': {e}"))?;
    // Init never receives KILL or STOP (the kernel acts on it) and reaps on CHLD: a rule from
    // them could never apply. Any signal may be sent, KILL included (`TERM:KILL`).
    if !signals::receivable(from) {
        return Err(format!(
            "invalid --rewrite '{rule}': init never forwards {}",
            signals::name(from)
        ));
    }
    Ok((from, to))
}

fn supervise(cli: &Cli) -> Result<Option<Supervise>, String> {
    let wanted = !cli.listen.is_empty()
        || cli.ready.is_some()
        || cli.handoff_signal.is_some()
        || cli.control.is_some()
        || cli.restart.is_some()
        || cli.track.is_some()
        || cli.pidfile.is_some()
        || cli.cgroup.is_some()
        || cli.watchdog.is_some()
        || cli.reload_signal.is_some()
        || cli.fdstore_max.is_some()
        || cli.no_listen_pid
        || cli.drain_timeout.is_some()
        || cli.ready_timeout.is_some()
        || cli.stop_signal.is_some();
    // Checked even when nothing else asks for a supervisor: an empty or overlong path is a typo.
    let path = |v: &Option<String>, name: &str, longest: usize| {
        v.as_deref()
            .map(|p| {
                if p.is_empty() {
                    Err(format!("invalid --{name} '': expected a path"))
                } else if p.len() > longest {
                    Err(format!(
                        "invalid --{name}: too long for a unix socket path ({} bytes, at most {longest})",
                        p.len()
                    ))
                } else {
                    Ok(std::path::PathBuf::from(p))
                }
            })
            .transpose()
    };
    let max = crate::listen::MAX_UNIX_PATH;
    let control = path(&cli.control, "control", max)?;
    let sockets_in_dir = if control.is_some() {
        "/notify.sock"
    } else {
        "/control.sock"
    };
    let runtime_dir = path(&cli.runtime_dir, "runtime-dir", max - sockets_in_dir.len())?;
    if !wanted {
        return Ok(None);
    }
    let listen = cli
        .listen
        .iter()
        .enumerate()
        .map(|(i, s)| crate::listen::Spec::parse(s, i))
        .collect::<Result<Vec<_>, _>>()?;
    // Names given twice are a typo; generated ones (tcp-PORT, unix-N) may repeat, as
    // LISTEN_FDNAMES allows.
    let names: Vec<&str> = cli
        .listen
        .iter()
        .filter_map(|l| crate::listen::explicit_name(l))
        .collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(format!(
                "duplicate --listen name '{n}': each listener needs its own (NAME=URL)"
            ));
        }
    }
    let dur = |v: &Option<String>, name: &str, default: &str| {
        parse_duration(v.as_deref().unwrap_or(default))
            .map_err(|e| format!("invalid --{name}: {e}"))
    };
    let sig = |v: &Option<String>, name: &str| {
        v.as_deref()
            .map(|s| signals::parse(s, false).map_err(|e| format!("invalid --{name}: {e}")))
            .transpose()
    };
    let ready = match cli.ready.as_deref() {
        None | Some("notify") => Ready::Notify,
        Some(r) if r.starts_with("delay:") => {
            Ready::Delay(parse_duration(&r[6..]).map_err(|e| format!("invalid --ready: {e}"))?)
        }
        Some(r) if r.starts_with("exec:") => {
            let command = r[5..].trim();
            if command.is_empty() {
                return Err("invalid --ready 'exec:': expected exec:COMMAND".into());
            }
            // One word runs as it is (images without a shell); anything more through /bin/sh -c,
            // as Docker's HEALTHCHECK CMD-SHELL does, so quoting and $HANDOFF_GENERATION work.
            Ready::Exec(if command.contains(char::is_whitespace) {
                vec!["/bin/sh".into(), "-c".into(), command.into()]
            } else {
                vec![command.into()]
            })
        }
        Some(r) => {
            return Err(format!(
                "invalid --ready '{r}': expected notify, delay:DURATION or exec:COMMAND"
            ));
        }
    };
    let handoff_signal = match sig(&cli.handoff_signal, "handoff-signal")? {
        Some(s) if !signals::receivable(s) => {
            return Err(format!(
                "invalid --handoff-signal: init never receives {}",
                signals::name(s)
            ));
        }
        Some(s) => Some(s),
        None if !listen.is_empty() => Some(libc::SIGHUP),
        None => None,
    };
    let restart = match cli.restart.as_deref() {
        None | Some("never") => Restart::Never,
        Some("on-failure") => Restart::OnFailure,
        Some(o) => {
            return Err(format!(
                "invalid --restart '{o}': expected never or on-failure"
            ));
        }
    };
    let watchdog = cli
        .watchdog
        .as_deref()
        .map(|w| parse_duration(w).map_err(|e| format!("invalid --watchdog: {e}")))
        .transpose()?
        .filter(|d| !d.is_zero());
    let fdstore_max = match cli.fdstore_max.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) if n <= crate::fdstore::MAX => n,
        Some(_) => {
            return Err(format!(
                "invalid --fdstore-max '{}': expected a number from 0 to {}",
                cli.fdstore_max.as_deref().unwrap_or_default(),
                crate::fdstore::MAX
            ));
        }
    };
    let cgroup = match cli.cgroup.as_deref() {
        None | Some("auto") => true,
        Some("off") => false,
        Some(o) => return Err(format!("invalid --cgroup '{o}': expected auto or off")),
    };
    let track = match cli.track.as_deref() {
        None | Some("main") => Track::Main,
        Some("group") => Track::Group,
        Some(o) => return Err(format!("invalid --track '{o}': expected main or group")),
    };
    Ok(Some(Supervise {
        listen,
        ready,
        ready_timeout: dur(&cli.ready_timeout, "ready-timeout", "60s")?,
        handoff_signal,
        stop_signal: sig(&cli.stop_signal, "stop-signal")?.unwrap_or(libc::SIGTERM),
        drain_timeout: dur(&cli.drain_timeout, "drain-timeout", "30s")?,
        listen_pid: !cli.no_listen_pid,
        restart,
        track,
        pidfile: cli.pidfile.as_deref().map(Into::into),
        cgroup,
        watchdog,
        reload_signal: sig(&cli.reload_signal, "reload-signal")?,
        fdstore_max,
        control,
        runtime_dir,
    }))
}

fn parse_code(text: &str) -> Result<u8, String> {
    text.trim()
        .parse::<u8>()
        .map_err(|_| format!("invalid exit code '{text}': expected 0 to 255"))
}

/// `FROM:TO`, both exit codes 0..=255.
pub fn parse_remap(rule: &str) -> Result<(u8, u8), String> {
    let (from, to) = rule
        .split_once(':')
        .ok_or_else(|| format!("invalid --remap-exit '{rule}': expected FROM:TO"))?;
    let wrap = |e: String| format!("invalid --remap-exit '{rule}': {e}");
    Ok((
        parse_code(from).map_err(wrap)?,
        parse_code(to).map_err(wrap)?,
    ))
}

/// `500ms`, `10s`, `1.5s`, `2m`, `1h`, `1m30s`, `250us`; a bare number is seconds (as systemd).
/// In integer nanoseconds: float parsing would add ~15 KB to the binary for this alone.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = |why: &str| format!("'{text}' is not a duration ({why}; e.g. 500ms, 10s, 1m)");
    if t.is_empty() {
        return Err(bad("empty"));
    }
    let bare = t.strip_prefix('+').unwrap_or(t);
    if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let ns = nanos(bare, NS_PER_SEC).ok_or_else(|| bad("bad number"))?;
        return seconds(ns).ok_or_else(|| bad("out of range"));
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad("expected a number"));
        }
        let number = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" | "sec" => NS_PER_SEC,
            "m" | "min" => 60 * NS_PER_SEC,
            "h" => 3600 * NS_PER_SEC,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        total = total.saturating_add(nanos(number, scale).ok_or_else(|| bad("bad number"))?);
        rest = &rest[unit_len..];
    }
    seconds(total).ok_or_else(|| bad("out of range"))
}

const NS_PER_SEC: u128 = 1_000_000_000;

/// `DIGITS[.DIGITS]` (either side may be empty, not both) times `scale` nanoseconds, saturating;
/// fraction digits below a nanosecond are dropped.
fn nanos(number: &str, scale: u128) -> Option<u128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let digit = |b: u8| u128::from(b - b'0');
    let mut ns = whole
        .bytes()
        .fold(0u128, |n, b| n.saturating_mul(10).saturating_add(digit(b)))
        .saturating_mul(scale);
    let mut div = 1u128;
    for b in frac.bytes().take(24) {
        div *= 10;
        ns = ns.saturating_add(digit(b) * scale / div);
    }
    Some(ns)
}

fn seconds(ns: u128) -> Option<Duration> {
    // A year is far beyond any sensible grace or timeout; larger values are typos.
    (ns <= 31_536_000 * NS_PER_SEC)
        .then(|| Duration::new((ns / NS_PER_SEC) as u64, (ns % NS_PER_SEC) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration(".5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5."), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1.0000000019"), Ok(Duration::new(1, 1)));
        assert_eq!(parse_duration("1.5us"), Ok(Duration::from_nanos(1500)));
        assert_eq!(parse_duration("8760h"), Ok(Duration::from_secs(31_536_000)));
        assert_eq!(
            parse_duration(" 2m0.5s "),
            Ok(Duration::from_millis(120_500))
        );
    }

    #[test]
    fn bad_durations() {
        for bad in [
            "",
            "10x",
            "ms",
            "-1s",
            "1.2.3s",
            "s10",
            "1e400",
            "-5",
            "10 s",
            "9999999h",
            ".",
            "..",
            "1..s",
            "+",
            "+s",
            "8760h1us",
            "31536000.000000001",
            "inf",
            "NaN",
            "1e3",
            "99999999999999999999999999999999999999999999999999",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("10x").unwrap_err().contains("'10x'"));
    }

    #[test]
    fn rewrite_rules() {
        assert_eq!(
            parse_rewrite("TERM:QUIT"),
            Ok((libc::SIGTERM, libc::SIGQUIT))
        );
        assert_eq!(parse_rewrite("15:3"), Ok((15, 3)));
        assert_eq!(parse_rewrite("SIGUSR1:0"), Ok((libc::SIGUSR1, 0)));
        assert!(parse_rewrite("TERM").is_err());
        assert!(parse_rewrite("0:TERM").is_err());
        assert!(parse_rewrite("FOO:TERM").unwrap_err().contains("FOO"));
        assert!(parse_rewrite("TERM:BAR").is_err());
        assert_eq!(
            parse_rewrite("TERM:KILL"),
            Ok((libc::SIGTERM, libc::SIGKILL))
        );
        for never in ["KILL:TERM", "STOP:0", "CHLD:HUP"] {
            assert!(
                parse_rewrite(never).unwrap_err().contains("never"),
                "{never}"
            );
        }
    }

    fn rewrites(args: &[&str]) -> [i32; signals::MAX as usize + 1] {
        let mut cli = Cli {
            command: vec!["x".into()],
            ..Cli::default()
        };
        for a in args {
            match *a {
                "-c" => cli.single_child = true,
                "--listen" => cli.listen.push("tcp://127.0.0.1:0".into()),
                rule => cli.rewrite.push(rule.into()),
            }
        }
        Config::from_cli(cli).unwrap().rewrite
    }

    #[test]
    fn job_control_stops_become_sigstop_in_group_mode_only() {
        let stop = libc::SIGSTOP;
        let (tstp, ttin, ttou) = (libc::SIGTSTP as usize, libc::SIGTTIN as usize, 22);
        let r = rewrites(&[]);
        assert_eq!((r[tstp], r[ttin], r[ttou]), (stop, stop, stop));
        assert_eq!(r[libc::SIGTERM as usize], libc::SIGTERM);
        // -r wins over the default; the others keep it.
        let r = rewrites(&["20:0", "TTIN:USR1"]);
        assert_eq!((r[tstp], r[ttin], r[ttou]), (0, libc::SIGUSR1, stop));
        // dumb-init's -c, and the supervisor: forwarded as they are.
        for args in [&["-c"][..], &["--listen"][..]] {
            let r = rewrites(args);
            assert_eq!((r[tstp], r[ttin], r[ttou]), (20, 21, 22), "{args:?}");
        }
    }

    #[test]
    fn plain_mode_is_quieter_than_the_supervisor() {
        let level = |listen: bool, base: Option<Level>, verbose: u8| {
            let mut cli = Cli {
                command: vec!["x".into()],
                base_level: base,
                verbose,
                ..Cli::default()
            };
            if listen {
                cli.listen.push("tcp://127.0.0.1:0".into());
            }
            Config::from_cli(cli).unwrap().log_level
        };
        assert_eq!(level(false, None, 0), Level::Warn);
        assert_eq!(level(false, None, 1), Level::Info);
        assert_eq!(level(true, None, 0), Level::Info);
        assert_eq!(level(true, Some(Level::Error), 1), Level::Warn);
    }

    #[test]
    fn remap_rules() {
        assert_eq!(parse_remap("143:0"), Ok((143, 0)));
        assert!(parse_remap("256:0").is_err());
        assert!(parse_remap("1").is_err());
        assert!(parse_remap("a:b").is_err());
    }
}
