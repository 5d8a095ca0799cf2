//! What init does only as a supervisor (with `--listen` or another handoff option): its sockets
//! and runtime directory, notify messages and control requests, readiness probes, status.

use super::{Init, env_entry};
use crate::config::{Ready, Supervise};
use crate::fdstore::FdStore;
use crate::handoff::{Fact, PidSource, Ping};
use crate::listen::Listener;
use crate::spawn::{self, Command, Plan};
use crate::{control, listen, notify, procs, status};
use crate::{debug, info, warn};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

/// Notify datagrams read per wake-up, at most.
const NOTIFY_BATCH: usize = 64;

/// What only the supervisor has: sockets and the runtime directory. Fields drop in order, so
/// the sockets are unlinked before the directory is removed.
pub(super) struct Sup {
    pub(super) opts: Supervise,
    pub(super) listeners: Vec<Listener>,
    pub(super) notify: notify::Server,
    pub(super) control: control::Server,
    pub(super) upstream: Option<String>,
    /// One cgroup per generation, where init's cgroup v2 is writable (see `cgroup`).
    pub(super) cgroups: Option<crate::cgroup::Cgroups>,
    /// fds parked with FDSTORE=1, passed to later generations after the listeners.
    pub(super) fdstore: FdStore,
    /// Held for its Drop: removes the directory after the sockets in it.
    _dir: RuntimeDir,
}

struct RuntimeDir {
    path: PathBuf,
    created: bool,
}

impl RuntimeDir {
    /// Creates the directory 0700, or uses an existing one as it is if it is init's user's and
    /// nobody else may write to it. An existing directory is never chmod'ed: one shared with
    /// others (/tmp, mode 1777) is refused instead.
    fn create(path: PathBuf) -> Result<RuntimeDir, String> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create runtime dir {}: {e}", path.display()))?;
        }
        let created = match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(format!("cannot create runtime dir {}: {e}", path.display())),
        };
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("runtime dir {}: {e}", path.display()))?;
        // In a shared directory such as /tmp, a directory someone else made is not ours to use.
        if !meta.is_dir() {
            return Err(format!("runtime dir {} is not a directory", path.display()));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(format!(
                "runtime dir {} belongs to uid {}",
                path.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "runtime dir {} is writable by others (mode {:o}); give init a private one",
                path.display(),
                meta.mode() & 0o7777
            ));
        }
        Ok(RuntimeDir { path, created })
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if self.created {
            std::fs::remove_dir(&self.path).ok();
        }
    }
}

impl Sup {
    /// Sockets and the runtime directory, all made before the first generation starts; on error
    /// what was made is removed again by Drop.
    pub(super) fn open(opts: &Supervise) -> Result<Sup, String> {
        let upstream = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|v| !v.is_empty());
        let mut listeners = listen::adopt().map_err(|e| e.to_string())?;
        listeners.extend(listen::bind_all(&opts.listen).map_err(|e| e.to_string())?);
        if listeners.len() > (listen::HIGH_FD - 3) as usize {
            return Err(format!("too many listeners ({})", listeners.len()));
        }
        listen::place(&mut listeners)?;
        let explicit = opts
            .runtime_dir
            .as_deref()
            .map(|d| d.to_string_lossy().into_owned());
        let mut tried = Vec::new();
        let mut dir = None;
        for candidate in crate::config::runtime_dirs(explicit.as_deref()) {
            match RuntimeDir::create(candidate) {
                Ok(d) => {
                    dir = Some(d);
                    break;
                }
                Err(e) => tried.push(e),
            }
        }
        let dir = dir.ok_or_else(|| tried.join("; "))?;
        if !tried.is_empty() {
            info!("runtime dir {} ({})", dir.path.display(), tried.join("; "));
        }
        let control_path = opts
            .control
            .clone()
            .unwrap_or_else(|| dir.path.join("control.sock"));
        let control = control::Server::bind(&control_path)?;
        let notify = notify::Server::bind(&dir.path.join("notify.sock"))?;
        for (i, l) in listeners.iter().enumerate() {
            info!(
                "listening on {}={} (fd {} in each generation)",
                l.name,
                l.url,
                3 + i
            );
        }
        let cgroups = if opts.cgroup {
            crate::cgroup::Cgroups::open()
        } else {
            Err("--cgroup off".into())
        };
        let cgroups = match cgroups {
            Ok(c) => {
                debug!(
                    "cgroup {} holds one cgroup per generation",
                    c.dir().display()
                );
                Some(c)
            }
            Err(e) => {
                debug!("no cgroup per generation ({e}): process groups track them");
                None
            }
        };
        Ok(Sup {
            opts: opts.clone(),
            listeners,
            notify,
            control,
            upstream,
            cgroups,
            fdstore: FdStore::new(opts.fdstore_max),
            _dir: dir,
        })
    }
}

