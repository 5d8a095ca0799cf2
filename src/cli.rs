//! The command line: flags and raw strings, no syscalls. `config` validates the values.
//!
//! Every option can also come from an environment variable `HANDOFF_<NAME>` (dashes become
//! underscores; repeatable options take a comma-separated list), so a Dockerfile can set them with
//! `ENV`. The command line wins over the environment. tini's short flags (`-s -g -e -p -v -w`) and
//! dumb-init's (`-r -c -v`) are accepted with their meanings, so an existing ENTRYPOINT switches by
//! changing the path. Options end at `--` or at the first word that is not an option (as in tini).
//!
//! Hand-written rather than clap: the parser is about 200 lines, while clap would cost ~190 KB of a
//! binary whose whole budget is 600 KiB (measured with a musl release build).

use std::ffi::OsString;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardTo {
    /// Every process in the child's process group (what a terminal does on Ctrl-C).
    Group,
    /// Only the process init started.
    Child,
}

#[derive(Debug, Default)]
pub struct Cli {
    pub forward_to: Option<String>,
    pub rewrite: Vec<String>,
    pub grace: Option<String>,
    pub remap_exit: Vec<String>,
    pub expect_exit: Vec<String>,
    pub pdeathsig: Option<String>,
    pub warn_on_reap: bool,
    pub single_child: bool,
    pub verbose: u8,
    pub quiet: u8,
    /// The level `-v`/`-q` move from, when tini's or dumb-init's environment sets one
    /// (`compat`); else warn in plain mode, info with the supervisor.
    pub base_level: Option<crate::log::Level>,
    pub listen: Vec<String>,
    pub ready: Option<String>,
    pub ready_timeout: Option<String>,
    pub handoff_signal: Option<String>,
    pub stop_signal: Option<String>,
    pub drain_timeout: Option<String>,
    pub no_listen_pid: bool,
    pub restart: Option<String>,
    pub track: Option<String>,
    pub pidfile: Option<String>,
    pub control: Option<String>,
    pub runtime_dir: Option<String>,
    pub cgroup: Option<String>,
    pub watchdog: Option<String>,
    pub reload_signal: Option<String>,
    pub stop_delay: Option<String>,
    pub fdstore_max: Option<String>,
    pub command: Vec<OsString>,
}

/// What `parse` found: run a command, or print something and exit 0.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Cli>),
    /// `handoff-init ctl ARGS…`: the control client.
    Ctl(Vec<String>),
    Help,
    Version,
    /// tini's `-l`.
    License,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Opt {
    ForwardTo,
    Rewrite,
    Grace,
    RemapExit,
    ExpectExit,
    Pdeathsig,
    WarnOnReap,
    SingleChild,
    Verbose,
    Quiet,
    Listen,
    Ready,
    ReadyTimeout,
    HandoffSignal,
    StopSignal,
    DrainTimeout,
    NoListenPid,
    Restart,
    Track,
    Pidfile,
    Cgroup,
    Watchdog,
    ReloadSignal,
    StopDelay,
    FdstoreMax,
    Control,
    RuntimeDir,
    Ignored,
    Help,
    Version,
    License,
}

