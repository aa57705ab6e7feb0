//! `admin = { listen, token, unauthenticated, public_metrics }`: the master's admin
//! listener (Prometheus metrics; later the JSON API and the dashboard). Off unless set.

use super::raw::{RawAdmin, S};
use super::validate::Validator;
use super::Source;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the admin listener listens: a TCP address, or a unix socket (`unix:/path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum AdminAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl From<AdminAddr> for String {
    fn from(a: AdminAddr) -> String {
        a.to_string()
    }
}

impl std::fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAddr::Tcp(a) => write!(f, "{a}"),
            AdminAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub listen: AdminAddr,
    /// `Authorization: Bearer <token>` opens everything.
    #[serde(skip)]
    pub token: Option<String>,
    /// No authentication at all (only on a loopback address or a unix socket).
    pub unauthenticated: bool,
    /// `/metrics` needs no token (for scrapers).
    pub public_metrics: bool,
}

impl Validator {
    pub(super) fn admin(
        &mut self,
        src: &Source,
        base: &std::path::Path,
        raw: Option<&S<RawAdmin>>,
    ) -> Option<Admin> {
        let raw = raw?;
        let r = raw.get_ref();
        let text = r.listen.get_ref();
        let listen = match (text.strip_prefix("unix:"), text.parse::<SocketAddr>()) {
            (Some(path), _) => {
                let path = super::resolve(base, path);
                if !path.parent().is_some_and(|d| d.is_dir()) {
                    self.errors.push(src.err(
                        r.listen.span(),
                        format!(
                            "the directory of admin socket {} does not exist",
                            path.display()
                        ),
                    ));
                }
                AdminAddr::Unix(path)
            }
            (None, Ok(a)) => AdminAddr::Tcp(a),
            (None, Err(_)) => {
                self.errors.push(src.err(
                    r.listen.span(),
                    format!("admin listen \"{text}\" is neither an address:port nor unix:/path"),
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
        let local = match &listen {
            AdminAddr::Tcp(a) => a.ip().is_loopback(),
            AdminAddr::Unix(_) => true,
        };
        if unauthenticated && !local {
            self.errors.push(src.err(
                raw.span(),
                format!("admin unauthenticated = true is allowed on a loopback address or a unix socket only, not {listen}"),
            ));
        }
        if token.is_none() && !unauthenticated {
            self.errors.push(src.err(
                raw.span(),
                "admin needs a token (or unauthenticated = true on a loopback address or a unix socket)",
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
