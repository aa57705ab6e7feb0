//! Virtual hosts: which server of a listen address a Host names, compiled once per config
//! so that a lookup costs a few hash probes however many servers there are (any client can
//! send an unknown Host; a linear scan would let it cost the worker 10,000 comparisons).
//!
//! `server_name` forms and precedence, as nginx: an exact name; a leading wildcard
//! `*.example.com` (any subdomain, the longest suffix wins); a trailing wildcard
//! `www.example.*` (the longest prefix wins); a regular expression `~^api\d+\.` (the first in
//! config order wins); otherwise the address's default server (`default_server = true`, else
//! the first server listed on it). `.example.com` is `example.com` and `*.example.com` at once.

use super::pattern::Pattern;
use std::collections::HashMap;
use std::net::SocketAddr;

/// A `server_name` as written, classified.
#[derive(Debug, Clone)]
pub enum NamePattern {
    Exact(String),
    /// `*.example.com`: the suffix `.example.com`.
    Leading(String),
    /// `www.example.*`: the prefix `www.example.`.
    Trailing(String),
    Regex(Pattern),
}

impl NamePattern {
    /// Parses one `server_name` (lowercase unless a regex). `.example.com` gives two.
    pub fn parse(name: &str) -> Result<Vec<NamePattern>, String> {
        if let Some(re) = name.strip_prefix('~') {
            return Pattern::new(re)
                .map(|r| vec![NamePattern::Regex(r)])
                .map_err(|e| format!("invalid server_name regex \"{re}\": {e}"));
        }
        let name = name.to_ascii_lowercase();
        let bad = |why: &str| Err(format!("invalid server_name \"{name}\": {why}"));
        if let Some(suffix) = name.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return bad("a wildcard must be a whole leading or trailing label");
            }
            return Ok(vec![NamePattern::Leading(format!(".{suffix}"))]);
        }
        if let Some(prefix) = name.strip_suffix(".*") {
            if prefix.is_empty() || prefix.contains('*') {
                return bad("a wildcard must be a whole leading or trailing label");
            }
            return Ok(vec![NamePattern::Trailing(format!("{prefix}."))]);
        }
        if name.contains('*') {
            return bad("a wildcard must be a whole leading or trailing label");
        }
        if let Some(base) = name.strip_prefix('.') {
            if base.is_empty() {
                return bad("empty name");
            }
            return Ok(vec![
                NamePattern::Exact(base.to_string()),
                NamePattern::Leading(name.clone()),
            ]);
        }
        Ok(vec![NamePattern::Exact(name)])
    }
}

/// The servers of one listen address.
#[derive(Debug, Clone, Default)]
pub struct HostTable {
    exact: HashMap<String, usize>,
    leading: HashMap<String, usize>,
    trailing: HashMap<String, usize>,
    regex: Vec<(Pattern, usize)>,
    default: usize,
}

impl HostTable {
    /// The server for `host` (lowercase, no port).
    pub fn lookup(&self, host: Option<&str>) -> usize {
        let Some(host) = host else {
            return self.default;
        };
        if let Some(&s) = self.exact.get(host) {
            return s;
        }
        // Suffixes from the longest: ".b.example.com", ".example.com", ".com".
        if !self.leading.is_empty() {
            for (i, _) in host.match_indices('.') {
                if let Some(&s) = self.leading.get(&host[i..]) {
                    return s;
                }
            }
        }
        // Prefixes from the longest: "www.example.co.", "www.example.", "www.".
        if !self.trailing.is_empty() {
            for (i, _) in host.rmatch_indices('.') {
                if let Some(&s) = self.trailing.get(&host[..=i]) {
                    return s;
                }
            }
        }
        // A name the pattern cannot finish matching goes to the default server, as any
        // name no server claims does: the client chose the Host, so nothing is bypassed.
        self.regex
            .iter()
            .find(|(r, _)| r.is_match(host) == Ok(true))
            .map_or(self.default, |(_, s)| *s)
    }
}

/// Every listen address's table.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    tables: HashMap<SocketAddr, HostTable>,
}

