//! A server's `[[server.route]]` tables: path (prefix, exact or regex), priority, `match`
//! conditions, the action (upstream, split, return, redirect), path changes and header
//! edits; then the routes that can never match, as warnings.

use super::filters::{Filter, Fixed, HeaderEdits};
use super::raw::*;
use super::validate::{httparse_token, Validator};
use super::*;
use crate::router::Pattern;
use crate::router::{Cidr, Conditions, Rank, Template, Test};
use std::ops::Range;

const REDIRECT_STATUSES: [i64; 5] = [301, 302, 303, 307, 308];

impl Validator {
    pub(super) fn routes(
        &mut self,
        src: &Source,
        raw: &[S<RawRoute>],
        upstreams: &HashMap<String, usize>,
    ) -> Vec<Route> {
        let mut routes = Vec::new();
        let mut spans = Vec::new();
        for r in raw {
            if let Some(route) = self.route(src, r.span(), r.get_ref(), upstreams) {
                routes.push(route);
                spans.push(r.span());
            }
        }
        self.duplicates_and_shadows(src, &routes, &spans);
        routes
    }

    fn route(
        &mut self,
        src: &Source,
        rspan: Range<usize>,
        r: &RawRoute,
        upstreams: &HashMap<String, usize>,
    ) -> Option<Route> {
        let errors = self.errors.len();
        let (kind, key, path) = match (&r.path, &r.exact, &r.regex) {
            (None, None, None) => (PathKind::Prefix, "path", None),
            (Some(p), None, None) => (PathKind::Prefix, "path", Some(p)),
            (None, Some(p), None) => (PathKind::Exact, "exact", Some(p)),
            (None, None, Some(p)) => (PathKind::Regex, "regex", Some(p)),
            _ => {
                self.errors.push(src.err(
                    rspan.clone(),
                    "a route takes one of \"path\", \"exact\" or \"regex\"",
                ));
                return None;
            }
        };
        let text = path.map_or("/".to_string(), |p| p.get_ref().clone());
        let at = path.map_or(rspan.clone(), |p| p.span());
        let mut regex = None;
        match kind {
            PathKind::Regex => match Pattern::new(&text) {
                Ok(re) => {
                    if !text.is_ascii() {
                        self.warnings.push(src.err(
                            at.clone(),
                            format!("regex \"{text}\" has non-ASCII characters, which a routed path never holds: they stay percent-encoded (\"%C3%9C\"), so write them that way"),
                        ));
                    }
                    regex = Some(re)
                }
                Err(e) => self.errors.push(src.err(
                    at.clone(),
                    format!("invalid regular expression \"{text}\": {e}"),
                )),
            },
            _ if !text.starts_with('/') => self.errors.push(src.err(
                at.clone(),
                format!("route {key} \"{text}\" must start with '/'"),
            )),
            _ => {}
        }
        let priority = match &r.priority {
            Some(p) if (-1000..=1000).contains(p.get_ref()) => *p.get_ref() as i32,
            Some(p) => {
                self.errors.push(src.err(
                    p.span(),
                    format!("priority {} out of range -1000..=1000", p.get_ref()),
                ));
                0
            }
            None => 0,
        };
        let mut conditions = r
            .conditions
            .as_ref()
            .map(|m| self.conditions(src, m))
            .unwrap_or_default();
        conditions.host = r.host.as_ref().map(|h| h.get_ref().to_ascii_lowercase());
        let action = self.action(src, &rspan, r, upstreams, regex.as_ref())?;
        let proxied = matches!(action, Action::Proxy { .. } | Action::Split { .. });
        let (rewrite, strip_prefix) =
            self.path_changes(src, r, proxied, kind, &text, regex.as_ref());
        let forward_raw_path = match &r.forward_raw_path {
            Some(f)
                if *f.get_ref() && (!proxied || rewrite.is_some() || strip_prefix.is_some()) =>
            {
                self.errors.push(src.err(
                    f.span(),
                    "forward_raw_path needs \"upstream\" or \"split\" and no \"rewrite\" or \"strip_prefix\"",
                ));
                false
            }
            Some(f) => *f.get_ref(),
            None => false,
        };
        let mut filters = if proxied {
            super::filters::proxy_defaults()
        } else {
            Vec::new()
        };
        let (mut request_headers, mut response_headers) = (None, None);
        for (edits, on_request) in [(&r.request_headers, true), (&r.response_headers, false)] {
            let Some(edits) = edits else { continue };
            // Response edits apply to whatever answers on the route; request edits only
            // to what goes upstream.
            if on_request && !proxied {
                self.errors.push(src.err(
                    edits.span(),
                    "request_headers needs \"upstream\" or \"split\" (nothing goes upstream from a \"return\" or \"redirect\" route)",
                ));
                continue;
            }
            if let Some(e) = self.header_edits(src, edits) {
                if on_request {
                    request_headers = Some(e.clone());
                    filters.push(Filter::EditRequest(e));
                } else {
                    response_headers = Some(e.clone());
                    filters.push(Filter::EditResponse(e));
                }
            }
        }
        // A `return` route answers through its chain, after the filters before it.
        if let Action::Return {
            status,
            body,
            headers,
        } = &action
        {
            filters.push(Filter::Return(Fixed {
                status: *status,
                headers: headers.clone(),
                body: body.as_bytes().into(),
            }));
        }
        if self.errors.len() > errors {
            return None;
        }
        let name = match &r.name {
            Some(n) => n.get_ref().clone(),
            None if key == "path" => text.clone(),
            None => format!("{key} {text}"),
        };
        Some(Route {
            name,
            slot: 0,
            // `host` too: a condition, but written on the route, not in its `match`.
            shown: std::iter::once((key, text.clone()))
                .chain(conditions.host.clone().map(|h| ("host", h)))
                .collect(),
            path: text,
            kind,
            priority,
            conditions,
            regex,
            action,
            rewrite,
            strip_prefix,
            forward_raw_path,
            retry: self.retry(src, r.retry.as_ref()),
            request_headers,
            response_headers,
            filters,
        })
    }

