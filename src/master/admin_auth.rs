//! Who an admin request comes from: the bearer token, a basic-auth user (a crypt(3) hash
//! from the config), or anyone (`unauthenticated = true`, loopback or unix socket only).
//!
//! Password hashes are slow on purpose, so the master never computes one: it hands the
//! password to the hashing process (`hasher.rs`) and answers the request when the verdict
//! comes back, its loop free meanwhile. A credential that verified is remembered (by its
//! SHA-256, for a few minutes) so the dashboard's polling costs one hash per sign-in, not one
//! per request; and hashing gets at most a quarter of each second, past which requests that
//! need a hash get 429 without one (the hashing process is one CPU that guesses must not
//! keep busy).

use super::hasher::Job;
use crate::config::admin::Admin;
use base64::Engine;
use std::time::{Duration, Instant};

/// Who a request was authorized as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Principal {
    /// `unauthenticated = true`.
    Anyone,
    Token,
    User(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anyone => f.write_str("unauthenticated"),
            Principal::Token => f.write_str("token"),
            Principal::User(u) => write!(f, "user {u}"),
        }
    }
}

pub(super) enum Verdict {
    Allowed(Principal),
    /// No credential, or a wrong one.
    Denied,
    /// Verifying would pass this second's hashing budget.
    Busy,
    /// The password must be hashed first: ask again with the verdict.
    Hash(Job),
}

/// The verdict of a hash a request waited for, and the hash it was checked against (a
/// reload may have replaced the user's hash meanwhile: then the verdict says nothing).
pub(super) struct Hashed {
    pub(super) ok: bool,
    pub(super) hash: String,
}

/// How long a verified credential is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
const REMEMBERED: usize = 32;
/// Hashing time allowed: a quarter of the master's time, and at most this much at once.
const BUDGET: Duration = Duration::from_millis(250);
/// A basic credential longer than this (base64) is refused unread.
const MAX_CREDENTIAL: usize = 1024;

struct Remembered {
    digest: [u8; 32],
    user: String,
    until: Instant,
}

#[derive(Default)]
pub(super) struct Auth {
    remembered: Vec<Remembered>,
    /// Hashing time owed (a token bucket in reverse): grows by each hash's time, shrinks by
    /// a quarter of the time that passes; no hash starts while it is past BUDGET. A hash
    /// slower than the budget thus keeps the next ones waiting in proportion.
    owed: Duration,
    at: Option<Instant>,
}

impl Auth {
    /// Forgets verified credentials (the users or their hashes may have changed).
    pub(super) fn forget(&mut self) {
        for r in &mut self.remembered {
            zeroize::Zeroize::zeroize(&mut r.digest);
        }
        self.remembered.clear();
    }

