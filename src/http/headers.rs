//! An editable header list over a parsed head. Fields the peer sent stay where they are in
//! the raw head bytes (nothing is copied until the head is written); filters remove fields
//! and add owned ones; `write` emits the result. Framing headers never pass through here:
//! the codecs write those from their own decision.

use super::HeaderSpans;
use std::ops::Range;

/// What a header field is to the proxy, decided once per field when a head is parsed, so
/// codecs and filters match on this instead of comparing names again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    /// The other hop-by-hop fields (RFC 9110 7.6.1): Keep-Alive, Proxy-Connection, TE,
    /// Trailer, HTTP2-Settings.
    HopByHop,
    XForwardedFor,
    XForwardedProto,
    Referer,
    UserAgent,
    /// `X-Client-Verify`, `X-Client-Subject`, `X-Client-Fingerprint`: only proxyd sets them.
    ClientIdentity,
    /// Any other name with `_` (see `underscores_in_headers`).
    Underscored,
}

impl Kind {
    /// A field the proxy gives no meaning of its own (a `Connection` option may name it).
    pub fn is_other(self) -> bool {
        matches!(self, Kind::Other | Kind::ClientIdentity | Kind::Underscored)
    }

    /// Fields that describe one connection and never cross the proxy.
    pub fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Kind::HopByHop | Kind::Connection | Kind::Upgrade | Kind::TransferEncoding
        )
    }
}

/// The kind of a field name (case-insensitive), by length first: one comparison at most
/// (and a scan for `_` of a name that is none of these).
pub fn classify(name: &[u8]) -> Kind {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    match name.len() {
        2 if is("te") => Kind::HopByHop,
        4 if is("host") => Kind::Host,
        7 if is("upgrade") => Kind::Upgrade,
        7 if is("trailer") => Kind::HopByHop,
        7 if is("referer") => Kind::Referer,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::HopByHop,
        10 if is("user-agent") => Kind::UserAgent,
        14 if is("content-length") => Kind::ContentLength,
        14 if is("http2-settings") => Kind::HopByHop,
        15 if is("x-forwarded-for") => Kind::XForwardedFor,
        16 if is("proxy-connection") => Kind::HopByHop,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        17 if is("x-forwarded-proto") => Kind::XForwardedProto,
        15 if is("x-client-verify") => Kind::ClientIdentity,
        16 if is("x-client-subject") => Kind::ClientIdentity,
        20 if is("x-client-fingerprint") => Kind::ClientIdentity,
        _ if name.contains(&b'_') => Kind::Underscored,
        _ => Kind::Other,
    }
}

/// Bytes of a name or value: a range of the raw head, fixed text, or a range of the
/// list's own arena (values a filter made).
#[derive(Debug, Clone)]
pub enum Bytes {
    Raw(Range<usize>),
    Static(&'static [u8]),
    Added(Range<usize>),
}

impl Bytes {
    /// The bytes, from the raw head or the list's arena.
    fn resolve<'a>(&'a self, raw: &'a [u8], added: &'a [u8]) -> &'a [u8] {
        match self {
            Bytes::Raw(r) => raw.get(r.clone()).unwrap_or_default(),
            Bytes::Static(s) => s,
            Bytes::Added(r) => added.get(r.clone()).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: Bytes,
    pub value: Bytes,
    pub kind: Kind,
}

/// The list and the bytes of added values. Both keep their capacity when the list is
/// refilled (`fill`), so a worker that keeps one `Headers` edits every head without a heap
/// allocation once it has seen the largest.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    fields: Vec<Field>,
    added: Vec<u8>,
}

impl Headers {
    /// The fields of a parsed head, in order, without the framing fields (the codecs
    /// write `Content-Length` and `Transfer-Encoding` from their own decision).
    pub fn end_to_end(spans: &HeaderSpans) -> Headers {
        let mut h = Headers::default();
        h.fill(spans);
        h
    }

    /// Makes this list `end_to_end(spans)`, reusing its memory.
    pub fn fill(&mut self, spans: &HeaderSpans) {
        self.fields.clear();
        self.added.clear();
        self.fields.reserve(spans.len() + 3);
        for (n, v, kind) in spans {
            if !matches!(kind, Kind::ContentLength | Kind::TransferEncoding) {
                self.fields.push(Field {
                    name: Bytes::Raw(n.clone()),
                    value: Bytes::Raw(v.clone()),
                    kind: *kind,
                });
            }
        }
    }