    fn conditions(&mut self, src: &Source, m: &S<RawMatch>) -> Conditions {
        let m = m.get_ref();
        let mut c = Conditions::default();
        if let Some(methods) = &m.method {
            for name in methods.get_ref().items() {
                if httparse_token(&name) {
                    c.method.push(name);
                } else {
                    self.errors
                        .push(src.err(methods.span(), format!("invalid method \"{name}\"")));
                }
            }
        }
        for (table, out) in [(&m.header, &mut c.header), (&m.query, &mut c.query)] {
            for (name, v) in table {
                if name.is_empty() || !httparse_token(name) {
                    self.errors
                        .push(src.err(v.span(), format!("invalid name \"{name}\"")));
                    continue;
                }
                match Test::parse(v.get_ref()) {
                    Ok(t) => out.push((name.clone(), t)),
                    Err(e) => self
                        .errors
                        .push(src.err(v.span(), format!("\"{name}\": {e}"))),
                }
            }
        }
        if let Some(cl) = &m.client {
            for s in cl.get_ref().items() {
                match Cidr::parse(&s) {
                    Ok(cidr) => c.client.push(cidr),
                    Err(e) => self.errors.push(src.err(cl.span(), e)),
                }
            }
        }
        c
    }

    fn action(
        &mut self,
        src: &Source,
        rspan: &Range<usize>,
        r: &RawRoute,
        upstreams: &HashMap<String, usize>,
        regex: Option<&Pattern>,
    ) -> Option<Action> {
        let fixed_only = |v: &mut Validator, what: &str| {
            if r.body.is_some() || !r.headers.is_empty() {
                v.errors.push(src.err(
                    rspan.clone(),
                    format!("\"body\" and \"headers\" belong to a \"return\" route, not {what}"),
                ));
            }
        };
        if let (Some(s), None) = (&r.sticky, &r.split) {
            self.errors
                .push(src.err(s.span(), "\"sticky\" needs \"split\""));
        }
        match (&r.upstream, &r.split, &r.redirect, &r.return_status) {
            (Some(u), None, None, None) => {
                fixed_only(self, "an \"upstream\" route");
                let Some(&index) = upstreams.get(u.get_ref()) else {
                    self.errors
                        .push(src.err(u.span(), unknown_upstream(u.get_ref(), upstreams)));
                    return None;
                };
                Some(Action::Proxy {
                    upstream: u.get_ref().clone(),
                    index,
                })
            }
            (None, Some(split), None, None) => {
                fixed_only(self, "a \"split\" route");
                let mut targets = Vec::new();
                for t in split.get_ref() {
                    let t = t.get_ref();
                    let weight = match &t.weight {
                        Some(w) if (1..=1000).contains(w.get_ref()) => *w.get_ref() as u32,
                        Some(w) => {
                            self.errors.push(src.err(
                                w.span(),
                                format!("split weight {} out of range 1..=1000", w.get_ref()),
                            ));
                            1
                        }
                        None => 1,
                    };
                    match upstreams.get(t.upstream.get_ref()) {
                        Some(&index) => targets.push(SplitTarget {
                            upstream: t.upstream.get_ref().clone(),
                            index,
                            weight,
                        }),
                        None => self.errors.push(src.err(
                            t.upstream.span(),
                            unknown_upstream(t.upstream.get_ref(), upstreams),
                        )),
                    }
                }
                if split.get_ref().is_empty() {
                    self.errors
                        .push(src.err(split.span(), "\"split\" needs at least one upstream"));
                }
                let sticky = r.sticky.as_ref().and_then(|s| {
                    let parsed = HashKey::parse(s.get_ref());
                    if parsed.is_none() {
                        self.errors.push(src.err(
                            s.span(),
                            format!("sticky \"{}\": {}", s.get_ref(), HashKey::HELP),
                        ));
                    }
                    parsed
                });
                Some(Action::Split {
                    split: targets,
                    sticky,
                })
            }
            (None, None, Some(to), status) => {
                fixed_only(self, "a \"redirect\" route");
                let status = match status {
                    None => 302,
                    Some(s) if REDIRECT_STATUSES.contains(s.get_ref()) => *s.get_ref(),
                    Some(s) => {
                        self.errors.push(src.err(
                            s.span(),
                            format!(
                                "a redirect's status is 301, 302, 303, 307 or 308, not {}",
                                s.get_ref()
                            ),
                        ));
                        302
                    }
                };
                if to.get_ref().contains(['\r', '\n', ' ']) || to.get_ref().is_empty() {
                    self.errors
                        .push(src.err(to.span(), "invalid redirect target"));
                    return None;
                }
                match Template::parse(to.get_ref(), regex) {
                    Ok(t) => Some(Action::Redirect {
                        status: status as u16,
                        redirect: t,
                    }),
                    Err(e) => {
                        self.errors.push(src.err(to.span(), e));
                        None
                    }
                }
            }
            (None, None, None, Some(st)) => {
                let status = *st.get_ref();
                if !(200..=599).contains(&status) {
                    self.errors.push(src.err(
                        st.span(),
                        format!("return status {status} out of range 200..=599"),
                    ));
                    return None;
                }
                if matches!(status, 204 | 304) && r.body.as_ref().is_some_and(|b| !b.is_empty()) {
                    // Sent, it would be read as the start of the next response.
                    self.errors.push(src.err(
                        st.span(),
                        format!("a {status} answer has no body: remove \"body\""),
                    ));
                    return None;
                }
                let mut headers = Vec::new();
                for (k, val) in &r.headers {
                    if !httparse_token(k) || val.get_ref().contains(['\r', '\n']) {
                        self.errors
                            .push(src.err(val.span(), format!("invalid header \"{k}\"")));
                    } else if !HeaderEdits::editable(k) {
                        // A second Content-Length or a Transfer-Encoding next to the one
                        // proxyd writes would make the answer ambiguous.
                        self.errors.push(src.err(
                            val.span(),
                            format!("header \"{k}\" frames the response or names the connection: proxyd writes it itself"),
                        ));
                    } else {
                        headers.push((k.clone(), val.get_ref().clone()));
                    }
                }
                Some(Action::Return {
                    status: status as u16,
                    body: r.body.clone().unwrap_or_default(),
                    headers,
                })
            }
            _ => {
                self.errors.push(src.err(
                    rspan.clone(),
                    "a route needs exactly one of \"upstream\", \"split\", \"return\" or \"redirect\"",
                ));
                None
            }
        }
    }

