//! handoff-testsvc: the project's test service. A real LISTEN_FDS / sd_notify consumer that the
//! integration, docker and benchmark tests run under handoff-init (and under other inits).

mod health;
mod hostile;
mod http;
mod listen;
mod notify;
mod oldkernel;
mod orphans;
mod selffork;
mod sys;
mod wait;

use std::io::Write;
use std::path::PathBuf;

const ABOUT: &str = "\
handoff-testsvc: the test service of handoff-init. Every line it logs starts with `testsvc[PID]: `.

  wait      no sockets; prints `got SIGNAME` for every signal it receives (stdout)
  http      HTTP/1.1 server on LISTEN_FDS sockets (or --bind), sd_notify readiness, graceful drain
  orphans   makes N orphaned grandchildren and waits until the init has reaped them
  notify STATE [CMD...]   one sd_notify datagram from this process, then run CMD (e.g. wait)
  flood COUNT SIZE        COUNT STATUS= datagrams of SIZE bytes
  shutdown-fd N           shutdown(2) the inherited listening fd N; exit 0 once it (a unix one: its path) listens again
  old-kernel K -- CMD...  exec CMD with close_range(2) failing as on kernel K (4.18 or 5.10)
  hold-exec [--report FILE] -- CMD...  run CMD; the first child of a handoff-init below it is
                          stopped (SIGSTOP) inside its execve, before the exec; `held PID`
                          is logged and appended to FILE; exits with CMD's status

Exit codes: 0 graceful, 1 setup failure (no sockets, bind error, bad LISTEN_FDS), 2 usage,
3 --fail-start, --exit-code N for `wait`.";

const HTTP_HELP: &str = "\
http in detail:
Sockets: takes LISTEN_FDS exactly as systemd consumers do (LISTEN_PID must be our pid when set,
fds 3..3+N get FD_CLOEXEC, LISTEN_* are removed, each fd must be a socket; listening TCP and unix
stream sockets are served, others kept open unserved). Without LISTEN_FDS it binds --bind
addresses. Exits 1 when it ends up with no listener.

Requests: any path answers 200 with the body `pid=<pid> gen=<HANDOFF_GENERATION or 0> path=<path>`
and Content-Length; `?delay=MS` delays that response. Keep-alive as HTTP/1.1 says.

Lifecycle (stderr): `listening on ...`, `ready gen=N fds=K` once it accepts (after --start-delay;
`READY=1` and `STATUS=serving gen N` go to $NOTIFY_SOCKET), `got SIGNAME from pid P`,
`draining` (SIGTERM, SIGINT or SIGQUIT: sends STOPPING=1, closes its listener fds without
shutdown(2), finishes in-flight requests, answers the next request of each keep-alive
connection with `Connection: close`, closes idle ones after --drain-idle), then
`graceful shutdown complete` and exit 0.

--self-fork: on SIGHUP, fork+exec a copy (same executable and argv) with the listeners at fds
3.., LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID=<copy's pid> and TESTSVC_PARENT_PID=<our pid>. When
ready the copy sends `MAINPID=<its pid>` + `READY=1` and SIGTERM to its parent, which drains.";

const USAGE: &str = "\
usage: handoff-testsvc wait [--exit-code N] [--cleanup MS] [--ignore-term] [--report FILE] [--print-self]
       handoff-testsvc http [--bind ADDR]... [--start-delay MS] [--request-delay MS]
                            [--drain-idle MS] [--fail-start] [--never-ready] [--ignore-term]
                            [--ready-then-exit MS] [--hang-after MS] [--watchdog-trigger]
                            [--no-reload]
                            [--self-fork] [--health ADDR] [--require-listen-pid]
       handoff-testsvc orphans N [--linger] [--timeout MS]
       handoff-testsvc --help";

const OPTIONS_HELP: &str = "\
wait options:
  --exit-code N        exit code after a graceful shutdown (default 0)
  --cleanup MS         take MS to shut down after SIGTERM/SIGINT (default 0)
  --ignore-term        log SIGTERM but keep waiting (SIGINT still ends it)
  --report FILE        also append every line to FILE
  --print-self         first print `sigblk=<hex> sigign=<hex> fds=<list> pgid=<n> sid=<n>` as
                       inherited at exec (bit layout of SigBlk/SigIgn in /proc/self/status)

