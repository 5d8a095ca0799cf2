//! Gives `handoff-init --version` the commit it was built from, as HANDOFF_COMMIT: the value of
//! $HANDOFF_COMMIT when set (for builds from a tarball), else `git rev-parse` of the source
//! tree, else `unknown`. Nothing else of the build machine (no date, no path) goes into the binary.
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=HANDOFF_COMMIT");
    let from_env = std::env::var("HANDOFF_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit = from_env.or_else(|| {
        // Rerun when HEAD moves: HEAD itself, the branch it names, and packed refs.
        let git_dir = git(&["rev-parse", "--absolute-git-dir"])?;
        let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
            .unwrap_or_else(|| git_dir.clone());
        // Only paths that exist: cargo reruns a build script on every build for a missing one.
        // A branch without a loose ref file gets one in its directory when it moves.
        let mut watch = vec![
            Path::new(&git_dir).join("HEAD"),
            Path::new(&common).join("packed-refs"),
        ];
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let file = Path::new(&common).join(&head_ref);
            watch.extend(file.parent().map(Path::to_path_buf));
            watch.push(file);
        }
        for path in watch.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    let commit = commit.unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HANDOFF_COMMIT={commit}");
}
