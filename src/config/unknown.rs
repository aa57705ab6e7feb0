//! Unknown keys: every key of a file that no setting takes, found in one reading (serde's
//! `deny_unknown_fields` stops at the first), each located at its FILE:LINE:COL and given the
//! nearest known key as a hint.
//!
//! The raw structs accept any key; `serde_ignored` reports the path of each one they drop.
//! The path is then walked in the file's syntax tree (`toml::de::DeTable`, with spans) to
//! find where the key is written, and the known keys at that place are the fields of the raw
//! struct the path leads to. Structs read through an untagged enum (a peer, `error_log`)
//! keep `deny_unknown_fields`, since a buffered enum hides its keys from `serde_ignored`.

use super::hints;
use super::raw::*;
use serde::de::{self, DeserializeOwned, Visitor};
use std::cell::Cell;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A key no setting takes: where it is written and what to say about it.
pub(super) struct Unknown {
    pub span: Range<usize>,
    pub msg: String,
}

/// Which struct a document's top level is.
#[derive(Clone, Copy)]
pub(super) enum Root {
    Main,
    Include,
}

/// Deserializes `text` as `T`, collecting every key the structs do not take.
pub(super) fn parse<T: DeserializeOwned>(
    text: &str,
    root: Root,
) -> (Result<T, toml::de::Error>, Vec<Unknown>) {
    let mut paths: Vec<Vec<Step>> = Vec::new();
    let result = toml::Deserializer::parse(text)
        .and_then(|d| serde_ignored::deserialize(d, |p| paths.push(steps(&p))));
    if paths.is_empty() {
        return (result, Vec::new());
    }
    // Parsed again only when there is something to find: the first parse went into `T`.
    let doc = DeTable::parse(text).ok();
    let more = paths.len().saturating_sub(MAX_LISTED);
    let mut unknown: Vec<Unknown> = paths
        .iter()
        .take(MAX_LISTED)
        .map(|p| {
            let span = doc
                .as_ref()
                .and_then(|d| locate(d.get_ref(), p))
                .unwrap_or(0..0);
            Unknown {
                span,
                msg: message(root, p),
            }
        })
        .collect();
    if more > 0 {
        // A file of garbage need not fill a screen per line of it.
        unknown.push(Unknown {
            // At the first key not listed.
            span: doc
                .as_ref()
                .and_then(|d| locate(d.get_ref(), &paths[MAX_LISTED]))
                .unwrap_or(0..0),
            msg: format!(
                "{more} more unknown keys in this file (the first {MAX_LISTED} are listed)"
            ),
        });
    }
    (result, unknown)
}

/// Unknown keys listed per file; past them, one line gives the count.
const MAX_LISTED: usize = 100;

/// The path as keys and indexes, without the wrappers `toml::Spanned` adds.
fn steps(p: &serde_ignored::Path) -> Vec<Step> {
    use serde_ignored::Path;
    let mut out = Vec::new();
    let mut at = p;
    loop {
        at = match at {
            Path::Root => break,
            Path::Seq { parent, index } => {
                out.push(Step::Index(*index));
                parent
            }
            Path::Map { parent, key } => {
                // `Spanned<T>` deserializes as a map of private keys; its value is `T`.
                if !key.starts_with("$__serde_spanned_private_") {
                    out.push(Step::Key(key.clone()));
                }
                parent
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => parent,
        };
    }
    out.reverse();
    out
}

/// Where the last key of `path` is written, found in the document's spanned syntax tree.
fn locate(top: &DeTable<'_>, path: &[Step]) -> Option<Range<usize>> {
    let mut table = Some(top);
    let mut value: Option<&DeValue<'_>> = None;
    let mut last = None;
    for step in path {
        let found = match step {
            Step::Key(k) => {
                let t = table.or(match value {
                    Some(DeValue::Table(t)) => Some(t),
                    _ => None,
                })?;
                let (key, v) = t.iter().find(|(key, _)| key.get_ref() == k)?;
                last = Some(key.span());
                v
            }
            Step::Index(i) => match value {
                Some(DeValue::Array(a)) => a.get(*i)?,
                _ => return last,
            },
        };
        table = None;
        value = Some(found.get_ref());
    }
    last
}

/// "unknown field `x`, expected ..." as serde words it, with a hint when one applies.
fn message(root: Root, path: &[Step]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    let Some((field, place)) = keys.split_last() else {
        return "unknown field".into();
    };
    let known = known_fields(root, place);
    let mut msg = format!("unknown field `{field}`");
    match known {
        [] => {}
        [one] => msg.push_str(&format!(", expected `{one}`")),
        _ => {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            msg.push_str(&format!(", expected one of {}", list.join(", ")));
        }
    }
    if let Some(c) = hints::closest(field, known.iter().copied()) {
        msg.push_str(&format!("; did you mean `{c}`?"));
    } else if matches!(root, Root::Include)
        && place.is_empty()
        && fields_of::<RawMain>().contains(field)
    {
        msg.push_str("; global settings belong in the main config file");
    }
    msg
}

/// The keys a table at `place` (keys from the top, indexes left out) takes.
fn known_fields(root: Root, place: &[&str]) -> &'static [&'static str] {
    match (root, place) {
        (Root::Main, []) => fields_of::<RawMain>(),
        (Root::Include, []) => fields_of::<RawInclude>(),
        (_, ["shared_memory"]) => fields_of::<RawSharedMemory>(),
        (_, ["otlp"]) => fields_of::<RawOtlp>(),
        (_, ["admin"]) => fields_of::<RawAdmin>(),
        (_, ["resolver"]) => fields_of::<RawResolver>(),
        (_, ["server"]) => fields_of::<RawServer>(),
        (_, ["server", "tls"]) => fields_of::<RawTls>(),
        (_, ["server", "tls", "extra_certs"]) => fields_of::<RawCert>(),
        (_, ["server", "route"]) => fields_of::<RawRoute>(),
        (_, ["server", "route", "retry"]) => fields_of::<RawRetry>(),
        (_, ["server", "route", "match"]) => fields_of::<RawMatch>(),
        (_, ["server", "route", "split"]) => fields_of::<RawSplit>(),
        (_, ["server", "route", "request_headers" | "response_headers"]) => {
            fields_of::<RawHeaderEdits>()
        }
        (_, ["error_log"]) => fields_of::<RawErrorLogTable>(),
        (_, ["upstream"]) => fields_of::<RawUpstream>(),
        (_, ["upstream", "peers"]) => fields_of::<RawPeerTable>(),
        (_, ["upstream", "outlier"]) => fields_of::<RawOutlier>(),
        (_, ["upstream", "health_check"]) => fields_of::<RawHealthCheck>(),
        _ => &[],
    }
}

/// The field names serde's derive gave struct `T` (what `deny_unknown_fields` would list).
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let seen = Cell::new(None);
    let _ = T::deserialize(FieldNames(&seen));
    seen.get().unwrap_or(&[])
}

/// A deserializer that only records the fields a struct asks for, then stops.
struct FieldNames<'a>(&'a Cell<Option<&'static [&'static str]>>);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.set(Some(fields));
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
