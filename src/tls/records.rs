//! TLS record boundaries in what a client sends before its handshake is under way, sans
//! I/O: enough to notice an alert record. rustls acts on a fatal alert, but ignores a
//! close_notify warning in a TLS 1.2 handshake (it is not authenticated yet), so a client that
//! sends its ClientHello and a close_notify in one write would be held until
//! `handshake_timeout`; nginx closes at once, and so does proxyd.

const ALERT: u8 = 21;

/// Where the scan is: inside a record's body (`left` bytes to go) or its 5-byte header.
#[derive(Debug, Default, Clone)]
pub struct RecordScan {
    left: usize,
    header: [u8; 5],
    have: usize,
    alert: bool,
}

impl RecordScan {
    /// Follows `bytes`, the next ones the client sent.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.alert {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                self.left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            // The type byte alone tells.
            self.alert = self.header[0] == ALERT;
            if self.have == 5 {
                self.have = 0;
                self.left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
            }
        }
    }

    /// An alert record has begun: the client is giving up on the handshake.
    pub fn saw_alert(&self) -> bool {
        self.alert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_after_hello_at_any_split() {
        let mut bytes = vec![22, 3, 1, 0, 4, 1, 2, 3, 4, 20, 3, 3, 0, 1, 1];
        bytes.extend_from_slice(&[21, 3, 3, 0, 2, 1, 0]);
        for split in 0..bytes.len() {
            let mut s = RecordScan::default();
            s.feed(&bytes[..split]);
            assert_eq!(s.saw_alert(), split > 15, "split {split}");
            s.feed(&bytes[split..]);
            assert!(s.saw_alert());
        }
        let mut s = RecordScan::default();
        s.feed(&[22, 3, 1, 0, 21, 21, 21, 21]);
        assert!(!s.saw_alert(), "a body byte is no record type");
    }
}