/// (long name, short letter, takes a value, option). The environment variable is HANDOFF_ + the
/// long name upper-cased with '-' → '_'; options without a long name have none.
const OPTIONS: &[(&str, char, bool, Opt)] = &[
    ("forward-to", '\0', true, Opt::ForwardTo),
    ("rewrite", 'r', true, Opt::Rewrite),
    ("grace", '\0', true, Opt::Grace),
    ("remap-exit", '\0', true, Opt::RemapExit),
    ("", 'e', true, Opt::ExpectExit),
    ("pdeathsig", 'p', true, Opt::Pdeathsig),
    ("warn-on-reap", 'w', false, Opt::WarnOnReap),
    ("single-child", 'c', false, Opt::SingleChild),
    ("verbose", 'v', false, Opt::Verbose),
    ("quiet", 'q', false, Opt::Quiet),
    ("listen", '\0', true, Opt::Listen),
    ("ready", '\0', true, Opt::Ready),
    ("ready-timeout", '\0', true, Opt::ReadyTimeout),
    ("handoff-signal", '\0', true, Opt::HandoffSignal),
    ("stop-signal", '\0', true, Opt::StopSignal),
    ("drain-timeout", '\0', true, Opt::DrainTimeout),
    ("no-listen-pid", '\0', false, Opt::NoListenPid),
    ("restart", '\0', true, Opt::Restart),
    ("track", '\0', true, Opt::Track),
    ("pidfile", '\0', true, Opt::Pidfile),
    ("cgroup", '\0', true, Opt::Cgroup),
    ("watchdog", '\0', true, Opt::Watchdog),
    ("reload-signal", '\0', true, Opt::ReloadSignal),
    ("stop-delay", '\0', true, Opt::StopDelay),
    ("fdstore-max", '\0', true, Opt::FdstoreMax),
    ("control", '\0', true, Opt::Control),
    ("runtime-dir", '\0', true, Opt::RuntimeDir),
    // tini's -s (subreaper: always done when not PID 1) and -g (group: the default here).
    ("", 's', false, Opt::Ignored),
    ("", 'g', false, Opt::Ignored),
    ("help", 'h', false, Opt::Help),
    ("version", 'V', false, Opt::Version),
    ("", 'l', false, Opt::License),
];

pub const HELP: &str = "\
handoff-init: a tiny PID 1 for containers. Runs COMMAND in its own process group, forwards
signals to that group, reaps zombies, stops the whole tree within a grace period and exits
with the command's status.

Usage: handoff-init [OPTIONS] -- COMMAND [ARG]...

