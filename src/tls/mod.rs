//! TLS termination with rustls (ring provider): certificates and keys read by the master when
//! it loads a config (before the workers drop privileges), one rustls server config per TLS
//! server, and SNI choosing the server, and so its config, with the same rules as
//! `server_name` (see `router::HostTable` and `Site`). rustls does no I/O: the worker's
//! transport moves the bytes (`worker/transport/`).

pub mod check;
pub mod ocsp;
pub mod records;
pub mod tickets;
pub mod upstream;

use crate::router::HostTable;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Protocols offered by ALPN, in the server's order of preference. HTTP/1.0 too: a client
/// offering only it would otherwise be refused (no_application_protocol), and the HTTP/1
/// session serves its requests as HTTP/1.0 (as nginx does).
const ALPN: &[&[u8]] = &[b"http/1.1", b"http/1.0"];

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions `protocols` may name.
pub const PROTOCOLS: &[&str] = &["TLSv1.2", "TLSv1.3"];

/// The cipher suites `ciphers` may name (IANA names, as rustls spells them).
pub fn cipher_names() -> Vec<String> {
    rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect()
}

/// A certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1 or SEC1;
/// RSA, ECDSA or Ed25519), checked to belong together.
/// Both files must be regular files of bounded size (a FIFO or a device is an error, never a
/// hang), as config files are.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, Unusable> {
    let bad_cert =
        |e: String| Unusable::Cert(format!("cannot read certificate {}: {e}", cert.display()));
    let bad_key =
        |e: String| Unusable::Key(format!("cannot read private key {}: {e}", key.display()));
    let text = crate::files::read_bounded(cert).map_err(bad_cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(Unusable::Cert(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let text = crate::files::read_bounded(key).map_err(bad_key)?;
    let der = PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| bad_key(e.to_string()))?;
    let unusable = |e| {
        Unusable::Key(format!(
            "cannot use {} with {}: {e}",
            key.display(),
            cert.display()
        ))
    };
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(unusable)?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // A key rustls cannot tell the public half of is taken as rustls takes it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            // The key of a later certificate: the chain is out of order (an issuer first),
            // which is what to fix, not the key.
            let at = certified.key.public_key().and_then(|spki| {
                certified
                    .cert
                    .iter()
                    .enumerate()
                    .skip(1)
                    .find_map(|(i, c)| {
                        let (_, parsed) = x509_parser::parse_x509_certificate(c).ok()?;
                        (parsed.tbs_certificate.subject_pki.raw == spki.as_ref())
                            .then(|| (i + 1, parsed.subject().to_string()))
                    })
            });
            return Err(Unusable::Cert(match at {
                Some((n, subject)) => format!(
                    "the chain in {} is out of order: the private key {} is for certificate {n} ({subject}); the server's certificate (the leaf) must come first, then each issuer",
                    cert.display(),
                    key.display()
                ),
                None => format!(
                    "private key {} does not match certificate {}",
                    key.display(),
                    cert.display()
                ),
            }));
        }
        Err(e) => return Err(unusable(e)),
    }
    Ok(Arc::new(certified))
}

/// Why a certificate and key cannot be used, and which of the two files is at fault.
#[derive(Debug)]
pub enum Unusable {
    Cert(String),
    Key(String),
}

/// A TLS listen address: the rustls config of each of its servers. The server the client
/// names (SNI, with the same rules as `server_name`; a missing or unknown name gets the
/// address's default server) is chosen once the ClientHello is in, so protocols, ciphers,
/// certificates and client verification are all per server.
#[derive(Debug)]
pub struct Site {
    table: HostTable,
    /// By server index; every server listening on the address has one.
    servers: Vec<Option<Arc<ServerConfig>>>,
}

impl Site {
    pub fn new(table: HostTable, servers: Vec<Option<Arc<ServerConfig>>>) -> Site {
        Site { table, servers }
    }

    /// The server for an SNI name, and its config.
    pub fn pick(&self, sni: Option<&str>) -> Option<(usize, Arc<ServerConfig>)> {
        let name = sni.map(|n| n.to_ascii_lowercase());
        let server = self.table.lookup(name.as_deref());
        let cfg = self.servers.get(server).cloned().flatten()?;
        Some((server, cfg))
    }
}

/// A server's certificates (`cert` and any `extra_certs`): the first one whose key can sign
/// with a scheme the client offers, so an ECDSA and an RSA certificate serve every client
/// with the best it supports; a client that offers none of them gets the first (and the
/// handshake fails as it must).
#[derive(Debug)]
struct Certs(Vec<Served>);

/// A certificate, and the OCSP response stapled to it (from shared memory the master
/// refreshes, see `ocsp`).
#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    staple: Option<(Arc<ocsp::Staple>, Mutex<Stapled>)>,
}

/// The certificate with the staple of a version of the shared memory.
type Stapled = (u64, Arc<CertifiedKey>);

