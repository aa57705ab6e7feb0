//! One health-check probe of one peer, as a state machine driven by the helper's event
//! loop: connect, (for http) send a GET and read the answer until the peer closes, then a
//! verdict. Bounded: the answer read is at most `MAX_ANSWER` bytes. An upstream with `tls`
//! is probed over TLS, with its own rustls config (the same verification as the workers').

use crate::config::{CheckKind, HealthCheck};
use crate::shm::ProbeOutcome;
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// A socket, plain or through rustls.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Bytes of an answer kept for the status and body checks.
const MAX_ANSWER: usize = 64 * 1024;

pub enum Step {
    /// Waiting for the socket.
    Pending,
    Healthy,
    /// What went wrong, for shared memory, and in words for the log.
    Failed(ProbeOutcome, String),
}

pub struct Probe {
    pub stream: TcpStream,
    /// For an upstream that speaks TLS (an http check; a tcp check only connects).
    tls: Option<Box<rustls::ClientConnection>>,
    request: Vec<u8>,
    sent: usize,
    answer: Vec<u8>,
    connected: bool,
}

impl Probe {
    pub fn start(
        addr: SocketAddr,
        check: &HealthCheck,
        host: &str,
        tls: Option<(
            &std::sync::Arc<rustls::ClientConfig>,
            rustls_pki_types::ServerName<'static>,
        )>,
    ) -> io::Result<Probe> {
        let tls = match (tls, check.kind) {
            (Some((cfg, name)), CheckKind::Http) => Some(Box::new(
                rustls::ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?,
            )),
            _ => None,
        };
        let request = match check.kind {
            CheckKind::Tcp => Vec::new(),
            CheckKind::Http => format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: proxyd-health-check\r\nConnection: close\r\n\r\n",
                check.path,
                check.host.as_deref().unwrap_or(host)
            )
            .into_bytes(),
        };
        Ok(Probe {
            stream: TcpStream::connect(addr)?,
            tls,
            request,
            sent: 0,
            answer: Vec::new(),
            connected: false,
        })
    }

    /// Makes what progress the socket allows.
    pub fn advance(&mut self, check: &HealthCheck) -> Step {
        if !self.connected {
            match self.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    return Step::Failed(ProbeOutcome::Connect, format!("connect: {e}"))
                }
                Ok(None) => {}
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Pending,
                Err(e) => return Step::Failed(ProbeOutcome::Connect, format!("connect: {e}")),
            }
            if check.kind == CheckKind::Tcp {
                return Step::Healthy;
            }
        }
        // Over TLS, rustls's Stream does the handshake and the records as it reads and
        // writes, and says WouldBlock as the socket does.
        let mut tls_stream;
        let io: &mut dyn ReadWrite = match &mut self.tls {
            Some(conn) => {
                tls_stream = rustls::Stream::new(&mut **conn, &mut self.stream);
                &mut tls_stream
            }
            None => &mut self.stream,
        };
        while self.sent < self.request.len() {
            match io.write(&self.request[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(ProbeOutcome::Io, format!("send: {e}")),
            }
        }
        let _ = io.flush();
        let mut buf = [0u8; 8192];
        loop {
            match io.read(&mut buf) {
                // A TLS peer that closes without close_notify ends the answer all the same
                // (the framing checks say whether it is whole).
                Ok(0) => return Self::verdict(&self.answer, check),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Self::verdict(&self.answer, check)
                }
                Ok(n) => {
                    let room = MAX_ANSWER - self.answer.len();
                    self.answer.extend_from_slice(&buf[..n.min(room)]);
                    // A peer that keeps the connection open despite `Connection: close` is
                    // answered once its response is complete by its own framing.
                    if self.answer.len() >= MAX_ANSWER || Self::complete(&self.answer) {
                        return Self::verdict(&self.answer, check);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(ProbeOutcome::Io, format!("read: {e}")),
            }
        }
    }

    /// Whether the answer so far is a whole response (by Content-Length or the last chunk);
    /// otherwise the end is the peer's close.
    fn complete(answer: &[u8]) -> bool {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = resp.parse(answer) else {
            return false;
        };
        let body = &answer[n..];
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let len = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
                return len.is_some_and(|l| body.len() >= l);
            }
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return body.ends_with(b"0\r\n\r\n");
            }
        }
        // No body framing: 1xx, 204 and 304 have none.
        matches!(resp.code, Some(100..=199 | 204 | 304))
    }

    fn verdict(answer: &[u8], check: &HealthCheck) -> Step {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let body_at = match resp.parse(answer) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => return Step::Failed(ProbeOutcome::NotHttp, "no valid HTTP response".into()),
        };
        let status = resp.code.unwrap_or(0);
        if !(check.status.0..=check.status.1).contains(&status) {
            return Step::Failed(ProbeOutcome::Status(status), format!("status {status}"));
        }
        if let Some(want) = &check.body {
            let body = &answer[body_at..];
            if !want.holds_body(body) {
                return Step::Failed(ProbeOutcome::Body, "body does not match".into());
            }
        }
        Step::Healthy
    }
}