Options (each also from the environment as HANDOFF_<NAME>, e.g. HANDOFF_GRACE=5s):
      --forward-to group|child  where forwarded signals go [default: group]
  -r, --rewrite FROM:TO         send TO instead of FROM (names or numbers, e.g. TERM:QUIT);
                                FROM:0 drops FROM; repeatable
      --grace DURATION          how long a shutdown may take before leftovers get SIGKILL
                                (500ms, 10s, 1m) [default: 8s]
      --remap-exit FROM:TO      exit with TO when the command exits with FROM; repeatable
      --stop-delay DURATION     keep serving this long after the first SIGTERM (load balancers
                                still send traffic), then stop; counted within --grace
  -e CODE                       treat exit code CODE as 0 (tini); repeatable
  -p, --pdeathsig SIGNAL        signal init gets when its parent dies (tini's -p)
  -w, --warn-on-reap            warn for every reaped process other than the command
  -c, --single-child            forward only to the command (dumb-init); = --forward-to child
  -v, --verbose                 more log lines (repeat for more; HANDOFF_VERBOSE=N)
  -q, --quiet                   fewer log lines (repeat for errors only; HANDOFF_QUIET=N)
  -s, -g                        accepted for tini compatibility (always on)
  -l                            the license (tini's -l)
  Also read: DUMB_INIT_SETSID=0 (= -c), DUMB_INIT_DEBUG=1 (= -vv), TINI_VERBOSITY=0..4,
  TINI_SUBREAPER, TINI_KILL_PROCESS_GROUP (accepted: always on)

Zero-downtime handoff (any of these turns on the supervisor: NOTIFY_SOCKET, control socket):
      --listen [NAME=]URL       hold a listening socket for init's whole life and pass it to every
                                generation (LISTEN_FDS): tcp://127.0.0.1:8080, tcp://[::]:8080,
                                udp://0.0.0.0:5353, unix:///run/app.sock; repeatable
      --ready MODE              when a new generation is ready: notify (READY=1 on NOTIFY_SOCKET,
                                the default), delay:DURATION, or exec:COMMAND (a probe run every
                                100 ms exits 0; HANDOFF_GENERATION and HANDOFF_MAINPID are set)
      --ready-timeout DURATION  a new generation not ready by then is killed [default: 60s]
      --handoff-signal SIGNAL   start a handoff on this signal [default: HUP with --listen]
      --stop-signal SIGNAL      sent to the old generation to drain it [default: TERM]
      --drain-timeout DURATION  then the old generation's group gets SIGKILL [default: 30s]
      --no-listen-pid           do not set LISTEN_PID (for wrappers that fork instead of exec)
      --restart never|on-failure  restart a crashed service with backoff, sockets held [never]
      --track main|group        the service lives while its main pid (main) or any process of its
                                group (group: self-forking servers) lives [default: main]
      --pidfile PATH            the service lives while the pid written in PATH lives (re-read
                                whenever init wakes)
      --cgroup auto|off         a cgroup v2 per generation where init's cgroup is writable, so
                                processes that left the group are stopped with it [auto]
      --watchdog DURATION       each generation gets WATCHDOG_USEC/WATCHDOG_PID; one that misses
                                its WATCHDOG=1 is replaced by a handoff, then gets SIGABRT
      --reload-signal SIGNAL    `ctl reload --in-place` sends it to the serving generation and
                                waits for RELOADING=1 then READY=1 (Type=notify-reload)
      --fdstore-max N           keep up to N fds a generation sends with FDSTORE=1 and pass them
                                to later generations after the listeners [default: 0 = off]
      --control PATH            control socket [default: RUNTIME_DIR/control.sock]
      --runtime-dir DIR         private dir for the sockets [default: /run/handoff-init, or
                                $TMPDIR/handoff-init-UID when /run is not writable]

Control client: handoff-init ctl reload [--in-place]|status [--json] [--control PATH]
  -h, --help                    this text;  -V, --version  the version

Exit status: the command's own; 128+N if it died of signal N; 126 command not executable;
127 command not found; 2 usage error; 1 init's own failure.
";

/// Parses `args` (without the program name) and then the environment for options not given.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut cli = Cli::default();
    let mut given: Vec<Opt> = Vec::new();
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "ctl") {
        let rest: Option<Vec<String>> = args.skip(1).map(|a| a.into_string().ok()).collect();
        return rest
            .map(Parsed::Ctl)
            .ok_or_else(|| "ctl arguments must be UTF-8".into());
    }
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            cli.command.push(arg);
            break;
        };
        if text == "--" {
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let &(_, _, takes, opt) = OPTIONS
                .iter()
                .find(|(l, ..)| !l.is_empty() && *l == name)
                .ok_or_else(|| format!("unknown option '--{name}'"))?;
            let value = match (takes, inline) {
                (true, Some(v)) => Some(v),
                (true, None) => Some(next_value(&mut args, text)?),
                (false, Some(_)) => return Err(format!("option '--{name}' takes no value")),
                (false, None) => None,
            };
            if let Some(done) = apply(&mut cli, opt, value) {
                return Ok(done);
            }
            given.push(opt);
        } else if text.len() > 1 && text.starts_with('-') {
            let letters: Vec<char> = text[1..].chars().collect();
            let mut i = 0;
            while i < letters.len() {
                let c = letters[i];
                let &(_, _, takes, opt) = OPTIONS
                    .iter()
                    .find(|(_, s, ..)| *s == c)
                    .ok_or_else(|| format!("unknown option '-{c}'"))?;
                let value = if takes {
                    let rest: String = letters[i + 1..].iter().collect();
                    i = letters.len();
                    Some(if rest.is_empty() {
                        next_value(&mut args, &format!("-{c}"))?
                    } else {
                        rest
                    })
                } else {
                    i += 1;
                    None
                };
                if let Some(done) = apply(&mut cli, opt, value) {
                    return Ok(done);
                }
                given.push(opt);
            }
        } else {
            cli.command.push(arg);
            break;
        }
    }
    cli.command.extend(args);
    if cli.command.is_empty() {
        return Err("missing COMMAND: usage is handoff-init [OPTIONS] -- COMMAND [ARG]...".into());
    }
    from_env(&mut cli, &given, |k| std::env::var(k).ok())?;
    crate::compat::from_env(&mut cli, |k| std::env::var(k).ok())?;
    Ok(Parsed::Run(Box::new(cli)))
}

