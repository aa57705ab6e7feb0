//! The client's address (as text) and port, inline: it goes into X-Forwarded-For, the access log and
//! error lines of every request, so it is formatted once per connection, and without a heap
//! allocation (an idle connection holds no heap for it).

use std::io::Write;
use std::net::IpAddr;

/// Longest text form of an IP address ("ffff:ffff:...:255.255.255.255").
const MAX: usize = 45;

#[derive(Clone, Copy)]
pub struct PeerIp {
    len: u8,
    text: [u8; MAX],
    port: u16,
}

impl PeerIp {
    pub fn new(ip: IpAddr, port: u16) -> PeerIp {
        let mut text = [0u8; MAX];
        let mut cursor = &mut text[..];
        // Cannot fail: every address fits.
        let _ = write!(cursor, "{ip}");
        let len = MAX - cursor.len();
        PeerIp {
            len: len as u8,
            text,
            port,
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.as_str()
            .parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn as_str(&self) -> &str {
        // Written from an IpAddr's Display: ASCII.
        std::str::from_utf8(&self.text[..self.len as usize]).unwrap_or("-")
    }
}

impl std::ops::Deref for PeerIp {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for PeerIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_fits() {
        for s in [
            "127.0.0.1",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(PeerIp::new(ip, 1).as_str(), ip.to_string());
        }
    }
}
