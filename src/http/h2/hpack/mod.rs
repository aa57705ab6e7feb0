//! HPACK (RFC 7541), header compression for HTTP/2: a `Decoder` per connection for the
//! blocks the peer sends, an `Encoder` for the blocks this side sends.
//!
//! Why our own: of the crates, `hpack` (2015) and `loona-hpack` encode without Huffman
//! and accept a table size update in the middle of a block; `httlib-hpack` indexes past
//! the end of its input on a truncated integer (a panic on a network byte) and drains
//! its input from the front for each field. This one decodes a block with bounded work
//! (every field is one step over the block, Huffman four bits per table lookup), passes
//! fields by reference without allocating, and stops passing fields, while still
//! keeping its table in step with the peer's, once the decoded list outgrows the limit.

pub mod huffman;
pub mod table;

use table::{lookup, Dynamic};

/// The dynamic table size both ends start with, and the most this side's encoder uses
/// whatever the peer allows (RFC 7541 4.2, SETTINGS_HEADER_TABLE_SIZE).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Why a header block cannot be decoded. Any of them is a connection error of type
/// COMPRESSION_ERROR (RFC 9113 4.3): the two tables can no longer agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A field or string runs past the end of the block.
    Truncated,
    /// An integer longer than 32 bits.
    Integer,
    /// Index 0, or past the end of the tables.
    Index,
    /// A Huffman string holding EOS or bad padding.
    Huffman,
    /// A table size update above the announced limit, or after the block's first field.
    SizeUpdate,
}

impl Error {
    pub fn why(self) -> &'static str {
        match self {
            Error::Truncated => "HPACK field runs past its block",
            Error::Integer => "HPACK integer too large",
            Error::Index => "HPACK index not in the tables",
            Error::Huffman => "HPACK Huffman string invalid",
            Error::SizeUpdate => "HPACK table size update out of place or too large",
        }
    }
}

/// Whether a block's fields were all passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fits {
    Whole,
    /// The decoded list outgrew the limit: fields past it were not passed on (the block
    /// was still decoded to the end, so the table is in step).
    TooLarge,
}

/// What a decoded header list costs by RFC 9113 6.5.2's measure (the one
/// SETTINGS_MAX_HEADER_LIST_SIZE uses): each field's octets and 32.
pub fn field_cost(name: &[u8], value: &[u8]) -> usize {
    table::entry_size(name, value)
}

pub struct Decoder {
    table: Dynamic,
    /// The most a size update may set: the SETTINGS_HEADER_TABLE_SIZE this side announced.
    limit: usize,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new(DEFAULT_TABLE_SIZE)
    }
}

impl Decoder {
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            table: Dynamic::new(limit),
            limit,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// The dynamic table's size in octets, by RFC 7541's measure.
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Decodes one complete header block (HEADERS and its CONTINUATIONs, joined), passing
    /// each field in order to `field` until their cost passes `max_list`.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list: usize,
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<Fits, Error> {
        let mut pos = 0;
        let mut cost = 0usize;
        let mut first = true;
        while let Some(&b) = block.get(pos) {
            if b & 0x80 != 0 {
                let i = integer(block, &mut pos, 7)?;
                let (n, v) = lookup(&self.table, i).ok_or(Error::Index)?;
                cost = cost.saturating_add(field_cost(n, v));
                if cost <= max_list {
                    field(n, v);
                }
            } else if b & 0xe0 == 0x20 {
                // A size update: only before the block's first field (RFC 7541 4.2).
                let size = integer(block, &mut pos, 5)?;
                if !first || size > self.limit {
                    return Err(Error::SizeUpdate);
                }
                self.table.set_max(size);
                continue;
            } else {
                // Literal: with incremental indexing (01), never indexed (0001), or
                // without indexing (0000).
                let (prefix, index) = if b & 0x40 != 0 { (6, true) } else { (4, false) };
                let i = integer(block, &mut pos, prefix)?;
                self.name.clear();
                if i == 0 {
                    string(block, &mut pos, &mut self.name)?;
                } else {
                    let (n, _) = lookup(&self.table, i).ok_or(Error::Index)?;
                    self.name.extend_from_slice(n);
                }
                self.value.clear();
                string(block, &mut pos, &mut self.value)?;
                cost = cost.saturating_add(field_cost(&self.name, &self.value));
                if cost <= max_list {
                    field(&self.name, &self.value);
                }
                if index {
                    self.table.insert(&self.name, &self.value);
                }
            }
            first = false;
        }
        Ok(if cost <= max_list {
            Fits::Whole
        } else {
            Fits::TooLarge
        })
    }
}