    fn path_changes(
        &mut self,
        src: &Source,
        r: &RawRoute,
        proxied: bool,
        kind: PathKind,
        path: &str,
        regex: Option<&Pattern>,
    ) -> (Option<Template>, Option<String>) {
        for v in [&r.rewrite, &r.strip_prefix].into_iter().flatten() {
            if !proxied {
                self.errors.push(src.err(
                    v.span(),
                    "\"rewrite\" and \"strip_prefix\" need \"upstream\" or \"split\"",
                ));
                return (None, None);
            }
        }
        if let (Some(_), Some(s)) = (&r.rewrite, &r.strip_prefix) {
            self.errors.push(src.err(
                s.span(),
                "a route takes \"rewrite\" or \"strip_prefix\", not both",
            ));
            return (None, None);
        }
        let mut rewrite = None;
        if let Some(rw) = &r.rewrite {
            let t = rw.get_ref();
            if !(t.starts_with('/') || t.starts_with('$')) || t.contains(['\r', '\n', ' ', '#']) {
                self.errors.push(src.err(
                    rw.span(),
                    format!("rewrite \"{t}\" must be a path starting with '/' (or a variable)"),
                ));
            } else {
                match Template::parse(t, regex) {
                    Ok(t) => rewrite = Some(t),
                    Err(e) => self.errors.push(src.err(rw.span(), e)),
                }
            }
        }
        let mut strip = None;
        if let Some(s) = &r.strip_prefix {
            let p = s.get_ref();
            if !p.starts_with('/') {
                self.errors.push(src.err(
                    s.span(),
                    format!("strip_prefix \"{p}\" must start with '/'"),
                ));
            } else if kind != PathKind::Regex && !path.starts_with(p.as_str()) {
                self.errors.push(src.err(
                    s.span(),
                    format!("strip_prefix \"{p}\" is not a prefix of the route's path \"{path}\""),
                ));
            } else {
                strip = Some(p.trim_end_matches('/').to_string());
            }
        }
        (rewrite, strip)
    }

