//! The admin listener (`admin = { listen, ... }`), served by the master like its control
//! socket: one small HTTP/1.1 request per connection (a head of at most 8 KiB, read within
//! 10 s, no body), answered and closed. Everything is non-blocking: a slow or silent client
//! costs a slot in a bounded table and nothing else. It serves `GET /metrics` (`metrics.rs`)
//! and the JSON API under `/api/` (`api.rs`).

use super::admin_auth::{Hashed, Principal, Verdict};
use super::admin_origin;
use super::Master;
use crate::config::admin::AdminAddr;
use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(super) const LISTENER: Token = Token(4);
/// Tokens of admin connections start here (below the workers', above the control clients').
pub(super) const CONN_BASE: usize = 1 << 25;
const MAX_HEAD: usize = 8 * 1024;
/// The dashboard, built into the binary: nothing is fetched from the network at run time.
const DASHBOARD: &str = include_str!("dashboard.html");
const MAX_CONNS: usize = 64;
const DEADLINE: Duration = Duration::from_secs(10);
/// `/metrics` answers being sent at once, and of them without a credential (public
/// metrics): the rest are kept for authenticated clients. Past that: 503.
const MAX_SCRAPES: usize = 8;
const PUBLIC_SCRAPES: usize = 6;
/// The metrics text is made this much at a time, when the client has taken the last piece.
const PIECE: usize = 32 * 1024;
/// A scrape whose client takes nothing for this long is closed, and any after this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_SCRAPE_TIME: Duration = Duration::from_secs(60);

/// A listening socket of either kind.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An admin connection of either kind.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

