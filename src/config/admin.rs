//! `admin = { listen, token, basic_auth, unauthenticated, public_metrics, server_names }`: the master's
//! admin listener (Prometheus metrics, the JSON API and the dashboard). Off unless set.

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
    /// HTTP basic auth: these users, each with a crypt(3) hash of their password (bcrypt
    /// `$2b$`/`$2y$`/`$2a$`, SHA-512 `$6$` or SHA-256 `$5$`). Only the names are shown.
    pub basic_auth: Vec<BasicUser>,
    /// The user whose hash is slowest: an unknown name is checked against it, so the time
    /// taken does not tell which names exist.
    #[serde(skip)]
    pub decoy: usize,
    /// No authentication at all (only on a loopback address or a unix socket).
    pub unauthenticated: bool,
    /// `/metrics` needs no token (for scrapers).
    pub public_metrics: bool,
    /// Names a request's `Host` may give beside the listener's own address (lower case,
    /// no port): a name not here is refused, so a DNS-rebinding page cannot use the API.
    pub server_names: Vec<String>,
}

impl Admin {
    /// Wipes the token and the password hashes (in a worker, which never needs them).
    pub fn forget_secrets(&mut self) {
        use zeroize::Zeroize;
        if let Some(t) = &mut self.token {
            t.zeroize();
        }
        self.token = None;
        for u in &mut self.basic_auth {
            u.hash.zeroize();
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BasicUser {
    pub name: String,
    #[serde(skip)]
    pub hash: String,
}

/// The highest bcrypt cost and SHA-crypt rounds accepted: each check of a password costs
/// the hashing process about a second at most, not minutes (cost 31 is days).
pub const MAX_BCRYPT_COST: u32 = 14;
pub const MAX_SHA_ROUNDS: u32 = 1_000_000;

/// Roughly how long checking a password against `h` takes, in microseconds: bcrypt about
/// 70 us per 2^cost round, SHA-crypt about 1 us per round (5,000 by default).
fn crypt_work(h: &str) -> u64 {
    if let Some(rest) = ["$2b$", "$2y$", "$2a$"]
        .iter()
        .find_map(|p| h.strip_prefix(p))
    {
        let cost: u32 = rest.get(..2).and_then(|c| c.parse().ok()).unwrap_or(10);
        return 70u64 << cost.min(31);
    }
    let rest = h
        .strip_prefix("$5$")
        .or_else(|| h.strip_prefix("$6$"))
        .unwrap_or("");
    rest.strip_prefix("rounds=")
        .and_then(|r| r.split_once('$'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(5000)
}

/// Why a hash of a shape `crypt_hash_ok` accepts is too slow to verify, if it is.
pub fn crypt_cost_error(h: &str) -> Option<String> {
    if let Some(rest) = ["$2b$", "$2y$", "$2a$"]
        .iter()
        .find_map(|p| h.strip_prefix(p))
    {
        let cost: u32 = rest.get(..2)?.parse().ok()?;
        return (cost > MAX_BCRYPT_COST).then(|| {
            format!("bcrypt cost {cost} is above {MAX_BCRYPT_COST} (each sign-in would take 2^{cost} rounds); make the hash again with `htpasswd -nB -C 12`")
        });
    }
    let rest = h.strip_prefix("$5$").or_else(|| h.strip_prefix("$6$"))?;
    let rounds: u32 = rest
        .strip_prefix("rounds=")?
        .split_once('$')?
        .0
        .parse()
        .ok()?;
    (rounds > MAX_SHA_ROUNDS).then(|| {
        format!("SHA-crypt rounds={rounds} is above {MAX_SHA_ROUNDS}; make the hash again with fewer (the default 5000 is what `openssl passwd -6` makes)")
    })
}

/// Whether `h` is a crypt(3) hash proxyd verifies: bcrypt (`$2b$`, `$2y$`, `$2a$`, cost 4
/// to 31) or SHA-crypt (`$5$`, `$6$`, optional `rounds=N$`). Checked by shape only, so a
/// config test does not spend a password hash's deliberate cost per user.
pub fn crypt_hash_ok(h: &str) -> bool {
    let crypt64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    if let Some(rest) = ["$2b$", "$2y$", "$2a$"]
        .iter()
        .find_map(|p| h.strip_prefix(p))
    {
        let Some((cost, tail)) = rest.split_once('$') else {
            return false;
        };
        return cost.len() == 2
            && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c))
            && tail.len() == 53
            && crypt64(tail);
    }
    let (rest, len) = match (h.strip_prefix("$5$"), h.strip_prefix("$6$")) {
        (Some(r), _) => (r, 43),
        (_, Some(r)) => (r, 86),
        _ => return false,
    };
    let rest = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let Some((n, tail)) = r.split_once('$') else {
                return false;
            };
            if !n
                .parse::<u32>()
                .is_ok_and(|n| (1000..=999_999_999).contains(&n))
            {
                return false;
            }
            tail
        }
        None => rest,
    };
    let Some((salt, hash)) = rest.split_once('$') else {
        return false;
    };
    !salt.is_empty()
        && salt.len() <= 16
        && !salt.contains(['$', ':', '\n'])
        && hash.len() == len
        && crypt64(hash)
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
        let mut basic_auth = Vec::new();
        let mut decoy = 0;
        if let Some(users) = &r.basic_auth {
            for (name, hash) in users.get_ref() {
                let hash = hash.as_str().unwrap_or("");
                if name.is_empty()
                    || name.contains(':')
                    || name.bytes().any(|b| b.is_ascii_control())
                {
                    self.errors.push(src.err(
                        users.span(),
                        format!("admin basic_auth user \"{name}\": a name is not empty and has no ':' or control characters"),
                    ));
                } else if !crypt_hash_ok(hash) {
                    self.errors.push(src.err(
                        users.span(),
                        format!("admin basic_auth user \"{name}\": the password must be a bcrypt ($2b$, $2y$) or SHA-crypt ($6$, $5$) hash, as made by `htpasswd -nB {name}` or `openssl passwd -6`; not a password in clear"),
                    ));
                } else if let Some(why) = crypt_cost_error(hash) {
                    self.errors.push(src.err(
                        users.span(),
                        format!("admin basic_auth user \"{name}\": {why}"),
                    ));
                } else {
                    basic_auth.push(BasicUser {
                        name: name.clone(),
                        hash: hash.to_string(),
                    });
                }
            }
            if users.get_ref().is_empty() {
                self.errors
                    .push(src.err(users.span(), "admin basic_auth names no users"));
            }
            // An unknown name is checked against the slowest hash; a user whose hash is much
            // faster answers sooner, which tells an attacker the name exists.
            let works: Vec<u64> = basic_auth.iter().map(|u| crypt_work(&u.hash)).collect();
            decoy = (0..works.len()).max_by_key(|&i| works[i]).unwrap_or(0);
            if let (Some(lo), Some(hi)) = (works.iter().min(), works.iter().max()) {
                if *hi > lo.saturating_mul(2) {
                    self.warnings.push(src.err(
                        users.span(),
                        "admin basic_auth hashes differ in cost: a wrong password for a user with a cheaper hash is answered sooner than for a name that does not exist, which tells that the name exists; make every hash with the same algorithm and cost",
                    ));
                }
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
        if token.is_none() && r.basic_auth.is_none() && !unauthenticated {
            self.errors.push(src.err(
                raw.span(),
                "admin needs a token or basic_auth users (or unauthenticated = true on a loopback address or a unix socket)",
            ));
        }
        let mut server_names = Vec::new();
        for n in r.server_names.iter().flat_map(|l| l.get_ref()) {
            let name = n.get_ref().to_ascii_lowercase();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if valid {
                server_names.push(name);
            } else {
                self.errors.push(src.err(
                    n.span(),
                    format!("admin server_names: \"{}\" is not a host name (letters, digits, '-' and '.', no port)", n.get_ref()),
                ));
            }
        }
        Some(Admin {
            listen,
            token,
            basic_auth,
            decoy,
            unauthenticated,
            public_metrics: r.public_metrics.unwrap_or(false),
            server_names,
        })
    }
}
