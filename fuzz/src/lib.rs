//! The bodies of the fuzz targets, one function per target, shared by the libFuzzer binaries
//! (fuzz_targets/, run by scripts/fuzz.sh) and the corpus replay (tests/corpus.rs, stable
//! `cargo test`). Each feeds its input to the real parser of handoff-init, compiled here from
//! src/ as it is (the `#[path]` modules below keep their `crate::` paths), and checks what the
//! parser promises beyond not panicking. A failed assertion is a finding, as a crash is.
#![allow(dead_code, unused_imports, unused_macros)]

#[path = "../../src/cli.rs"]
mod cli;
#[path = "../../src/compat.rs"]
mod compat;
#[path = "../../src/config.rs"]
mod config;
#[path = "../../src/control.rs"]
mod control;
#[path = "../../src/fdstore.rs"]
mod fdstore;
#[path = "../../src/handoff/mod.rs"]
mod handoff;
#[path = "../../src/listen.rs"]
mod listen;
#[path = "../../src/log.rs"]
mod log;
#[path = "../../src/notify.rs"]
mod notify;
#[path = "../../src/procs.rs"]
mod procs;
#[path = "../../src/signals.rs"]
mod signals;
#[path = "../../src/status.rs"]
mod status;
#[path = "../../src/sys.rs"]
mod sys;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

/// A target's body: panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by the name of its fuzz_targets/ binary and corpus/ directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("cli", cli),
    ("duration", duration),
    ("signal", signal),
    ("listen_url", listen_url),
    ("notify", notify),
    ("notify_recv", notify_recv),
    ("control_request", control_request),
    ("pidfile", pidfile),
];

/// The longest duration any option takes (a year; see config::seconds).
const YEAR: Duration = Duration::from_secs(31_536_000);

/// The command line and the HANDOFF_* environment, validated into a `Config` as `main` does.
/// Input: NUL-separated arguments; after a 0xff byte, `NAME=VALUE` lines set as HANDOFF_NAME.
pub fn cli(data: &[u8]) {
    let (args, env) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut set = Vec::new();
    for line in env.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.is_empty() || k.contains('\0') || v.contains('\0') {
            continue;
        }
        let key = format!("HANDOFF_{k}");
        // SAFETY: the fuzz targets and the replay run on one thread; nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var(&key, v) };
        set.push(key);
    }
    let args = args
        .split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()));
    let parsed = cli::parse(args);
    for key in &set {
        // SAFETY: as above.
        unsafe { std::env::remove_var(key) };
    }
    match parsed {
        Ok(cli::Parsed::Run(c)) => {
            assert!(!c.command.is_empty(), "a run without a command");
            match config::Config::from_cli(*c) {
                Ok(cfg) => check_config(&cfg),
                Err(e) => assert!(!e.is_empty()),
            }
        }
        Ok(_) => {}
        Err(e) => assert!(!e.is_empty()),
    }
}

fn check_config(cfg: &config::Config) {
    assert!(cfg.grace <= YEAR);
    if let Some(d) = cfg.stop_delay {
        assert!(
            !d.is_zero() && d < cfg.grace,
            "stop delay {d:?} not within grace"
        );
    }
    assert!(cfg.rewrite.iter().all(|&s| (0..=signals::MAX).contains(&s)));
    assert!(!cfg.command.is_empty());
    let valid_sig = |s: i32| (1..=signals::MAX).contains(&s);
    if let Some(s) = cfg.pdeathsig {
        assert!(valid_sig(s));
    }
    if let Some(sup) = &cfg.supervise {
        assert!(sup.ready_timeout <= YEAR && sup.drain_timeout <= YEAR);
        assert!(valid_sig(sup.stop_signal));
        assert!(sup.handoff_signal.is_none_or(valid_sig));
        assert!(sup.reload_signal.is_none_or(valid_sig));
        assert!(sup.watchdog.is_none_or(|w| !w.is_zero() && w <= YEAR));
        for spec in &sup.listen {
            check_spec(spec);
        }
        if let config::Ready::Exec(argv) = &sup.ready {
            assert!(!argv.is_empty());
        }
    }
}

/// `--grace` and the other durations; what init prints of one must parse back to about it.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse_duration(text) {
        Ok(d) => {
            assert!(d <= YEAR, "{text:?} gave {d:?}");
            let shown = log::dur(d);
            let back = config::parse_duration(&shown)
                .unwrap_or_else(|e| panic!("{d:?} shown as {shown:?} does not parse: {e}"));
            let off = back.abs_diff(d);
            assert!(off <= Duration::from_millis(5), "{d:?} shown as {shown:?}");
            assert!(
                shown
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.')
                    && !shown.contains(".s"),
                "{d:?} shown as {shown:?}"
            );
        }
        Err(e) => assert!(e.contains("is not a duration"), "{e}"),
    }
}

