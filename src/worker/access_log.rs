//! The access log in nginx "combined" format, one write per line (O_APPEND, so lines from
//! several workers never interleave).

use crate::config::LogTarget;
use std::fs::File;
use std::io::Write;

pub struct AccessLog {
    outputs: Vec<Output>,
    /// Local time formatted for the current second, reused by every line in that second.
    time: (i64, String),
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
            time: (0, String::new()),
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

    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        idx: usize,
        ip: &str,
        request: &str,
        status: u16,
        bytes: u64,
        referer: Option<&str>,
        ua: Option<&str>,
    ) {
        let now = chrono::Local::now();
        let secs = now.timestamp();
        if self.time.0 != secs {
            self.time = (secs, now.format("%d/%b/%Y:%H:%M:%S %z").to_string());
        }
        let l = &mut self.line;
        l.clear();
        let _ = write!(l, "{ip} - - [{}] \"", self.time.1);
        escape(l, request);
        let _ = write!(l, "\" {status} {bytes} \"");
        escape(l, referer.unwrap_or("-"));
        l.extend_from_slice(b"\" \"");
        escape(l, ua.unwrap_or("-"));
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