    /// Two routes alike in path, conditions and priority are an error; a route that an
    /// earlier-ranked unconditional route always beats is a warning (`-t` prints it).
    fn duplicates_and_shadows(&mut self, src: &Source, routes: &[Route], spans: &[Range<usize>]) {
        let key = |r: &Route| {
            (
                r.kind as u8,
                r.path.clone(),
                r.priority,
                // `host` is a condition too, though it is shown with the route.
                r.conditions.host.clone(),
                serde_json::to_string(&r.conditions).unwrap_or_default(),
            )
        };
        let mut seen = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            if let Some(first) = seen.insert(key(r), i) {
                self.errors.push(src.err(
                    spans[i].clone(),
                    format!(
                        "duplicate route for {} \"{}\" (the same as the route at {})",
                        kind_key(r.kind),
                        r.path,
                        src.at(spans[first].clone())
                    ),
                ));
            }
        }
        // The best unconditional route per prefix and per regex pattern.
        let mut prefixes: HashMap<&str, usize> = HashMap::new();
        let mut regexes: HashMap<&str, usize> = HashMap::new();
        let rank = |i: usize| Rank::of(&routes[i], i);
        for (i, r) in routes.iter().enumerate() {
            if !r.conditions.is_empty() {
                continue;
            }
            let map = match r.kind {
                PathKind::Prefix => &mut prefixes,
                PathKind::Regex => &mut regexes,
                PathKind::Exact => continue,
            };
            let e = map.entry(r.path.as_str()).or_insert(i);
            if rank(i) > rank(*e) {
                *e = i;
            }
        }
        for (j, b) in routes.iter().enumerate() {
            let mut by = None;
            let mut check = |a: Option<&usize>| {
                if let Some(&a) = a {
                    if a != j && rank(a) > rank(j) && by.is_none_or(|x| rank(a) > rank(x)) {
                        by = Some(a);
                    }
                }
            };
            match b.kind {
                PathKind::Prefix | PathKind::Exact => {
                    for end in 1..=b.path.len() {
                        if b.path.is_char_boundary(end) {
                            check(prefixes.get(&b.path[..end]));
                        }
                    }
                }
                PathKind::Regex => {
                    check(prefixes.get("/"));
                    check(regexes.get(b.path.as_str()));
                }
            }
            if let Some(a) = by {
                let ar = &routes[a];
                let line = src.err(spans[a].clone(), "").line;
                self.warnings.push(src.err(
                    spans[j].clone(),
                    format!(
                        "route for {} \"{}\" can never match: the route at line {line} ({} \"{}\"{}) matches all its requests first",
                        kind_key(b.kind),
                        b.path,
                        kind_key(ar.kind),
                        ar.path,
                        if ar.priority != 0 { format!(", priority {}", ar.priority) } else { String::new() },
                    ),
                ));
            }
        }
    }
}