http options:
  --bind ADDR          without LISTEN_FDS, bind HOST:PORT (port 0 = any) or unix:/path; repeatable
  --start-delay MS     wait MS before accepting and sending READY=1 (default 0)
  --request-delay MS   delay every response by MS; a request's ?delay=MS wins (default 0)
  --drain-idle MS      while draining, close keep-alive connections idle MS after the drain
                       began (default 2000)
  --fail-start         exit 3 after --start-delay, never ready
  --never-ready        never accept, never send READY=1 (SIGTERM still ends it)
  --hang-after MS      MS after it is ready, hang: no more WATCHDOG=1 (sent every half
                       WATCHDOG_USEC when WATCHDOG_PID is ours) and no more accepts
  --watchdog-trigger   with --hang-after: send WATCHDOG=trigger when it hangs
  --no-reload          ignore SIGUSR1 (otherwise: RELOADING=1 + MONOTONIC_USEC, then READY=1)
  --ready-then-exit MS send READY=1 but accept nothing, and exit 3 after MS: a service that
                       dies right after it said it was ready (what it never accepted stays
                       queued on the socket for the next generation)
  --ignore-term        log and ignore SIGTERM (SIGINT and SIGQUIT still drain)
  --self-fork          on SIGHUP, start a copy of itself on the same sockets, which then stops
                       this process (see below)
  --health ADDR        health port bound once ready: HOST:PORT, HOST:PORT+gen (port plus
                       HANDOFF_GENERATION) or unix:/path ({gen} replaced); GET / answers 200,
                       503 while draining
  --require-listen-pid ignore LISTEN_FDS when LISTEN_PID is missing, as libsystemd does
                       (default: accept it, as the listenfd crate does)

orphans options:
  N                    how many orphans
  --linger             the orphans call setsid() and live until SIGTERM
  --timeout MS         exit 1 unless all are reaped within MS (default 10000 without --linger,
                       none with it)";

/// Options of `wait`.
pub struct WaitArgs {
    pub exit_code: i32,
    pub cleanup_ms: u64,
    pub ignore_term: bool,
    pub report: Option<PathBuf>,
    pub print_self: bool,
}

/// Options of `http`.
#[derive(Default)]
pub struct HttpArgs {
    pub bind: Vec<String>,
    pub start_delay: u64,
    pub request_delay: u64,
    pub drain_idle: u64,
    pub fail_start: bool,
    pub never_ready: bool,
    pub ready_then_exit: Option<u64>,
    pub hang_after: Option<u64>,
    pub watchdog_trigger: bool,
    pub no_reload: bool,
    pub ignore_term: bool,
    pub self_fork: bool,
    pub health: Option<String>,
    pub require_listen_pid: bool,
}

/// Options of `orphans`.
pub struct OrphansArgs {
    pub count: usize,
    pub linger: bool,
    pub timeout: Option<u64>,
}

enum Command {
    Wait(WaitArgs),
    Http(HttpArgs),
    Orphans(OrphansArgs),
    /// The state, then what to run in this same process (so the sender is still alive when
    /// init reads the datagram and attributes it by pid).
    Notify(String, Vec<String>),
    Flood(usize, usize),
    ShutdownFd(i32),
    OldKernel(String, Vec<String>),
    HoldExec(Option<PathBuf>, Vec<String>),
    Help,
}

/// The remaining arguments of one subcommand, with typed accessors for option values.
struct ArgIter {
    args: std::vec::IntoIter<String>,
}

impl ArgIter {
    fn value(&mut self, flag: &str) -> Result<String, String> {
        self.args
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    fn number<T: std::str::FromStr>(&mut self, flag: &str) -> Result<T, String> {
        let v = self.value(flag)?;
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not a number"))
    }
}

fn parse(args: Vec<String>) -> Result<Command, String> {
    let mut it = ArgIter {
        args: args.into_iter(),
    };
    let sub = it.args.next().ok_or("missing subcommand")?;
    match sub.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "wait" => parse_wait(it).map(Command::Wait),
        "http" => parse_http(it).map(Command::Http),
        "orphans" => parse_orphans(it).map(Command::Orphans),
        "notify" => Ok(Command::Notify(it.value("notify")?, it.args.collect())),
        "flood" => Ok(Command::Flood(it.number("flood")?, it.number("flood")?)),
        "shutdown-fd" => Ok(Command::ShutdownFd(it.number("shutdown-fd")?)),
        "old-kernel" => {
            let kernel = it.value("old-kernel")?;
            let rest: Vec<String> = it.args.skip_while(|a| a == "--").collect();
            Ok(Command::OldKernel(kernel, rest))
        }
        "hold-exec" => {
            let mut report = None;
            let mut rest = Vec::new();
            while let Some(a) = it.args.next() {
                match a.as_str() {
                    "--report" => report = Some(PathBuf::from(it.value("--report")?)),
                    "--" => {
                        rest = it.args.by_ref().collect();
                        break;
                    }
                    other => return Err(format!("hold-exec: unexpected {other:?}")),
                }
            }
            Ok(Command::HoldExec(report, rest))
        }
        other => Err(format!("unknown subcommand {other:?}")),
    }
}