fn next_value(args: &mut impl Iterator<Item = OsString>, flag: &str) -> Result<String, String> {
    let v = args
        .next()
        .ok_or_else(|| format!("option '{flag}' needs a value"))?;
    v.into_string()
        .map_err(|_| format!("option '{flag}' has a value that is not UTF-8"))
}

/// Records one option; returns `Some` for help and version, which end parsing.
fn apply(cli: &mut Cli, opt: Opt, value: Option<String>) -> Option<Parsed> {
    let v = value.unwrap_or_default();
    match opt {
        Opt::ForwardTo => cli.forward_to = Some(v),
        Opt::Rewrite => cli.rewrite.push(v),
        Opt::Grace => cli.grace = Some(v),
        Opt::RemapExit => cli.remap_exit.push(v),
        Opt::ExpectExit => cli.expect_exit.push(v),
        Opt::Pdeathsig => cli.pdeathsig = Some(v),
        Opt::WarnOnReap => cli.warn_on_reap = true,
        Opt::SingleChild => cli.single_child = true,
        Opt::Verbose => cli.verbose = cli.verbose.saturating_add(1),
        Opt::Quiet => cli.quiet = cli.quiet.saturating_add(1),
        Opt::Listen => cli.listen.push(v),
        Opt::Ready => cli.ready = Some(v),
        Opt::ReadyTimeout => cli.ready_timeout = Some(v),
        Opt::HandoffSignal => cli.handoff_signal = Some(v),
        Opt::StopSignal => cli.stop_signal = Some(v),
        Opt::DrainTimeout => cli.drain_timeout = Some(v),
        Opt::NoListenPid => cli.no_listen_pid = true,
        Opt::Restart => cli.restart = Some(v),
        Opt::Track => cli.track = Some(v),
        Opt::Pidfile => cli.pidfile = Some(v),
        Opt::Cgroup => cli.cgroup = Some(v),
        Opt::Watchdog => cli.watchdog = Some(v),
        Opt::ReloadSignal => cli.reload_signal = Some(v),
        Opt::StopDelay => cli.stop_delay = Some(v),
        Opt::FdstoreMax => cli.fdstore_max = Some(v),
        Opt::Control => cli.control = Some(v),
        Opt::RuntimeDir => cli.runtime_dir = Some(v),
        Opt::Ignored => {}
        Opt::Help => return Some(Parsed::Help),
        Opt::Version => return Some(Parsed::Version),
        Opt::License => return Some(Parsed::License),
    }
    None
}

