//! `handoff-init --version`: the package version and the commit it was built from (build.rs).

mod common;

use common::INIT;
use std::process::Command;

#[test]
fn version_names_the_package_version_and_the_commit() {
    let out = Command::new(INIT).arg("--version").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string());
    // Outside a git checkout (a source tarball) build.rs says `unknown`.
    let commit = std::env::var("HANDOFF_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or(head)
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "handoff-init {} (commit {commit})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}