/// An integer with an N-bit prefix (RFC 7541 5.1), at most 32 bits.
fn integer(block: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, Error> {
    let mask = (1u32 << prefix) - 1;
    let first = u32::from(*block.get(*pos).ok_or(Error::Truncated)?) & mask;
    *pos += 1;
    if first < mask {
        return Ok(first as usize);
    }
    let mut value = u64::from(first);
    let mut shift = 0;
    loop {
        let b = *block.get(*pos).ok_or(Error::Truncated)?;
        *pos += 1;
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(Error::Integer);
        }
        if b & 0x80 == 0 {
            return Ok(value as usize);
        }
        shift += 7;
        if shift > 28 {
            return Err(Error::Integer);
        }
    }
}

/// A string literal (RFC 7541 5.2), appended to `out` decoded.
fn string(block: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> Result<(), Error> {
    let huffman = block.get(*pos).ok_or(Error::Truncated)? & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(Error::Truncated)?;
    let raw = block.get(*pos..end).ok_or(Error::Truncated)?;
    *pos = end;
    if huffman {
        huffman::decode(raw, out).map_err(|_| Error::Huffman)
    } else {
        out.extend_from_slice(raw);
        Ok(())
    }
}

/// How a field is sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Policy {
    /// Remembered in both tables: repeats cost one octet.
    Index,
    /// Sent as a literal and not remembered: values that change with every message.
    Literal,
    /// Never remembered, by this hop or any after it (RFC 7541 7.1.3): credentials.
    Never,
}

fn policy(name: &[u8], value: &[u8]) -> Policy {
    match name {
        b"authorization" | b"proxy-authorization" | b"set-cookie" => Policy::Never,
        // Short cookies are guessable one value at a time through the table (7.1.3).
        b"cookie" if value.len() < 20 => Policy::Never,
        b":path" | b"content-length" | b"content-range" | b"date" | b"etag" | b"age"
        | b"expires" | b"last-modified" | b"location" | b"if-modified-since" | b"if-none-match"
        | b"if-match" | b"if-range" | b"range" | b"x-request-id" | b"traceparent"
        | b"tracestate" | b"grpc-timeout" => Policy::Literal,
        _ => Policy::Index,
    }
}

pub struct Encoder {
    table: Dynamic,
    /// Size updates owed at the start of the next block (RFC 7541 4.2): the smallest
    /// size since the last block, then the size now.
    owed: Option<(usize, usize)>,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder {
            table: Dynamic::new(DEFAULT_TABLE_SIZE),
            owed: None,
        }
    }
}

impl Encoder {
    /// The peer announced SETTINGS_HEADER_TABLE_SIZE: this side's table uses at most
    /// that (and never more than `DEFAULT_TABLE_SIZE`).
    pub fn set_peer_limit(&mut self, limit: usize) {
        let size = limit.min(DEFAULT_TABLE_SIZE);
        if size == self.table.max() && self.owed.is_none() {
            return;
        }
        let low = self.owed.map_or(size, |(low, _)| low.min(size));
        self.owed = Some((low, size));
        self.table.set_max(size);
    }

    /// Appends one header block holding `fields` (names in lower case, as HTTP/2
    /// requires; pseudo-headers first).
    pub fn encode<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        out: &mut Vec<u8>,
    ) {
        if let Some((low, now)) = self.owed.take() {
            if low < now {
                put_int(out, low, 5, 0x20);
            }
            put_int(out, now, 5, 0x20);
        }
        for (name, value) in fields {
            self.field(name, value, out);
        }
    }

    fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let policy = policy(name, value);
        let statics = table::static_name(name);
        if let Some(r) = &statics {
            if let Some(i) = r.clone().find(|&i| table::STATIC[i - 1].1 == value) {
                put_int(out, i, 7, 0x80);
                return;
            }
        }
        let (exact, by_name) = if policy == Policy::Never {
            (None, None)
        } else {
            self.table.find(name, value)
        };
        if let Some(i) = exact {
            put_int(out, 62 + i, 7, 0x80);
            return;
        }
        let name_index = statics
            .map(|r| *r.start())
            .or(by_name.map(|i| 62 + i))
            .unwrap_or(0);
        // One field may not take more than half the table: it would evict everything.
        let policy =
            if policy == Policy::Index && table::entry_size(name, value) > self.table.max() / 2 {
                Policy::Literal
            } else {
                policy
            };
        match policy {
            Policy::Index => put_int(out, name_index, 6, 0x40),
            Policy::Literal => put_int(out, name_index, 4, 0x00),
            Policy::Never => put_int(out, name_index, 4, 0x10),
        }
        if name_index == 0 {
            put_string(out, name);
        }
        put_string(out, value);
        if policy == Policy::Index {
            self.table.insert(name, value);
        }
    }
}

/// An integer with an N-bit prefix; `flags` are the first octet's other bits.
fn put_int(out: &mut Vec<u8>, value: usize, prefix: u8, flags: u8) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A string literal, Huffman-coded when that is shorter.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let coded = huffman::encoded_len(s);
    if coded < s.len() {
        put_int(out, coded, 7, 0x80);
        huffman::encode(s, out);
    } else {
        put_int(out, s.len(), 7, 0x00);
        out.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests;
