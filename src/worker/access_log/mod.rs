//! Access log destinations. Lines (in each log's format, see `log_format`; the values come
//! from `values`) are buffered per destination and written
//! in whole lines (O_APPEND, so lines from several workers never interleave) when the buffer
//! fills, once a second, before a reopen and at exit: a busy worker makes one write per
//! 64 KiB of log, not one per request.

mod values;

use crate::config::LogTarget;
use crate::log_format::Format;
use std::fs::File;
use std::io::Write;
pub use values::Line;

/// Buffered bytes per destination that trigger a write.
const FLUSH_AT: usize = 64 * 1024;

pub struct AccessLog {
    outputs: Vec<Output>,
    /// Pending whole lines per output.
    pending: Vec<Vec<u8>>,
    /// Holds one value while a line is written.
    scratch: Vec<u8>,
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
        AccessLog {
            outputs,
            pending,
            scratch: Vec::new(),
        }
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

    /// Appends a line in `format` to destination `idx`.
    pub fn write(&mut self, idx: usize, format: &Format, line: &Line) {
        let l = &mut self.pending[idx];
        format.write(line, l, &mut self.scratch);
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
