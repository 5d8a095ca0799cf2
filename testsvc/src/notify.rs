//! sd_notify(3), client side: one datagram of newline-separated KEY=VALUE lines to the AF_UNIX
//! datagram socket named by $NOTIFY_SOCKET (a path, or `@name` for the abstract namespace).
//! The receiver learns our pid from the credentials the kernel attaches (SO_PASSCRED), so
//! nothing else is needed here.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

pub struct Notifier {
    target: Option<String>,
}

impl Notifier {
    /// Reads $NOTIFY_SOCKET. It is left in the environment on purpose: a self-forked copy of
    /// the service must be able to notify too.
    pub fn from_env() -> Notifier {
        Notifier {
            target: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// Sends `state` if a notify socket is configured; failures are logged, never fatal (a
    /// service must keep running when its supervisor does not listen).
    pub fn send(&self, state: &str) {
        let Some(target) = &self.target else { return };
        if let Err(e) = send_to(target, state) {
            crate::log(&format!("sd_notify to {target} failed: {e}"));
        }
    }
}

fn send_to(target: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let sent = match target.strip_prefix('@') {
        Some(name) => {
            let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)?
        }
        None => sock.send_to(state.as_bytes(), target)?,
    };
    if sent != state.len() {
        return Err(io::Error::other("datagram truncated"));
    }
    Ok(())
}
