//! Test environment: runs the real handoff-init binary, as PID 1 of a fresh PID namespace
//! (`unshare --pid --fork --mount-proc`) or as a plain subreaper, with its output in files that
//! the tests poll. Every wait has a deadline; nothing sleeps for luck. `Drop` kills whatever a
//! test leaves behind, even when it fails.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test: this package's handoff-init, or $HANDOFF_TEST_INIT (scripts/test-arch.sh
/// sets it to the aarch64 build, which runs under qemu-user through binfmt_misc).
pub static INIT: &Bin = &INIT_BIN;
/// The test service, package handoff-testsvc (a workspace member, so that `cargo install`
/// leaves it out): $HANDOFF_TEST_SVC, or built here once per test binary by `cargo build -p
/// handoff-testsvc` with the profile and target of handoff-init, next to it.
pub static SVC: &Bin = &SVC_BIN;

static INIT_BIN: Bin = Bin(LazyLock::new(|| {
    from_env("HANDOFF_TEST_INIT").unwrap_or_else(|| env!("CARGO_BIN_EXE_handoff-init").into())
}));
static SVC_BIN: Bin = Bin(LazyLock::new(|| {
    from_env("HANDOFF_TEST_SVC").unwrap_or_else(build_testsvc)
}));

/// The path of a binary, found on first use; reads as a `&str` (`&["--", SVC]`, `{SVC}`).
pub struct Bin(LazyLock<String>);

impl std::ops::Deref for Bin {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Display for Bin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}
impl std::fmt::Debug for Bin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}
impl AsRef<OsStr> for Bin {
    fn as_ref(&self) -> &OsStr {
        OsStr::new(&**self)
    }
}
impl AsRef<Path> for Bin {
    fn as_ref(&self) -> &Path {
        Path::new(&**self)
    }
}

/// Whether the binaries under test run under qemu-user (scripts/test-arch.sh sets
/// HANDOFF_TEST_EMULATED=1). What emulation cannot do is left out where it is, saying why.
pub fn emulated() -> bool {
    std::env::var_os("HANDOFF_TEST_EMULATED").is_some_and(|v| v == "1")
}

/// The ways to run init in tests that cover both: as PID 1 and as a plain child subreaper. Only
/// as PID 1 under qemu-user (7.2 answers prctl(PR_SET_CHILD_SUBREAPER) with EINVAL).
pub fn pid1_variants() -> &'static [bool] {
    if emulated() { &[true] } else { &[true, false] }
}

fn from_env(var: &str) -> Option<String> {
    let path = std::env::var(var).ok().filter(|p| !p.is_empty())?;
    assert!(Path::new(&path).is_file(), "{var}={path}: no such file");
    Some(path)
}

/// `cargo build -p handoff-testsvc` into the directory of this handoff-init
/// (`TARGET_DIR[/TRIPLE]/PROFILE_DIR`), so the service matches the build under test; returns its
/// path. Cargo is quick when the service is up to date.
fn build_testsvc() -> String {
    let init = Path::new(env!("CARGO_BIN_EXE_handoff-init"));
    let out = init.parent().expect("bin dir");
    let profile_dir = out
        .file_name()
        .and_then(OsStr::to_str)
        .expect("profile dir");
    let above = out.parent().expect("target dir");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "handoff-testsvc",
        "--bin",
        "handoff-testsvc",
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.arg("--profile").arg(match profile_dir {
        "debug" => "dev",
        other => other,
    });
    if above.join("CACHEDIR.TAG").exists() {
        cmd.arg("--target-dir").arg(above);
    } else {
        let triple = above.file_name().expect("target triple");
        cmd.arg("--target").arg(triple);
        cmd.arg("--target-dir")
            .arg(above.parent().expect("target dir"));
    }
    let status = cmd.status().expect("run cargo build -p handoff-testsvc");
    assert!(status.success(), "cargo build -p handoff-testsvc: {status}");
    let svc = out.join("handoff-testsvc");
    assert!(svc.is_file(), "{} was not built", svc.display());
    svc.to_str().expect("UTF-8 path").to_string()
}

