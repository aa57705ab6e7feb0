//! The hashing process: verifies basic-auth passwords for the admin listener, so that a
//! password hash (slow on purpose, up to a second or more) never runs in the master's event
//! loop, which must keep reaping and respawning workers and answering signals meanwhile.
//! Forked by the master's loop (never from inside a request, whose head would be on the
//! child's stack) while the config has basic-auth users, again after it dies; it knows no
//! config: each job carries the hash and the password. One SOCK_SEQPACKET
//! socketpair, one job or answer per packet; the master's end is non-blocking.

use super::child::close_other_fds;
use super::Master;
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{recv, send, MsgFlags};
use nix::unistd::{ForkResult, Pid};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

pub(super) const HASHER: Token = Token(5);
/// Jobs sent and not answered yet, at most: past it a sign-in gets 429.
const QUEUE: usize = 4;
/// A job: id (8), hash length (2), hash, password. Credentials are bounded well below.
const MAX_PACKET: usize = 4096;

/// A password to check against a crypt(3) hash.
pub(super) struct Job {
    pub(super) hash: String,
    pub(super) password: Vec<u8>,
}

#[derive(Default)]
pub(super) struct Hasher {
    /// The process and the master's end of its socket.
    child: Option<(Pid, OwnedFd)>,
    next_id: u64,
    /// Ids of jobs sent and not answered, oldest first.
    in_flight: Vec<u64>,
    /// When it was last started.
    started: Option<Instant>,
}

/// An answer: the job's id, whether the password matched, how long the hash took.
pub(super) struct Answer {
    pub(super) id: u64,
    pub(super) ok: bool,
    pub(super) took: std::time::Duration,
}

impl Master {
    /// Sends `job` to the hashing process; its id, or None when the queue is full or the
    /// process is not running (it is restarted by the loop; the caller answers 429).
    pub(super) fn hash_submit(&mut self, job: &Job) -> Option<u64> {
        if self.hasher.in_flight.len() >= QUEUE || self.stop.is_some() {
            return None;
        }
        let (_, fd) = self.hasher.child.as_ref()?;
        let id = self.hasher.next_id;
        let mut packet = Vec::with_capacity(10 + job.hash.len() + job.password.len());
        packet.extend_from_slice(&id.to_le_bytes());
        packet.extend_from_slice(&u16::try_from(job.hash.len()).ok()?.to_le_bytes());
        packet.extend_from_slice(job.hash.as_bytes());
        packet.extend_from_slice(&job.password);
        if packet.len() > MAX_PACKET {
            return None;
        }
        match send(fd.as_raw_fd(), &packet, MsgFlags::MSG_NOSIGNAL) {
            Ok(_) => {
                self.hasher.next_id += 1;
                self.hasher.in_flight.push(id);
                Some(id)
            }
            Err(e) => {
                log::warn!("admin: cannot hand a password to the hashing process: {e}");
                None
            }
        }
    }

    /// The config has basic-auth users and the master is not stopping.
    fn hasher_wanted(&self) -> bool {
        self.stop.is_none()
            && self
                .cfg
                .admin
                .as_ref()
                .is_some_and(|a| !a.basic_auth.is_empty())
    }

    /// Called by the loop: the hashing process runs while the config has basic-auth users
    /// (started at most once a second, so one that keeps dying costs nothing).
    pub(super) fn hasher_ensure(&mut self) {
        if !self.hasher_wanted() || self.hasher.child.is_some() {
            return;
        }
        let now = Instant::now();
        if self
            .hasher
            .started
            .is_some_and(|t| now < t + std::time::Duration::from_secs(1))
        {
            return;
        }
        self.hasher.started = Some(now);
        let _ = self.hasher_start();
    }

    /// When the loop should wake to start a hashing process that is wanted and not running.
    pub(super) fn hasher_restart_at(&self) -> Option<Instant> {
        (self.hasher_wanted() && self.hasher.child.is_none())
            .then(|| {
                self.hasher
                    .started
                    .map(|t| t + std::time::Duration::from_secs(1))
            })
            .flatten()
    }

