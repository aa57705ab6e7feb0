//! Validation of servers' `tls` tables: certificates and keys read and checked here (by the
//! master, or `proxyctl -t`), one rustls config per server, and the servers of each TLS listen address (`tls::Site`).

use super::raw::*;
use super::validate::Validator;
use super::*;
use std::sync::Arc;

impl Validator {
    /// `tls = { cert, key, ... }`: certificates and keys read now, errors pointing at the key
    /// that names the file; each chain checked too (order, dates, the server's names:
    /// `tls::check`); the server's rustls config made.
    pub(super) fn tls(
        &mut self,
        src: &Source,
        base: &Path,
        t: &S<RawTls>,
        server_names: &[String],
    ) -> Option<ServerTls> {
        let span = t.span();
        let t = t.get_ref();
        let protocols = self.tls_names(
            src,
            t.protocols.as_ref(),
            &crate::tls::PROTOCOLS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            "protocol",
        );
        let protocols = match protocols {
            Some(p) => p,
            None => crate::tls::PROTOCOLS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let ciphers = self
            .tls_names(
                src,
                t.ciphers.as_ref(),
                &crate::tls::cipher_names(),
                "cipher suite",
            )
            .unwrap_or_default();
        let mut triples = vec![(&t.cert, &t.key, &t.ocsp)];
        if let Some(extra) = &t.extra_certs {
            triples.extend(extra.get_ref().iter().map(|c| {
                let c = c.get_ref();
                (&c.cert, &c.key, &c.ocsp)
            }));
        }
        let mut paths = Vec::new();
        let mut certified = Vec::new();
        for (c, k, o) in triples {
            let mut files = CertFiles {
                cert: resolve(base, c.get_ref()),
                key: resolve(base, k.get_ref()),
                ocsp: o.as_ref().map(|o| resolve(base, o.get_ref())),
                not_after: None,
            };
            if let Some(ck) = self.certificate(src, c, k, &files.cert, &files.key, server_names) {
                files.not_after = ck.cert.first().and_then(crate::tls::check::not_after);
                // A staple that fails leaves this certificate out: the server is refused
                // below (fewer certificates than files).
                match (o, &files.ocsp) {
                    (Some(o), Some(path)) => {
                        if let Some(s) = self.staple(src, o, path, &ck.cert[0]) {
                            certified.push((ck, Some(s)));
                        }
                    }
                    _ => certified.push((ck, None)),
                }
            }
            paths.push(files);
        }
        let verify_client = match t.verify_client.as_ref().map(|v| (v.get_ref().as_str(), v)) {
            None | Some(("off", _)) => crate::tls::VerifyClient::Off,
            Some(("optional", _)) => crate::tls::VerifyClient::Optional,
            Some(("required", _)) => crate::tls::VerifyClient::Required,
            Some((other, v)) => {
                self.errors.push(src.err(
                    v.span(),
                    format!("unknown verify_client \"{other}\" (use off, optional or required)"),
                ));
                return None;
            }
        };
        let client_ca = t
            .client_ca
            .as_ref()
            .map(|c| (c, resolve(base, c.get_ref())));
        let roots = match (&client_ca, verify_client) {
            (None, crate::tls::VerifyClient::Off) => None,
            (None, _) => {
                let v = t.verify_client.as_ref().expect("verify_client is on");
                self.errors.push(src.err(
                    v.span(),
                    "verify_client needs client_ca (the CA bundle client certificates are checked against)",
                ));
                return None;
            }
            (Some((c, path)), v) => match crate::tls::load_ca(path) {
                Ok(r) if v != crate::tls::VerifyClient::Off => Some(r),
                Ok(_) => None,
                Err(e) => {
                    self.errors.push(src.err(c.span(), e));
                    return None;
                }
            },
        };
        if certified.len() < paths.len() {
            return None;
        }
        let session_resumption = t.session_resumption.unwrap_or(true);
        let config = match crate::tls::server_config(
            certified,
            &protocols,
            &ciphers,
            (verify_client, roots),
            session_resumption,
        ) {
            Ok(c) => c,
            Err(e) => {
                self.errors.push(src.err(span, e));
                return None;
            }
        };
        let handshake_timeout = self.duration(
            src,
            &t.handshake_timeout,
            std::time::Duration::from_secs(10),
        );
        let mut paths = paths.into_iter();
        Some(ServerTls {
            files: paths.next().expect("cert and key"),
            extra_certs: paths.collect(),
            protocols,
            ciphers,
            verify_client,
            client_ca: client_ca.map(|(_, p)| p),
            handshake_timeout,
            session_resumption,
            config,
        })
    }

    /// The OCSP response for `leaf` at `path`, read and checked, and kept for the master
    /// to refresh.
    fn staple(
        &mut self,
        src: &Source,
        o: &S<String>,
        path: &Path,
        leaf: &rustls_pki_types::CertificateDer<'_>,
    ) -> Option<Arc<crate::tls::ocsp::Staple>> {
        match crate::tls::ocsp::Staple::load(path, leaf) {
            Ok((s, warning)) => {
                if let Some(w) = warning {
                    self.warnings.push(src.err(o.span(), w));
                }
                let s = Arc::new(s);
                self.staples.push(s.clone());
                Some(s)
            }
            Err(e) => {
                self.errors.push(src.err(o.span(), e));
                None
            }
        }
    }

    /// One certificate and its key, read and checked.
    fn certificate(
        &mut self,
        src: &Source,
        c: &S<String>,
        k: &S<String>,
        cert: &Path,
        key: &Path,
        server_names: &[String],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        match crate::tls::load(cert, key) {
            Ok(certified) => {
                let found = crate::tls::check::check(
                    &certified.cert,
                    &cert.display().to_string(),
                    server_names,
                    std::time::SystemTime::now(),
                );
                for e in found.errors {
                    self.errors.push(src.err(c.span(), e));
                }
                for w in found.warnings {
                    self.warnings.push(src.err(c.span(), w));
                }
                Some(certified)
            }
            Err(crate::tls::Unusable::Cert(e)) => {
                self.errors.push(src.err(c.span(), e));
                None
            }
            Err(crate::tls::Unusable::Key(e)) => {
                self.errors.push(src.err(k.span(), e));
                None
            }
        }
    }

    /// A list of `what` names from `known` (`protocols`, `ciphers`), kept in the order written;
    /// None when not given.
    fn tls_names(
        &mut self,
        src: &Source,
        list: Option<&S<Vec<S<String>>>>,
        known: &[String],
        what: &str,
    ) -> Option<Vec<String>> {
        let list = list?;
        if list.get_ref().is_empty() {
            self.errors
                .push(src.err(list.span(), format!("an empty list of {what}s")));
            return None;
        }
        let mut out = Vec::new();
        for n in list.get_ref() {
            if known.contains(n.get_ref()) {
                out.push(n.get_ref().clone());
            } else {
                self.errors.push(src.err(
                    n.span(),
                    format!(
                        "unknown {what} \"{}\" (use {})",
                        n.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
        }
        Some(out)
    }

    /// The servers of every address a TLS server listens on, each with its rustls config.
    /// Every server on such an address must have `tls` too: one port speaks one protocol.
    pub(super) fn tls_listeners(
        &mut self,
        servers: &[Server],
        at: &[(usize, std::ops::Range<usize>)],
        sources: &[Source],
        hosts: &crate::router::Hosts,
    ) -> HashMap<SocketAddr, Arc<crate::tls::Site>> {
        let mut out = HashMap::new();
        let mut tls_addrs: Vec<SocketAddr> = servers
            .iter()
            .filter(|s| s.tls.is_some())
            .flat_map(|s| s.listen.iter().copied())
            .collect();
        tls_addrs.sort_unstable();
        tls_addrs.dedup();
        for addr in tls_addrs {
            let mut configs = Vec::with_capacity(servers.len());
            let mut ok = true;
            for (s, (si, span)) in servers.iter().zip(at) {
                if !s.listen.contains(&addr) {
                    configs.push(None);
                    continue;
                }
                match &s.tls {
                    Some(t) => configs.push(Some(t.config.clone())),
                    None => {
                        self.errors.push(sources[*si].err(
                            span.clone(),
                            format!("{addr} speaks TLS (another server has tls there): this server needs tls too"),
                        ));
                        ok = false;
                    }
                }
            }
            if let (true, Some(table)) = (ok, hosts.table(addr)) {
                out.insert(
                    addr,
                    Arc::new(crate::tls::Site::new(table.clone(), configs)),
                );
            }
        }
        out
    }

    /// An upstream's `tls`: `true` (verify against the system's roots) or a table.
    pub(super) fn upstream_tls(
        &mut self,
        src: &Source,
        base: &Path,
        t: &S<toml::Value>,
    ) -> Option<UpstreamTls> {
        use serde::Deserialize;
        let raw = match t.get_ref() {
            toml::Value::Boolean(false) => return None,
            toml::Value::Boolean(true) => RawUpstreamTls {
                ca: None,
                verify: None,
                server_name: None,
                verify_name: None,
                cert: None,
                key: None,
            },
            v => match RawUpstreamTls::deserialize(v.clone()) {
                Ok(r) => r,
                Err(e) => {
                    self.errors
                        .push(src.err(t.span(), format!("upstream tls: {e}")));
                    return None;
                }
            },
        };
        let fail = |v: &mut Self, e: String| {
            v.errors
                .push(src.err(t.span(), format!("upstream tls: {e}")));
            None
        };
        for name in [&raw.server_name, &raw.verify_name].into_iter().flatten() {
            if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                return fail(self, format!("\"{name}\" is not a host name or an address"));
            }
        }
        let verify = raw.verify.unwrap_or(true);
        let ca = raw.ca.as_ref().map(|c| resolve(base, c));
        let how = if verify {
            let roots = match &ca {
                Some(path) => crate::tls::load_ca(path),
                None => crate::tls::upstream::system_roots(),
            };
            let roots = match roots {
                Ok(r) => r,
                Err(e) => return fail(self, e),
            };
            let name = raw
                .verify_name
                .as_ref()
                .map(|n| rustls_pki_types::ServerName::try_from(n.clone()).expect("checked above"));
            crate::tls::upstream::Verify::Roots(roots, name)
        } else {
            if ca.is_some() || raw.verify_name.is_some() {
                return fail(self, "ca and verify_name need verify = true".into());
            }
            self.warnings.push(src.err(
                t.span(),
                "upstream tls: verify = false accepts any certificate (anyone on the path can pose as the upstream)",
            ));
            crate::tls::upstream::Verify::Off
        };
        let (cert, key) = (
            raw.cert.as_ref().map(|c| resolve(base, c)),
            raw.key.as_ref().map(|k| resolve(base, k)),
        );
        let client = match (&cert, &key) {
            (None, None) => None,
            (Some(c), Some(k)) => match crate::tls::load(c, k) {
                Ok(ck) => Some(ck),
                Err(crate::tls::Unusable::Cert(e) | crate::tls::Unusable::Key(e)) => {
                    return fail(self, e)
                }
            },
            _ => return fail(self, "cert and key go together".into()),
        };
        match crate::tls::upstream::client_config(how, client) {
            Ok(config) => Some(UpstreamTls {
                ca,
                verify,
                server_name: raw.server_name,
                verify_name: raw.verify_name,
                cert,
                key,
                config,
            }),
            Err(e) => fail(self, e),
        }
    }
}
