//! handoff-init: a tiny PID 1 for containers. See README.md and docs/ARCHITECTURE.md.

mod cgroup;
mod cli;
mod compat;
mod config;
mod control;
mod fdstore;
mod handoff;
mod init;
mod listen;
mod log;
mod notify;
#[cfg(test)]
#[path = "../testsvc/src/oldkernel.rs"]
mod oldkernel;
mod procs;
mod signals;
mod spawn;
mod status;
mod sys;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Parsing is pure (no syscall), so it comes first: `ctl`, `--help` and `--version` are not
    // an init, and run as any command does, with the signal mask and dispositions it was started
    // with (Ctrl-C ends a waiting `ctl reload`; SIGPIPE stays ignored, as Rust sets it, so a
    // closed stdout is a write error it reports by its status) and the fds it was given.
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Parsed::Run(cli)) => cli,
        Ok(cli::Parsed::Ctl(args)) => return ExitCode::from(control::client(&args)),
        Ok(cli::Parsed::Help) => return print(cli::HELP),
        Ok(cli::Parsed::Version) => {
            return print(concat!(
                "handoff-init ",
                env!("CARGO_PKG_VERSION"),
                " (commit ",
                env!("HANDOFF_COMMIT"),
                ")\n"
            ));
        }
        Ok(cli::Parsed::License) => {
            return print(concat!(
                "handoff-init is licensed ",
                env!("CARGO_PKG_LICENSE"),
                "\n"
            ));
        }
        Err(msg) => {
            log::write(format_args!("{msg} (try --help)"));
            return ExitCode::from(2);
        }
    };
    // Then, before any other thread or fd exists: block every signal so none is lost or acts
    // on init by default; they are read from a signalfd and forwarded.
    let mask = match signals::block_all() {
        Ok(mask) => mask,
        Err(e) => {
            error!("cannot block signals: {}", e.desc());
            return ExitCode::from(1);
        }
    };
    sys::ensure_std_fds();
    close_inherited_fds();
    let cfg = match config::Config::from_cli(*cli) {
        Ok(cfg) => cfg,
        Err(msg) => {
            log::write(format_args!("{msg}"));
            return ExitCode::from(2);
        }
    };
    log::set_level(cfg.log_level);
    ExitCode::from(init::run(cfg, mask))
}

fn print(text: &str) -> ExitCode {
    use std::io::Write;
    std::io::stdout().write_all(text.as_bytes()).ok();
    ExitCode::SUCCESS
}

/// Closes every fd above 2 that init inherited, except the ones a socket activator passed for our
/// own pid (LISTEN_FDS): a stray inherited pipe end held for init's whole life would keep some
/// reader from ever seeing EOF, and nothing init does needs one.
fn close_inherited_fds() {
    let own = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let keep = if own {
        std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
            .min(1 << 16)
    } else {
        0
    };
    sys::close_from(3 + keep);
}