    pub fn get<'a>(&'a self, b: &'a Bytes, raw: &'a [u8]) -> &'a [u8] {
        b.resolve(raw, &self.added)
    }

    /// Every value of the fields of `kind`, in order.
    pub fn values<'a>(&'a self, raw: &'a [u8], kind: Kind) -> impl Iterator<Item = &'a [u8]> {
        self.fields
            .iter()
            .filter(move |f| f.kind == kind)
            .map(move |f| self.get(&f.value, raw))
    }

    /// Keeps the fields `keep(field, name)` approves.
    pub fn retain(&mut self, raw: &[u8], mut keep: impl FnMut(&Field, &[u8]) -> bool) {
        let added = &self.added;
        self.fields.retain(|f| keep(f, f.name.resolve(raw, added)));
    }

    pub fn remove(&mut self, kind: Kind) {
        self.fields.retain(|f| f.kind != kind);
    }

    /// Copies `parts`, concatenated, into the arena.
    fn add(&mut self, parts: &[&[u8]]) -> Bytes {
        let start = self.added.len();
        for p in parts {
            self.added.extend_from_slice(p);
        }
        Bytes::Added(start..self.added.len())
    }

    fn field(name: &'static str, value: Bytes) -> Field {
        Field {
            name: Bytes::Static(name.as_bytes()),
            value,
            kind: classify(name.as_bytes()),
        }
    }

    /// Appends a field whose value is `parts` concatenated.
    pub fn append(&mut self, name: &'static str, parts: &[&[u8]]) {
        let value = self.add(parts);
        self.fields.push(Self::field(name, value));
    }

    /// Appends a field whose value is fixed text.
    pub fn append_static(&mut self, name: &'static str, value: &'static str) {
        self.fields
            .push(Self::field(name, Bytes::Static(value.as_bytes())));
    }

    /// Adds a field before all others (`Host` goes first, as clients send it).
    pub fn prepend(&mut self, name: &'static str, value: &[u8]) {
        let value = self.add(&[value]);
        self.fields.insert(0, Self::field(name, value));
    }

    /// Replaces the fields of the kind of `name` with one field `name` whose value is
    /// theirs, in order, joined by ", ", then `last` (how X-Forwarded-For grows).
    pub fn append_to_list(&mut self, raw: &[u8], name: &'static str, last: &[u8]) {
        let kind = classify(name.as_bytes());
        let start = self.added.len();
        for f in self.fields.iter().filter(|f| f.kind == kind) {
            match &f.value {
                Bytes::Raw(r) => self
                    .added
                    .extend_from_slice(raw.get(r.clone()).unwrap_or_default()),
                Bytes::Static(v) => self.added.extend_from_slice(v),
                Bytes::Added(r) => self.added.extend_from_within(r.clone()),
            }
            self.added.extend_from_slice(b", ");
        }
        self.added.extend_from_slice(last);
        let value = Bytes::Added(start..self.added.len());
        self.remove(kind);
        self.fields.push(Self::field(name, value));
    }

    /// Whether a field is named `name` (any case).
    pub fn has_named(&self, raw: &[u8], name: &[u8]) -> bool {
        self.fields
            .iter()
            .any(|f| self.get(&f.name, raw).eq_ignore_ascii_case(name))
    }

    /// Fills the list with `pairs` (copied into the arena), reusing its memory: the fields
    /// of an answer made here.
    pub fn fill_pairs(&mut self, pairs: &[(String, String)]) {
        self.fields.clear();
        self.added.clear();
        for (name, value) in pairs {
            self.append_copy(name.as_bytes(), value.as_bytes());
        }
    }

    /// Drops every field named `name` (any case).
    pub fn remove_named(&mut self, raw: &[u8], name: &[u8]) {
        self.retain(raw, |_, n| !n.eq_ignore_ascii_case(name));
    }

    /// Appends a field whose name and value are copied into the arena (names from the
    /// configuration, which are not `'static`).
    pub fn append_copy(&mut self, name: &[u8], value: &[u8]) {
        let n = self.add(&[name]);
        let v = self.add(&[value]);
        self.fields.push(Field {
            name: n,
            value: v,
            kind: classify(name),
        });
    }

    /// Replaces every field of the kind of `name` with one holding `value`.
    pub fn set(&mut self, name: &'static str, value: &[u8]) {
        self.remove(classify(name.as_bytes()));
        self.append(name, &[value]);
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Writes the fields as `Name: value` lines.
    pub fn write(&self, raw: &[u8], out: &mut Vec<u8>) {
        for f in &self.fields {
            out.extend_from_slice(self.get(&f.name, raw));
            out.extend_from_slice(b": ");
            out.extend_from_slice(self.get(&f.value, raw));
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_and_write() {
        let raw = b"A: 1\r\nHost: 2\r\ncontent-length: 3\r\n";
        let spans = vec![
            (0..1, 3..4, Kind::Other),
            (6..10, 12..13, classify(b"Host")),
            (15..29, 31..32, classify(b"content-length")),
        ];
        let mut h = Headers::end_to_end(&spans);
        assert_eq!(h.len(), 2, "framing is not editable");
        assert_eq!(h.values(raw, Kind::Host).collect::<Vec<_>>(), vec![b"2"]);
        h.remove(Kind::Host);
        h.append("X-Forwarded-For", &[b"4"]);
        h.set("X-Forwarded-For", b"5");
        h.prepend("Host", b"h");
        let mut out = Vec::new();
        h.write(raw, &mut out);
        assert_eq!(out, b"Host: h\r\nA: 1\r\nX-Forwarded-For: 5\r\n");
    }

    #[test]
    fn kinds() {
        assert_eq!(classify(b"TE"), Kind::HopByHop);
        assert_eq!(classify(b"Keep-Alive"), Kind::HopByHop);
        assert_eq!(classify(b"X-FORWARDED-PROTO"), Kind::XForwardedProto);
        assert_eq!(classify(b"Content-Lengths"), Kind::Other);
        assert!(Kind::Upgrade.hop_by_hop() && !Kind::Host.hop_by_hop());
    }
}
