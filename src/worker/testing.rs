//! What the worker's unit tests share: a worker context for a config, without a master
//! (its shared memory region made here), and a transport whose far end the test holds (a
//! socketpair in this process: no listener, no network, no proxyd process).

use super::exchange::Ctx;
use super::transport::Transport;
use crate::config::Config;
use crate::shm::{Directory, Region};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

/// A worker context and the region its shared memory block lives in (keep both).
pub struct Harness {
    pub ctx: Ctx,
    _region: Region,
    _poll: mio::Poll,
}

/// Loads `text` as a config (from a temporary file, as `proxyctl -t` would) and gives it a
/// worker context.
pub fn harness(text: &str) -> Harness {
    let dir = std::env::temp_dir().join(format!(
        "proxyd-unit-{}-{:x}",
        std::process::id(),
        crate::hash::stable(text.as_bytes())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxyd.toml");
    std::fs::write(&path, text).unwrap();
    let mut cfg = crate::config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
    std::fs::remove_dir_all(&dir).unwrap();
    let region = Region::create(256, 2).unwrap();
    let view = region.view();
    let slots = Directory(&view)
        .assign(&cfg.slot_names(), &Default::default())
        .unwrap();
    cfg.set_slots(&slots);
    let block = view.block(0);
    let poll = mio::Poll::new().unwrap();
    let registry = poll.registry().try_clone().unwrap();
    let ctx = Ctx::new(Rc::new(cfg as Config), registry, block, Vec::new());
    Harness {
        ctx,
        _region: region,
        _poll: poll,
    }
}

/// A transport over one end of a socketpair, ready both ways, and the other end (blocking,
/// with a timeout, for the test to script).
pub fn pair() -> (Transport, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    theirs
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // SAFETY: a connected stream socket we own; mio's TcpStream only issues socket calls
    // (read, writev, send, shutdown, peek) that a Unix stream socket answers alike.
    let tcp = unsafe { std::net::TcpStream::from_raw_fd(ours.into_raw_fd()) };
    let mut t = Transport::accepted(mio::net::TcpStream::from_std(tcp));
    t.ready.r = true;
    t.ready.w = true;
    (t, theirs)
}

/// Reads what is there from the test's end (up to a short wait for the first bytes).
pub fn drain(s: &mut UnixStream) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}