    fn hasher_start(&mut self) -> Option<()> {
        let (master_end, child_end) = match crate::channel::pair() {
            Ok(p) => p,
            Err(e) => {
                log::error!("cannot start the hashing process: {e}");
                return None;
            }
        };
        // SAFETY: the master is single-threaded, as for the workers (see `spawn`).
        match self.fork_child() {
            Ok(ForkResult::Child) => {
                crate::proctitle::set("proxyd: hashing process");
                // Each job brings its hash: this process needs none of the config's.
                self.forget_secrets(None);
                crate::scrub::wipe_stack();
                drop(master_end);
                close_other_fds(&[0, 1, 2, child_end.as_raw_fd()]);
                // SAFETY: plain prctl: die with the master, even in the middle of a hash.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                if let Err(e) =
                    crate::privileges::drop_to(self.cfg.user.as_deref(), self.cfg.group.as_deref())
                {
                    log::error!("hashing process cannot drop privileges: {e}");
                    std::process::exit(2);
                }
                std::process::exit(serve(child_end));
            }
            Ok(ForkResult::Parent { child }) => {
                drop(child_end);
                let fd = master_end.as_raw_fd();
                if let Err(e) =
                    self.poll
                        .registry()
                        .register(&mut SourceFd(&fd), HASHER, Interest::READABLE)
                {
                    log::error!("cannot watch the hashing process: {e}");
                    let _ = kill(child, Signal::SIGKILL);
                    return None;
                }
                log::info!("started hashing process {child}");
                self.hasher.child = Some((child, master_end));
                Some(())
            }
            Err(e) => {
                log::error!("cannot start the hashing process: {e}");
                None
            }
        }
    }

    /// Reads the hashing process's answers (its socket is readable).
    pub(super) fn hasher_event(&mut self) -> Vec<Answer> {
        let mut answers = Vec::new();
        let Some((_, fd)) = &self.hasher.child else {
            return answers;
        };
        let mut buf = [0u8; 17];
        loop {
            match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(17) => {
                    let id = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
                    let micros = u64::from_le_bytes(buf[9..17].try_into().unwrap_or_default());
                    self.hasher.in_flight.retain(|&i| i != id);
                    answers.push(Answer {
                        id,
                        ok: buf[8] == 1,
                        took: std::time::Duration::from_micros(micros),
                    });
                }
                Ok(0) => {
                    // It died; SIGCHLD reaps it and the next sign-in starts another.
                    if let Some((pid, _)) = &self.hasher.child {
                        log::error!("hashing process {pid} went away; sign-ins waiting get 429");
                    }
                    self.hasher_gone();
                    break;
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        answers
    }

    /// Forgets the hashing process (it died, or the master stops); its jobs are lost.
    pub(super) fn hasher_gone(&mut self) {
        if let Some((pid, fd)) = self.hasher.child.take() {
            let raw = fd.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
            let _ = kill(pid, Signal::SIGKILL);
        }
        self.hasher.in_flight.clear();
    }

    /// Whether `pid` was the hashing process (then it is forgotten).
    pub(super) fn hasher_exited(&mut self, pid: Pid, how: &str) -> bool {
        if self.hasher.child.as_ref().is_none_or(|(p, _)| *p != pid) {
            return false;
        }
        if self.stop.is_none() {
            log::error!("hashing process {pid} {how} unexpectedly");
        }
        self.hasher_gone();
        true
    }

    /// Whether job `id` is still waited for.
    pub(super) fn hash_pending(&self, id: u64) -> bool {
        self.hasher.in_flight.contains(&id)
    }
}

/// The hashing process's loop: one job at a time, until the master closes its end.
fn serve(sock: OwnedFd) -> i32 {
    let fd = sock.as_raw_fd();
    // Blocking from here on: this process has nothing else to do.
    let _ = nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    );
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let n = match recv(fd, &mut buf, MsgFlags::empty()) {
            Ok(0) => return 0,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        };
        let packet = &buf[..n];
        let (ok, id) = match parse(packet) {
            Some((id, hash, password)) => {
                let start = Instant::now();
                let ok = verify(password, hash);
                (ok, (id, start.elapsed()))
            }
            None => continue,
        };
        let (id, took) = id;
        let mut answer = [0u8; 17];
        answer[..8].copy_from_slice(&id.to_le_bytes());
        answer[8] = u8::from(ok);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        answer[9..].copy_from_slice(&micros.to_le_bytes());
        if send(fd, &answer, MsgFlags::MSG_NOSIGNAL).is_err() {
            return 0;
        }
    }
}

fn parse(p: &[u8]) -> Option<(u64, &str, &[u8])> {
    let id = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
    let len = usize::from(u16::from_le_bytes(p.get(8..10)?.try_into().ok()?));
    let hash = std::str::from_utf8(p.get(10..10 + len)?).ok()?;
    Some((id, hash, p.get(10 + len..)?))
}

/// Checks a password against a crypt(3) hash of a kind `crypt_hash_ok` accepted.
pub(super) fn verify(password: &[u8], hash: &str) -> bool {
    if hash.starts_with("$2") {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else {
        use sha_crypt::PasswordVerifier;
        sha_crypt::ShaCrypt::default()
            .verify_password(password, hash)
            .is_ok()
    }
}