impl Validator {
    fn retry(&mut self, src: &Source, r: Option<&S<RawRetry>>) -> Retry {
        let none = RawRetry {
            tries: None,
            on: None,
            backoff: None,
            max_backoff: None,
            budget_percent: None,
            non_idempotent: None,
        };
        let r = r.map_or(&none, |r| r.get_ref());
        // nginx's default (`proxy_next_upstream error timeout`), for replayable requests.
        let (mut error, mut timeout, mut statuses) = (r.on.is_none(), r.on.is_none(), Vec::new());
        if let Some(on) = &r.on {
            for what in on.get_ref() {
                match what.as_str() {
                    "timeout" => timeout = true,
                    "error" => error = true,
                    "connect" => {}
                    "502" | "503" | "504" => statuses.push(what.parse().expect("a status")),
                    other => self.errors.push(src.err(
                        on.span(),
                        format!("retry on \"{other}\": use \"connect\", \"error\", \"timeout\", \"502\", \"503\" or \"504\""),
                    )),
                }
            }
        }
        let backoff = self.duration(src, &r.backoff, Duration::from_millis(25));
        let max_backoff = self.duration(src, &r.max_backoff, Duration::from_secs(1));
        Retry {
            tries: self.count(src, &r.tries, 0, 100, 0) as u32,
            error,
            timeout,
            statuses,
            backoff,
            max_backoff: max_backoff.max(backoff),
            budget_percent: self.count(src, &r.budget_percent, 0, 100, 20) as u32,
            non_idempotent: r.non_idempotent.unwrap_or(false),
        }
    }
}

fn kind_key(k: PathKind) -> &'static str {
    match k {
        PathKind::Prefix => "path",
        PathKind::Exact => "exact",
        PathKind::Regex => "regex",
    }
}

/// "unknown upstream", with the nearest name the config has when one is near.
fn unknown_upstream(name: &str, upstreams: &HashMap<String, usize>) -> String {
    match super::hints::closest(name, upstreams.keys().map(String::as_str)) {
        Some(c) => format!("unknown upstream \"{name}\"; did you mean \"{c}\"?"),
        None => format!("unknown upstream \"{name}\""),
    }
}