impl Served {
    fn certified(&self) -> Arc<CertifiedKey> {
        let Some((staple, cached)) = &self.staple else {
            return self.key.clone();
        };
        let mut cached = cached.lock().unwrap_or_else(|e| e.into_inner());
        if staple.version() != cached.0 {
            let (version, der) = staple.read();
            let mut ck = CertifiedKey::new(self.key.cert.clone(), self.key.key.clone());
            ck.ocsp = (!der.is_empty()).then_some(der);
            *cached = (version, Arc::new(ck));
        }
        cached.1.clone()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|c| c.key.key.choose_scheme(schemes).is_some())
            .or(self.0.first())
            .map(Served::certified)
    }
}

/// Client certificates a server asks for (`verify_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyClient {
    Off,
    /// Asked for; a client without one is let in (`X-Client-Verify: NONE`), one with a
    /// certificate the CA did not sign is refused.
    Optional,
    /// A handshake without a certificate the CA signed fails.
    Required,
}

/// The CA bundle client certificates are verified against (PEM, one or more certificates).
pub fn load_ca(path: &Path) -> Result<Arc<rustls::RootCertStore>, String> {
    let text = crate::files::read_bounded(path)
        .map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let c = c.map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("unusable CA certificate in {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate in CA bundle {}", path.display()));
    }
    Ok(Arc::new(roots))
}

/// The rustls config of one TLS server: the `protocols` (checked names), the `ciphers`
/// in that order of preference (empty: all the provider's, in the client's order), ALPN,
/// its certificates, client verification.
pub fn server_config(
    certs: Vec<(Arc<CertifiedKey>, Option<Arc<ocsp::Staple>>)>,
    protocols: &[String],
    ciphers: &[String],
    (verify, client_ca): (VerifyClient, Option<Arc<rustls::RootCertStore>>),
    resumption: bool,
) -> Result<Arc<ServerConfig>, String> {
    let mut p = rustls::crypto::ring::default_provider();
    if !ciphers.is_empty() {
        let name = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite());
        p.cipher_suites = ciphers
            .iter()
            .filter_map(|c| p.cipher_suites.iter().find(|s| name(s) == *c).copied())
            .collect();
    }
    let p = Arc::new(p);
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if protocols.iter().any(|v| v == "TLSv1.3") {
        versions.push(&rustls::version::TLS13);
    }
    if protocols.iter().any(|v| v == "TLSv1.2") {
        versions.push(&rustls::version::TLS12);
    }
    let builder = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{e} (do the ciphers suit the protocols?)"))?;
    let builder = match (verify, client_ca) {
        (VerifyClient::Off, _) => builder.with_no_client_auth(),
        (_, None) => return Err("verify_client needs client_ca".into()),
        (v, Some(roots)) => {
            let b = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, p);
            let b = if v == VerifyClient::Optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            builder.with_client_cert_verifier(b.build().map_err(|e| e.to_string())?)
        }
    };
    let served = certs
        .into_iter()
        .map(|(key, staple)| Served {
            staple: staple.map(|s| {
                // Version u64::MAX: never a real one, so the first use reads the memory.
                (s, Mutex::new((u64::MAX, key.clone())))
            }),
            key,
        })
        .collect();
    let mut cfg = builder.with_cert_resolver(Arc::new(Certs(served)));
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    // Ciphers listed by the operator are in their order of preference (nginx's
    // `ssl_prefer_server_ciphers on`); otherwise every suite is fine and the client chooses
    // (one without AES hardware picks ChaCha20).
    cfg.ignore_client_order = !ciphers.is_empty();
    // No TLS 1.2 session IDs: a session cache would be per worker (rustls's is in process
    // memory), so a client resuming by ID would succeed only on the worker that made the
    // session. Without a cache rustls offers no ID and clients resume with tickets, which
    // every worker opens, also after a reload (see `tickets`).
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    // Without the keys (`proxyctl -t`), rustls's default: no tickets.
    // `session_resumption = false`: no tickets either, so every handshake is a full one.
    if !resumption {
        cfg.send_tls13_tickets = 0;
    } else if let Some(t) = tickets::ticketer() {
        cfg.ticketer = t;
    }
    Ok(Arc::new(cfg))
}

/// What the upstream is told about a verified client certificate.
#[derive(Debug)]
pub struct ClientIdentity {
    /// RFC 4514 order as x509-parser prints it, any byte outside printable ASCII escaped as
    /// `\xHH` so a header can carry it.
    pub subject: String,
    /// SHA-256 of the certificate, lowercase hex.
    pub fingerprint: String,
}

/// The `ClientIdentity` of a verified client certificate.
pub fn client_identity(cert: &CertificateDer<'_>) -> ClientIdentity {
    use x509_parser::prelude::FromDer;
    let subject = match x509_parser::certificate::X509Certificate::from_der(cert.as_ref()) {
        Ok((_, c)) => c.subject().to_string(),
        Err(_) => String::new(),
    };
    let mut safe = String::with_capacity(subject.len());
    for b in subject.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            safe.push(b as char);
        } else {
            safe.push_str(&format!("\\x{b:02x}"));
        }
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let fingerprint = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    ClientIdentity {
        subject: safe,
        fingerprint,
    }
}
