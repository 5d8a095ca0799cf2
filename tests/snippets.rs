//! The service examples in the README, cut out of it and run under handoff-init as PID 1: each
//! answers a GET, survives a handoff, keeps its watchdog fed for two intervals (no recovery
//! starts) and stops on SIGTERM. Go builds against Debian's go-systemd (scripts/setup.sh).

#[macro_use]
mod common;
#[path = "support/load.rs"]
mod load;
#[path = "support/sup.rs"]
mod sup;

use common::*;
use std::fs;
use std::process::Command;
use sup::*;

/// The fenced block right after `<!-- snippet: NAME -->` in README.md.
fn snippet(name: &str) -> String {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = format!("<!-- snippet: {name} -->\n");
    let after = &readme[readme
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker:?} in README.md"))
        + marker.len()..];
    let body = &after[after.find('\n').expect("a fence") + 1..];
    body[..body.find("\n```").expect("a closing fence") + 1].to_string()
}

fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Runs `cmd` as the service: a GET, a handoff, two watchdog intervals of keep-alives, SIGTERM.
fn check(cmd: &[&str], stop_code: i32) {
    let mut args = vec![
        "--listen",
        "tcp://127.0.0.1:0",
        // Keep-alives every 2 s: slack for a loaded machine, where a process can wait that long
        // for a CPU.
        "--watchdog",
        "4s",
        "--ready-timeout",
        "20s",
        "--",
    ];
    args.extend_from_slice(cmd);
    let mut sup = Sup::start(&args, true);
    sup.wait_serving(1);
    assert_eq!(get(sup.addr(), "/"), "hi\n");
    let (code, out) = sup.reload();
    assert_eq!(code, 0, "{out}\n{}", sup.init.logs());
    assert!(out.starts_with("ok: generation 2 serving"), "{out}");
    // Generation 2 feeds its watchdog: wait (on init's own clock) until it has been up for two
    // intervals, with keep-alives seen, and no recovery may have started.
    wait_until("generation 2 up 2 watchdog intervals", || {
        let json = sup.ctl(&["status", "--json"]).1;
        json_number(&json, "uptime_ms").is_some()
            && json
                .split("\"generation\":2,")
                .nth(1)
                .and_then(|g| json_number(g, "uptime_ms"))
                .is_some_and(|up| up >= 8000)
            && json.contains("\"last_keepalive_ms_ago\":")
            && !json.contains("\"last_keepalive_ms_ago\":null")
    });
    let logs = sup.init.logs();
    assert!(!logs.contains("watchdog"), "{logs}");
    assert_eq!(get(sup.addr(), "/"), "hi\n");
    sup.init.signal(libc::SIGTERM);
    assert_eq!(sup.init.wait_exit(), stop_code, "{}", sup.init.logs());
}

#[test]
fn the_python_example_runs() {
    need_unshare!();
    let dir = TempDir::new();
    let path = dir.path("svc.py");
    fs::write(&path, snippet("python")).unwrap();
    check(&["python3", path.to_str().unwrap()], 0);
}

#[test]
fn the_rust_example_runs() {
    need_unshare!();
    let dir = TempDir::new();
    let src = dir.path("svc.rs");
    let bin = dir.path("svc");
    fs::write(&src, snippet("rust")).unwrap();
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--edition", "2021", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("rustc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The example leaves SIGTERM at its default action: the service dies of it (128 + 15).
    check(&[bin.to_str().unwrap()], 143);
}

#[test]
fn the_go_example_runs() {
    need_unshare!();
    let have = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(have, "go is not installed: run scripts/setup.sh");
    let dir = TempDir::new();
    let src = dir.path("main.go");
    let bin = dir.path("svc");
    fs::write(&src, snippet("go")).unwrap();
    // Offline, against Debian's packaged go-systemd (and its godbus) in /usr/share/gocode.
    let gocode = "/usr/share/gocode/src/github.com";
    fs::write(
        dir.path("go.mod"),
        format!(
            "module svc\n\ngo 1.19\n\nrequire github.com/coreos/go-systemd/v22 v22.3.2\n\n\
             replace github.com/coreos/go-systemd/v22 => {gocode}/coreos/go-systemd\n\n\
             replace github.com/godbus/dbus/v5 => {gocode}/godbus/dbus\n"
        ),
    )
    .unwrap();
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&dir.0)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", dir.path("gocache"))
        .output()
        .expect("go build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&[bin.to_str().unwrap()], 0);
}
