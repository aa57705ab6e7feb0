//! Tokens (and timer keys): what the event loop dispatches on. A token is a slab slot and
//! a kind, in one word.

/// What a token's (or timer key's) low two bits say it names; the rest is a slab slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A client connection (slot in `sessions`).
    Client = 0,
    /// An upstream connection (slot in `Upstreams::upconns`).
    Upstream = 1,
    /// An idle pooled upstream connection's timer (slot in the pool).
    Idle = 2,
    /// The OTLP exporter's connection (slot 0: there is one).
    Exporter = 3,
}

impl Kind {
    /// The kind a token or timer key names.
    pub fn of(key: usize) -> Kind {
        match key & 3 {
            0 => Kind::Client,
            1 => Kind::Upstream,
            2 => Kind::Idle,
            _ => Kind::Exporter,
        }
    }
}

/// The slab slot a token or timer key names.
pub fn slot_of(key: usize) -> usize {
    key >> 2
}

/// The token (and timer key) of a connection: slab slot and kind.
pub fn key(slot: usize, kind: Kind) -> usize {
    (slot << 2) | kind as usize
}
