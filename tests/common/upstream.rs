//! A small real HTTP/1.1 upstream on 127.0.0.1 (a thread per connection) that counts the
//! connections it accepts. Endpoints:
//!   (a request with Expect: 100-continue first gets an interim 100 Continue)
//!   /echo             -> body = "METHOD PATH len=N sum=S" of the request body it read
//!   /headers          -> body = the request head as received
//!   /big?n=N          -> N bytes (Content-Length), generated
//!   /chunked?n=N      -> N bytes in chunks of 4096
//!   /sleep?ms=M       -> waits M ms, then "slept"
//!   /silent           -> reads the request and never answers
//!   /close            -> answers with Connection: close and closes
//!   /truncate         -> promises 1000 bytes, sends 500 and closes
//!   /garbage          -> answers with something that is not HTTP
//!   /status?code=N    -> answers with status N (and a body "status N")
//!   anything else     -> "NAME PATH" (NAME identifies this upstream)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Upstream {
    pub ip: String,
    pub port: u16,
    pub name: String,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        Upstream::start_at(name, "127.0.0.1:0")
    }

    /// On a given loopback address (other 127.0.0.x addresses, for peers that one host name
    /// resolves to, on one port).
    pub fn start_at(name: &str, addr: &str) -> Upstream {
        Upstream::on(name, TcpListener::bind(addr).unwrap())
    }

    /// On a listener the test bound.
    pub fn on(name: &str, l: TcpListener) -> Upstream {
        let port = l.local_addr().unwrap().port();
        let ip = l.local_addr().unwrap().ip().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s, n) = (
            connections.clone(),
            requests.clone(),
            stop.clone(),
            name.to_string(),
        );
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, n, s) = (r.clone(), n.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &n, &r, &s);
                });
            }
        });
        Upstream {
            ip,
            port,
            name: name.to_string(),
            connections,
            requests,
            stop,
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((self.ip.as_str(), self.port));
    }
}

fn query(path: &str, key: &str) -> u64 {
    path.split_once('?')
        .and_then(|(_, q)| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn serve(
    conn: TcpStream,
    name: &str,
    reqs: &AtomicUsize,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, conn.try_clone()?);
    let mut r = BufReader::with_capacity(64 * 1024, conn);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            head.push_str(&line);
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        reqs.fetch_add(1, Ordering::SeqCst);
        let mut lines = head.lines();
        let first = lines.next().unwrap_or("");
        let mut parts = first.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut len: Option<u64> = None;
        let mut chunked = false;
        let mut close = false;
        let mut expect_continue = false;
        for l in lines {
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            let v = v.trim();
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.parse().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                "expect" => expect_continue = v.eq_ignore_ascii_case("100-continue"),
                _ => {}
            }
        }
        if expect_continue {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            w.flush()?;
        }
        // Read the request body, keeping a length and a checksum.
        let (mut n, mut sum) = (0u64, 0u64);
        let mut take = |data: &[u8]| {
            for &b in data {
                sum = sum.wrapping_mul(31).wrapping_add(b as u64);
            }
            n += data.len() as u64;
        };
        let mut buf = vec![0u8; 64 * 1024];
        if chunked {
            loop {
                let mut line = String::new();
                r.read_line(&mut line)?;
                let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                if size == 0 {
                    loop {
                        let mut t = String::new();
                        r.read_line(&mut t)?;
                        if t == "\r\n" || t.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let mut left = size;
                while left > 0 {
                    let k = r.read(&mut buf[..left.min(65536) as usize])?;
                    if k == 0 {
                        return Ok(());
                    }
                    take(&buf[..k]);
                    left -= k as u64;
                }
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf)?;
            }
        } else if let Some(mut left) = len {
            while left > 0 {
                let k = r.read(&mut buf[..left.min(65536) as usize])?;
                if k == 0 {
                    return Ok(());
                }
                take(&buf[..k]);
                left -= k as u64;
            }
        }
        let route = path.split('?').next().unwrap_or("");
        let head_only = method == "HEAD";
        let mut extra = String::new();
        if close || route == "/close" {
            extra.push_str("Connection: close\r\n");
        }
        match route {
            "/truncate" => {
                // Promises 1000 bytes, sends 500, closes.
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{}",
                    "t".repeat(500)
                )?;
                w.flush()?;
                return Ok(());
            }
            "/garbage" => {
                w.write_all(b"NOT HTTP AT ALL\r\n\r\n")?;
                w.flush()?;
                return Ok(());
            }
            "/status" => {
                let code = query(&path, "code");
                let body = format!("status {code}");
                write!(
                    w,
                    "HTTP/1.1 {code} Whatever\r\nContent-Length: {}\r\n{extra}\r\n{body}",
                    body.len()
                )?;
            }
            "/silent" => {
                std::thread::sleep(Duration::from_secs(3600));
                return Ok(());
            }
            "/big" => {
                let total = query(&path, "n");
                write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nX-Upstream: {name}\r\n{extra}\r\n")?;
                if !head_only {
                    let block: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
                    let mut left = total;
                    while left > 0 {
                        let k = left.min(block.len() as u64) as usize;
                        w.write_all(&block[..k])?;
                        left -= k as u64;
                    }
                }
            }
            "/chunked" => {
                let total = query(&path, "n");
                write!(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Upstream: {name}\r\n{extra}\r\n")?;
                if !head_only {
                    let block: Vec<u8> = (0..4096u32).map(|i| b'a' + (i % 26) as u8).collect();
                    let mut left = total;
                    while left > 0 {
                        let k = left.min(4096) as usize;
                        write!(w, "{k:x}\r\n")?;
                        w.write_all(&block[..k])?;
                        w.write_all(b"\r\n")?;
                        left -= k as u64;
                    }
                    w.write_all(b"0\r\nX-Trailer: yes\r\n\r\n")?;
                }
            }
            _ => {
                let body = match route {
                    "/echo" => format!("{method} {path} len={n} sum={sum}"),
                    "/headers" => head.clone(),
                    "/sleep" => {
                        std::thread::sleep(Duration::from_millis(query(&path, "ms")));
                        "slept".to_string()
                    }
                    _ => format!("{name} {path}"),
                };
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n{extra}\r\n",
                    body.len()
                )?;
                if !head_only {
                    w.write_all(body.as_bytes())?;
                }
            }
        }
        w.flush()?;
        if close || route == "/close" {
            return Ok(());
        }
    }
}
