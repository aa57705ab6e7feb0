//! The exact status codes counted beside each class. `/metrics` labels a request with its
//! code, but a code is three digits from the network (an upstream may answer 599 or 299), so
//! the label is bounded: one counter per code of this table, the codes proxyd makes itself
//! and the ones clients and upstreams commonly send, and per class an "other" (the class's
//! count less its listed codes). 32 counters cost 256 bytes per slot and worker block, where
//! every code from 100 to 599 would cost 4000.

/// The codes counted one by one, in class order.
pub const CODES: [u16; 32] = [
    100, 101, //
    200, 201, 202, 204, 206, //
    301, 302, 303, 304, 307, 308, //
    400, 401, 403, 404, 405, 408, 409, 410, 413, 414, 416, 421, 429, 431, //
    500, 501, 502, 503, 504,
];

/// Where `code` is counted in `CODES`, if it is listed.
pub fn index(code: u16) -> Option<usize> {
    CODES.binary_search(&code).ok()
}

/// The class (0 for 1xx .. 4 for 5xx) of a status, if it has one.
pub fn class(code: u16) -> Option<usize> {
    (code / 100)
        .checked_sub(1)
        .filter(|c| *c < 5)
        .map(usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_each_code_has_a_class() {
        assert!(CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(CODES.iter().all(|c| class(*c).is_some()));
        assert_eq!(index(502), Some(29));
        assert_eq!(index(599), None);
        assert_eq!(class(99), None);
        assert_eq!(class(600), None);
        assert_eq!(class(299), Some(1));
    }
}
