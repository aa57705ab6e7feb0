//! Layer 6: filters. An ordered chain per route, compiled at config load, run over the
//! editable request head before it goes upstream and over the response head before it goes
//! to the client. Each filter owns one policy and returns a verdict; the chain is data, not
//! code paths in the session, and dispatch is static (a `match`, no trait objects).
//! Hop-by-hop removal, the forwarding headers and the route's header edits are the
//! built-ins; auth, rate limits, CORS and compression come as more variants.

use super::headers::{Headers, Kind};
use super::trace::Trace;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Drops hop-by-hop headers and those the `Connection` header names (RFC 9110 7.6.1),
    /// never `Host` or the framing headers.
    HopByHop,
    /// `X-Forwarded-For` (every incoming value folded into one line, the client appended)
    /// and `X-Forwarded-Proto` (replaced, never trusted from the client).
    Forwarded,
    /// The route's `request_headers` edits, on the head sent upstream.
    EditRequest(HeaderEdits),
    /// The route's `response_headers` edits, on the head sent to the client.
    EditResponse(HeaderEdits),
}

/// Header edits from the configuration: `remove` drops every field of a name, `set`
/// replaces them with one, `add` appends one more. Names that carry framing or connection
/// semantics (Host, Content-Length, Transfer-Encoding, Connection, Upgrade and the other
/// hop-by-hop fields) are refused when the config loads: the codecs write those themselves.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct HeaderEdits {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderEdits {
    /// Whether `name` may be edited (see above).
    pub fn editable(name: &str) -> bool {
        matches!(
            super::headers::classify(name.as_bytes()),
            Kind::Other
                | Kind::ClientIdentity
                | Kind::Underscored
                | Kind::XForwardedFor
                | Kind::XForwardedProto
                | Kind::Referer
                | Kind::UserAgent
        )
    }

    fn apply(&self, raw: &[u8], h: &mut Headers) -> Verdict {
        for name in &self.remove {
            h.remove_named(raw, name.as_bytes());
        }
        for (name, value) in &self.set {
            h.remove_named(raw, name.as_bytes());
            h.append_copy(name.as_bytes(), value.as_bytes());
        }
        for (name, value) in &self.add {
            h.append_copy(name.as_bytes(), value.as_bytes());
        }
        Verdict::Continue
    }
}

/// What a filter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Answer the client with this status instead of going on.
    Respond(u16),
}

/// What request filters may know about the connection.
pub struct RequestInfo<'a> {
    pub client_ip: &'a str,
    /// "http" or "https".
    pub proto: &'static str,
    /// Set when the server verifies client certificates (`verify_client`).
    pub client_cert: Option<ClientCert<'a>>,
    /// The request id header's name and this request's id (`request_id`).
    pub request_id: Option<(&'a str, &'a str)>,
    /// What the request's `traceparent` and `tracestate` become.
    pub trace: super::trace::Trace,
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

/// The headers `ClientCert` sets; a client's own are removed on every proxied request, in
/// either spelling (`X_Client_Verify` becomes the same `HTTP_X_CLIENT_VERIFY` in CGI, WSGI
/// and PHP), whether or not the server verifies certificates.
pub const CLIENT_CERT_HEADERS: [&str; 3] = [
    "X-Client-Verify",
    "X-Client-Subject",
    "X-Client-Fingerprint",
];

/// The chain every proxy route starts with.
pub fn proxy_defaults() -> Vec<Filter> {
    vec![Filter::HopByHop, Filter::Forwarded]
}

/// Runs the request-head hooks in order; the first verdict other than `Continue` wins.
pub fn on_request(chain: &[Filter], raw: &[u8], h: &mut Headers, info: &RequestInfo) -> Verdict {
    for f in chain {
        let v = match f {
            Filter::HopByHop => hop_by_hop(raw, h),
            Filter::Forwarded => forwarded(raw, h, info),
            Filter::EditRequest(e) => e.apply(raw, h),
            Filter::EditResponse(_) => Verdict::Continue,
        };
        if v != Verdict::Continue {
            return v;
        }
    }
    Verdict::Continue
}

