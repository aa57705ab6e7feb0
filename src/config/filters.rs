//! A route's filter chain as data: what the config compiles it to at load (the worker runs
//! it: `worker::filters`). Hop-by-hop removal, the forwarding headers and the route's
//! header edits are the built-ins; auth, rate limits, CORS and compression come as more
//! variants.

use crate::http::headers::Kind;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Drops hop-by-hop headers and those the `Connection` header names (RFC 9110 7.6.1),
    /// never `Host` or the framing headers.
    HopByHop,
    /// `X-Forwarded-For` (every incoming value folded into one line, the client appended)
    /// and `X-Forwarded-Proto` (replaced, never trusted from the client), the request id,
    /// the trace context and the client certificate's identity.
    Forwarded,
    /// The route's `request_headers` edits, on the head sent upstream.
    EditRequest(HeaderEdits),
    /// The route's `response_headers` edits, on the head sent to the client (from the
    /// upstream, or an answer the route made).
    EditResponse(HeaderEdits),
    /// A `return` route's fixed answer: always answers, after the filters before it.
    Return(Fixed),
}

/// A fixed answer: status, headers (none that frame the message or name the connection:
/// the codec writes those) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Shared, so an answer refers to it instead of copying it per request.
    pub body: std::sync::Arc<[u8]>,
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
            crate::http::headers::classify(name.as_bytes()),
            Kind::Other
                | Kind::ClientIdentity
                | Kind::Underscored
                | Kind::XForwardedFor
                | Kind::XForwardedProto
                | Kind::Referer
                | Kind::UserAgent
        )
    }
}

/// The headers a verified client certificate sets; a client's own are removed on every
/// proxied request, in either spelling (`X_Client_Verify` becomes the same
/// `HTTP_X_CLIENT_VERIFY` in CGI, WSGI and PHP), whether or not the server verifies
/// certificates.
pub const CLIENT_CERT_HEADERS: [&str; 3] = [
    "X-Client-Verify",
    "X-Client-Subject",
    "X-Client-Fingerprint",
];

/// The chain every proxy route starts with.
pub fn proxy_defaults() -> Vec<Filter> {
    vec![Filter::HopByHop, Filter::Forwarded]
}
