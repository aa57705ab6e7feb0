//! `admin = { listen, token, unauthenticated, public_metrics }`: the master's admin
//! listener (Prometheus metrics; later the JSON API and the dashboard). Off unless set.

use super::raw::{RawAdmin, S};
use super::validate::Validator;
use super::Source;
use serde::Serialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub listen: SocketAddr,
    /// `Authorization: Bearer <token>` opens everything.
    #[serde(skip)]
    pub token: Option<String>,
    /// No authentication at all (only on a loopback address).
    pub unauthenticated: bool,
    /// `/metrics` needs no token (for scrapers).
    pub public_metrics: bool,
}

impl Validator {
    pub(super) fn admin(&mut self, src: &Source, raw: Option<&S<RawAdmin>>) -> Option<Admin> {
        let raw = raw?;
        let r = raw.get_ref();
        let listen = match r.listen.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.errors.push(src.err(
                    r.listen.span(),
                    format!(
                        "admin listen \"{}\" is not an address:port",
                        r.listen.get_ref()
                    ),
                ));
                return None;
            }
        };
        let token = r.token.as_ref().map(|t| t.get_ref().clone());
        if let Some(t) = &r.token {
            if t.get_ref().len() < 16 || t.get_ref().bytes().any(|b| !b.is_ascii_graphic()) {
                self.errors.push(src.err(
                    t.span(),
                    "admin token must be at least 16 printable characters, no spaces",
                ));
            }
        }
        let unauthenticated = r.unauthenticated.unwrap_or(false);
        if unauthenticated && !listen.ip().is_loopback() {
            self.errors.push(src.err(
                raw.span(),
                format!("admin unauthenticated = true is allowed on a loopback address only, not {listen}"),
            ));
        }
        if token.is_none() && !unauthenticated {
            self.errors.push(src.err(
                raw.span(),
                "admin needs a token (or unauthenticated = true on a loopback address)",
            ));
        }
        Some(Admin {
            listen,
            token,
            unauthenticated,
            public_metrics: r.public_metrics.unwrap_or(false),
        })
    }
}