/// Generous: these tests must pass on a loaded 2-core machine. Waits end as soon as the
/// condition holds, so this costs nothing when things work.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Whether PID-namespace tests can run here. Where `unshare` is not permitted they skip loudly,
/// unless HANDOFF_REQUIRE_UNSHARE=1 (set by .ci/run), which turns the skip into a failure.
pub fn can_unshare() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("HANDOFF_REQUIRE_UNSHARE").as_deref() != Ok("1"),
            "unshare --pid --fork --mount-proc is not permitted, and HANDOFF_REQUIRE_UNSHARE=1"
        );
        eprintln!(
            "\n!!! SKIPPED: unshare --pid is not permitted here (run as root to test PID 1) !!!\n"
        );
    }
    ok
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "handoff-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// Writes an executable script.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, body).expect("write script");
        set_mode(&p, 0o755);
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        fs::remove_dir_all(&self.0).ok();
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Polls `cond` until it is true; panics with `what` and the logs at the deadline.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A running handoff-init; stdout and stderr go to files in its temp dir.
pub struct Init {
    pub child: Child,
    pub dir: TempDir,
    pub pid1: bool,
    status: Option<ExitStatus>,
}

pub struct Opts<'a> {
    pub pid1: bool,
    pub env: &'a [(&'a str, &'a str)],
    /// Run through `sh -c PREFIX exec ...` (e.g. to inherit an fd or an ignored signal).
    pub shell_prefix: Option<&'a str>,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            pid1: true,
            env: &[],
            shell_prefix: None,
        }
    }
}

impl<'a> Opts<'a> {
    /// The defaults, as PID 1 of a new PID namespace (`true`) or as a child subreaper.
    pub fn mode(pid1: bool) -> Opts<'a> {
        Opts {
            pid1,
            ..Opts::default()
        }
    }
}

impl Init {
    /// Starts `handoff-init ARGS` as PID 1 of a new PID namespace.
    pub fn pid1(args: &[&str]) -> Init {
        Init::start(args, Opts::default())
    }

    /// Starts `handoff-init ARGS` as an ordinary process (a child subreaper).
    pub fn plain(args: &[&str]) -> Init {
        Init::start(args, Opts::mode(false))
    }

    pub fn start(args: &[&str], opts: Opts<'_>) -> Init {
        Init::start_in(TempDir::new(), args, opts)
    }

    pub fn start_in(dir: TempDir, args: &[&str], opts: Opts<'_>) -> Init {
        let mut argv: Vec<String> = Vec::new();
        if opts.pid1 {
            argv.extend(["unshare", "--pid", "--fork", "--mount-proc"].map(String::from));
        }
        argv.push(INIT.to_string());
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut cmd = match opts.shell_prefix {
            Some(prefix) => {
                let quoted: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{prefix} exec {}", quoted.join(" ")));
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(dir.path("stdout")).expect("stdout file"))
            .stderr(fs::File::create(dir.path("stderr")).expect("stderr file"));
        for (k, v) in opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start handoff-init");
        Init {
            child,
            dir,
            pid1: opts.pid1,
            status: None,
        }
    }

    /// Host pid of the handoff-init process (the child of unshare when PID 1).
    pub fn pid(&self) -> i32 {
        let top = self.child.id() as i32;
        if !self.pid1 {
            return top;
        }
        let mut found = 0;
        wait_until("unshare to fork handoff-init", || {
            found = children(top).first().copied().unwrap_or(0);
            found != 0
        });
        found
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.path("stdout")).unwrap_or_default()
    }
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path("stderr")).unwrap_or_default()
    }
    pub fn logs(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout(), self.stderr())
    }

    /// Waits until stdout+stderr contain `text`.
    pub fn wait_for_output(&self, text: &str) {
        let start = Instant::now();
        loop {
            let all = self.logs();
            if all.contains(text) {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {text:?} in output:\n{all}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a pid we own.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill failed");
    }

    /// Sends SIGTERM and asserts that handoff-init exits 0 (the message shows its logs).
    #[track_caller]
    pub fn stop_cleanly(&mut self) {
        self.signal(libc::SIGTERM);
        assert_eq!(self.wait_exit(), 0, "{}", self.logs());
    }

    /// Waits for handoff-init to exit and returns its exit code (panics on death by signal).
    pub fn wait_exit(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                return status.code().unwrap_or_else(|| {
                    panic!("handoff-init died of a signal: {status:?}\n{}", self.logs())
                });
            }
            assert!(
                start.elapsed() < DEADLINE,
                "handoff-init did not exit:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Host pids of the live processes below handoff-init whose command line contains `needle`.
    pub fn find(&self, needle: &str) -> Vec<i32> {
        descendants(self.pid())
            .into_iter()
            .filter(|&p| {
                fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| {
                        String::from_utf8_lossy(&c)
                            .replace('\0', " ")
                            .contains(needle)
                    })
                    .unwrap_or(false)
            })
            .filter(|&p| state(p).is_some_and(|s| s != 'Z'))
            .collect()
    }

    /// Waits until exactly one live process matches `needle` and returns its host pid.
    pub fn find_one(&self, needle: &str) -> i32 {
        let mut pid = 0;
        wait_until(&format!("one process matching {needle:?}"), || {
            let found = self.find(needle);
            pid = found.first().copied().unwrap_or(0);
            found.len() == 1
        });
        pid
    }
}

impl Init {
    /// The cgroup directory this init makes for its generations where cgroup v2 is writable:
    /// `<its cgroup>/handoff-init.<pid-ns inode>.<pid in that namespace>`.
    pub fn cgroup_dir(&self) -> Option<PathBuf> {
        cgroup_dir_of(self.pid())
    }
}

pub fn cgroup_dir_of(pid: i32) -> Option<PathBuf> {
    let ns = fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let ino: String = ns
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let nspid = status_field(pid, "NSpid")?
        .split_whitespace()
        .last()?
        .to_string();
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })?;
    Some(
        mount
            .join(rel.trim_start_matches('/'))
            .join(format!("handoff-init.{ino}.{nspid}")),
    )
}

