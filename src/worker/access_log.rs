//! The access log in nginx "combined" format, one write per line (O_APPEND, so lines from
//! several workers never interleave).

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

pub struct AccessLog {
    outputs: Vec<Output>,
    line: Vec<u8>,
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
        AccessLog {
            outputs,
            line: Vec::with_capacity(256),
        }
    }

    /// Replaces the file outputs, in order, with freshly opened ones.
    pub fn reopen(&mut self, targets: &[LogTarget], mut files: impl Iterator<Item = File>) {
        for (i, t) in targets.iter().enumerate() {
            if matches!(t, LogTarget::File(_)) {
                if let Some(f) = files.next() {
                    self.outputs[i] = Output::File(f);
                }
            }
        }
    }

    pub fn write(&mut self, idx: usize, e: &Entry) {
        let l = &mut self.line;
        l.clear();
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
        let _ = match &mut self.outputs[idx] {
            Output::File(f) => f.write_all(l),
            Output::Stdout => std::io::stdout().write_all(l),
            Output::Stderr => std::io::stderr().write_all(l),
        };
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
