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

/// A certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8, PKCS#1 or SEC1;
/// RSA, ECDSA or Ed25519), checked to belong together.
/// Both files must be regular files of bounded size (a FIFO or a device is an error, never a
/// hang), as config files are.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let text = crate::config::read_bounded(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let text = crate::config::read_bounded(key)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let der = PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "private key {} does not match certificate {}",
            key.display(),
            cert.display()
        ),
        e => format!("cannot use {} with {}: {e}", key.display(), cert.display()),
    })?;
    Ok(Arc::new(certified))
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

/// The rustls config of one listen address: TLS 1.3 and 1.2, the provider's cipher suites,
/// ALPN, certificates by SNI.
pub fn server_config(
    table: HostTable,
    certs: Vec<Option<Arc<CertifiedKey>>>,
) -> Result<Arc<ServerConfig>, String> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Sni { table, certs }));
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    // Tickets any worker can open, and after a reload (see `tickets`); without the keys
    // (`proxyctl -t`), rustls's defaults.
    if let Some(t) = tickets::ticketer() {
        cfg.ticketer = t;
    }
    Ok(Arc::new(cfg))
}
