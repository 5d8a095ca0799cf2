//! The command line as clap sees it: flags and raw strings, no syscalls. `config` validates it.
//!
//! Every option can also come from an environment variable `HANDOFF_<NAME>`, so a Dockerfile can
//! set them with `ENV`. The short flags of tini (`-s -g -e -p -v -w`) and dumb-init (`-r -c -v`)
//! are accepted with their meanings, so an existing ENTRYPOINT switches by changing the path.

use clap::{ArgAction, Parser, ValueEnum};
use std::ffi::OsString;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForwardTo {
    /// Every process in the child's process group (what a terminal does on Ctrl-C).
    Group,
    /// Only the process init started.
    Child,
}

#[derive(Debug, Parser)]
#[command(
    name = "handoff-init",
    version,
    about = "A tiny PID 1 for containers: forwards signals to the service's process group, reaps \
             zombies, stops the whole tree within a grace period and exits with the service's status.",
    after_help = "Exit status: the command's own; 128+N if it died of signal N; 126 command not \
                  executable; 127 command not found; 2 usage error; 1 init's own failure.",
    override_usage = "handoff-init [OPTIONS] -- COMMAND [ARG]..."
)]
pub struct Cli {
    /// Where forwarded signals go.
    #[arg(long, value_enum, default_value_t = ForwardTo::Group, env = "HANDOFF_FORWARD_TO")]
    pub forward_to: ForwardTo,

    /// Send TO instead of FROM (names or numbers, e.g. TERM:QUIT); FROM:0 drops FROM. Repeatable.
    #[arg(
        short = 'r',
        long = "rewrite",
        value_name = "FROM:TO",
        env = "HANDOFF_REWRITE",
        value_delimiter = ','
    )]
    pub rewrite: Vec<String>,

    /// How long a shutdown may take before leftovers are SIGKILLed (e.g. 500ms, 10s, 1m).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "8s",
        env = "HANDOFF_GRACE"
    )]
    pub grace: String,

    /// Exit with TO when the command exits with FROM (applied last). Repeatable.
    #[arg(
        long = "remap-exit",
        value_name = "FROM:TO",
        env = "HANDOFF_REMAP_EXIT",
        value_delimiter = ','
    )]
    pub remap_exit: Vec<String>,

    /// tini's -e: treat exit code CODE as 0. Repeatable.
    #[arg(short = 'e', value_name = "CODE", action = ArgAction::Append)]
    pub expect_exit: Vec<String>,

    /// Signal init receives when its own parent dies (tini's -p), then forwarded as usual.
    #[arg(short = 'p', long, value_name = "SIGNAL", env = "HANDOFF_PDEATHSIG")]
    pub pdeathsig: Option<String>,

    /// Log a warning for every reaped process other than the command (tini's -w).
    #[arg(short = 'w', long, env = "HANDOFF_WARN_ON_REAP")]
    pub warn_on_reap: bool,

    /// Forward signals only to the command (dumb-init's -c); same as --forward-to child.
    #[arg(short = 'c', long, env = "HANDOFF_SINGLE_CHILD")]
    pub single_child: bool,

    /// More log lines (repeat for more). HANDOFF_VERBOSE=N does the same.
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Fewer log lines (repeat for errors only). HANDOFF_QUIET=N does the same.
    #[arg(short = 'q', long, action = ArgAction::Count)]
    pub quiet: u8,

    /// tini's -s (register as subreaper): always done when not PID 1; accepted for compatibility.
    #[arg(short = 's', hide = true)]
    pub tini_subreaper: bool,

    /// tini's -g (signal the child's process group): the default here; accepted for compatibility.
    #[arg(short = 'g', hide = true)]
    pub tini_group: bool,

    /// The command to run and its arguments.
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    pub command: Vec<OsString>,
}
