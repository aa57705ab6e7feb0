//! Layer 5: filters, a stage of the exchange. A route's chain (`config::Filter`, compiled at
//! load) runs over the editable request head before anything is done with the request, and
//! over the response head before it goes to the client, whatever made it: an upstream, the
//! route's own answer (`return`, `redirect`), or a filter's. Each filter owns one policy and
//! returns a verdict: go on (having edited the head in place, if it rewrites), or answer now
//! with a status, headers and a body. The chain is data and dispatch is static (a `match`,
//! no trait objects). Codecs only serialize the heads filters finished.

mod forwarded;

use crate::config::filters::Fixed;
use crate::config::{Filter, HeaderEdits};
use crate::http::headers::{Headers, Kind};
use crate::http::trace::Trace;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

/// What a filter may know besides the head: the clock, shared memory, the client and what
/// the exchange decided about the request. The built-in filters read none of the clock and
/// shared memory yet; rate limits and auth caches (issue 24) are what they are for.
#[allow(dead_code)]
pub struct Cx<'a> {
    pub now: Instant,
    /// `now` on the system-wide clock shared memory keeps (ms).
    pub now_ms: u64,
    /// This worker's block of the node's shared memory (counters, peer health; limits to
    /// come). None outside a worker (unit tests, fuzzing).
    pub shared: Option<crate::shm::Block>,
    /// The client's address, as text.
    pub client_ip: &'a str,
    /// "http" or "https".
    pub proto: &'static str,
    /// Set when the server verifies client certificates (`verify_client`).
    pub client_cert: Option<ClientCert<'a>>,
    /// The request id header's name and this request's id (`request_id`).
    pub request_id: Option<(&'a str, &'a str)>,
    /// What the request's `traceparent` and `tracestate` become.
    pub trace: Trace,
    /// proxyd's span, which becomes the parent in the `traceparent` sent upstream.
    pub span: Option<[u8; 8]>,
    /// Header names with `_` are forwarded (`underscores_in_headers`).
    pub underscores: bool,
}

/// What a server that verifies client certificates tells its upstream.
#[derive(Debug, Clone, Copy)]
pub enum ClientCert<'a> {
    /// No certificate (`verify_client = "optional"`).
    None,
    Verified {
        subject: &'a str,
        fingerprint: &'a str,
    },
}

/// A response a filter (or the route) makes instead of going on: borrowed from the
/// configuration when it is fixed (no allocation per request), owned when a filter
/// computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<'a> {
    pub status: u16,
    pub headers: Cow<'a, [(String, String)]>,
    /// Shared (a configured body, not copied per request) or made for this answer.
    pub body: Arc<[u8]>,
}

impl<'a> Answer<'a> {
    /// The answer of a `return` route.
    pub fn fixed(f: &'a Fixed) -> Answer<'a> {
        Answer {
            status: f.status,
            headers: Cow::Borrowed(&f.headers),
            body: f.body.clone(),
        }
    }
}

/// What a filter decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Go on to the next filter, then the route's action (the head may have been edited).
    Continue,
    /// Answer the client with this now: a 401 with `WWW-Authenticate`, a 429 with
    /// `Retry-After`, a CORS preflight's answer. The response hooks still run over it.
    Answer(Answer<'a>),
}

/// Runs the request-head hooks in order; the first verdict other than `Continue` wins.
pub fn on_request<'c>(chain: &'c [Filter], raw: &[u8], h: &mut Headers, cx: &Cx) -> Verdict<'c> {
    for f in chain {
        let v = match f {
            Filter::HopByHop => hop_by_hop(raw, h),
            Filter::Forwarded => forwarded::apply(raw, h, cx),
            Filter::EditRequest(e) => edit(e, raw, h),
            Filter::EditResponse(_) => Verdict::Continue,
            Filter::Return(f) => Verdict::Answer(Answer::fixed(f)),
        };
        if v != Verdict::Continue {
            return v;
        }
    }
    Verdict::Continue
}

/// Runs the response-head hooks in order over a head about to go to the client.
pub fn on_response<'c>(chain: &'c [Filter], raw: &[u8], h: &mut Headers, _cx: &Cx) -> Verdict<'c> {
    for f in chain {
        let v = match f {
            Filter::HopByHop => hop_by_hop(raw, h),
            Filter::EditResponse(e) => edit(e, raw, h),
            Filter::Forwarded | Filter::EditRequest(_) | Filter::Return(_) => Verdict::Continue,
        };
        if v != Verdict::Continue {
            return v;
        }
    }
    Verdict::Continue
}

fn edit(e: &HeaderEdits, raw: &[u8], h: &mut Headers) -> Verdict<'static> {
    for name in &e.remove {
        h.remove_named(raw, name.as_bytes());
    }
    for (name, value) in &e.set {
        h.remove_named(raw, name.as_bytes());
        h.append_copy(name.as_bytes(), value.as_bytes());
    }
    for (name, value) in &e.add {
        h.append_copy(name.as_bytes(), value.as_bytes());
    }
    Verdict::Continue
}

/// Connection options that name no header field; only other tokens make a field-by-field
/// check necessary (rare: `Connection: keep-alive` or `close` is what clients send).
fn names_fields(token: &[u8]) -> bool {
    let t = token.trim_ascii();
    !t.is_empty()
        && !t.eq_ignore_ascii_case(b"close")
        && !t.eq_ignore_ascii_case(b"keep-alive")
        && !t.eq_ignore_ascii_case(b"upgrade")
}

fn hop_by_hop(raw: &[u8], h: &mut Headers) -> Verdict<'static> {
    // Fields named in Connection go too, but never Host or the framing fields (letting a
    // peer name them is how `Connection: Content-Length` smuggles); those are not `Other`.
    let named: Vec<Vec<u8>> = h
        .values(raw, Kind::Connection)
        .flat_map(|v| v.split(|&b| b == b','))
        .filter(|t| names_fields(t))
        .map(|t| t.trim_ascii().to_vec())
        .collect();
    h.retain(raw, |f, name| {
        let named_here = f.kind.is_other() && named.iter().any(|t| t.eq_ignore_ascii_case(name));
        !(f.kind.hop_by_hop() || named_here)
    });
    Verdict::Continue
}

#[cfg(test)]
mod tests;

impl Cx<'_> {
    /// A context for running a chain outside a worker (fuzzing, tests): client 192.0.2.1
    /// over plain HTTP, no request id, trace or certificate.
    pub fn detached() -> Cx<'static> {
        Cx {
            now: Instant::now(),
            now_ms: 0,
            shared: None,
            client_ip: "192.0.2.1",
            proto: "http",
            client_cert: None,
            request_id: None,
            trace: Trace::None,
            span: None,
            underscores: false,
        }
    }
}
