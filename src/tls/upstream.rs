//! TLS to upstreams: one rustls client config per upstream, made by the master when it loads
//! the config (CA bundles and client keys may be root-only files). Certificates are verified
//! by default, against the system's roots or the upstream's `ca`; the name sent as SNI and
//! the name the certificate must carry can differ (`server_name`, `verify_name`).

use super::provider;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Where Debian, Ubuntu, Alpine (first), Fedora, RHEL and SUSE keep the system's roots.
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system's roots: the first bundle found; certificates in it that do not parse are
/// skipped (system bundles carry a few webpki refuses).
pub fn system_roots() -> Result<Arc<RootCertStore>, String> {
    for path in SYSTEM_ROOTS {
        let Ok(text) = crate::files::read_bounded(Path::new(path)) else {
            continue;
        };
        use rustls_pki_types::pem::PemObject;
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(
            CertificateDer::pem_slice_iter(text.as_bytes()).filter_map(Result::ok),
        );
        if !roots.is_empty() {
            return Ok(Arc::new(roots));
        }
    }
    Err(format!(
        "no system CA bundle (looked for {}): install ca-certificates or set tls.ca",
        SYSTEM_ROOTS.join(", ")
    ))
}

/// How an upstream's certificate is checked.
pub enum Verify {
    /// Against these roots, for `name` when given (otherwise the name the connection uses).
    Roots(Arc<RootCertStore>, Option<ServerName<'static>>),
    /// `verify = false`: any certificate (the handshake's signatures are still checked).
    Off,
}

/// The rustls config of an upstream: its verification, and a client certificate when the
/// upstream asks for one.
pub fn client_config(
    verify: Verify,
    client_cert: Option<Arc<rustls::sign::CertifiedKey>>,
) -> Result<Arc<ClientConfig>, String> {
    let p = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Roots(roots, name) => {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, p.clone())
                .build()
                .map_err(|e| e.to_string())?;
            match name {
                Some(name) => Arc::new(Named { inner, name }),
                None => inner,
            }
        }
        Verify::Off => Arc::new(Unverified(p.clone())),
    };
    let builder = ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match client_cert {
        Some(ck) => builder.with_client_cert_resolver(Arc::new(
            rustls::sign::SingleCertAndKey::from(ck.as_ref().clone()),
        )),
        None => builder.with_no_client_auth(),
    };
    // proxyd speaks HTTP/1.1 to upstreams.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Verifies against `name` whatever name the connection sent as SNI (`verify_name`).
#[derive(Debug)]
struct Named {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for Named {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sent: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `verify = false`: the certificate is taken as it is; the handshake signatures must
/// still be made by its key.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _sent: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