/// Runs the response-head hooks in order.
pub fn on_response(chain: &[Filter], raw: &[u8], h: &mut Headers) -> Verdict {
    for f in chain {
        let v = match f {
            Filter::HopByHop => hop_by_hop(raw, h),
            Filter::EditResponse(e) => e.apply(raw, h),
            Filter::Forwarded | Filter::EditRequest(_) => Verdict::Continue,
        };
        if v != Verdict::Continue {
            return v;
        }
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

fn hop_by_hop(raw: &[u8], h: &mut Headers) -> Verdict {
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

/// `want` in any case, each `-` also written `_`.
fn same_field(want: &str, name: &[u8]) -> bool {
    want.len() == name.len()
        && want
            .bytes()
            .zip(name)
            .all(|(a, &b)| a.eq_ignore_ascii_case(&b) || (a == b'-' && b == b'_'))
}

/// A name with `_` that poses as a field proxyd vouches for (CGI-style backends read `_` as
/// `-`): the client identity, the forwarding fields and the request id, whose `-`
/// spellings the `forwarded` filter itself removes or rewrites.
fn poses_as_vouched(name: &[u8], request_id: Option<&str>) -> bool {
    CLIENT_CERT_HEADERS
        .into_iter()
        .chain(["X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP"])
        .chain(request_id)
        .any(|c| same_field(c, name))
}

fn forwarded(raw: &[u8], h: &mut Headers, info: &RequestInfo) -> Verdict {
    h.remove(Kind::ClientIdentity);
    if h.values(raw, Kind::Underscored).next().is_some() {
        let request_id = info.request_id.map(|(n, _)| n);
        h.retain(raw, |f, name| {
            if f.kind != Kind::Underscored {
                return true;
            }
            if !info.underscores {
                log::info!(
                    "dropped request header \"{}\" (underscores_in_headers = false)",
                    String::from_utf8_lossy(name)
                );
                return false;
            }
            !poses_as_vouched(name, request_id)
        });
    }
    h.append_to_list(raw, "X-Forwarded-For", info.client_ip.as_bytes());
    h.remove(Kind::XForwardedProto);
    h.append_static("X-Forwarded-Proto", info.proto);
    if let Some((name, id)) = info.request_id {
        h.remove_named(raw, name.as_bytes());
        h.append_copy(name.as_bytes(), id.as_bytes());
    }
    match info.trace {
        Trace::Started(t) => {
            h.remove_named(raw, b"traceparent");
            h.remove_named(raw, b"tracestate");
            h.append_copy(b"traceparent", &t.header());
        }
        Trace::Dropped => {
            h.remove_named(raw, b"traceparent");
            h.remove_named(raw, b"tracestate");
        }
        Trace::Continued(mut t) => {
            // A hop of its own: the upstream's parent is proxyd's span; tracestate stays.
            if let Some(span) = info.span {
                t.span_id = span;
                h.remove_named(raw, b"traceparent");
                h.append_copy(b"traceparent", &t.header());
            }
        }
        Trace::None => {}
    }
    if let Some(cert) = info.client_cert {
        match cert {
            ClientCert::None => h.append_static(CLIENT_CERT_HEADERS[0], "NONE"),
            ClientCert::Verified {
                subject,
                fingerprint,
            } => {
                h.append_static(CLIENT_CERT_HEADERS[0], "SUCCESS");
                h.append_copy(CLIENT_CERT_HEADERS[1].as_bytes(), subject.as_bytes());
                h.append_copy(CLIENT_CERT_HEADERS[2].as_bytes(), fingerprint.as_bytes());
            }
        }
    }
    Verdict::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chain: &[Filter], raw: &[u8], spans: &crate::http::HeaderSpans) -> String {
        let mut h = Headers::end_to_end(spans);
        let info = RequestInfo {
            client_ip: "10.0.0.9",
            proto: "https",
            client_cert: None,
            request_id: None,
            trace: Trace::None,
            span: None,
            underscores: false,
        };
        assert_eq!(on_request(chain, raw, &mut h, &info), Verdict::Continue);
        let mut out = Vec::new();
        h.write(raw, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn chain_is_data() {
        let raw = b"Connection: x-a\r\nX-A: 1\r\nX-Forwarded-For: 1.1.1.1\r\n";
        let spans = vec![
            (0..10, 12..15, Kind::Connection),
            (17..20, 22..23, Kind::Other),
            (25..40, 42..49, Kind::XForwardedFor),
        ];
        // No filters: nothing changes.
        assert_eq!(run(&[], raw, &spans), String::from_utf8_lossy(raw));
        let named = b"Connection: x-a, Host\r\nX-A: 1\r\nHost: h\r\n";
        let spans2 = vec![
            (0..10, 12..21, Kind::Connection),
            (23..26, 28..29, Kind::Other),
            (31..35, 37..38, Kind::Host),
        ];
        assert_eq!(run(&[Filter::HopByHop], named, &spans2), "Host: h\r\n");
        assert_eq!(
            run(&proxy_defaults(), raw, &spans),
            "X-Forwarded-For: 1.1.1.1, 10.0.0.9\r\nX-Forwarded-Proto: https\r\n"
        );
        assert_eq!(
            run(&[Filter::HopByHop], raw, &spans),
            "X-Forwarded-For: 1.1.1.1\r\n"
        );
    }
}
