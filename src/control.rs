//! The master's control socket: a unix stream socket (mode 0600) where `proxyctl` sends one
//! command line and reads one JSON reply line. A reply to `reload` is sent only once the new
//! generation serves (or the reload failed), which makes `proxyctl reload` synchronous.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const COMMANDS: [&str; 6] = ["reload", "upgrade", "quit", "stop", "reopen", "status"];

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
}

/// Longest reply message: a status of tens of thousands of sites fits. The master sends a
/// long reply as the socket drains; longer ones (a reload with a flood of errors) are cut
/// at a line with a count of what was left out.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Longest error message: errors are read by a person (all of them are in the error log),
/// so a reload with thousands of errors shows the first screenfuls and how many more.
pub const MAX_ERROR: usize = 48 * 1024;

impl Reply {
    /// The reply as one JSON line, cut to what its reader takes.
    pub fn line(&self) -> Vec<u8> {
        let max = if self.ok { MAX_MESSAGE } else { MAX_ERROR };
        let mut v = if self.message.len() > max {
            let mut end = max;
            while !self.message.is_char_boundary(end) {
                end -= 1;
            }
            // At the last whole line that fits; a first line longer than all of it (an
            // error quoting a huge value) is cut within, so its file:line stays.
            let message = match self.message[..end].rfind('\n') {
                Some(cut) => {
                    let left = self.message[cut..]
                        .lines()
                        .filter(|l| !l.is_empty())
                        .count();
                    let s = if left == 1 { "" } else { "s" };
                    format!("{}\n... and {left} more line{s}", &self.message[..cut])
                }
                None => format!("{}...", &self.message[..end]),
            };
            serde_json::to_vec(&Reply {
                ok: self.ok,
                message,
            })
        } else {
            serde_json::to_vec(self)
        }
        .unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Sends `cmd` to the master at `socket` and returns its reply. For `quit` and `stop` it
/// also waits (up to `wait`) until the master has exited and closed the socket.
pub fn request(socket: &Path, cmd: &str, wait: Duration) -> Result<Reply, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to the master at {}: {e} (is proxyd running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
    s.write_all(format!("{cmd}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| format!("no reply from the master: {e}"))?;
    if line.is_empty() {
        return Err("the master closed the connection without a reply".into());
    }
    let reply: Reply =
        serde_json::from_str(&line).map_err(|e| format!("bad reply from the master: {e}"))?;
    if reply.ok && (cmd == "quit" || cmd == "stop") {
        // The master holds the connection open until it exits.
        let mut rest = String::new();
        let _ = r.read_line(&mut rest);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(message: String) -> String {
        let line = Reply { ok: false, message }.line();
        let r: Reply = serde_json::from_slice(&line).unwrap();
        r.message
    }

    #[test]
    fn a_long_error_is_cut_at_a_line_or_within_its_first_line() {
        let many: String = (0..5000).map(|i| format!("f.toml:{i}: bad\n")).collect();
        let m = cut(many);
        assert!(m.starts_with("f.toml:0: bad\n"));
        assert!(m.ends_with("more lines"), "{}", &m[m.len() - 40..]);
        assert!(m.len() <= MAX_ERROR + 40);
        let one = format!("f.toml:15:12: unknown upstream \"{}\"", "N".repeat(60_000));
        let m = cut(one);
        assert!(m.starts_with("f.toml:15:12: unknown upstream"));
        assert!(m.ends_with("..."));
        let two = format!("{}\n{}", "x".repeat(MAX_ERROR - 10), "y".repeat(100));
        assert!(cut(two).ends_with("... and 1 more line"));
    }
}