/// Signal specs (`--stop-signal`, `--rewrite FROM:TO`, `--pdeathsig`, …) and exit-code rules
/// (`--remap-exit FROM:TO`). First byte: bit 0 allows 0 (as TO of a rewrite does).
pub fn signal(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let allow_zero = flags & 1 == 1;
    match signals::parse(text, allow_zero) {
        Ok(n) => {
            assert!(
                (1..=signals::MAX).contains(&n) || (allow_zero && n == 0),
                "{n}"
            );
            let name = signals::name(n);
            if n > 0 && !name.starts_with("signal ") {
                assert_eq!(signals::parse(&name, false), Ok(n), "{name}");
            }
        }
        Err(e) => assert!(e.starts_with("unknown signal"), "{e}"),
    }
    if let Ok((from, to)) = config::parse_rewrite(text) {
        assert!((1..=signals::MAX).contains(&from) && (0..=signals::MAX).contains(&to));
    }
    if let Ok((from, to)) = config::parse_remap(text) {
        let (a, b) = text.split_once(':').unwrap();
        assert_eq!((a.trim().parse(), b.trim().parse()), (Ok(from), Ok(to)));
    }
}

/// `--listen [NAME=]URL`. First byte: the option's index (names unix sockets without one).
pub fn listen_url(data: &[u8]) {
    let Some((&index, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match listen::Spec::parse(text, usize::from(index)) {
        Ok(spec) => check_spec(&spec),
        Err(e) => assert!(e.starts_with("invalid --listen"), "{e}"),
    }
}

fn check_spec(spec: &listen::Spec) {
    let n = &spec.name;
    assert!(
        !n.is_empty() && n.len() <= 255 && n.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
        "LISTEN_FDNAMES name {n:?}"
    );
    match &spec.addr {
        listen::Addr::Unix(p) => assert!(p.is_absolute() && p.as_os_str().len() > 1, "{p:?}"),
        listen::Addr::Abstract(a) => assert!(!a.is_empty()),
        listen::Addr::Tcp(_) | listen::Addr::Udp(_) => {}
    }
}

/// A notify datagram's payload (sd_notify KEY=VALUE lines), as `notify::Server::recv` passes
/// it on; its STATUS= must come out of the JSON status escaped.
pub fn notify(data: &[u8]) {
    let m = notify::parse(4242, data);
    assert_eq!(
        m.pid, 4242,
        "the pid comes from the kernel, never the payload"
    );
    assert!(m.mainpid.is_none_or(|p| p > 0));
    let text = String::from_utf8_lossy(data);
    assert_eq!(m.ready, text.lines().any(|l| l == "READY=1"));
    if let Some(s) = &m.status {
        assert!(text.contains("STATUS="));
        assert!(!s.contains('\n'));
        let json = status::str(s);
        assert!(!json.chars().any(|c| (c as u32) < 0x20), "{json:?}");
    }
}

/// A datagram through the kernel into `notify::Server::recv`, with fds attached (SCM_RIGHTS):
/// whatever is sent, every fd the kernel installs in the receiver is closed again. Input: first
/// byte the number of fds to attach (at most SCM_MAX_FD, 253), the rest the payload.
pub fn notify_recv(data: &[u8]) {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::sync::OnceLock;
    static PAIR: OnceLock<(notify::Server, OwnedFd)> = OnceLock::new();
    let (server, tx) = PAIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("handoff-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let server = notify::Server::bind(&path).unwrap();
        let tx = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let addr = nix::sys::socket::UnixAddr::new(&path).unwrap();
        nix::sys::socket::connect(tx.as_raw_fd(), &addr).unwrap();
        // Connected: the name is no longer needed, and nothing is left behind.
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        (server, tx)
    });
    let Some((&nfds, payload)) = data.split_first() else {
        return;
    };
    let payload = &payload[..payload.len().min(65536)];
    let null = std::fs::File::open("/dev/null").unwrap();
    let fds: Vec<i32> = (0..usize::from(nfds).min(253))
        .map(|_| null.as_raw_fd())
        .collect();
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(payload)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(tx.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_DONTWAIT, None).unwrap();
    drop(null);
    // The kernel installs received fds at the lowest free numbers: one left open moves it up.
    let lowest = || {
        let fd = nix::fcntl::fcntl(&*tx, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(0)).unwrap();
        nix::unistd::close(fd).unwrap();
        fd
    };
    let before = lowest();
    let mut got = 0;
    // Received fds come with each message; dropping them closes them.
    for (m, _fds) in server.recv_batch(64) {
        assert_eq!(
            m.pid,
            std::process::id() as i32,
            "attributed by SO_PASSCRED"
        );
        got += 1;
    }
    assert!(got <= 1);
    assert_eq!(
        lowest(),
        before,
        "an fd received with {} fds leaked",
        fds.len()
    );
}

/// A control request as the control server frames it: the bytes up to the first newline,
/// decoded lossily and trimmed.
pub fn control_request(data: &[u8]) {
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let line = String::from_utf8_lossy(&data[..end]).trim().to_string();
    match control::parse_request(&line) {
        Some(control::Ask::Reload { json, in_place }) => {
            assert!(line.starts_with("reload"));
            assert_eq!(json, line.ends_with(" json"));
            assert_eq!(in_place, line.split_whitespace().any(|w| w == "in-place"));
        }
        Some(control::Ask::Status { json }) => {
            assert!(line.starts_with("status"));
            assert_eq!(json, line.ends_with(" json"));
        }
        None => {
            let first = line.split_whitespace().next().unwrap_or("");
            assert!(first != "reload" && first != "status", "{line:?} refused");
        }
    }
}

/// The content of a `--pidfile`.
pub fn pidfile(data: &[u8]) {
    if let Some(p) = procs::parse_pid(data) {
        assert!(p > 1, "{p}");
        assert_eq!(procs::parse_pid(p.to_string().as_bytes()), Some(p));
    }
}
