//! Request ids (`$request_id`): 32 random hex digits per request, as nginx makes them, or
//! the id a client or a load balancer in front already gave the request when the server
//! keeps incoming ids and that one is well-formed. Held inline (no heap per request).

/// Longest incoming id kept; longer ones are replaced.
pub const MAX: usize = 64;

#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX],
}

impl Default for RequestId {
    fn default() -> RequestId {
        RequestId {
            len: 0,
            bytes: [0; MAX],
        }
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RequestId {
    /// An incoming id, if it is 1 to 64 bytes of letters, digits and `-_.:`: anything else
    /// (spaces, quotes, control bytes) could forge or break log lines and headers downstream.
    pub fn incoming(v: &[u8]) -> Option<RequestId> {
        let ok = !v.is_empty()
            && v.len() <= MAX
            && v.iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !ok {
            return None;
        }
        let mut id = RequestId::default();
        id.bytes[..v.len()].copy_from_slice(v);
        id.len = v.len() as u8;
        Some(id)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A worker's id generator: splitmix64 seeded from the kernel's random pool when the worker
/// starts (after the fork, so no two workers share a sequence).
pub struct IdGen {
    state: u64,
}

impl IdGen {
    pub fn new() -> IdGen {
        let mut seed = [0u8; 8];
        // SAFETY: a valid buffer of its length; getrandom without flags blocks only before
        // the pool is initialised at boot.
        let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        let mut state = u64::from_ne_bytes(seed);
        if n != 8 {
            // No getrandom: time and pid still tell workers and restarts apart.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            state = t ^ ((std::process::id() as u64) << 32);
        }
        IdGen { state }
    }

    /// 64 random bits (not for secrets: ids only).
    pub fn random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A fresh id: 128 bits as 32 lower-case hex digits.
    pub fn generate(&mut self) -> RequestId {
        let mut id = RequestId {
            len: 32,
            ..RequestId::default()
        };
        let mut bits = [0u8; 16];
        bits[..8].copy_from_slice(&self.random().to_be_bytes());
        bits[8..].copy_from_slice(&self.random().to_be_bytes());
        super::write_hex(&mut id.bytes[..32], &bits);
        id
    }
}

impl Default for IdGen {
    fn default() -> IdGen {
        IdGen::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_hex_and_differ() {
        let mut g = IdGen::new();
        let a = g.generate();
        let b = g.generate();
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn incoming_ids_are_checked() {
        assert_eq!(
            RequestId::incoming(b"abc-123_x.y:z").unwrap().as_str(),
            "abc-123_x.y:z"
        );
        for bad in [&b""[..], b"a b", b"a\"b", b"a\r\nb", &[b'a'; 65], b"\xff"] {
            assert!(RequestId::incoming(bad).is_none());
        }
    }
}
