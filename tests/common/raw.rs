//! An upstream that misbehaves on command. It frames requests strictly itself (so a request
//! smuggled inside another's body shows up here as a separate request), records the exact
//! bytes of every request it received, and answers each with what a test's script says:
//! raw bytes (no reason phrase, TE+CL, extra bytes after the body...), a trickle, a flood
//! of interim responses, silence, or a close.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One step of an answer.
#[derive(Clone, Debug)]
pub enum Reply {
    Bytes(Vec<u8>),
    /// The bytes one at a time with a pause after each.
    Trickle(Vec<u8>, Duration),
    /// The bytes written over and over until the connection fails (or `Duration` passes).
    Flood(Vec<u8>, Duration),
    Sleep(Duration),
    /// Close the connection after this answer.
    Close,
    /// Reset the connection (SO_LINGER 0, then close): a broken peer.
    Reset,
}

pub fn bytes(b: impl AsRef<[u8]>) -> Reply {
    Reply::Bytes(b.as_ref().to_vec())
}

/// A plain 200 with `body`.
pub fn ok(body: &str) -> Vec<Reply> {
    vec![bytes(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))]
}

type Script = dyn Fn(&Request) -> Vec<Reply> + Send + Sync;

/// A request as the upstream framed it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Head and body bytes exactly as received.
    pub raw: Vec<u8>,
    pub head: String,
    pub body: Vec<u8>,
    /// Which connection (counted from 1) carried it.
    pub conn: usize,
}

impl Request {
    pub fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

pub struct RawUpstream {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Request>>>,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl RawUpstream {
    pub fn start(script: impl Fn(&Request) -> Vec<Reply> + Send + Sync + 'static) -> RawUpstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (r, c, s) = (received.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                let (r, script, s) = (r.clone(), script.clone(), s.clone());
                std::thread::spawn(move || serve(conn, n, &r, &*script, &s));
            }
        });
        RawUpstream {
            port,
            received,
            connections,
            stop,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.received.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.received.lock().unwrap().clear();
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads until `buf` holds at least `n` bytes; false at EOF.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    let mut tmp = [0u8; 65536];
    while buf.len() < n {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    }
    true
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The position of `needle` in `buf` at or after `from`, reading more until it appears.
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, from: usize, needle: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = find(buf, needle, from) {
            return Some(i);
        }
        let have = buf.len();
        if !fill(s, buf, have + 1) {
            return None;
        }
    }
}

/// Frames one request off the front of `buf`, reading more as needed.
fn next_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Vec<u8>, String, Vec<u8>)> {
    let head_end = read_until(s, buf, 0, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let value = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut body = Vec::new();
    let mut pos = head_end;
    if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let line_end = read_until(s, buf, pos, b"\r\n")?;
            let line = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let end = read_until(s, buf, pos, b"\r\n")?;
                    let empty = end == pos;
                    pos = end + 2;
                    if empty {
                        break;
                    }
                }
                break;
            }
            if !fill(s, buf, pos + size + 2) {
                return None;
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    } else if let Some(n) = value("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if !fill(s, buf, head_end + n) {
            return None;
        }
        body.extend_from_slice(&buf[head_end..head_end + n]);
        pos = head_end + n;
    }
    let raw: Vec<u8> = buf.drain(..pos).collect();
    Some((raw, head, body))
}

fn serve(
    mut s: TcpStream,
    conn: usize,
    received: &Mutex<Vec<Request>>,
    script: &Script,
    stop: &AtomicBool,
) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    while let Some((raw, head, body)) = next_request(&mut s, &mut buf) {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let req = Request {
            raw,
            head,
            body,
            conn,
        };
        received.lock().unwrap().push(req.clone());
        for step in script(&req) {
            let ok = match step {
                Reply::Bytes(b) => s.write_all(&b).is_ok(),
                Reply::Trickle(b, pause) => b.iter().all(|byte| {
                    let ok = s.write_all(&[*byte]).is_ok();
                    std::thread::sleep(pause);
                    ok
                }),
                Reply::Flood(b, limit) => {
                    // A write that blocks (nobody reads) ends at the timeout.
                    let _ = s.set_write_timeout(Some(limit));
                    let end = std::time::Instant::now() + limit;
                    while std::time::Instant::now() < end && s.write_all(&b).is_ok() {}
                    let _ = s.set_write_timeout(None);
                    true
                }
                Reply::Sleep(d) => {
                    std::thread::sleep(d);
                    true
                }
                Reply::Close => {
                    let _ = s.shutdown(Shutdown::Both);
                    return;
                }
                Reply::Reset => {
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    return;
                }
            };
            if !ok {
                return;
            }
        }
    }
}
