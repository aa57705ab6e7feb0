//! An upstream's active health check, as configured (the helper runs it: `helper::probe`).

use super::units::ser_duration;
use serde::Serialize;
use std::time::Duration;

/// An upstream's active health check.
#[derive(Debug, Clone, Serialize)]
#[serde(into = "HealthCheckShown")]
pub struct HealthCheck {
    /// "http" or "tcp" (connect only).
    #[serde(rename = "type")]
    pub kind: CheckKind,
    pub path: String,
    /// `Host` of the probe (default: the peer's address as written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Consecutive successes that bring a down peer back, failures that take it down.
    pub rise: u32,
    pub fall: u32,
    /// Healthy statuses, inclusive.
    pub status: (u16, u16),
    /// The body must contain this (or match it, for "~regex").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<crate::router::Test>,
    /// A peer no probe has judged yet: up (`fall` failed probes take it down, as nginx and
    /// HAProxy start their servers) or down (its first good probe brings it up).
    pub initial: Initial,
}

/// `HealthCheck` as it is written: a tcp check has no HTTP keys (they are refused on one).
#[derive(Serialize)]
struct HealthCheckShown {
    #[serde(rename = "type")]
    kind: CheckKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(serialize_with = "ser_duration")]
    interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    timeout: Duration,
    rise: u32,
    fall: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<crate::router::Test>,
    initial: Initial,
}

impl From<HealthCheck> for HealthCheckShown {
    fn from(h: HealthCheck) -> HealthCheckShown {
        let http = h.kind == CheckKind::Http;
        HealthCheckShown {
            kind: h.kind,
            path: http.then_some(h.path),
            host: h.host.filter(|_| http),
            interval: h.interval,
            timeout: h.timeout,
            rise: h.rise,
            fall: h.fall,
            status: http.then(|| format!("{}-{}", h.status.0, h.status.1)),
            body: h.body.filter(|_| http),
            initial: h.initial,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Initial {
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Http,
    Tcp,
}
