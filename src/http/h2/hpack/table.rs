//! HPACK's two tables (RFC 7541 2.3): the static table of 61 common fields, and the
//! dynamic table each end keeps of fields the other told it to remember, newest first,
//! bounded by a size in octets (each entry counts its name, its value and 32).

use std::collections::VecDeque;

/// RFC 7541 Appendix A. Index 1 is the first entry.
pub const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The static entries named `name`, as a range of indexes (1-based), or `None`. Entries
/// of one name are adjacent in the table.
pub fn static_name(name: &[u8]) -> Option<std::ops::RangeInclusive<usize>> {
    let first = STATIC.iter().position(|(n, _)| *n == name)?;
    let count = STATIC[first..]
        .iter()
        .take_while(|(n, _)| *n == name)
        .count();
    Some(first + 1..=first + count)
}

/// What an entry costs in the table: its octets and 32 (RFC 7541 4.1).
pub fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

/// One remembered field: name and value in one allocation.
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.bytes[..self.name_len]
    }

    fn value(&self) -> &[u8] {
        &self.bytes[self.name_len..]
    }
}

pub struct Dynamic {
    /// Newest first: index 62 of the address space is `entries[0]`.
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Dynamic {
    pub fn new(max: usize) -> Dynamic {
        Dynamic {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Changes the bound, evicting the oldest entries that no longer fit.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    fn evict_to(&mut self, room: usize) {
        while self.size > room {
            let Some(e) = self.entries.pop_back() else {
                break;
            };
            self.size -= entry_size(e.name(), e.value());
        }
    }

    /// Remembers a field, evicting the oldest as needed; a field larger than the whole
    /// table empties it and is not kept (RFC 7541 4.4).
    pub fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = entry_size(name, value);
        if size > self.max {
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max - size);
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        self.entries.push_front(Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        });
        self.size += size;
    }

    /// The entry at a 0-based position, newest first.
    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.entries.get(i).map(|e| (e.name(), e.value()))
    }

    /// The position of an entry with this name and value, and else of one with this name.
    pub fn find(&self, name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
        let mut by_name = None;
        for (i, e) in self.entries.iter().enumerate() {
            if e.name() == name {
                if e.value() == value {
                    return (Some(i), Some(i));
                }
                by_name.get_or_insert(i);
            }
        }
        (None, by_name)
    }
}

/// Field `index` (1-based) of the combined address space: static, then dynamic.
pub fn lookup(dynamic: &Dynamic, index: usize) -> Option<(&[u8], &[u8])> {
    match index {
        0 => None,
        1..=61 => Some(STATIC[index - 1]),
        _ => dynamic.get(index - 62),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dynamic_table_evicts_oldest_first_and_counts_32_per_entry() {
        let mut t = Dynamic::new(100);
        t.insert(b"a", b"1"); // 34
        t.insert(b"b", b"22"); // 35
        assert_eq!((t.len(), t.size()), (2, 69));
        assert_eq!(lookup(&t, 62), Some((&b"b"[..], &b"22"[..])));
        assert_eq!(lookup(&t, 63), Some((&b"a"[..], &b"1"[..])));
        assert_eq!(lookup(&t, 64), None);
        t.insert(b"c", b"333"); // 36: "a" goes
        assert_eq!((t.len(), t.size()), (2, 71));
        assert_eq!(lookup(&t, 63), Some((&b"b"[..], &b"22"[..])));
        // Larger than the table: empties it.
        t.insert(&[b'x'; 80], b"");
        assert_eq!((t.len(), t.size()), (0, 0));
        t.insert(b"a", b"1");
        t.set_max(10);
        assert_eq!((t.len(), t.size()), (0, 0));
        assert_eq!(lookup(&t, 0), None);
        assert_eq!(lookup(&t, 2), Some((&b":method"[..], &b"GET"[..])));
    }

    #[test]
    fn static_names_are_found_as_ranges() {
        assert_eq!(static_name(b":status"), Some(8..=14));
        assert_eq!(static_name(b"www-authenticate"), Some(61..=61));
        assert_eq!(static_name(b"x-unknown"), None);
    }
}
