//! A server's routes, compiled once per config into structures that find a request's
//! candidates without scanning every route: a hash map of exact paths, a byte trie of
//! prefixes (walked once along the path) and, for regex routes, an Aho-Corasick automaton of
//! the literal text each pattern requires (`/item-17/` of `^/shop/([^/]+)/item-17/...`): only
//! the patterns whose literal occurs in the path are run, plus those with no such literal.
//! Each route has a static rank; the highest-ranked candidate whose conditions hold wins:
//!
//! 1. higher `priority` (default 0);
//! 2. exact path, then regex, then prefix (nginx's order: a regex beats a prefix);
//! 3. a longer prefix;
//! 4. a route with conditions (host, method, header, query, client) before one without;
//! 5. earlier in the config.

use super::conditions::Conditions;
use super::conditions::Request;
use super::pattern::MatchError;
use super::pattern::Pattern;
use aho_corasick::AhoCorasick;
use std::cmp::Reverse;
use std::collections::HashMap;

/// How a route's path matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathKind {
    #[default]
    Prefix,
    Exact,
    Regex,
}

/// What the table needs of a route (the config's routes are these; the router does not
/// know the rest of them).
pub trait Routable {
    fn path(&self) -> &str;
    fn kind(&self) -> PathKind;
    fn priority(&self) -> i32;
    fn conditions(&self) -> &Conditions;
    /// The compiled regex of a regex route.
    fn regex(&self) -> Option<&Pattern>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    priority: i32,
    kind: u8,
    len: usize,
    conditional: bool,
    order: Reverse<usize>,
}

impl Rank {
    pub fn of(r: &impl Routable, index: usize) -> Rank {
        Rank {
            priority: r.priority(),
            kind: match r.kind() {
                PathKind::Exact => 2,
                PathKind::Regex => 1,
                PathKind::Prefix => 0,
            },
            len: if r.kind() == PathKind::Prefix {
                r.path().len()
            } else {
                0
            },
            conditional: !r.conditions().is_empty(),
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
    /// Required literals of regex routes; pattern k of the automaton is `literal_routes[k]`.
    literals: Option<AhoCorasick>,
    literal_routes: Vec<Vec<u32>>,
    /// Regex routes without a required literal: run on every lookup.
    regex_always: Vec<u32>,
}

impl Default for RouteTable {
    fn default() -> RouteTable {
        RouteTable::compile::<NoRoute>(&[])
    }
}

/// The type of the routes of an empty table.
enum NoRoute {}

impl Routable for NoRoute {
    fn path(&self) -> &str {
        match *self {}
    }
    fn kind(&self) -> PathKind {
        match *self {}
    }
    fn priority(&self) -> i32 {
        match *self {}
    }
    fn conditions(&self) -> &Conditions {
        match *self {}
    }
    fn regex(&self) -> Option<&Pattern> {
        match *self {}
    }
}

impl RouteTable {
    pub fn compile<R: Routable>(routes: &[R]) -> RouteTable {
        let mut t = RouteTable {
            ranks: routes
                .iter()
                .enumerate()
                .map(|(i, r)| Rank::of(r, i))
                .collect(),
            exact: HashMap::new(),
            trie: vec![Node::default()],
            literals: None,
            literal_routes: Vec::new(),
            regex_always: Vec::new(),
        };
        let mut literals: HashMap<String, usize> = HashMap::new();
        // Each pattern is indexed by the literal it shares with the fewest other patterns
        // (`-17` rather than `/blog/` in `^/(\w\w)/blog/([\w-]+)-17$`).
        let lits: Vec<Vec<String>> = routes
            .iter()
            .map(|r| match (r.kind(), r.regex()) {
                (PathKind::Regex, Some(re)) => re.required_literals(),
                _ => Vec::new(),
            })
            .collect();
        let mut shared: HashMap<&str, usize> = HashMap::new();
        for l in lits.iter().flat_map(|v| {
            let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
            v.sort_unstable();
            v.dedup();
            v
        }) {
            *shared.entry(l).or_default() += 1;
        }
        for (i, r) in routes.iter().enumerate() {
            match r.kind() {
                PathKind::Exact => t
                    .exact
                    .entry(r.path().to_string())
                    .or_default()
                    .push(i as u32),
                PathKind::Prefix => {
                    let mut n = 0usize;
                    for &b in r.path().as_bytes() {
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
                PathKind::Regex => match choose(&shared, &lits[i]) {
                    Some(lit) => {
                        let n = literals.len();
                        let k = *literals.entry(lit.to_string()).or_insert(n);
                        if k == t.literal_routes.len() {
                            t.literal_routes.push(Vec::new());
                        }
                        t.literal_routes[k].push(i as u32);
                    }
                    None => t.regex_always.push(i as u32),
                },
            }
        }
        if !literals.is_empty() {
            let mut by_index: Vec<(String, usize)> = literals.into_iter().collect();
            by_index.sort_by_key(|(_, k)| *k);
            // Plain literals always build; if one day they did not, every regex route is
            // run on every request rather than skipped (never fail open).
            match AhoCorasick::new(by_index.iter().map(|(l, _)| l)) {
                Ok(ac) => t.literals = Some(ac),
                Err(_) => {
                    let all = std::mem::take(&mut t.literal_routes);
                    t.regex_always.extend(all.into_iter().flatten());
                    t.regex_always.sort_unstable();
                }
            }
        }
        t
    }

    /// The winning route for `path` (normalized, no query), if any. An error when a regex
    /// (the path's or a condition's) could not finish matching: the route it guards might
    /// have won, so no other route may answer in its place.
    pub fn lookup(
        &self,
        routes: &[impl Routable],
        path: &str,
        req: &Request,
    ) -> Result<Option<usize>, MatchError> {
        let mut best: Option<(Rank, usize)> = None;
        let mut error = None;
        let mut consider = |i: u32| {
            let i = i as usize;
            let rank = self.ranks[i];
            if best.is_some_and(|(b, _)| rank <= b) {
                return;
            }
            let path_ok = match routes[i].regex() {
                Some(re) if routes[i].kind() == PathKind::Regex => re.is_match(path),
                _ => Ok(true),
            };
            match path_ok.and_then(|ok| Ok(ok && routes[i].conditions().holds(req)?)) {
                Ok(true) => best = Some((rank, i)),
                Ok(false) => {}
                Err(e) => error = Some(e),
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
        self.regex_always.iter().copied().for_each(&mut consider);
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(path) {
                self.literal_routes[m.pattern().as_usize()]
                    .iter()
                    .copied()
                    .for_each(&mut consider);
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(best.map(|(_, i)| i)),
        }
    }
}

/// The literal of `lits` fewest patterns share, the longest among those.
fn choose<'a>(shared: &HashMap<&str, usize>, lits: &'a [String]) -> Option<&'a str> {
    lits.iter()
        .map(String::as_str)
        .min_by_key(|l| (shared.get(l).copied().unwrap_or(0), Reverse(l.len())))
}
