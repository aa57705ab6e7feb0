//! A route's conditions besides its path: host, method, headers, query parameters and the
//! client's address. All must hold for the route to match; compiled once at config load.

use super::pattern::{MatchError, Pattern};
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::net::IpAddr;

/// What a header's or query parameter's value must be.
#[derive(Debug, Clone)]
pub enum Test {
    /// Present (any value).
    Present,
    /// Absent.
    Absent,
    Equals(String),
    Matches(Pattern),
}

impl Test {
    /// `true` / `false` (present / absent), `"~regex"` or an exact value, as configured.
    pub fn parse(v: &toml::Value) -> Result<Test, String> {
        match v {
            toml::Value::Boolean(true) => Ok(Test::Present),
            toml::Value::Boolean(false) => Ok(Test::Absent),
            toml::Value::String(s) => match s.strip_prefix('~') {
                Some(re) => Pattern::new(re)
                    .map(Test::Matches)
                    .map_err(|e| format!("invalid regular expression \"{re}\": {e}")),
                None => Ok(Test::Equals(s.clone())),
            },
            _ => Err("expected true, false, a value or \"~regex\"".into()),
        }
    }

    /// Whether the values found (none, one or several) pass: one passing value is enough.
    fn holds<V: AsRef<[u8]>>(
        &self,
        mut values: impl Iterator<Item = V>,
    ) -> Result<bool, MatchError> {
        Ok(match self {
            Test::Present => values.next().is_some(),
            Test::Absent => values.next().is_none(),
            Test::Equals(want) => values.any(|v| v.as_ref() == want.as_bytes()),
            Test::Matches(re) => {
                // Bytes that are not UTF-8 become U+FFFD: skipping the value would let
                // `BadBot\xff` past a `~(?i)badbot` deny.
                for v in values {
                    if re.is_match(&String::from_utf8_lossy(v.as_ref()))? {
                        return Ok(true);
                    }
                }
                false
            }
        })
    }
}

impl Test {
    /// For a health check's body: contains the text, or matches the regex.
    pub fn holds_body(&self, body: &[u8]) -> bool {
        match self {
            Test::Equals(t) => {
                body.windows(t.len().max(1)).any(|w| w == t.as_bytes()) || t.is_empty()
            }
            // A body the pattern cannot finish matching does not pass.
            Test::Matches(re) => re.is_match(&String::from_utf8_lossy(body)) == Ok(true),
            Test::Present => !body.is_empty(),
            Test::Absent => body.is_empty(),
        }
    }
}

impl Serialize for Test {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Test::Present => s.serialize_bool(true),
            Test::Absent => s.serialize_bool(false),
            Test::Equals(v) => s.serialize_str(v),
            Test::Matches(re) => s.serialize_str(&format!("~{}", re.as_str())),
        }
    }
}

/// An address block, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid address \"{addr}\" in \"{s}\""))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("invalid prefix length in \"{s}\""))?,
        };
        let c = Cidr { net, bits };
        if c.mask(net) != net {
            return Err(format!(
                "\"{s}\" has host bits set (use {}/{bits})",
                c.mask(net)
            ));
        }
        Ok(c)
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let m = u32::MAX.checked_shl(32 - self.bits as u32).unwrap_or(0);
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = u128::MAX.checked_shl(128 - self.bits as u32).unwrap_or(0);
                IpAddr::V6((u128::from(a) & m).into())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) if self.net.is_ipv4() => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            ip => ip,
        };
        ip.is_ipv4() == self.net.is_ipv4() && self.mask(ip) == self.net
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}/{}", self.net, self.bits))
    }
}

/// Everything about a request a condition may look at.
pub struct Request<'a> {
    pub method: &'a str,
    pub host: Option<&'a str>,
    /// The query string (after '?'), if any.
    pub query: Option<&'a str>,
    /// Every value of a header, by name (case-insensitive).
    pub header: &'a dyn Fn(&str) -> Vec<&'a [u8]>,
    /// The client's address (parsed only when a `client` condition asks).
    pub client: &'a dyn Fn() -> IpAddr,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Conditions {
    /// Shown with the route (`Route::shown`), where it is written.
    #[serde(skip)]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub method: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::units::ser_pairs"
    )]
    pub header: Vec<(String, Test)>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::units::ser_pairs"
    )]
    pub query: Vec<(String, Test)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client: Vec<Cidr>,
}

fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Values of query parameter `name` (raw, not percent-decoded).
fn query_values<'a>(query: Option<&'a str>, name: &'a str) -> impl Iterator<Item = Cow<'a, [u8]>> {
    query.unwrap_or("").split('&').filter_map(move |kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (!kv.is_empty() && form_decode(k).as_ref() == name.as_bytes()).then(|| form_decode(v))
    })
}

/// A query name or value as the backend reads it (`%61dmin` and `adm%69n` are `admin`;
/// `+` is a space): a condition on the raw text would let an encoding past a deny rule.
/// A malformed escape stays as it is.
fn form_decode(s: &str) -> Cow<'_, [u8]> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s.as_bytes());
    }
    let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(out)
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.method.is_empty()
            && self.header.is_empty()
            && self.query.is_empty()
            && self.client.is_empty()
    }

    pub fn holds(&self, r: &Request) -> Result<bool, MatchError> {
        if let Some(p) = &self.host {
            if !r.host.is_some_and(|h| name_matches(p, h)) {
                return Ok(false);
            }
        }
        if !self.method.is_empty() && !self.method.iter().any(|m| m == r.method) {
            return Ok(false);
        }
        if !self.client.is_empty() {
            let ip = (r.client)();
            if !self.client.iter().any(|c| c.contains(ip)) {
                return Ok(false);
            }
        }
        for (name, t) in &self.header {
            if !t.holds((r.header)(name).into_iter())? {
                return Ok(false);
            }
        }
        for (name, t) in &self.query {
            if !t.holds(query_values(r.query, name))? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!c.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1/8").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("x/8").is_err());
        assert_eq!(Cidr::parse("127.0.0.1").unwrap().bits, 32);
    }

    #[test]
    fn conditions() {
        let c = Conditions {
            method: vec!["GET".into()],
            header: vec![
                ("x-canary".into(), Test::Equals("1".into())),
                ("x-debug".into(), Test::Absent),
            ],
            query: vec![(
                "v".into(),
                Test::parse(&toml::Value::String("~^2".into())).unwrap(),
            )],
            ..Default::default()
        };
        let hdr = |n: &str| -> Vec<&[u8]> {
            if n == "x-canary" {
                vec![b"1"]
            } else {
                vec![]
            }
        };
        let mut r = Request {
            method: "GET",
            host: None,
            query: Some("a=1&v=2.1"),
            header: &hdr,
            client: &|| "127.0.0.1".parse().unwrap(),
        };
        assert!(c.holds(&r).unwrap());
        // Names and values are tested as the backend decodes them.
        for q in ["v=%32", "%76=2", "%76=%32x", "a=1&v=2+"] {
            r.query = Some(q);
            assert!(c.holds(&r).unwrap(), "{q}");
        }
        r.query = Some("v=%3");
        assert!(!c.holds(&r).unwrap());
        r.query = Some("v=1");
        assert!(!c.holds(&r).unwrap());
        r.query = Some("v=2");
        r.method = "POST";
        assert!(!c.holds(&r).unwrap());
    }
}
