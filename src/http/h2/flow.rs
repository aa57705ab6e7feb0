//! Flow control (RFC 9113 5.2 and 6.9): one `Window` per direction for the connection and
//! for each stream. A receiver gives credit back only for data it has passed on, so a
//! stream never holds more than its window, and a slow reader of one stream stalls only
//! that stream, never the connection.

use super::MAX_WINDOW;

/// How much may still be sent. It may go below zero when SETTINGS_INITIAL_WINDOW_SIZE
/// shrinks under data in flight (6.9.2), and may never pass 2^31-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window(i64);

/// A window pushed past 2^31-1, or data beyond a window: FLOW_CONTROL_ERROR, on the
/// stream or the connection the window belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

impl Window {
    pub fn new(size: u32) -> Window {
        Window(i64::from(size.min(MAX_WINDOW)))
    }

    /// What may be sent now (nothing while the window is negative).
    pub fn available(self) -> usize {
        usize::try_from(self.0.max(0)).unwrap_or(0)
    }

    /// A WINDOW_UPDATE of `n`.
    pub fn grow(&mut self, n: u32) -> Result<(), Overflow> {
        self.shift(i64::from(n))
    }

    /// A change of SETTINGS_INITIAL_WINDOW_SIZE moves every stream's window by the
    /// difference.
    pub fn shift(&mut self, delta: i64) -> Result<(), Overflow> {
        let next = self.0 + delta;
        if next > i64::from(MAX_WINDOW) {
            return Err(Overflow);
        }
        self.0 = next;
        Ok(())
    }

    /// `n` octets sent, or received: more than the window is the peer's error.
    pub fn take(&mut self, n: u32) -> Result<(), Overflow> {
        if i64::from(n) > self.0 {
            return Err(Overflow);
        }
        self.0 -= i64::from(n);
        Ok(())
    }
}

/// The receiving side of one window: what the peer may still send, and the credit owed
/// back for data already passed on. Credit goes back in WINDOW_UPDATEs of at least half
/// the target, not one per DATA frame (a frame of one octet would otherwise cost a frame
/// back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    window: Window,
    target: u32,
    owed: u32,
}

impl Credit {
    pub fn new(target: u32) -> Credit {
        Credit {
            window: Window::new(target),
            target,
            owed: 0,
        }
    }

    /// A DATA frame of `n` octets (padding included) arrived.
    pub fn received(&mut self, n: u32) -> Result<(), Overflow> {
        self.window.take(n)
    }

    /// `n` received octets were passed on (or dropped, as padding and data of reset
    /// streams are); returns the WINDOW_UPDATE increment to send now, if any.
    pub fn released(&mut self, n: u32) -> Option<u32> {
        self.owed = self.owed.saturating_add(n);
        if self.owed == 0 || self.owed < self.target / 2 {
            return None;
        }
        let inc = std::mem::take(&mut self.owed);
        // Cannot overflow: the peer never had more than the target outstanding.
        let _ = self.window.grow(inc);
        Some(inc)
    }

    /// What the peer may still send.
    pub fn open(&self) -> usize {
        self.window.available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_refuses_more_than_it_holds_and_more_than_2_31() {
        let mut w = Window::new(10);
        assert_eq!(w.take(11), Err(Overflow));
        w.take(10).unwrap();
        assert_eq!(w.available(), 0);
        assert_eq!(w.take(1), Err(Overflow));
        w.grow(MAX_WINDOW).unwrap();
        assert_eq!(w.grow(1), Err(Overflow));
        assert_eq!(w.available(), MAX_WINDOW as usize);
    }

    #[test]
    fn a_shrunk_initial_window_may_leave_a_stream_below_zero() {
        let mut w = Window::new(65_535);
        w.take(60_000).unwrap();
        w.shift(-65_535 + 1_000).unwrap();
        assert_eq!(w.available(), 0);
        assert_eq!(w.take(1), Err(Overflow));
        w.grow(60_000).unwrap();
        assert_eq!(w.available(), 1_000);
    }

    #[test]
    fn credit_goes_back_in_halves_of_the_target_for_data_passed_on() {
        let mut c = Credit::new(1000);
        c.received(700).unwrap();
        assert_eq!(c.open(), 300);
        assert_eq!(c.released(400), None);
        assert_eq!(c.released(200), Some(600));
        assert_eq!(c.open(), 900);
        // Nothing passed on, nothing given back: the peer stops at the window.
        c.received(900).unwrap();
        assert_eq!(c.received(1), Err(Overflow));
    }
}
