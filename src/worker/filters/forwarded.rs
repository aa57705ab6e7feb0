//! The `Forwarded` filter: what a proxy tells its upstream about the client and the request
//! (X-Forwarded-For and -Proto, the request id, the trace context, the verified client
//! certificate), never trusting the client's own claims to any of it.

use super::{ClientCert, Cx, Verdict};
use crate::config::filters::CLIENT_CERT_HEADERS;
use crate::http::headers::{Headers, Kind};
use crate::http::trace::Trace;

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

pub(super) fn apply(raw: &[u8], h: &mut Headers, info: &Cx) -> Verdict<'static> {
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
