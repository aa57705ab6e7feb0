//! What an exchange records along the way for the access log, beyond what it needs to
//! proxy: each try of an upstream peer (`$upstream_addr`, `$upstream_status`, the
//! `$upstream_*_time`s), the header values formats asked for (`$http_<name>`,
//! `$sent_http_<name>`), and the bytes of response heads sent. It lives in the exchange and is
//! recycled with it, so a warm worker records without allocating.

use std::net::SocketAddr;
use std::time::Instant;

/// One try of a peer.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// The peer's index in its upstream.
    pub peer: usize,
    pub addr: Option<SocketAddr>,
    pub started: Instant,
    pub connected: Option<Instant>,
    pub header: Option<Instant>,
    /// The response was read to its end, or the try failed.
    pub ended: Option<Instant>,
    /// The peer's status, or what the proxy made of a failure (502, 504); 0: none yet.
    pub status: u16,
    pub received: u64,
}

#[derive(Debug, Default)]
pub struct Record {
    pub attempts: Vec<Attempt>,
    /// Captured header values, end to end; each capture is a range of it (or none).
    bytes: Vec<u8>,
    request: Vec<Option<(u32, u32)>>,
    response: Vec<Option<(u32, u32)>>,
    /// Every byte written to the client for this exchange: heads, bodies, tunnelled data.
    pub wire: u64,
}

impl Record {
    pub fn clear(&mut self) {
        self.attempts.clear();
        self.bytes.clear();
        self.request.clear();
        self.response.clear();
        self.wire = 0;
    }

    pub fn kept_bytes(&self) -> usize {
        self.attempts.capacity() * std::mem::size_of::<Attempt>()
            + self.bytes.capacity()
            + (self.request.capacity() + self.response.capacity())
                * std::mem::size_of::<Option<(u32, u32)>>()
    }

    pub fn start_attempt(&mut self, peer: usize, addr: SocketAddr, now: Instant) {
        self.attempts.push(Attempt {
            peer,
            addr: Some(addr),
            started: now,
            connected: None,
            header: None,
            ended: None,
            status: 0,
            received: 0,
        });
    }

    /// The try in progress (none when every try has ended).
    pub fn current(&mut self) -> Option<&mut Attempt> {
        self.attempts.last_mut().filter(|a| a.ended.is_none())
    }

    /// Ends the try in progress, as failed with `status` unless a head already came.
    pub fn end_attempt(&mut self, status: u16, now: Instant) {
        if let Some(a) = self.current() {
            if a.header.is_none() {
                a.status = status;
            }
            a.ended = Some(now);
        }
    }

    /// The try in progress got its response head.
    pub fn got_head(&mut self, status: u16, now: Instant) {
        if let Some(a) = self.current() {
            a.header = Some(now);
            a.status = status;
        }
    }

    /// Captures `names` (lower case) from a request head's headers.
    pub fn capture_request<'h>(
        &mut self,
        names: &[String],
        headers: impl Iterator<Item = (&'h str, &'h [u8])> + Clone,
    ) {
        capture(&mut self.bytes, &mut self.request, names, headers);
    }

    /// Captures `names` from a response head as written to the client (status line and
    /// header lines, CRLF-separated).
    pub fn capture_response(&mut self, names: &[String], head: &[u8]) {
        if names.is_empty() {
            return;
        }
        let end = head
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(head.len());
        let lines = head[..end].split(|&b| b == b'\n').skip(1).filter_map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let colon = l.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&l[..colon]).ok()?;
            Some((name, l[colon + 1..].trim_ascii()))
        });
        capture(&mut self.bytes, &mut self.response, names, lines);
    }

    pub fn request_header(&self, i: u16) -> Option<&[u8]> {
        self.get(&self.request, i)
    }

    pub fn response_header(&self, i: u16) -> Option<&[u8]> {
        self.get(&self.response, i)
    }

    fn get(&self, spans: &[Option<(u32, u32)>], i: u16) -> Option<&[u8]> {
        let (a, b) = (*spans.get(i as usize)?)?;
        self.bytes.get(a as usize..b as usize)
    }
}

/// Appends each name's value (several ones joined by ", ", as nginx does for most headers)
/// to `bytes`, and its range to `spans`.
fn capture<'h>(
    bytes: &mut Vec<u8>,
    spans: &mut Vec<Option<(u32, u32)>>,
    names: &[String],
    headers: impl Iterator<Item = (&'h str, &'h [u8])> + Clone,
) {
    spans.clear();
    for name in names {
        let start = bytes.len();
        let mut any = false;
        for (_, v) in headers
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            if any {
                bytes.extend_from_slice(b", ");
            }
            bytes.extend_from_slice(v);
            any = true;
        }
        spans.push(any.then_some((start as u32, bytes.len() as u32)));
    }
}
