//! systemd's service notification protocol (sd_notify(3)), written directly: one datagram
//! of `KEY=value` lines per state change to the socket named by `$NOTIFY_SOCKET` (a path,
//! or an abstract name starting with '@'). Without the variable every call does nothing, so
//! proxyd behaves the same outside systemd. Sending is best effort: a full or missing
//! socket never stops the master.

use std::os::unix::net::{SocketAddr, UnixDatagram};

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// `$NOTIFY_SOCKET` as it was, for a new master started by a binary upgrade.
    name: Option<String>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and removes it from the environment, so no worker (or other
    /// child) ever speaks for the service.
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier {
                target: None,
                name: None,
            };
        };
        std::env::remove_var("NOTIFY_SOCKET");
        let target = Self::address(&name.to_string_lossy())
            .and_then(|addr| Some((UnixDatagram::unbound().ok()?, addr)));
        if target.is_none() {
            log::warn!("NOTIFY_SOCKET={name:?} is not a socket address; not notifying");
        }
        Notifier {
            target,
            name: Some(name.to_string_lossy().into_owned()),
        }
    }

    pub fn socket_name(&self) -> Option<String> {
        self.name.clone()
    }

    fn address(name: &str) -> Option<SocketAddr> {
        if let Some(abstract_name) = name.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes()).ok()
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name).ok()
        } else {
            None
        }
    }

    fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
                log::debug!("sd_notify failed: {e}");
            }
        }
    }

    /// The (first or a reloaded) generation serves.
    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}\n",
            std::process::id()
        ));
    }

    /// A reload starts: systemd shows the service as reloading until the next `ready`.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading\n",
            monotonic_usec()
        ));
    }

    /// A binary upgrade handed the service to a new master: it is the main process now.
    pub fn handed_over(&self, pid: i32) {
        self.send(&format!(
            "MAINPID={pid}\nREADY=1\nSTATUS=upgraded: new master {pid} serving\n"
        ));
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}\n"));
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd wants it with RELOADING=1.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}
