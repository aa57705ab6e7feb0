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
                    certified,
                })
            }
            Err(e) => {
                let span = if e.contains("private key") && !e.contains("does not match") {
                    t.key.span()
                } else {
                    t.cert.span()
                };
                self.errors.push(src.err(span, e));
                None
            }
        }
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
            for (s, (si, span)) in servers.iter().zip(at) {
                if s.listen.contains(&addr) && s.tls.is_none() {
                    self.errors.push(sources[*si].err(
                        span.clone(),
                        format!("{addr} speaks TLS (another server has tls there): this server needs tls too"),
                    ));
                    ok = false;
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
            match crate::tls::server_config(table.clone(), certs) {
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
