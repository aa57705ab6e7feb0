//! The access log in nginx "combined" format. Lines are buffered per destination and written
//! in whole lines (O_APPEND, so lines from several workers never interleave) when the buffer
//! fills, once a second, before a reopen and at exit: a busy worker makes one write per
//! 64 KiB of log, not one per request.

use crate::config::LogTarget;
use std::fs::File;
use std::io::Write;

/// One access log line's fields.
pub struct Entry<'a> {
    pub ip: &'a str,
    pub time: &'a str,
    /// Method, URI and minor version; None for a request that could not be parsed.
    pub request: Option<(&'a str, &'a str, u8)>,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Buffered bytes per destination that trigger a write.
const FLUSH_AT: usize = 64 * 1024;

pub struct AccessLog {
    outputs: Vec<Output>,
    /// Pending whole lines per output.
    pending: Vec<Vec<u8>>,
}

enum Output {
    File(File),
    Stdout,
    Stderr,
}

impl AccessLog {
    pub fn new(targets: &[LogTarget], files: Vec<Option<File>>) -> AccessLog {
        let outputs = targets
            .iter()
            .zip(files.into_iter().chain(std::iter::repeat_with(|| None)))
            .map(|(t, f)| match (t, f) {
                (_, Some(f)) => Output::File(f),
                (LogTarget::Stderr, None) => Output::Stderr,
                _ => Output::Stdout,
            })
            .collect();
        let pending = vec![Vec::new(); targets.len()];
        AccessLog { outputs, pending }
    }

    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty())
    }

    /// Writes everything pending.
    pub fn flush(&mut self) {
        for i in 0..self.outputs.len() {
            self.flush_one(i);
        }
    }

    fn flush_one(&mut self, i: usize) {
        let l = &mut self.pending[i];
        if l.is_empty() {
            return;
        }
        let res = match &mut self.outputs[i] {
            Output::File(f) => f.write_all(l),
            Output::Stdout => std::io::stdout().write_all(l),
            Output::Stderr => std::io::stderr().write_all(l),
        };
        if let Err(e) = res {
            log::error!("access log write failed: {e}");
        }
        l.clear();
    }

    /// Replaces the file outputs, in order, with freshly opened ones.
    pub fn reopen(&mut self, targets: &[LogTarget], mut files: impl Iterator<Item = File>) {
        self.flush();
        for (i, t) in targets.iter().enumerate() {
            if matches!(t, LogTarget::File(_)) {
                if let Some(f) = files.next() {
                    self.outputs[i] = Output::File(f);
                }
            }
        }
    }

    pub fn write(&mut self, idx: usize, e: &Entry) {
        let l = &mut self.pending[idx];
        let _ = write!(l, "{} - - [{}] \"", e.ip, e.time);
        match e.request {
            Some((method, uri, minor)) => {
                escape(l, method);
                l.push(b' ');
                escape(l, uri);
                let _ = write!(l, " HTTP/1.{minor}");
            }
            None => l.push(b'-'),
        }
        let _ = write!(l, "\" {} {} \"", e.status, e.bytes);
        escape(l, e.referer.unwrap_or("-"));
        l.extend_from_slice(b"\" \"");
        escape(l, e.user_agent.unwrap_or("-"));
        l.extend_from_slice(b"\"\n");
        if l.len() >= FLUSH_AT {
            self.flush_one(idx);
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Escapes quotes, backslashes and non-printable bytes as \xHH, like nginx.
fn escape(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}
