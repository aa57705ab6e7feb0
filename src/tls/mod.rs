//! TLS termination with rustls (ring provider): certificates and keys read by the master when
//! it loads a config (before the workers drop privileges), one rustls server config per TLS
//! listen address, and SNI choosing the server, and so its certificate, with the same rules
//! as `server_name` (see `router::HostTable`). rustls does no I/O: the worker's transport
//! moves the bytes (`worker/transport.rs`).

pub mod check;
pub mod tickets;

use crate::router::HostTable;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Protocols offered by ALPN.
const ALPN: &[&[u8]] = &[b"http/1.1"];

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
    let text = crate::config::read_bounded(cert).map_err(bad_cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(Unusable::Cert(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let text = crate::config::read_bounded(key).map_err(bad_key)?;
    let der = PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| bad_key(e.to_string()))?;
    let certified = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => Unusable::Cert(format!(
            "private key {} does not match certificate {}",
            key.display(),
            cert.display()
        )),
        e => Unusable::Key(format!(
            "cannot use {} with {}: {e}",
            key.display(),
            cert.display()
        )),
    })?;
    Ok(Arc::new(certified))
}

/// Why a certificate and key cannot be used, and which of the two files is at fault.
#[derive(Debug)]
pub enum Unusable {
    Cert(String),
    Key(String),
}

/// Picks the certificate of the server the client names (SNI); a missing or unknown name
/// gets the listen address's default server.
#[derive(Debug)]
struct Sni {
    table: HostTable,
    /// By server index; every server on a TLS address has one.
    certs: Vec<Option<Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for Sni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(|n| n.to_ascii_lowercase());
        let server = self.table.lookup(name.as_deref());
        self.certs.get(server).cloned().flatten()
    }
}

/// The rustls config of one listen address: the `protocols` (checked names), the `ciphers`
/// in that order of preference (empty: all the provider's, in the client's order), ALPN,
/// certificates by SNI.
pub fn server_config(
    table: HostTable,
    certs: Vec<Option<Arc<CertifiedKey>>>,
    protocols: &[String],
    ciphers: &[String],
) -> Result<Arc<ServerConfig>, String> {
    let mut p = rustls::crypto::ring::default_provider();
    if !ciphers.is_empty() {
        let name = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite());
        p.cipher_suites = ciphers
            .iter()
            .filter_map(|c| p.cipher_suites.iter().find(|s| name(s) == *c).copied())
            .collect();
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if protocols.iter().any(|v| v == "TLSv1.3") {
        versions.push(&rustls::version::TLS13);
    }
    if protocols.iter().any(|v| v == "TLSv1.2") {
        versions.push(&rustls::version::TLS12);
    }
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{e} (do the ciphers suit the protocols?)"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Sni { table, certs }));
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    // Ciphers listed by the operator are in their order of preference (nginx's
    // `ssl_prefer_server_ciphers on`); otherwise every suite is fine and the client chooses
    // (one without AES hardware picks ChaCha20).
    cfg.ignore_client_order = !ciphers.is_empty();
    // Tickets any worker can open, and after a reload (see `tickets`); without the keys
    // (`proxyctl -t`), rustls's defaults.
    if let Some(t) = tickets::ticketer() {
        cfg.ticketer = t;
    }
    Ok(Arc::new(cfg))
}