    /// Whether `headers` carry the right bearer token (no hash: cheap enough for a public
    /// page to tell a credentialed client from an anonymous one).
    pub(super) fn bearer_ok(&self, admin: &Admin, headers: &[httparse::Header]) -> bool {
        let Some(token) = &admin.token else {
            return false;
        };
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("authorization"))
            .any(|h| {
                h.value.len() > 7
                    && h.value[..7].eq_ignore_ascii_case(b"bearer ")
                    && same(h.value[7..].trim_ascii(), token.as_bytes())
            })
    }

    /// Who `headers` come from. `hashed`: the verdict of the hash this request waited for
    /// (its Basic credential's), once it came.
    pub(super) fn check(
        &mut self,
        admin: &Admin,
        headers: &[httparse::Header],
        hashed: Option<&Hashed>,
    ) -> Verdict {
        if admin.unauthenticated {
            return Verdict::Allowed(Principal::Anyone);
        }
        let mut verdict = Verdict::Denied;
        // Only the first Basic credential is checked: a head of thirty of them must not cost
        // thirty hashes.
        let mut basic_tried = false;
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("authorization"))
        {
            let (scheme, value) = match h.value.iter().position(|&b| b == b' ') {
                Some(i) => (&h.value[..i], h.value[i + 1..].trim_ascii()),
                None => continue,
            };
            if scheme.eq_ignore_ascii_case(b"bearer") {
                if admin
                    .token
                    .as_ref()
                    .is_some_and(|t| same(value, t.as_bytes()))
                {
                    return Verdict::Allowed(Principal::Token);
                }
            } else if scheme.eq_ignore_ascii_case(b"basic")
                && !admin.basic_auth.is_empty()
                && !basic_tried
            {
                basic_tried = true;
                match self.basic(admin, value, hashed) {
                    Verdict::Denied => {}
                    v @ (Verdict::Allowed(_) | Verdict::Hash(_)) => return v,
                    Verdict::Busy => verdict = Verdict::Busy,
                }
            }
        }
        verdict
    }

    /// Counts a finished hash's time against the budget.
    pub(super) fn spent(&mut self, took: Duration) {
        self.owed += took;
    }

    fn basic(&mut self, admin: &Admin, value: &[u8], hashed: Option<&Hashed>) -> Verdict {
        if value.len() > MAX_CREDENTIAL {
            return Verdict::Denied;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value) else {
            return Verdict::Denied;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return Verdict::Denied;
        };
        let (name, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let digest = sha256(&decoded);
        let now = Instant::now();
        self.remembered.retain(|r| r.until > now);
        if let Some(r) = self.remembered.iter().find(|r| same(&r.digest, &digest)) {
            return Verdict::Allowed(Principal::User(r.user.clone()));
        }
        // An unknown name is checked against a real hash all the same (the slowest), so the
        // time taken does not tell which names exist (`-t` warns when the costs differ).
        let user = admin.basic_auth.iter().find(|u| u.name.as_bytes() == name);
        let Some(decoy) = admin.basic_auth.get(admin.decoy) else {
            return Verdict::Denied;
        };
        let hash = user.unwrap_or(decoy).hash.as_str();
        if let Some(at) = self.at {
            self.owed = self
                .owed
                .saturating_sub(now.saturating_duration_since(at) / 4);
        }
        self.at = Some(now);
        let ok = match hashed {
            Some(h) if h.hash == hash => h.ok,
            _ if self.owed >= BUDGET => return Verdict::Busy,
            _ => {
                return Verdict::Hash(Job {
                    hash: hash.to_string(),
                    password: password.to_vec(),
                })
            }
        };
        match user {
            Some(u) if ok => {
                if self.remembered.len() >= REMEMBERED {
                    self.remembered.remove(0);
                }
                self.remembered.push(Remembered {
                    digest,
                    user: u.name.clone(),
                    until: now + REMEMBER,
                });
                Verdict::Allowed(Principal::User(u.name.clone()))
            }
            _ => Verdict::Denied,
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::admin::{crypt_hash_ok, AdminAddr, BasicUser};

    // `openssl passwd -6 -salt saltsalt secret`, and a bcrypt hash of "secret" at cost 4.
    const SHA512: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    const BCRYPT: &str = "$2y$04$mtR7KntlY0.o9BPcRubBr.7FDd73r5STzyTTNc33SoLMwPHZzufTK";

    fn admin() -> Admin {
        Admin {
            listen: AdminAddr::Tcp("127.0.0.1:1".parse().unwrap()),
            token: Some("0123456789abcdef".into()),
            basic_auth: vec![
                BasicUser {
                    name: "ops".into(),
                    hash: BCRYPT.into(),
                },
                BasicUser {
                    name: "ci".into(),
                    hash: SHA512.into(),
                },
            ],
            decoy: 0,
            unauthenticated: false,
            public_metrics: false,
            server_names: Vec::new(),
        }
    }

    fn basic(user: &str, pw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    }

    fn check(auth: &mut Auth, value: &str) -> Option<Principal> {
        let h = [httparse::Header {
            name: "Authorization",
            value: value.as_bytes(),
        }];
        match decide(auth, &h) {
            Verdict::Allowed(p) => Some(p),
            _ => None,
        }
    }

    /// Checks, hashing here what the hashing process would.
    fn decide(auth: &mut Auth, h: &[httparse::Header]) -> Verdict {
        match auth.check(&admin(), h, None) {
            Verdict::Hash(job) => {
                let ok = crate::master::hasher::verify(&job.password, &job.hash);
                let hashed = Hashed { ok, hash: job.hash };
                auth.check(&admin(), h, Some(&hashed))
            }
            v => v,
        }
    }

    #[test]
    fn hashes_are_recognised_by_shape() {
        assert!(crypt_hash_ok(SHA512) && crypt_hash_ok(BCRYPT));
        assert!(crypt_hash_ok(
            "$5$rounds=5000$abc$qsg6EHbUzHQzF1POlD7zUwBINSELQxypPaeDcZe6vH0"
        ));
        for bad in ["secret", "$1$abc$def", "{SHA}abc", "$2y$03$", "$6$$", ""] {
            assert!(!crypt_hash_ok(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_users_and_wrong_passwords() {
        let mut a = Auth::default();
        assert_eq!(
            check(&mut a, "Bearer 0123456789abcdef"),
            Some(Principal::Token)
        );
        assert_eq!(check(&mut a, "bearer 0123456789abcdeX"), None);
        assert_eq!(
            check(&mut a, &basic("ops", "secret")),
            Some(Principal::User("ops".into()))
        );
        assert_eq!(
            check(&mut a, &basic("ci", "secret")),
            Some(Principal::User("ci".into()))
        );
        assert_eq!(check(&mut a, &basic("ops", "wrong")), None);
        assert_eq!(check(&mut a, &basic("nobody", "secret")), None);
        assert_eq!(check(&mut a, "Basic !!!"), None);
        assert_eq!(
            check(&mut a, &format!("Basic {}", "QUFB".repeat(400))),
            None
        );
        // Only the first Basic credential counts.
        let wrong = basic("ops", "wrong");
        let right = basic("ops", "secret");
        let two = [
            httparse::Header {
                name: "Authorization",
                value: wrong.as_bytes(),
            },
            httparse::Header {
                name: "Authorization",
                value: right.as_bytes(),
            },
        ];
        assert!(matches!(decide(&mut a, &two), Verdict::Denied));
        assert_eq!(check(&mut a, "Basic"), None);
        // A verdict against another hash than the user's now (a reload replaced it while
        // the hash ran) decides nothing: hashed again.
        let stale = Hashed {
            ok: true,
            hash: SHA512.into(),
        };
        let guess = basic("ops", "guess");
        let h = [httparse::Header {
            name: "Authorization",
            value: guess.as_bytes(),
        }];
        a.owed = Duration::ZERO;
        assert!(matches!(
            a.check(&admin(), &h, Some(&stale)),
            Verdict::Hash(_)
        ));
        // Remembered: the second check needs no hash (the budget is spent to prove it).
        a.owed = BUDGET * 4;
        assert_eq!(
            check(&mut a, &basic("ops", "secret")),
            Some(Principal::User("ops".into()))
        );
        assert!(matches!(
            a.check(
                &admin(),
                &[httparse::Header {
                    name: "authorization",
                    value: basic("ops", "other").as_bytes(),
                }],
                None
            ),
            Verdict::Busy
        ));
    }
}
