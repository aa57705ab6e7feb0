//! An exchange's connection to a peer: the transport and what the exchange needs to know of
//! it, and the peer's active-connection gauge it holds up.

use crate::worker::transport::Transport;

/// An exchange's connection to a peer while it carries an exchange (or a tunnel).
pub struct UpConn {
    pub stream: Transport,
    /// Slot in the owner table; the socket's token.
    pub conn: usize,
    pub upstream: usize,
    pub peer: usize,
    /// The version of the peer's address it was connected to (a peer given by host name
    /// may move meanwhile; see `Peer::locate`).
    pub version: u32,
    pub reused: bool,
    pub requests: u64,
    /// Counts it in the peer's active connections while it carries an exchange.
    pub _active: Active,
}

/// A peer's active-connection gauge, held up for as long as this lives.
pub struct Active {
    shared: crate::shm::Block,
    slot: u32,
}

impl Active {
    pub fn new(shared: crate::shm::Block, slot: u32) -> Active {
        shared.active(slot, 1);
        Active { shared, slot }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.shared.active(self.slot, -1);
    }
}