impl Init {
    /// Notify datagrams and control requests.
    pub(super) fn service_sockets(&mut self) {
        let Some(sup) = &mut self.sup else { return };
        // Bounded per wake-up (a flood waits in the kernel's queue, not in init's memory); what
        // is left keeps the socket readable, so the next poll returns at once.
        let msgs = sup.notify.recv_batch(NOTIFY_BATCH);
        let requests = sup.control.service();
        for (m, fds) in msgs {
            self.on_notify(m, fds);
        }
        for r in requests {
            match r {
                control::Request::Reload {
                    client,
                    in_place: true,
                    ..
                } => {
                    info!("control: in-place reload requested");
                    self.apply(Fact::ReloadInPlace {
                        waiter: Some(client),
                    });
                }
                control::Request::Reload { client, .. } => {
                    info!("control: reload requested");
                    self.apply(Fact::Trigger {
                        waiter: Some(client),
                    });
                }
                control::Request::Status { client, json } => {
                    let text = if json {
                        self.status_json()
                    } else {
                        self.status_text()
                    };
                    if let Some(sup) = &mut self.sup {
                        sup.control.reply(client, &text);
                    }
                }
            }
        }
    }

    pub(super) fn on_notify(&mut self, m: notify::Message, fds: Vec<OwnedFd>) {
        let Some(generation) = self.attribute(m.pid) else {
            debug!(
                "notify: message from pid {} that belongs to no generation; ignored",
                m.pid
            );
            return;
        };
        if m.fdstore || m.fdstore_remove {
            self.fd_store(generation, &m, fds);
        }
        if let Some(text) = m.status {
            debug!("generation {generation}: STATUS={text}");
            self.apply(Fact::Status { generation, text });
        }
        if let Some(pid) = m.mainpid {
            let fact = self.main_pid_fact(generation, pid, PidSource::MainPid);
            self.apply(fact);
        }
        if let Some(us) = m.extend_timeout_usec {
            self.apply(Fact::Extend {
                generation,
                by: Duration::from_micros(us),
            });
        }
        if let Some(us) = m.watchdog_usec {
            // A day at most: the interval is the service's to choose, not a way to park a
            // deadline where Instant arithmetic overflows.
            let every = Duration::from_micros(us).min(Duration::from_secs(86_400));
            self.apply(Fact::Watchdog {
                generation,
                ping: Ping::Interval(every),
            });
        }
        if m.watchdog_alive {
            self.apply(Fact::Watchdog {
                generation,
                ping: Ping::Alive,
            });
        }
        if m.watchdog_trigger {
            self.apply(Fact::Watchdog {
                generation,
                ping: Ping::Trigger,
            });
        }
        if m.stopping {
            info!("generation {generation}: stopping (STOPPING=1)");
        }
        if m.reloading {
            // In an in-place reload, "reloading in place" was said when the signal was sent:
            // RELOADING=1 is the service's answer to it. Without one, the service reloads on
            // its own, and this is the only line that says so.
            let asked = self
                .machine
                .generations()
                .iter()
                .any(|g| g.id == generation && g.reload_deadline.is_some());
            if asked {
                debug!("generation {generation}: RELOADING=1");
            } else {
                info!("generation {generation}: reloading (RELOADING=1)");
            }
            self.apply(Fact::Reloading { generation });
        }
        if m.ready {
            self.apply(Fact::Ready { generation });
        }
    }

