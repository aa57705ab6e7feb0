//! The worker's wall clock, formatted once per second (as nginx caches its time strings):
//! the `Date` header of local responses and the access log timestamp.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
pub struct Clock {
    secs: u64,
    /// RFC 9110 HTTP-date, for `Date:`.
    pub http_date: String,
    /// nginx `$time_local`, for the access log.
    pub log_time: String,
    /// nginx `$time_iso8601`.
    pub iso_time: String,
}

impl Clock {
    /// Called once per event-loop turn; formats only when the second changed, and says so.
    pub fn tick(&mut self) -> bool {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs || self.http_date.is_empty() {
            self.secs = secs;
            self.http_date = httpdate::fmt_http_date(now);
            let local = chrono::Local::now();
            self.log_time = local.format("%d/%b/%Y:%H:%M:%S %z").to_string();
            self.iso_time = local.format("%Y-%m-%dT%H:%M:%S%:z").to_string();
            return true;
        }
        false
    }
}