fn parse_wait(mut it: ArgIter) -> Result<WaitArgs, String> {
    let mut a = WaitArgs {
        exit_code: 0,
        cleanup_ms: 0,
        ignore_term: false,
        report: None,
        print_self: false,
    };
    while let Some(flag) = it.args.next() {
        match flag.as_str() {
            "--exit-code" => a.exit_code = it.number(&flag)?,
            "--cleanup" => a.cleanup_ms = it.number(&flag)?,
            "--ignore-term" => a.ignore_term = true,
            "--report" => a.report = Some(PathBuf::from(it.value(&flag)?)),
            "--print-self" => a.print_self = true,
            other => return Err(format!("wait: unknown option {other:?}")),
        }
    }
    Ok(a)
}

fn parse_http(mut it: ArgIter) -> Result<HttpArgs, String> {
    let mut a = HttpArgs {
        drain_idle: 2000,
        ..HttpArgs::default()
    };
    while let Some(flag) = it.args.next() {
        match flag.as_str() {
            "--bind" => a.bind.push(it.value(&flag)?),
            "--start-delay" => a.start_delay = it.number(&flag)?,
            "--request-delay" => a.request_delay = it.number(&flag)?,
            "--drain-idle" => a.drain_idle = it.number(&flag)?,
            "--fail-start" => a.fail_start = true,
            "--never-ready" => a.never_ready = true,
            "--ready-then-exit" => a.ready_then_exit = Some(it.number(&flag)?),
            "--hang-after" => a.hang_after = Some(it.number(&flag)?),
            "--watchdog-trigger" => a.watchdog_trigger = true,
            "--no-reload" => a.no_reload = true,
            "--ignore-term" => a.ignore_term = true,
            "--self-fork" => a.self_fork = true,
            "--health" => a.health = Some(it.value(&flag)?),
            "--require-listen-pid" => a.require_listen_pid = true,
            other => return Err(format!("http: unknown option {other:?}")),
        }
    }
    Ok(a)
}

fn parse_orphans(mut it: ArgIter) -> Result<OrphansArgs, String> {
    let mut count = None;
    let mut a = OrphansArgs {
        count: 0,
        linger: false,
        timeout: None,
    };
    while let Some(arg) = it.args.next() {
        match arg.as_str() {
            "--linger" => a.linger = true,
            "--timeout" => a.timeout = Some(it.number(&arg)?),
            n if count.is_none() && !n.starts_with('-') => {
                count = Some(
                    n.parse()
                        .map_err(|_| format!("orphans: {n:?} is not a count"))?,
                )
            }
            other => return Err(format!("orphans: unexpected argument {other:?}")),
        }
    }
    a.count = count.ok_or("orphans: missing N")?;
    Ok(a)
}

/// One lifecycle line on stderr; never panics (stderr may be closed).
pub fn log(msg: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "testsvc[{}]: {msg}",
        std::process::id()
    );
}

fn main() {
    std::process::exit(run(parse(std::env::args().skip(1).collect())));
}

fn run(command: Result<Command, String>) -> i32 {
    match command {
        Ok(Command::Help) => {
            println!("{ABOUT}\n\n{USAGE}\n\n{OPTIONS_HELP}\n\n{HTTP_HELP}");
            0
        }
        Ok(Command::Wait(args)) => wait::run(args),
        Ok(Command::Http(args)) => http::run(args),
        Ok(Command::Orphans(args)) => orphans::run(args),
        Ok(Command::Notify(state, then)) => match hostile::notify(&state) {
            0 if !then.is_empty() => run(parse(then)),
            code => code,
        },
        Ok(Command::Flood(count, size)) => hostile::flood(count, size),
        Ok(Command::ShutdownFd(fd)) => hostile::shutdown_fd(fd),
        Ok(Command::OldKernel(kernel, cmd)) => hostile::old_kernel(&kernel, &cmd),
        Ok(Command::HoldExec(report, cmd)) => hostile::hold_exec(report.as_deref(), &cmd),
        Err(e) => {
            log(&format!("{e}\n{USAGE}"));
            2
        }
    }
}
