//! Validation of servers' `tls` tables: certificates and keys read and checked here (by the
//! master, or `proxyctl -t`), and one rustls config per TLS listen address.

use super::raw::*;
use super::validate::Validator;
use super::*;
use std::sync::Arc;

impl Validator {
    /// `tls = { cert, key }`: both read now; errors point at the key that names the file.
    /// The chain is checked too (order, dates, the server's names: `tls::check`).
    pub(super) fn tls(
        &mut self,
        src: &Source,
        base: &Path,
        t: &S<RawTls>,
        server_names: &[String],
    ) -> Option<ServerTls> {
        let t = t.get_ref();
        let cert = resolve(base, t.cert.get_ref());
        let key = resolve(base, t.key.get_ref());
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
        match crate::tls::load(&cert, &key) {
            Ok(certified) => {
                let found = crate::tls::check::check(
                    &certified.cert,
                    &cert.display().to_string(),
                    server_names,
                    std::time::SystemTime::now(),
                );
                for e in found.errors {
                    self.errors.push(src.err(t.cert.span(), e));
                }
                for w in found.warnings {
                    self.warnings.push(src.err(t.cert.span(), w));
                }
                Some(ServerTls {
                    cert,
                    key,
                    protocols,
                    ciphers,
                    certified,
                })
            }
            Err(crate::tls::Unusable::Cert(e)) => {
                self.errors.push(src.err(t.cert.span(), e));
                None
            }
            Err(crate::tls::Unusable::Key(e)) => {
                self.errors.push(src.err(t.key.span(), e));
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

    /// The rustls config of every address a TLS server listens on. Every server on such an
    /// address must have `tls` too: one port speaks one protocol.
    pub(super) fn tls_listeners(
        &mut self,
        servers: &[Server],
        at: &[(usize, std::ops::Range<usize>)],
        sources: &[Source],
        hosts: &crate::router::Hosts,
    ) -> HashMap<SocketAddr, Arc<rustls::ServerConfig>> {
        let mut out = HashMap::new();
        let mut tls_addrs: Vec<SocketAddr> = servers
            .iter()
            .filter(|s| s.tls.is_some())
            .flat_map(|s| s.listen.iter().copied())
            .collect();
        tls_addrs.sort_unstable();
        tls_addrs.dedup();
        for addr in tls_addrs {
            let mut ok = true;
            // One rustls config per address: its servers agree on protocols and ciphers.
            let mut settings: Option<(&Vec<String>, &Vec<String>)> = None;
            for (s, (si, span)) in servers.iter().zip(at) {
                if !s.listen.contains(&addr) {
                    continue;
                }
                let Some(t) = &s.tls else {
                    self.errors.push(sources[*si].err(
                        span.clone(),
                        format!("{addr} speaks TLS (another server has tls there): this server needs tls too"),
                    ));
                    ok = false;
                    continue;
                };
                match settings {
                    None => settings = Some((&t.protocols, &t.ciphers)),
                    Some((p, c)) if *p != t.protocols || *c != t.ciphers => {
                        self.errors.push(sources[*si].err(
                            span.clone(),
                            format!("the servers on {addr} must agree on tls.protocols and tls.ciphers (one TLS setup per address)"),
                        ));
                        ok = false;
                    }
                    Some(_) => {}
                }
            }
            let Some(table) = hosts.table(addr) else {
                continue;
            };
            if !ok {
                continue;
            }
            let certs = servers
                .iter()
                .map(|s| s.tls.as_ref().map(|t| t.certified.clone()))
                .collect();
            let (protocols, ciphers) =
                settings.map_or((Vec::new(), Vec::new()), |(p, c)| (p.clone(), c.clone()));
            match crate::tls::server_config(table.clone(), certs, &protocols, &ciphers) {
                Ok(c) => {
                    out.insert(addr, c);
                }
                Err(e) => self
                    .errors
                    .push(file_error(&sources[0].path, format!("TLS on {addr}: {e}"))),
            }
        }
        out
    }
}
