//! One cgroup v2 sub-cgroup per generation, where init's own cgroup is writable — as systemd does
//! for its units. The kernel then knows every process a generation started, also those that
//! called setsid(2) or double-forked away from its process group, so a drained, failed or ended
//! generation is stopped whole, and a pid can be attributed to its generation exactly.
//!
//! Where cgroup v2 is not mounted or init's cgroup is not writable (most containers mount
//! /sys/fs/cgroup read-only), generations are known by their process groups alone: a process that
//! left its group is stopped only by init's own shutdown. See README, "Limits and guarantees".
//!
//! Layout: `<init's cgroup>/handoff-init.<pid-ns inode>.<pid>/gen-G` (see `identity`). Each
//! generation's child joins its cgroup itself, between fork and exec (see `spawn`), so nothing it
//! forks can escape before the move. Init itself stays where it is.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub struct Cgroups {
    dir: PathBuf,
}

impl Cgroups {
    /// Claims a directory under init's own cgroup v2 directory; Err says why there is none.
    pub fn open() -> Result<Cgroups, String> {
        let mount = cgroup2_mount().ok_or("no cgroup2 file system is mounted")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("init is in no cgroup v2")?;
        let base = mount.join(rel.trim_start_matches('/'));
        let dir = base.join(format!("handoff-init.{}", identity()?));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // Left by an init of the same identity that was SIGKILLed: ours now.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create a cgroup in {}: {e}", base.display())),
        }
        Ok(Cgroups { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, generation: u32) -> PathBuf {
        self.dir.join(format!("gen-{generation}"))
    }

    /// Makes the generation's cgroup; returns its `cgroup.procs`, for the child to join.
    pub fn create(&self, generation: u32) -> Option<CString> {
        let path = self.path(generation);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                crate::warn!("generation {generation}: cannot create its cgroup: {e}");
                return None;
            }
        }
        CString::new(path.join("cgroup.procs").as_os_str().as_bytes()).ok()
    }

    /// The processes in the generation's cgroup (none if it has none).
    pub fn members(&self, generation: u32) -> Vec<i32> {
        std::fs::read_to_string(self.path(generation).join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether no live process is left in it: `populated 0` in cgroup.events (cgroup v2, 4.5).
    pub fn is_empty(&self, generation: u32) -> bool {
        match std::fs::read_to_string(self.path(generation).join("cgroup.events")) {
            Ok(events) => !events.lines().any(|l| l.trim() == "populated 1"),
            Err(_) => true,
        }
    }

    /// SIGKILL to every process in it: cgroup.kill (Linux 5.14), which also catches processes
    /// forked meanwhile; on older kernels, each member in turn.
    pub fn kill(&self, generation: u32) {
        if std::fs::write(self.path(generation).join("cgroup.kill"), "1").is_ok() {
            return;
        }
        // A fork racing this loop adds a member; a few rounds catch a fork bomb's children as
        // they appear, and the generation's record stays until the cgroup is empty anyway.
        for _ in 0..4 {
            let members = self.members(generation);
            if members.is_empty() {
                return;
            }
            for pid in members {
                crate::sys::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// The generation a process belongs to, from /proc/PID/cgroup.
    pub fn owner(&self, pid: i32) -> Option<u32> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        let name = self.dir.file_name()?.to_str()?;
        let (_, tail) = rel.rsplit_once(&format!("/{name}/gen-"))?;
        tail.parse().ok()
    }

    /// Removes the generation's cgroup; it must have no process left.
    pub fn remove(&self, generation: u32) {
        std::fs::remove_dir(self.path(generation)).ok();
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.file_name().as_bytes().starts_with(b"gen-") {
                    std::fs::remove_dir(e.path()).ok();
                }
            }
        }
        std::fs::remove_dir(&self.dir).ok();
    }
}

/// What names init's directory: its PID namespace's inode and its pid in it, unique among the
/// inits alive on one machine, so several can share a cgroup (a test host) and whoever started
/// one can find and remove what a killed one left behind.
pub fn identity() -> Result<String, String> {
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map_err(|e| format!("cannot read /proc/self/ns/pid: {e}"))?;
    let ino: String = ns
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    Ok(format!("{ino}.{}", std::process::id()))
}

/// Where cgroup2 is mounted, from /proc/self/mountinfo (proc(5)): the fifth field is the mount
/// point, and the file system type follows the ` - ` separator.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(unescape))
            .flatten()
    })
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal `\NNN`.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let n = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |n, c| n * 8 + u32::from(c - b'0'));
            out.push(n as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/sys/fs/cgroup"), PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape("/a\\04"), PathBuf::from("/a\\04"));
    }
}
