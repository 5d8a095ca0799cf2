//! The fd store (sd_notify(3) `FDSTORE=1`, systemd.service(5) `FileDescriptorStoreMax=`): fds a
//! generation parks with init — typically its open client connections — passed to every
//! generation started later, after the listeners, in `LISTEN_FDS` and `LISTEN_FDNAMES`.
//!
//! Rules, as systemd's: at most `--fdstore-max` fds (0 = off: fds sent with `FDSTORE=1` are
//! closed); the same file stored twice is kept once; `FDNAME=` names them (default `stored`),
//! `FDSTOREREMOVE=1` with `FDNAME=` closes every fd of that name; an fd that reports POLLHUP or
//! POLLERR (a connection the peer reset) is dropped, unless it was stored with `FDPOLL=0`. Every
//! stored fd is closed when init exits.

use nix::sys::stat::fstat;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// The largest `--fdstore-max` (systemd's cap for FileDescriptorStoreMax= too).
pub const MAX: usize = 4096;

struct Stored {
    name: String,
    fd: OwnedFd,
    poll: bool,
    /// st_dev, st_ino: the same open file stored twice is kept once.
    id: (u64, u64),
}

pub struct FdStore {
    max: usize,
    fds: Vec<Stored>,
}

/// What one `FDSTORE=1` did.
#[derive(Debug, PartialEq)]
pub struct Added {
    pub kept: usize,
    /// Already in the store (the same open file).
    pub duplicate: usize,
    /// Over `--fdstore-max`: closed.
    pub refused: usize,
}

impl FdStore {
    pub fn new(max: usize) -> FdStore {
        FdStore {
            max: max.min(MAX),
            fds: Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max > 0
    }

    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Stores `fds` under `name`; what is not kept is closed.
    pub fn add(&mut self, name: &str, fds: Vec<OwnedFd>, poll: bool) -> Added {
        let mut added = Added {
            kept: 0,
            duplicate: 0,
            refused: 0,
        };
        for fd in fds {
            let Ok(st) = fstat(fd.as_fd()) else {
                added.refused += 1;
                continue;
            };
            // dev_t and ino_t are not u64 on every target.
            #[allow(clippy::unnecessary_cast)]
            let id = (st.st_dev as u64, st.st_ino as u64);
            if self.fds.iter().any(|s| s.id == id) {
                added.duplicate += 1;
            } else if self.fds.len() >= self.max {
                added.refused += 1;
            } else {
                self.fds.push(Stored {
                    name: name.to_string(),
                    fd,
                    poll,
                    id,
                });
                added.kept += 1;
            }
        }
        added
    }

    /// `FDSTOREREMOVE=1`: closes every fd named `name`; returns how many.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.fds.len();
        self.fds.retain(|s| s.name != name);
        before - self.fds.len()
    }

    /// Drops the polled fds that init's own poll(2) over `watched` found hung up (`reported`,
    /// raw fds; see `sys::hung_up`): no poll of its own. Returns the names dropped.
    pub fn drop_hung_up(&mut self, reported: &[RawFd]) -> Vec<String> {
        if reported.is_empty() {
            return Vec::new();
        }
        let mut names = Vec::new();
        self.fds.retain(|s| {
            let gone = s.poll && reported.contains(&s.fd.as_raw_fd());
            if gone {
                names.push(s.name.clone());
            }
            !gone
        });
        names
    }

    /// The fds to watch for POLLHUP/POLLERR (all but those stored with FDPOLL=0).
    pub fn watched(&self) -> impl Iterator<Item = std::os::fd::BorrowedFd<'_>> {
        self.fds.iter().filter(|s| s.poll).map(|s| s.fd.as_fd())
    }

    /// The stored fds and their names, in the order they were stored.
    pub fn entries(&self) -> impl Iterator<Item = (RawFd, &str)> {
        self.fds.iter().map(|s| (s.fd.as_raw_fd(), s.name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn pair() -> (OwnedFd, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (a.into(), b)
    }

    #[test]
    fn keeps_up_to_max_and_each_file_once() {
        let mut store = FdStore::new(2);
        let (a, _pa) = pair();
        let a2 = a.try_clone().unwrap();
        let (b, _pb) = pair();
        let (c, _pc) = pair();
        let added = store.add("x", vec![a, a2, b, c], true);
        assert_eq!(
            added,
            Added {
                kept: 2,
                duplicate: 1,
                refused: 1
            }
        );
        assert_eq!(store.len(), 2);
        assert_eq!(store.remove("x"), 2);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn off_keeps_nothing() {
        let mut store = FdStore::new(0);
        let (a, _pa) = pair();
        assert!(!store.enabled());
        assert_eq!(store.add("x", vec![a], true).refused, 1);
    }

    /// What init's loop does: one poll(2) over `watched`, the hung-up fds handed over.
    fn poll_watched(store: &FdStore) -> Vec<RawFd> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut pfds: Vec<PollFd> = store
            .watched()
            .map(|fd| PollFd::new(fd, PollFlags::empty()))
            .collect();
        poll(&mut pfds, PollTimeout::ZERO).unwrap();
        pfds.iter()
            .filter(|p| crate::sys::hung_up(p.revents()))
            .map(|p| p.as_fd().as_raw_fd())
            .collect()
    }

    #[test]
    fn hung_up_fds_are_dropped_unless_not_polled() {
        let mut store = FdStore::new(8);
        let (a, pa) = pair();
        let (b, pb) = pair();
        let (c, _pc) = pair();
        store.add("a", vec![a], true);
        store.add("b", vec![b], false);
        store.add("c", vec![c], true);
        assert!(store.drop_hung_up(&poll_watched(&store)).is_empty());
        drop(pa);
        drop(pb);
        assert_eq!(
            store.drop_hung_up(&poll_watched(&store)),
            vec!["a".to_string()]
        );
        let names: Vec<&str> = store.entries().map(|(_, n)| n).collect();
        assert_eq!(names, ["b", "c"]);
    }

    /// The store trusts what it is handed and polls nothing itself: a hung-up fd nobody
    /// reported stays, and a reported one stored with FDPOLL=0 stays too.
    #[test]
    fn only_reported_polled_fds_are_dropped() {
        let mut store = FdStore::new(8);
        let (a, pa) = pair();
        let (b, _pb) = pair();
        store.add("a", vec![a], true);
        store.add("b", vec![b], false);
        drop(pa);
        assert!(store.drop_hung_up(&[]).is_empty());
        let raw: Vec<RawFd> = store.entries().map(|(fd, _)| fd).collect();
        assert_eq!(store.drop_hung_up(&[raw[1]]), Vec::<String>::new());
        assert_eq!(store.len(), 2);
        assert_eq!(store.drop_hung_up(&raw), vec!["a".to_string()]);
        let names: Vec<&str> = store.entries().map(|(_, n)| n).collect();
        assert_eq!(names, ["b"]);
    }
}
