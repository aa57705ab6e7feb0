//! SETTINGS parameters (RFC 9113 6.5.2, RFC 8441 3): what one end of a connection has
//! announced, starting from the protocol's defaults, with each value's bounds checked as
//! it is applied.

use super::{ErrorCode, H2Error, MAX_WINDOW};

pub const HEADER_TABLE_SIZE: u16 = 0x1;
pub const ENABLE_PUSH: u16 = 0x2;
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const MAX_FRAME_SIZE: u16 = 0x5;
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// The smallest and largest SETTINGS_MAX_FRAME_SIZE (RFC 9113 6.5.2); the smallest is also
/// every connection's start.
pub const MIN_FRAME_SIZE: u32 = 1 << 14;
pub const MAX_FRAME_SIZE_LIMIT: u32 = (1 << 24) - 1;
/// Every stream's window until SETTINGS_INITIAL_WINDOW_SIZE says otherwise, and the
/// connection's window for good (only WINDOW_UPDATE grows that one).
pub const DEFAULT_WINDOW: u32 = 65_535;

/// One end's settings. `None` means "no limit announced" where the protocol's default is
/// unlimited (concurrent streams, header list size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub header_table_size: u32,
    pub enable_push: bool,
    pub max_concurrent_streams: Option<u32>,
    pub initial_window_size: u32,
    pub max_frame_size: u32,
    pub max_header_list_size: Option<u32>,
    pub enable_connect_protocol: bool,
}

impl Default for Settings {
    /// The values in force before the peer's first SETTINGS arrives.
    fn default() -> Settings {
        Settings {
            header_table_size: 4096,
            enable_push: true,
            max_concurrent_streams: None,
            initial_window_size: DEFAULT_WINDOW,
            max_frame_size: MIN_FRAME_SIZE,
            max_header_list_size: None,
            enable_connect_protocol: false,
        }
    }
}

impl Settings {
    /// Applies one parameter the peer sent. Unknown identifiers are ignored, as the RFC
    /// requires; out-of-range values are connection errors.
    pub fn apply(&mut self, id: u16, value: u32) -> Result<(), H2Error> {
        match id {
            HEADER_TABLE_SIZE => self.header_table_size = value,
            ENABLE_PUSH => {
                self.enable_push = match value {
                    0 => false,
                    1 => true,
                    _ => return Err(H2Error::conn(ErrorCode::Protocol, "ENABLE_PUSH not 0 or 1")),
                }
            }
            MAX_CONCURRENT_STREAMS => self.max_concurrent_streams = Some(value),
            INITIAL_WINDOW_SIZE => {
                if value > MAX_WINDOW {
                    return Err(H2Error::conn(
                        ErrorCode::FlowControl,
                        "INITIAL_WINDOW_SIZE above 2^31-1",
                    ));
                }
                self.initial_window_size = value;
            }
            MAX_FRAME_SIZE => {
                if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE_LIMIT).contains(&value) {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "MAX_FRAME_SIZE outside 2^14..2^24-1",
                    ));
                }
                self.max_frame_size = value;
            }
            MAX_HEADER_LIST_SIZE => self.max_header_list_size = Some(value),
            ENABLE_CONNECT_PROTOCOL => {
                // RFC 8441 3: once 1, a sender must not take it back.
                self.enable_connect_protocol = match (value, self.enable_connect_protocol) {
                    (1, _) => true,
                    (0, false) => false,
                    (0, true) => {
                        return Err(H2Error::conn(
                            ErrorCode::Protocol,
                            "ENABLE_CONNECT_PROTOCOL withdrawn",
                        ))
                    }
                    _ => {
                        return Err(H2Error::conn(
                            ErrorCode::Protocol,
                            "ENABLE_CONNECT_PROTOCOL not 0 or 1",
                        ))
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The parameters that differ from the protocol's defaults, as (identifier, value)
    /// pairs for a SETTINGS frame.
    pub fn changes(&self) -> Vec<(u16, u32)> {
        let d = Settings::default();
        let mut v = Vec::new();
        if self.header_table_size != d.header_table_size {
            v.push((HEADER_TABLE_SIZE, self.header_table_size));
        }
        if self.enable_push != d.enable_push {
            v.push((ENABLE_PUSH, u32::from(self.enable_push)));
        }
        if let Some(n) = self.max_concurrent_streams {
            v.push((MAX_CONCURRENT_STREAMS, n));
        }
        if self.initial_window_size != d.initial_window_size {
            v.push((INITIAL_WINDOW_SIZE, self.initial_window_size));
        }
        if self.max_frame_size != d.max_frame_size {
            v.push((MAX_FRAME_SIZE, self.max_frame_size));
        }
        if let Some(n) = self.max_header_list_size {
            v.push((MAX_HEADER_LIST_SIZE, n));
        }
        if self.enable_connect_protocol {
            v.push((ENABLE_CONNECT_PROTOCOL, 1));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_connection_errors() {
        let mut s = Settings::default();
        for (id, v, code) in [
            (ENABLE_PUSH, 2, ErrorCode::Protocol),
            (INITIAL_WINDOW_SIZE, MAX_WINDOW + 1, ErrorCode::FlowControl),
            (MAX_FRAME_SIZE, MIN_FRAME_SIZE - 1, ErrorCode::Protocol),
            (
                MAX_FRAME_SIZE,
                MAX_FRAME_SIZE_LIMIT + 1,
                ErrorCode::Protocol,
            ),
            (ENABLE_CONNECT_PROTOCOL, 2, ErrorCode::Protocol),
        ] {
            let e = s.apply(id, v).unwrap_err();
            assert_eq!(e.code(), code, "{id} = {v}");
        }
        assert_eq!(s, Settings::default(), "a refused value changes nothing");
    }

    #[test]
    fn values_in_range_apply_and_unknown_ids_are_ignored() {
        let mut s = Settings::default();
        s.apply(INITIAL_WINDOW_SIZE, MAX_WINDOW).unwrap();
        s.apply(MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT).unwrap();
        s.apply(MAX_CONCURRENT_STREAMS, 0).unwrap();
        s.apply(0xff, 7).unwrap();
        s.apply(ENABLE_CONNECT_PROTOCOL, 1).unwrap();
        assert_eq!(s.initial_window_size, MAX_WINDOW);
        assert_eq!(s.max_frame_size, MAX_FRAME_SIZE_LIMIT);
        assert_eq!(s.max_concurrent_streams, Some(0));
        assert!(s.enable_connect_protocol);
        // Announced once, it stays.
        assert!(s.apply(ENABLE_CONNECT_PROTOCOL, 0).is_err());
        assert!(s.apply(ENABLE_CONNECT_PROTOCOL, 1).is_ok());
    }

    #[test]
    fn changes_list_only_what_differs_from_the_defaults() {
        assert!(Settings::default().changes().is_empty());
        let s = Settings {
            enable_push: false,
            max_concurrent_streams: Some(128),
            initial_window_size: 1 << 16,
            ..Settings::default()
        };
        assert_eq!(
            s.changes(),
            vec![
                (ENABLE_PUSH, 0),
                (MAX_CONCURRENT_STREAMS, 128),
                (INITIAL_WINDOW_SIZE, 1 << 16)
            ]
        );
    }
}
