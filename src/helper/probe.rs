//! One health-check probe of one peer, as a state machine driven by the helper's event
//! loop: connect, (for http) send a GET and read the answer until the peer closes, then a
//! verdict. Bounded: the answer read is at most `MAX_ANSWER` bytes.

use crate::config::{CheckKind, HealthCheck};
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// Bytes of an answer kept for the status and body checks.
const MAX_ANSWER: usize = 64 * 1024;

pub enum Step {
    /// Waiting for the socket.
    Pending,
    Healthy,
    Failed(String),
}

pub struct Probe {
    pub stream: TcpStream,
    request: Vec<u8>,
    sent: usize,
    answer: Vec<u8>,
    connected: bool,
}

impl Probe {
    pub fn start(addr: SocketAddr, check: &HealthCheck, host: &str) -> io::Result<Probe> {
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
                Ok(Some(e)) | Err(e) => return Step::Failed(format!("connect: {e}")),
                Ok(None) => {}
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Pending,
                Err(e) => return Step::Failed(format!("connect: {e}")),
            }
            if check.kind == CheckKind::Tcp {
                return Step::Healthy;
            }
        }
        while self.sent < self.request.len() {
            match self.stream.write(&self.request[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(format!("send: {e}")),
            }
        }
        let mut buf = [0u8; 8192];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return self.verdict(check),
                Ok(n) => {
                    let room = MAX_ANSWER - self.answer.len();
                    self.answer.extend_from_slice(&buf[..n.min(room)]);
                    // A peer that keeps the connection open despite `Connection: close` is
                    // answered once its response is complete by its own framing.
                    if self.answer.len() >= MAX_ANSWER || self.complete() {
                        return self.verdict(check);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(format!("read: {e}")),
            }
        }
    }

    /// Whether the answer so far is a whole response (by Content-Length or the last chunk);
    /// otherwise the end is the peer's close.
    fn complete(&self) -> bool {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = resp.parse(&self.answer) else {
            return false;
        };
        let body = &self.answer[n..];
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

    fn verdict(&self, check: &HealthCheck) -> Step {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let body_at = match resp.parse(&self.answer) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => return Step::Failed("no valid HTTP response".into()),
        };
        let status = resp.code.unwrap_or(0);
        if !(check.status.0..=check.status.1).contains(&status) {
            return Step::Failed(format!("status {status}"));
        }
        if let Some(want) = &check.body {
            let body = &self.answer[body_at..];
            if !want.holds_body(body) {
                return Step::Failed("body does not match".into());
            }
        }
        Step::Healthy
    }
}