/// Fills options that the command line did not give from HANDOFF_<NAME>.
fn from_env(
    cli: &mut Cli,
    given: &[Opt],
    get: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    for &(long, _, takes, opt) in OPTIONS {
        if long.is_empty()
            || given.contains(&opt)
            || matches!(opt, Opt::Help | Opt::Version | Opt::License)
        {
            continue;
        }
        let var = format!("HANDOFF_{}", long.to_ascii_uppercase().replace('-', "_"));
        let Some(value) = get(&var).filter(|v| !v.is_empty()) else {
            continue;
        };
        if !takes {
            match value.as_str() {
                "1" | "true" | "yes" | "on" => {}
                "0" | "false" | "no" | "off" => continue,
                n if matches!(opt, Opt::Verbose | Opt::Quiet) => {
                    let n: u8 = n
                        .parse()
                        .map_err(|_| format!("invalid {var}: '{value}' is not a count"))?;
                    (0..n).for_each(|_| {
                        apply(cli, opt, None);
                    });
                    continue;
                }
                _ => return Err(format!("invalid {var}: '{value}' (expected 1 or 0)")),
            }
            apply(cli, opt, None);
        } else if matches!(opt, Opt::Rewrite | Opt::RemapExit | Opt::Listen) {
            for part in value.split(',').filter(|p| !p.is_empty()) {
                apply(cli, opt, Some(part.trim().to_string()));
            }
        } else {
            apply(cli, opt, Some(value));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Cli, String> {
        match parse(args.iter().map(OsString::from))? {
            Parsed::Run(cli) => Ok(*cli),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn options_then_command() {
        let cli = run(&[
            "--grace",
            "5s",
            "-vv",
            "--rewrite=TERM:QUIT",
            "--",
            "sh",
            "-c",
            "x",
        ])
        .unwrap();
        assert_eq!(cli.grace.as_deref(), Some("5s"));
        assert_eq!(cli.verbose, 2);
        assert_eq!(cli.rewrite, vec!["TERM:QUIT"]);
        assert_eq!(cli.command, vec!["sh", "-c", "x"]);
    }

    #[test]
    fn tini_and_dumb_init_flags() {
        let cli = run(&[
            "-s", "-g", "-e", "143", "-e3", "-p", "SIGTERM", "-w", "-r", "15:3", "-c", "cmd", "-v",
        ])
        .unwrap();
        assert_eq!(cli.expect_exit, vec!["143", "3"]);
        assert_eq!(cli.pdeathsig.as_deref(), Some("SIGTERM"));
        assert!(cli.warn_on_reap && cli.single_child);
        assert_eq!(cli.rewrite, vec!["15:3"]);
        // Options end at the first word that is not one: -v belongs to the command.
        assert_eq!(cli.command, vec!["cmd", "-v"]);
        assert_eq!(cli.verbose, 0);
        let cli = run(&["-sgw", "cmd"]).unwrap();
        assert!(cli.warn_on_reap);
        // dumb-init's long forms.
        let cli = run(&[
            "--single-child",
            "--rewrite",
            "20:0",
            "--verbose",
            "--",
            "x",
        ])
        .unwrap();
        assert!(cli.single_child);
        assert_eq!((cli.rewrite, cli.verbose), (vec!["20:0".to_string()], 1));
        assert!(matches!(parse(["--version".into()]), Ok(Parsed::Version)));
        assert!(matches!(parse(["-h".into()]), Ok(Parsed::Help)));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(
            run(&["--bogus", "--", "x"])
                .unwrap_err()
                .contains("--bogus")
        );
        assert!(run(&["-x", "cmd"]).unwrap_err().contains("-x"));
        assert!(run(&["--grace"]).unwrap_err().contains("needs a value"));
        assert!(run(&["--"]).unwrap_err().contains("missing COMMAND"));
        assert!(run(&[]).unwrap_err().contains("missing COMMAND"));
        assert!(run(&["--warn-on-reap=1", "x"]).is_err());
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse(["--help".into()]), Ok(Parsed::Help)));
        assert!(matches!(parse(["-V".into()]), Ok(Parsed::Version)));
        assert!(matches!(parse(["-l".into()]), Ok(Parsed::License)));
    }

    #[test]
    fn environment_fills_missing_options() {
        let env = |k: &str| match k {
            "HANDOFF_GRACE" => Some("3s".to_string()),
            "HANDOFF_REWRITE" => Some("TERM:QUIT,USR1:0".to_string()),
            "HANDOFF_VERBOSE" => Some("2".to_string()),
            "HANDOFF_SINGLE_CHILD" => Some("1".to_string()),
            "HANDOFF_FORWARD_TO" => Some("child".to_string()),
            _ => None,
        };
        let mut cli = Cli {
            grace: Some("1s".into()),
            ..Cli::default()
        };
        from_env(&mut cli, &[Opt::Grace], env).unwrap();
        assert_eq!(cli.grace.as_deref(), Some("1s"), "command line wins");
        assert_eq!(cli.rewrite, vec!["TERM:QUIT", "USR1:0"]);
        assert_eq!(cli.verbose, 2);
        assert!(cli.single_child);
        assert_eq!(cli.forward_to.as_deref(), Some("child"));
        let bad = |k: &str| (k == "HANDOFF_WARN_ON_REAP").then(|| "maybe".to_string());
        assert!(from_env(&mut Cli::default(), &[], bad).is_err());
    }
}
