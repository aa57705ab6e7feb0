//! An editable header list over a parsed head. Fields the peer sent stay where they are in
//! the raw head bytes (nothing is copied until the head is written); filters remove fields
//! and add owned ones; `write` emits the result. Framing headers never pass through here:
//! the codecs write those from their own decision.

use super::HeaderSpans;
use std::ops::Range;

/// Bytes of a name or value: a range of the raw head, or owned.
#[derive(Debug, Clone)]
pub enum Bytes {
    Raw(Range<usize>),
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Bytes {
    pub fn get<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        match self {
            Bytes::Raw(r) => raw.get(r.clone()).unwrap_or_default(),
            Bytes::Static(s) => s,
            Bytes::Owned(v) => v,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: Bytes,
    pub value: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct Headers {
    fields: Vec<Field>,
}

impl Headers {
    /// The fields of a parsed head, in order.
    pub fn from_spans(spans: &HeaderSpans) -> Headers {
        Headers {
            fields: spans
                .iter()
                .map(|(n, v)| Field {
                    name: Bytes::Raw(n.clone()),
                    value: Bytes::Raw(v.clone()),
                })
                .collect(),
        }
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn values<'a>(&'a self, raw: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        self.fields
            .iter()
            .filter(move |f| f.name.get(raw).eq_ignore_ascii_case(name))
            .map(move |f| f.value.get(raw))
    }

    /// Keeps the fields `keep(name, value)` approves.
    pub fn retain(&mut self, raw: &[u8], mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        self.fields
            .retain(|f| keep(f.name.get(raw), f.value.get(raw)));
    }

    pub fn remove(&mut self, raw: &[u8], name: &[u8]) {
        self.retain(raw, |n, _| !n.eq_ignore_ascii_case(name));
    }

    pub fn append(&mut self, name: &'static str, value: Vec<u8>) {
        self.fields.push(Field {
            name: Bytes::Static(name.as_bytes()),
            value: Bytes::Owned(value),
        });
    }

    /// Adds a field before all others (`Host` goes first, as clients send it).
    pub fn prepend(&mut self, name: &'static str, value: Vec<u8>) {
        self.fields.insert(
            0,
            Field {
                name: Bytes::Static(name.as_bytes()),
                value: Bytes::Owned(value),
            },
        );
    }

    /// Replaces every `name` field with one holding `value`.
    pub fn set(&mut self, raw: &[u8], name: &'static str, value: Vec<u8>) {
        self.remove(raw, name.as_bytes());
        self.append(name, value);
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
            out.extend_from_slice(f.name.get(raw));
            out.extend_from_slice(b": ");
            out.extend_from_slice(f.value.get(raw));
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_and_write() {
        let raw = b"A: 1\r\nB: 2\r\na: 3\r\n";
        let spans = vec![(0..1, 3..4), (6..7, 9..10), (12..13, 15..16)];
        let mut h = Headers::from_spans(&spans);
        assert_eq!(h.values(raw, b"a").collect::<Vec<_>>(), vec![b"1", b"3"]);
        h.remove(raw, b"A");
        h.append("C", b"4".to_vec());
        h.set(raw, "B", b"5".to_vec());
        let mut out = Vec::new();
        h.write(raw, &mut out);
        assert_eq!(out, b"C: 4\r\nB: 5\r\n");
    }
}