/// Removes what a killed init left of its cgroups (their processes die with it: wait for that).
fn remove_cgroup_dir(dir: &Path) {
    let start = Instant::now();
    while dir.exists() && start.elapsed() < Duration::from_secs(5) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("gen-") {
                    fs::remove_dir(e.path()).ok();
                }
            }
        }
        if fs::remove_dir(dir).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Ok(None) = self.child.try_wait() {
            let pid = self.pid();
            let cgroup = cgroup_dir_of(pid);
            let below = descendants(pid);
            // SAFETY: kill(2) on processes this test started. As PID 1, SIGKILL of init makes
            // the kernel kill the whole namespace; as a subreaper, kill the tree by hand.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                for p in below {
                    libc::kill(p, libc::SIGKILL);
                }
            }
            self.child.kill().ok();
            self.child.wait().ok();
            if let Some(dir) = cgroup {
                remove_cgroup_dir(&dir);
            }
        }
    }
}

/// Direct children of `pid` (all threads).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

pub fn descendants(pid: i32) -> Vec<i32> {
    let mut all = children(pid);
    let mut i = 0;
    while i < all.len() {
        let more = children(all[i]);
        all.extend(more);
        i += 1;
    }
    all
}

/// (state, ppid, pgrp, session, tpgid) from /proc/PID/stat.
pub fn stat(pid: i32) -> Option<(char, i32, i32, i32, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.first()?.chars().next()?,
        f.get(1)?.parse().ok()?,
        f.get(2)?.parse().ok()?,
        f.get(3)?.parse().ok()?,
        f.get(5)?.parse().ok()?,
    ))
}

pub fn state(pid: i32) -> Option<char> {
    stat(pid).map(|s| s.0)
}

/// A field of /proc/PID/status, e.g. "SigBlk".
pub fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// Zombie children of `pid`.
pub fn zombies_under(pid: i32) -> usize {
    children(pid)
        .into_iter()
        .filter(|&p| state(p) == Some('Z'))
        .count()
}

/// Open fd numbers of a process.
pub fn fds(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A child process whose whole tree is SIGKILLed on drop (for tests that start something other
/// than `Init`, so a failing assertion leaves nothing behind).
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let top = self.0.id() as i32;
        for p in descendants(top).into_iter().rev() {
            // SAFETY: kill(2) on processes this test started.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Pids whose trees are SIGKILLed on drop.
pub struct KillPids(pub Vec<i32>);

impl Drop for KillPids {
    fn drop(&mut self) {
        for &top in &self.0 {
            for p in descendants(top).into_iter().rev().chain([top]) {
                // SAFETY: kill(2) on processes this test started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
}

/// Returns from a test where PID namespaces are not available (and HANDOFF_REQUIRE_UNSHARE is not
/// set: then `can_unshare` fails the test). For the test files that `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! need_unshare {
    () => {
        if !$crate::common::can_unshare() {
            return;
        }
    };
}
