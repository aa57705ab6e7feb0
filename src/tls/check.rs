//! What `proxyctl -t` (and every config load) says about a server's certificate chain beyond
//! "it parses and the key matches": the chain's order, a leaf without its issuer, its dates,
//! and whether it covers the server's names. X.509 is read with `x509-parser`.

use rustls_pki_types::CertificateDer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{parse_x509_certificate, X509Certificate};

/// A certificate closer to its end than this gets a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86400);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

fn date(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0).map_or_else(
        || ts.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// A certificate's notAfter, in seconds since the Unix epoch.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, c) = parse_x509_certificate(cert.as_ref()).ok()?;
    Some(c.validity().not_after.timestamp())
}

/// The DNS names a certificate is for: its subjectAltName DNS entries, or, without any, its
/// common name (as clients used to accept).
fn names(c: &X509Certificate<'_>) -> Vec<String> {
    let san: Vec<String> = match c.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !san.is_empty() {
        return san;
    }
    c.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Whether certificate name `pattern` (possibly `*.example.com`) covers the host `name`.
fn covers(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    match (pattern.strip_prefix("*."), name.split_once('.')) {
        // A wildcard stands for exactly one label.
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && !label.starts_with('*') && rest == suffix
        }
        _ => false,
    }
}

/// Checks `chain` (leaf first, as read from `file`) at time `now` against the server's
/// `server_name` entries (as written; regexes and trailing wildcards are not checked).
pub fn check(
    chain: &[CertificateDer<'_>],
    file: &str,
    server_names: &[String],
    now: SystemTime,
) -> Findings {
    let mut f = Findings::default();
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut parsed = Vec::new();
    for (i, der) in chain.iter().enumerate() {
        match parse_x509_certificate(der) {
            Ok((_, c)) => parsed.push(c),
            Err(e) => {
                f.errors.push(format!(
                    "certificate {} in {file} does not parse: {e}",
                    i + 1
                ));
                return f;
            }
        }
    }
    // Each certificate is issued by the next one: clients are entitled to refuse another order.
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer() != pair[1].subject() {
            f.errors.push(format!(
                "the chain in {file} is out of order: certificate {} ({}) was not issued by certificate {} ({}); put the server's certificate first, then each issuer",
                i + 1,
                pair[0].subject(),
                i + 2,
                pair[1].subject()
            ));
        }
    }
    // A leaf alone whose issuer is not itself: unless the issuer is a root every client
    // has, clients cannot build the chain (browsers may, from a cache; curl and most
    // libraries cannot).
    if let [leaf] = parsed.as_slice() {
        if leaf.issuer() != leaf.subject() {
            f.warnings.push(format!(
                "certificate {file} ({}) is issued by \"{}\", which is not in the file: clients without that certificate cannot verify the chain; append the intermediate certificate(s) after the server's, unless \"{}\" is a root the clients trust",
                leaf.subject(),
                leaf.issuer(),
                leaf.issuer()
            ));
        }
    }
    for (i, c) in parsed.iter().enumerate() {
        let which = if i == 0 {
            format!("certificate {file}")
        } else {
            format!("certificate {} in {file} ({})", i + 1, c.subject())
        };
        let (from, until) = (
            c.validity().not_before.timestamp(),
            c.validity().not_after.timestamp(),
        );
        if until < now {
            f.errors.push(format!("{which} expired on {}", date(until)));
        } else if from > now {
            f.errors
                .push(format!("{which} is not valid before {}", date(from)));
        } else if until - now < EXPIRY_WARNING.as_secs() as i64 {
            f.warnings.push(format!(
                "{which} expires on {}, in {} days",
                date(until),
                (until - now) / 86400
            ));
        }
    }
    let Some(leaf) = parsed.first() else {
        return f;
    };
    let have = names(leaf);
    for n in server_names {
        let n = n.to_ascii_lowercase();
        // ".example.com" is example.com and its subdomains: the name itself must be covered.
        let n = n.strip_prefix('.').unwrap_or(&n).to_string();
        if n.is_empty() || n.starts_with('~') || n.ends_with(".*") {
            continue;
        }
        let covered = if n.starts_with("*.") {
            have.contains(&n)
        } else {
            have.iter().any(|p| covers(p, &n))
        };
        if !covered {
            f.warnings.push(format!(
                "server name \"{n}\" is not covered by certificate {file} (it is for: {})",
                have.join(", ")
            ));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("a.example.com", "a.example.com"));
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("a.example.com", "b.example.com"));
    }
}