impl Listener {
    fn bind(addr: &AdminAddr) -> io::Result<Listener> {
        match addr {
            AdminAddr::Tcp(a) => TcpListener::bind(*a).map(Listener::Tcp),
            AdminAddr::Unix(p) => {
                // A socket file left by an earlier master is in the way.
                if std::fs::symlink_metadata(p)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    let _ = std::fs::remove_file(p);
                }
                let l = UnixListener::bind(p)?;
                std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                Ok(Listener::Unix(l))
            }
        }
    }

    /// A new connection, the client's address as logged, and the address it reached (for
    /// the `Host` check; none on a unix socket).
    fn accept(&self) -> io::Result<(Stream, String, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, a)| {
                let local = s.local_addr().ok();
                (Stream::Tcp(s), a.to_string(), local)
            }),
            Listener::Unix(l) => l
                .accept()
                .map(|(s, _)| (Stream::Unix(s), "the unix socket".to_string(), None)),
        }
    }

    fn close(&mut self, r: &Registry, addr: &AdminAddr) {
        let _ = match self {
            Listener::Tcp(l) => l.deregister(r),
            Listener::Unix(l) => l.deregister(r),
        };
        if let AdminAddr::Unix(p) = addr {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The state of a streamed `/metrics` answer.
struct Streaming {
    scrape: super::metrics::Scrape,
    /// HTTP/1.1: chunked, so a cut answer shows as cut; HTTP/1.0: ended by the close.
    chunked: bool,
    /// Sent with a credential (counts against MAX_SCRAPES only, not PUBLIC_SCRAPES).
    authenticated: bool,
    /// The text is all in `output`.
    finished: bool,
    /// Closed then, however it goes.
    until: Instant,
}

pub(super) struct AdminConn {
    stream: Stream,
    peer: String,
    local: Option<SocketAddr>,
    input: Vec<u8>,
    /// The id of the hash job this request waits for, and the hash it is checked against.
    waiting: Option<(u64, String)>,
    /// The verdict of that hash, once it came.
    hashed: Option<Hashed>,
    /// A `/metrics` answer being made as the client reads it.
    streaming: Option<Streaming>,
    output: Vec<u8>,
    written: usize,
    deadline: Instant,
}

#[derive(Default)]
pub(super) struct Admin {
    listener: Option<(AdminAddr, Listener)>,
    conns: Slab<AdminConn>,
    /// When to try binding again (after a binary upgrade, until the old master lets go).
    pub(super) retry_at: Option<Instant>,
    pub(super) auth: super::admin_auth::Auth,
}

impl Admin {
    /// Wipes what requests brought (a head may carry the token) and remembered sign-ins,
    /// in a forked child.
    pub(super) fn forget_secrets(&mut self) {
        use zeroize::Zeroize;
        for (_, c) in self.conns.iter_mut() {
            c.input.zeroize();
            c.output.zeroize();
        }
        self.auth.forget();
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.conns.iter().map(|(_, c)| c.deadline).min()
    }
}

/// What a request asked for.
enum Answer {
    Status(u16, &'static str),
    /// The dashboard page: static, holds no data (its API calls need the token).
    Dashboard,
    /// `/login` passed basic auth: back to the dashboard, whose calls now carry it.
    SignedIn,
    /// 401, with the header lines of the challenges this listener accepts.
    Unauthorized(&'static str, String),
    /// `authenticated`: sent with a credential; `chunked`: an HTTP/1.1 request.
    Metrics {
        authenticated: bool,
        chunked: bool,
    },
    Json(u16, serde_json::Value),
    /// Nothing yet: this password must be hashed first (by the hashing process).
    Hash(super::hasher::Job),
}

impl Master {
    /// Binds (or keeps, or closes) the admin listener for the current config.
    pub(super) fn admin_listen(&mut self) -> Result<(), String> {
        // The config may have new users or hashes: every sign-in is checked afresh.
        self.admin.auth.forget();
        let want = self.cfg.admin.as_ref().map(|a| a.listen.clone());
        if self.admin.listener.as_ref().map(|(a, _)| a) == want.as_ref() {
            return Ok(());
        }
        let Some(addr) = want else {
            if let Some((a, mut l)) = self.admin.listener.take() {
                l.close(self.poll.registry(), &a);
            }
            return Ok(());
        };
        // The new address is bound before the old one closes: a failure keeps the old.
        let mut l = Listener::bind(&addr)
            .map_err(|e| format!("cannot listen on the admin address {addr}: {e}"))?;
        if let Some((a, mut old)) = self.admin.listener.take() {
            old.close(self.poll.registry(), &a);
        }
        let registered = match &mut l {
            Listener::Tcp(t) => self
                .poll
                .registry()
                .register(t, LISTENER, Interest::READABLE),
            Listener::Unix(u) => self
                .poll
                .registry()
                .register(u, LISTENER, Interest::READABLE),
        };
        registered.map_err(|e| e.to_string())?;
        crate::notice!("admin listener on {addr}");
        self.admin.listener = Some((addr, l));
        Ok(())
    }

    pub(super) fn admin_accept(&mut self) {
        loop {
            let Some((_, l)) = &self.admin.listener else {
                return;
            };
            match l.accept() {
                Ok((mut stream, peer, local)) => {
                    if self.admin.conns.len() >= MAX_CONNS && !self.admin_evict() {
                        // Dropped at once: a flood cannot grow the table.
                        continue;
                    }
                    let entry = self.admin.conns.vacant_entry();
                    let token = Token(CONN_BASE + entry.key());
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        entry.insert(AdminConn {
                            stream,
                            peer,
                            local,
                            input: Vec::new(),
                            waiting: None,
                            hashed: None,
                            streaming: None,
                            output: Vec::new(),
                            written: 0,
                            deadline: Instant::now() + DEADLINE,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("admin accept failed: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn admin_event(&mut self, key: usize) {
        let Some(c) = self.admin.conns.get_mut(key) else {
            return;
        };
        if c.waiting.is_some() {
            // Its answer waits for a password hash.
            return;
        }
        if !c.output.is_empty() {
            return self.admin_write(key);
        }
        loop {
            // Read straight into the connection's own buffer: a copy on the stack (a head may
            // carry the token) would outlive the call, and a fork made later inherits it.
            let len = c.input.len();
            c.input.resize(len + 2048, 0);
            let read = c.stream.read(&mut c.input[len..]);
            c.input.truncate(len + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return self.admin_close(key),
                Ok(_) => {
                    // Past the limit, complete or not, the head is refused (as empty).
                    if c.input.len() > MAX_HEAD {
                        c.input.clear();
                        break;
                    }
                    if c.input.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.admin_close(key),
            }
        }
        self.admin_answer(key);
    }

    /// Answers connection `key`'s request head, or sends its password to be hashed and
    /// leaves it waiting (`admin_hashed` comes back to it).
    fn admin_answer(&mut self, key: usize) {
        let Some(c) = self.admin.conns.get_mut(key) else {
            return;
        };
        let input = std::mem::take(&mut c.input);
        let (who, local, hashed) = (c.peer.clone(), c.local, c.hashed.take());
        let mut answer = self.admin_route(&input, &who, local, hashed.as_ref());
        if let Answer::Hash(job) = answer {
            match self.hash_submit(&job) {
                Some(id) => {
                    if let Some(c) = self.admin.conns.get_mut(key) {
                        c.input = input;
                        c.waiting = Some((id, job.hash));
                    }
                    return;
                }
                None => answer = Answer::Status(429, "too many sign-ins being checked; try again"),
            }
        }
        self.admin_reply(key, answer);
    }

    /// Writes `answer` to connection `key` and closes it once sent.
    fn admin_reply(&mut self, key: usize, mut answer: Answer) {
        if let Answer::Metrics {
            authenticated,
            chunked,
        } = answer
        {
            let streams = self
                .admin
                .conns
                .iter()
                .filter_map(|(_, c)| c.streaming.as_ref());
            let (all, public) = streams.fold((0, 0), |(a, p), s| {
                (a + 1, p + usize::from(!s.authenticated))
            });
            if all < MAX_SCRAPES && (authenticated || public < PUBLIC_SCRAPES) {
                return self.admin_stream(key, authenticated, chunked);
            }
            answer = Answer::Status(503, "too many scrapes at once; try again");
        }
        let mut extra = String::new();
        let (status, ctype, body) = match answer {
            Answer::Status(s, text) => (s, "text/plain", format!("{text}\n")),
            Answer::Unauthorized(text, challenges) => {
                extra = challenges;
                (401, "text/plain", format!("{text}\n"))
            }
            Answer::SignedIn => {
                extra.push_str("Location: /\r\n");
                (303, "text/plain", "signed in\n".to_string())
            }
            Answer::Metrics { .. } | Answer::Hash(_) => {
                (500, "text/plain", "internal error\n".to_string())
            }
            Answer::Json(s, v) => (s, "application/json", format!("{v}\n")),
            Answer::Dashboard => (200, "text/html; charset=utf-8", DASHBOARD.to_string()),
        };
        if status == 429 || status == 503 {
            extra.push_str("Retry-After: 1\r\n");
        }
        let Some(c) = self.admin.conns.get_mut(key) else {
            return;
        };
        let reason = crate::http::local::reason(status);
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\nServer: proxyd\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nContent-Security-Policy: frame-ancestors 'none'\r\nConnection: close\r\n{extra}",
            body.len()
        );
        out.push_str("\r\n");
        c.output = out.into_bytes();
        c.output.extend_from_slice(body.as_bytes());
        let token = Token(CONN_BASE + key);
        let _ = self.poll.registry().reregister(
            &mut c.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        );
        self.admin_write(key);
    }

    /// Starts the streamed `/metrics` answer on connection `key`.
    fn admin_stream(&mut self, key: usize, authenticated: bool, chunked: bool) {
        let generation = self.generation;
        let Some(c) = self.admin.conns.get_mut(key) else {
            return;
        };
        let framing = if chunked {
            "Transfer-Encoding: chunked\r\n"
        } else {
            ""
        };
        c.output = format!(
            "HTTP/1.1 200 OK\r\nServer: proxyd\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n{framing}Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nContent-Security-Policy: frame-ancestors 'none'\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        let now = Instant::now();
        c.deadline = now + SEND_TIMEOUT;
        c.streaming = Some(Streaming {
            scrape: super::metrics::Scrape::new(generation),
            chunked,
            authenticated,
            finished: false,
            until: now + MAX_SCRAPE_TIME,
        });
        let _ = self.poll.registry().reregister(
            &mut c.stream,
            Token(CONN_BASE + key),
            Interest::READABLE | Interest::WRITABLE,
        );
        self.admin_write(key);
    }

    /// Sends what connection `key` has to send (making the next piece of a streamed answer
    /// when the last one is out), and closes it when all is sent.
    fn admin_write(&mut self, key: usize) {
        loop {
            let Some(c) = self.admin.conns.get_mut(key) else {
                return;
            };
            while c.written < c.output.len() {
                match c.stream.write(&c.output[c.written..]) {
                    Ok(0) => return self.admin_close(key),
                    Ok(n) => {
                        c.written += n;
                        if let Some(st) = &c.streaming {
                            c.deadline = (Instant::now() + SEND_TIMEOUT).min(st.until);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.admin_close(key),
                }
            }
            let Some(mut st) = c.streaming.take().filter(|st| !st.finished) else {
                return self.admin_close(key);
            };
            let mut output = std::mem::take(&mut c.output);
            output.clear();
            let mut piece = String::new();
            let Ok(done) = self.metrics_fill(&mut st.scrape, &mut piece, PIECE) else {
                // A reload replaced the config mid-scrape: cut (a chunked answer shows it).
                return self.admin_close(key);
            };
            if st.chunked && !piece.is_empty() {
                output.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                output.extend_from_slice(piece.as_bytes());
                output.extend_from_slice(b"\r\n");
            } else {
                output.extend_from_slice(piece.as_bytes());
            }
            if done {
                st.finished = true;
                if st.chunked {
                    output.extend_from_slice(b"0\r\n\r\n");
                }
            }
            let Some(c) = self.admin.conns.get_mut(key) else {
                return;
            };
            c.output = output;
            c.written = 0;
            c.streaming = Some(st);
        }
    }

    /// The hashing process answered (or died): the connections that waited are answered.
    pub(super) fn admin_hashed(&mut self) {
        for a in self.hasher_event() {
            self.admin.auth.spent(a.took);
            let waiting = self
                .admin
                .conns
                .iter()
                .find(|(_, c)| c.waiting.as_ref().is_some_and(|w| w.0 == a.id))
                .map(|(k, _)| k);
            if let Some(k) = waiting {
                if let Some(c) = self.admin.conns.get_mut(k) {
                    if let Some((_, hash)) = c.waiting.take() {
                        c.hashed = Some(Hashed { ok: a.ok, hash });
                    }
                }
                self.admin_answer(k);
            }
        }
        self.admin_hash_lost();
    }

    /// Answers 429 to connections whose hash will never come (the process died).
    pub(super) fn admin_hash_lost(&mut self) {
        let lost: Vec<usize> = self
            .admin
            .conns
            .iter()
            .filter(|(_, c)| {
                c.waiting
                    .as_ref()
                    .is_some_and(|(id, _)| !self.hash_pending(*id))
            })
            .map(|(k, _)| k)
            .collect();
        for k in lost {
            if let Some(c) = self.admin.conns.get_mut(k) {
                c.waiting = None;
            }
            self.admin_reply(
                k,
                Answer::Status(429, "the password check was lost; try again"),
            );
        }
    }

    /// Decides the answer to one request head (an empty one: too big or unparsable).
    fn admin_route(
        &mut self,
        head: &[u8],
        who: &str,
        local: Option<SocketAddr>,
        hashed: Option<&Hashed>,
    ) -> Answer {
        let Some(admin) = self.cfg.admin.clone() else {
            return Answer::Status(404, "no admin listener configured");
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let (method, path, query) = match req.parse(head) {
            Ok(httparse::Status::Complete(_)) => {
                let target = req.path.unwrap_or("");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                (req.method.unwrap_or(""), path, query)
            }
            _ => return Answer::Status(400, "bad request"),
        };
        // Before anything else, public pages too: a rebinding page must not read them.
        if let Err(r) = admin_origin::check_host(&admin, local, req.headers) {
            let (status, text) = r.answer();
            return Answer::Status(status, text);
        }
        let public = matches!((method, path), ("GET", "/" | "/index.html"))
            || (admin.public_metrics && (method, path) == ("GET", "/metrics"));
        let chunked = req.version == Some(1);
        if public {
            return if path == "/metrics" {
                Answer::Metrics {
                    authenticated: self.admin.auth.bearer_ok(&admin, req.headers),
                    chunked,
                }
            } else {
                Answer::Dashboard
            };
        }
        let principal = match self.admin.auth.check(&admin, req.headers, hashed) {
            Verdict::Allowed(p) => p,
            Verdict::Hash(job) => return Answer::Hash(job),
            Verdict::Busy => {
                return Answer::Status(429, "too many sign-ins being checked; try again")
            }
            Verdict::Denied => {
                let from_dashboard = req
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case(admin_origin::DASHBOARD_HEADER));
                let text = if admin.basic_auth.is_empty() {
                    "unauthorized: send Authorization: Bearer <token>"
                } else {
                    "unauthorized: sign in"
                };
                return Answer::Unauthorized(text, challenges(&admin, from_dashboard));
            }
        };
        if let Err(r) =
            admin_origin::check_action(method, req.headers, principal == Principal::Token)
        {
            let (status, text) = r.answer();
            log::warn!("admin: {method} {path} from {who} refused: {r:?}");
            return Answer::Status(status, text);
        }
        match (method, path) {
            ("GET", "/metrics") => Answer::Metrics {
                authenticated: true,
                chunked,
            },
            ("GET", "/login") => Answer::SignedIn,
            (_, p) if p.starts_with("/api/") => {
                let who = format!("{who} ({principal})");
                let (status, v) = self.api(method, path, query, &who);
                Answer::Json(status, v)
            }
            ("GET", _) => Answer::Status(404, "not found"),
            _ => Answer::Status(405, "method not allowed"),
        }
    }

    /// Closes the admin listener when the master exits; its socket file goes too, unless
    /// a new master (binary upgrade) has bound its own there.
    pub(super) fn admin_shutdown(&mut self, handed_over: bool) {
        if let Some((a, mut l)) = self.admin.listener.take() {
            if handed_over {
                let _ = match &mut l {
                    Listener::Tcp(t) => self.poll.registry().deregister(t),
                    Listener::Unix(u) => self.poll.registry().deregister(u),
                };
            } else {
                l.close(self.poll.registry(), &a);
            }
        }
    }

    pub(super) fn admin_close(&mut self, key: usize) {
        if let Some(mut c) = self.admin.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            log::debug!("admin connection from {} closed", c.peer);
        }
    }

    /// Makes room for a new connection by closing the oldest one still sending its head (a
    /// client that answers promptly is never it, nor one whose password is being checked);
    /// false when every one is being answered.
    fn admin_evict(&mut self) -> bool {
        let oldest = self
            .admin
            .conns
            .iter()
            .filter(|(_, c)| c.output.is_empty() && c.waiting.is_none() && c.hashed.is_none())
            .min_by_key(|(_, c)| c.deadline)
            .map(|(k, _)| k);
        match oldest {
            Some(k) => {
                self.admin_close(k);
                true
            }
            None => false,
        }
    }

    /// Closes admin connections past their deadline.
    pub(super) fn admin_timers(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = self
            .admin
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for k in late {
            self.admin_close(k);
        }
    }
}

/// The 401 header lines for what `admin` accepts. The dashboard's own calls get no Basic
/// challenge: a browser would put up its password dialog at every poll; the page links to
/// /login instead.
fn challenges(admin: &crate::config::admin::Admin, from_dashboard: bool) -> String {
    let mut h = String::new();
    if !admin.basic_auth.is_empty() {
        h.push_str("X-Proxyd-Sign-In: /login\r\n");
        if !from_dashboard {
            h.push_str("WWW-Authenticate: Basic realm=\"proxyd admin\", charset=\"UTF-8\"\r\n");
        }
    }
    if admin.token.is_some() {
        h.push_str("WWW-Authenticate: Bearer realm=\"proxyd\"\r\n");
    }
    h
}