impl Hosts {
    /// Builds the tables from each server's listen addresses, names (already parsed) and
    /// `default_server`. An earlier server keeps a name a later one repeats.
    pub fn compile<'a>(
        servers: impl Iterator<Item = (&'a [SocketAddr], &'a [NamePattern], bool)>,
    ) -> Hosts {
        let mut tables: HashMap<SocketAddr, HostTable> = HashMap::new();
        let mut has_default: HashMap<SocketAddr, bool> = HashMap::new();
        for (i, (listen, names, default)) in servers.enumerate() {
            for addr in listen {
                let t = tables.entry(*addr).or_insert_with(|| HostTable {
                    default: i,
                    ..HostTable::default()
                });
                if default && !has_default.get(addr).copied().unwrap_or(false) {
                    t.default = i;
                    has_default.insert(*addr, true);
                }
                for n in names {
                    match n {
                        NamePattern::Exact(s) => {
                            t.exact.entry(s.clone()).or_insert(i);
                        }
                        NamePattern::Leading(s) => {
                            t.leading.entry(s.clone()).or_insert(i);
                        }
                        NamePattern::Trailing(s) => {
                            t.trailing.entry(s.clone()).or_insert(i);
                        }
                        NamePattern::Regex(r) => t.regex.push((r.clone(), i)),
                    }
                }
            }
        }
        Hosts { tables }
    }

    pub fn lookup(&self, listen: SocketAddr, host: Option<&str>) -> usize {
        self.tables.get(&listen).map_or(0, |t| t.lookup(host))
    }

    /// The table of one listen address.
    pub fn table(&self, listen: SocketAddr) -> Option<&HostTable> {
        self.tables.get(&listen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(servers: &[(&[&str], bool)]) -> Hosts {
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let listen = vec![addr];
        let parsed: Vec<Vec<NamePattern>> = servers
            .iter()
            .map(|(names, _)| {
                names
                    .iter()
                    .flat_map(|n| NamePattern::parse(n).unwrap())
                    .collect()
            })
            .collect();
        Hosts::compile(
            parsed
                .iter()
                .zip(servers)
                .map(|(p, (_, d))| (listen.as_slice(), p.as_slice(), *d)),
        )
    }

    #[test]
    fn precedence_is_nginx_s() {
        let h = hosts(&[
            (&["first.test"], false),
            (&["~^www\\.example\\.", "~^api\\d+\\."], false),
            (&["www.example.*"], false),
            (&["*.example.com"], false),
            (&["*.b.example.com"], false),
            (&["www.example.com"], false),
            (&[".dot.test"], true),
        ]);
        let at = |host: &str| h.lookup("127.0.0.1:80".parse().unwrap(), Some(host));
        assert_eq!(at("www.example.com"), 5, "exact beats everything");
        assert_eq!(at("x.b.example.com"), 4, "the longest leading wildcard");
        assert_eq!(at("x.example.com"), 3);
        assert_eq!(at("www.example.org"), 2, "trailing wildcard beats a regex");
        assert_eq!(at("api7.test"), 1, "a regex");
        assert_eq!(at("dot.test"), 6);
        assert_eq!(at("a.dot.test"), 6);
        assert_eq!(
            at("example.com"),
            6,
            "*.example.com is not example.com: default"
        );
        assert_eq!(at("unknown"), 6, "the default server");
        assert_eq!(h.lookup("127.0.0.1:80".parse().unwrap(), None), 6);
        assert_eq!(h.lookup("127.0.0.1:81".parse().unwrap(), Some("x")), 0);
    }

    #[test]
    fn without_default_the_first_server_is_it() {
        let h = hosts(&[(&["a.test"], false), (&["b.test"], false)]);
        assert_eq!(h.lookup("127.0.0.1:80".parse().unwrap(), Some("zz")), 0);
    }

    #[test]
    fn bad_names_are_errors() {
        for n in ["*", "a.*.b", "*.", "w*w.test", ".", "~(unclosed"] {
            assert!(NamePattern::parse(n).is_err(), "{n}");
        }
        assert!(matches!(&NamePattern::parse("~^API\\d")
            .unwrap()[0], NamePattern::Regex(r) if r.as_str() == "^API\\d"));
    }
}
