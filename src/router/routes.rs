//! A server's routes, compiled once per config into structures that find a request's
//! candidates without scanning every route: a hash map of exact paths, a byte trie of
//! prefixes (walked once along the path) and one `RegexSet` for every regex route. Each
//! route has a static rank; the highest-ranked candidate whose conditions hold wins:
//!
//! 1. higher `priority` (default 0);
//! 2. exact path, then regex, then prefix (nginx's order: a regex beats a prefix);
//! 3. a longer prefix;
//! 4. a route with conditions (host, method, header, query, client) before one without;
//! 5. earlier in the config.

use super::conditions::Request;
use crate::config::{PathKind, Route};
use regex::RegexSet;
use std::cmp::Reverse;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    priority: i32,
    kind: u8,
    len: usize,
    conditional: bool,
    order: Reverse<usize>,
}

impl Rank {
    pub fn of(r: &Route, index: usize) -> Rank {
        Rank {
            priority: r.priority,
            kind: match r.kind {
                PathKind::Exact => 2,
                PathKind::Regex => 1,
                PathKind::Prefix => 0,
            },
            len: if r.kind == PathKind::Prefix {
                r.path.len()
            } else {
                0
            },
            conditional: !r.conditions.is_empty(),
            order: Reverse(index),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// (byte, node index), sorted by byte.
    children: Vec<(u8, u32)>,
    /// Prefix routes ending here.
    routes: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    ranks: Vec<Rank>,
    exact: HashMap<String, Vec<u32>>,
    trie: Vec<Node>,
    regex: RegexSet,
    /// Route index of each pattern of `regex`.
    regex_routes: Vec<u32>,
}

impl Default for RouteTable {
    fn default() -> RouteTable {
        RouteTable::compile(&[])
    }
}

impl RouteTable {
    pub fn compile(routes: &[Route]) -> RouteTable {
        let mut t = RouteTable {
            ranks: routes
                .iter()
                .enumerate()
                .map(|(i, r)| Rank::of(r, i))
                .collect(),
            exact: HashMap::new(),
            trie: vec![Node::default()],
            regex: RegexSet::empty(),
            regex_routes: Vec::new(),
        };
        let mut patterns = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match r.kind {
                PathKind::Exact => t.exact.entry(r.path.clone()).or_default().push(i as u32),
                PathKind::Prefix => {
                    let mut n = 0usize;
                    for &b in r.path.as_bytes() {
                        n = match t.trie[n].children.binary_search_by_key(&b, |c| c.0) {
                            Ok(k) => t.trie[n].children[k].1 as usize,
                            Err(k) => {
                                let new = t.trie.len();
                                t.trie.push(Node::default());
                                t.trie[n].children.insert(k, (b, new as u32));
                                new
                            }
                        };
                    }
                    t.trie[n].routes.push(i as u32);
                }
                PathKind::Regex => {
                    patterns.push(r.path.clone());
                    t.regex_routes.push(i as u32);
                }
            }
        }
        // Every pattern compiled alone at config load, so the set compiles too.
        t.regex = RegexSet::new(&patterns).unwrap_or_else(|_| RegexSet::empty());
        t
    }

    /// The winning route for `path` (normalized, no query), if any.
    pub fn lookup(&self, routes: &[Route], path: &str, req: &Request) -> Option<usize> {
        let mut best: Option<(Rank, usize)> = None;
        let mut consider = |i: u32| {
            let i = i as usize;
            let rank = self.ranks[i];
            if best.is_none_or(|(b, _)| rank > b) && routes[i].conditions.holds(req) {
                best = Some((rank, i));
            }
        };
        if !self.exact.is_empty() {
            if let Some(v) = self.exact.get(path) {
                v.iter().copied().for_each(&mut consider);
            }
        }
        let mut n = 0usize;
        self.trie[0].routes.iter().copied().for_each(&mut consider);
        for &b in path.as_bytes() {
            let node = &self.trie[n];
            match node.children.binary_search_by_key(&b, |c| c.0) {
                Ok(k) => n = node.children[k].1 as usize,
                Err(_) => break,
            }
            self.trie[n].routes.iter().copied().for_each(&mut consider);
        }
        if !self.regex_routes.is_empty() {
            for k in self.regex.matches(path).iter() {
                consider(self.regex_routes[k]);
            }
        }
        best.map(|(_, i)| i)
    }
}