    /// FDSTORE=1 (the fds that came with the message) and FDSTOREREMOVE=1. Whatever is not
    /// kept is closed when `fds` drops.
    fn fd_store(&mut self, generation: u32, m: &notify::Message, fds: Vec<OwnedFd>) {
        let Some(sup) = &mut self.sup else { return };
        let name = m.fdname.as_deref().unwrap_or("stored");
        if let Err(e) = listen::valid_name(name) {
            warn!("generation {generation}: FDNAME: {e}; fds not stored");
            return;
        }
        if m.fdstore_remove {
            let n = sup.fdstore.remove(name);
            debug!("generation {generation}: fd store: removed {n} named '{name}'");
        }
        if !m.fdstore || fds.is_empty() {
            return;
        }
        if !sup.fdstore.enabled() {
            warn!(
                "generation {generation}: FDSTORE=1 with {} fds, but the fd store is off (--fdstore-max); closed",
                fds.len()
            );
            return;
        }
        let added = sup.fdstore.add(name, fds, m.fdpoll);
        if added.refused > 0 {
            warn!(
                "generation {generation}: fd store full ({} of {}): {} fds named '{name}' closed",
                sup.fdstore.len(),
                sup.fdstore.max(),
                added.refused
            );
        }
        debug!(
            "generation {generation}: fd store: {} stored as '{name}' ({} already there), {} held",
            added.kept,
            added.duplicate,
            sup.fdstore.len()
        );
    }

    /// What a pid file or MAINPID= says, with the generation the pid belongs to (only a live
    /// process can belong to one) and whether it is init's own child.
    pub(super) fn main_pid_fact(&self, generation: u32, pid: i32, source: PidSource) -> Fact {
        let owner = if procs::alive(pid) {
            self.attribute(pid)
        } else {
            None
        };
        Fact::MainPid {
            generation,
            pid,
            source,
            owner,
            child: procs::ppid(pid) == Some(std::process::id() as i32),
        }
    }

    /// Which generation a pid belongs to: its cgroup where there are cgroups; else its main pid,
    /// its process group, or a descendant of its main pid (found through /proc parent links).
    pub(super) fn attribute(&self, pid: i32) -> Option<u32> {
        let gens = self.machine.generations();
        let known = |g: u32| gens.iter().any(|x| x.id == g);
        if let Some(g) = self
            .cgroups()
            .and_then(|c| c.owner(pid))
            .filter(|&g| known(g))
        {
            return Some(g);
        }
        let by_main = |p: i32| {
            gens.iter()
                .find(|g| g.pgid != 0 && g.main == p)
                .map(|g| g.id)
        };
        if let Some(g) = by_main(pid) {
            return Some(g);
        }
        let pgrp = procs::pgrp(pid)?;
        if let Some(g) = gens.iter().find(|g| g.pgid > 1 && g.pgid == pgrp) {
            return Some(g.id);
        }
        let mut p = pid;
        for _ in 0..64 {
            p = procs::ppid(p)?;
            if p <= 1 {
                return None;
            }
            if let Some(g) = by_main(p) {
                return Some(g);
            }
        }
        None
    }

    /// Starts generation's readiness probe; a fact only if it could not be started.
    pub(super) fn probe(&mut self, generation: u32, main: i32) -> Option<Fact> {
        let sup = self.sup.as_ref()?;
        let Ready::Exec(words) = &sup.opts.ready else {
            return None;
        };
        let result = Command::prepare(words).and_then(|cmd| {
            let extra_env = vec![
                env_entry("HANDOFF_GENERATION", &generation.to_string()),
                env_entry("HANDOFF_MAINPID", &main.to_string()),
            ];
            let plan = Plan {
                mask: &self.mask,
                terminal: spawn::Terminal::Detach,
                env: &self.env,
                extra_env,
                pid_vars: &[],
                listen_fds: &[],
                cgroup: None,
            };
            spawn::spawn(&cmd, &plan)
        });
        match result {
            Ok(pid) => {
                self.probes.push((pid, generation));
                None
            }
            Err(e) => {
                warn!("generation {generation}: readiness probe: {e}");
                Some(Fact::ProbeDone {
                    generation,
                    ok: false,
                })
            }
        }
    }

    pub(super) fn status_text(&self) -> String {
        status::text(
            &self.machine,
            self.listeners(),
            self.fdstore_use(),
            self.started,
        )
    }

    pub(super) fn status_json(&self) -> String {
        status::json(
            &self.machine,
            self.listeners(),
            self.fdstore_use(),
            self.started,
        )
    }

    fn fdstore_use(&self) -> (usize, usize) {
        self.sup
            .as_ref()
            .map_or((0, 0), |s| (s.fdstore.len(), s.fdstore.max()))
    }

    pub(super) fn listeners(&self) -> &[Listener] {
        self.sup.as_ref().map_or(&[], |s| &s.listeners)
    }
}
