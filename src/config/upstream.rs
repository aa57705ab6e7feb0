//! Validation of `[[upstream]]` tables: peers (and the resolution of their host names),
//! balancing, health checks, passive health.

use super::raw::*;
use super::validate::Validator;
use super::*;

impl Validator {
    /// The upstreams, and their indexes by name.
    pub(super) fn upstreams(
        &mut self,
        sources: &[Source],
        upstreams_raw: &[(usize, S<RawUpstream>)],
        resolver: &crate::dns::Resolver,
        base: &Path,
    ) -> (Vec<Upstream>, HashMap<String, usize>) {
        // One lookup per host name however many peers and upstreams name it, all at once.
        let mut hosts: Vec<String> = upstreams_raw
            .iter()
            .flat_map(|(_, u)| u.get_ref().peers.get_ref())
            .filter_map(|p| match parse_peer(p.get_ref().addr()) {
                Ok(PeerSpec::Host(host, _)) => Some(host),
                _ => None,
            })
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        let lookups: HashMap<String, Result<Vec<std::net::IpAddr>, String>> = hosts
            .iter()
            .cloned()
            .zip(resolver.lookup_all(&hosts))
            .collect();
        let mut upstream = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        // Where each name was first given (source, span), for the error about a second one.
        let mut given: HashMap<String, (usize, std::ops::Range<usize>)> = HashMap::new();
        for (si, u) in upstreams_raw {
            let usrc = &sources[*si];
            let u = u.get_ref();
            let name = u.name.get_ref().clone();
            if let Some((fi, fspan)) = given.get(&name) {
                let first = sources[*fi].at(fspan.clone());
                self.errors.push(usrc.err(
                    u.name.span(),
                    format!("duplicate upstream \"{name}\" (first given at {first})"),
                ));
                continue;
            }
            given.insert(name.clone(), (*si, u.name.span()));
            if name.is_empty() {
                self.errors
                    .push(usrc.err(u.name.span(), "upstream name must not be empty"));
            }
            let resolve_interval =
                self.duration(usrc, &u.resolve_interval, Duration::from_secs(30));
            let max_addresses = self.count(usrc, &u.max_addresses, 1, 256, 8) as u32;
            let mut peers = Vec::new();
            let mut named = Vec::new();
            for p in u.peers.get_ref() {
                let (addr_s, weight, backup, down) = match p.get_ref() {
                    RawPeer::Addr(a) => (a.clone(), 1, false, false),
                    RawPeer::Table(t) => (
                        t.addr.clone(),
                        t.weight.unwrap_or(1),
                        t.backup.unwrap_or(false),
                        t.down.unwrap_or(false),
                    ),
                };
                if !(1..=1000).contains(&weight) {
                    self.errors.push(usrc.err(
                        p.span(),
                        format!("peer weight {weight} out of range 1..=1000"),
                    ));
                    continue;
                }
                let peer = |addr| Peer {
                    slot: 0,
                    name: addr_s.clone(),
                    addr,
                    weight: weight as u32,
                    backup,
                    down,
                };
                let (host, port) = match parse_peer(&addr_s) {
                    Ok(PeerSpec::Ip(addr)) => {
                        peers.push(peer(PeerAddr::Fixed(addr)));
                        continue;
                    }
                    Ok(PeerSpec::Host(host, port)) => (host, port),
                    Err(e) => {
                        self.errors.push(usrc.err(p.span(), e));
                        continue;
                    }
                };
                let ips = match lookups.get(&host) {
                    Some(Ok(ips)) => ips,
                    None => continue,
                    Some(Err(e)) => {
                        let e = format!("cannot resolve peer \"{addr_s}\": {e}");
                        self.errors.push(usrc.err(p.span(), e));
                        continue;
                    }
                };
                if ips.len() > max_addresses as usize {
                    self.warnings.push(usrc.err(
                        p.span(),
                        format!(
                            "peer \"{addr_s}\" resolves to {} addresses; only the first {max_addresses} are used (max_addresses)",
                            ips.len()
                        ),
                    ));
                }
                let start = peers.len();
                for index in 0..max_addresses {
                    peers.push(peer(PeerAddr::Named {
                        name: named.len(),
                        index,
                    }));
                }
                named.push(NamedPeer {
                    name: addr_s.clone(),
                    host,
                    port,
                    peers: start..peers.len(),
                    resolved: ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect(),
                });
            }
            if u.peers.get_ref().is_empty() {
                self.errors
                    .push(usrc.err(u.peers.span(), format!("upstream \"{name}\" has no peers")));
            }
            let (balance, hash_key) = self.balance(usrc, u);
            if !peers.is_empty() && peers.iter().all(|p| p.down || p.backup) {
                self.errors.push(usrc.err(
                    u.peers.span(),
                    format!(
                        "upstream \"{name}\" has no peer that is neither \"down\" nor \"backup\""
                    ),
                ));
            }
            let tls = u
                .tls
                .as_ref()
                .and_then(|t| self.upstream_tls(usrc, base, t));
            let health_check = u.health_check.as_ref().map(|h| self.health_check(usrc, h));
            names.insert(name.clone(), upstream.len());
            upstream.push(Upstream {
                slot: 0,
                name,
                // Only the hash balancers walk a ring (160 points per peer and weight).
                ring: std::sync::Arc::new(match balance {
                    super::Balance::IpHash | super::Balance::Hash(_) => {
                        super::ring::Ring::build(&peers)
                    }
                    _ => super::ring::Ring::default(),
                }),
                peers,
                balance,
                hash_key,
                fail_open: u.fail_open.unwrap_or(false),
                health_check,
                outlier: self.outlier(usrc, u.outlier.as_ref()),
                keepalive: self.count(usrc, &u.keepalive, 0, 65536, 32) as usize,
                keepalive_timeout: self.duration(
                    usrc,
                    &u.keepalive_timeout,
                    Duration::from_secs(60),
                ),
                keepalive_requests: self.count(usrc, &u.keepalive_requests, 1, i64::MAX, 1000),
                connect_timeout: self.duration(usrc, &u.connect_timeout, Duration::from_secs(5)),
                read_timeout: self.duration(usrc, &u.read_timeout, Duration::from_secs(60)),
                send_timeout: self.duration(usrc, &u.send_timeout, Duration::from_secs(60)),
                names: named,
                resolve_interval,
                max_addresses,
                tls,
            });
        }
        (upstream, names)
    }
}

/// A peer as written: an IP address, or a host name to resolve.
enum PeerSpec {
    Ip(SocketAddr),
    Host(String, u16),
}

fn parse_peer(s: &str) -> Result<PeerSpec, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(PeerSpec::Ip(a));
    }
    let invalid = || format!("invalid peer address \"{s}\" (expected HOST:PORT)");
    let (host, port) = s.rsplit_once(':').ok_or_else(invalid)?;
    let port = port.parse::<u16>().map_err(|_| invalid())?;
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label) {
        return Err(invalid());
    }
    Ok(PeerSpec::Host(name.to_ascii_lowercase(), port))
}

impl Validator {
    /// `resolver = { servers, timeout, ipv6, hosts }`; unset parts as the system's.
    pub(super) fn resolver(
        &mut self,
        src: &Source,
        base: &Path,
        r: Option<&S<RawResolver>>,
    ) -> crate::dns::Resolver {
        let mut out = crate::dns::Resolver::default();
        let Some(r) = r else { return out };
        let r = r.get_ref();
        if let Some(servers) = &r.servers {
            let mut v = Vec::new();
            for s in servers.get_ref() {
                let text = s.get_ref();
                let parsed = text.parse::<SocketAddr>().or_else(|_| {
                    text.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                });
                match parsed {
                    Ok(a) => v.push(a),
                    Err(_) => self.errors.push(src.err(
                        s.span(),
                        format!("invalid name server \"{text}\" (expected IP or IP:PORT)"),
                    )),
                }
            }
            if servers.get_ref().is_empty() {
                self.errors
                    .push(src.err(servers.span(), "resolver.servers must not be empty"));
            }
            if !v.is_empty() {
                out.servers = v;
            }
        }
        out.timeout = self.duration(src, &r.timeout, out.timeout);
        if out.timeout.is_zero() {
            if let Some(t) = &r.timeout {
                self.errors
                    .push(src.err(t.span(), "resolver.timeout must be more than 0"));
            }
            out.timeout = Duration::from_secs(5);
        }
        out.ipv6 = r.ipv6.unwrap_or(true);
        if let Some(h) = &r.hosts {
            out.hosts = resolve(base, h.get_ref());
            if let Err(e) = crate::files::read_bounded(&out.hosts) {
                let msg = format!("cannot read hosts file {}: {e}", out.hosts.display());
                self.errors.push(src.err(h.span(), msg));
            }
        }
        out
    }
}

impl Validator {
    /// `balance` and, for `hash`, its `hash_key`.
    fn balance(&mut self, src: &Source, u: &RawUpstream) -> (Balance, Option<HashKey>) {
        let key = u.hash_key.as_ref().and_then(|k| {
            let parsed = HashKey::parse(k.get_ref());
            if parsed.is_none() {
                self.errors.push(src.err(
                    k.span(),
                    format!("hash_key \"{}\": {}", k.get_ref(), HashKey::HELP),
                ));
            }
            parsed
        });
        let Some(b) = &u.balance else {
            if let Some(k) = &u.hash_key {
                self.errors
                    .push(src.err(k.span(), "\"hash_key\" needs balance = \"hash\""));
            }
            return (Balance::RoundRobin, None);
        };
        let balance = match b.get_ref().as_str() {
            "round_robin" => Balance::RoundRobin,
            "least_conn" => Balance::LeastConn,
            "random_two" => Balance::RandomTwo,
            "ip_hash" => Balance::IpHash,
            "first" => Balance::First,
            "hash" => match &key {
                Some(k) => Balance::Hash(k.clone()),
                None => {
                    if u.hash_key.is_none() {
                        self.errors.push(src.err(
                            b.span(),
                            format!("balance = \"hash\" needs hash_key ({})", HashKey::HELP),
                        ));
                    }
                    Balance::RoundRobin
                }
            },
            other => {
                self.errors.push(src.err(
                    b.span(),
                    format!("unknown balance \"{other}\" (use round_robin, least_conn, random_two, ip_hash, hash or first)"),
                ));
                Balance::RoundRobin
            }
        };
        if let (Some(k), false) = (&u.hash_key, b.get_ref() == "hash") {
            self.errors
                .push(src.err(k.span(), "\"hash_key\" needs balance = \"hash\""));
        }
        (balance, key)
    }
}

impl Validator {
    fn health_check(&mut self, src: &Source, h: &S<RawHealthCheck>) -> HealthCheck {
        let r = h.get_ref();
        let kind = match r.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("http") => CheckKind::Http,
            Some("tcp") => CheckKind::Tcp,
            Some(other) => {
                let k = r.kind.as_ref().expect("some");
                self.errors.push(src.err(
                    k.span(),
                    format!("unknown health check type \"{other}\" (use http or tcp)"),
                ));
                CheckKind::Http
            }
        };
        let path = r
            .path
            .as_ref()
            .map_or("/".to_string(), |p| p.get_ref().clone());
        if let Some(p) = &r.path {
            if !p.get_ref().starts_with('/') || p.get_ref().contains([' ', '\r', '\n']) {
                self.errors.push(src.err(
                    p.span(),
                    "health check path must start with '/' and have no spaces",
                ));
            }
        }
        if let Some(host) = &r.host {
            if host.get_ref().is_empty() || host.get_ref().contains([' ', '\r', '\n']) {
                self.errors
                    .push(src.err(host.span(), "invalid health check host"));
            }
        }
        let interval = self.duration(src, &r.interval, Duration::from_secs(5));
        let timeout = self.duration(src, &r.timeout, Duration::from_secs(2));
        for (v, d) in [(&r.interval, interval), (&r.timeout, timeout)] {
            if let (Some(v), true) = (v, d < Duration::from_millis(10)) {
                self.errors
                    .push(src.err(v.span(), "health check times must be at least 10ms"));
            }
        }
        let rise = self.count(src, &r.rise, 1, 100, 2) as u32;
        let fall = self.count(src, &r.fall, 1, 100, 3) as u32;
        let status = match &r.status {
            None => (200, 399),
            Some(s) => {
                let text = s.get_ref();
                let parsed = match text.split_once('-') {
                    Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
                    None => text.trim().parse().ok().map(|n| (n, n)),
                };
                match parsed {
                    Some((a, b)) if (100..=599).contains(&a) && (a..=599).contains(&b) => (a, b),
                    _ => {
                        self.errors.push(src.err(
                            s.span(),
                            format!("health check status \"{text}\": use a status or a range such as \"200-399\""),
                        ));
                        (200, 399)
                    }
                }
            }
        };
        let body = r.body.as_ref().and_then(|b| {
            match crate::router::Test::parse(&toml::Value::String(b.get_ref().clone())) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.errors.push(src.err(b.span(), e));
                    None
                }
            }
        });
        let initial = match r.initial.as_ref().map(|i| i.get_ref().as_str()) {
            None | Some("up") => Initial::Up,
            Some("down") => Initial::Down,
            Some(other) => {
                self.errors.push(src.err(
                    r.initial.as_ref().expect("some").span(),
                    format!("health check initial \"{other}\": use \"up\" or \"down\""),
                ));
                Initial::Up
            }
        };
        if kind == CheckKind::Tcp {
            for v in [
                r.path.as_ref(),
                r.host.as_ref(),
                r.status.as_ref(),
                r.body.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                self.errors.push(src.err(
                    v.span(),
                    "a tcp health check only connects: path, host, status and body are for http",
                ));
            }
        }
        HealthCheck {
            kind,
            path,
            host: r.host.as_ref().map(|h| h.get_ref().clone()),
            interval,
            timeout,
            rise,
            fall,
            status,
            body,
            initial,
        }
    }
}

impl Validator {
    fn outlier(&mut self, src: &Source, o: Option<&S<RawOutlier>>) -> Outlier {
        let none = RawOutlier {
            consecutive_failures: None,
            count_5xx: None,
            ejection: None,
            max_ejection: None,
            max_ejected_percent: None,
        };
        let r = o.map_or(&none, |o| o.get_ref());
        let ejection = self.duration(src, &r.ejection, Duration::from_secs(10));
        let max_ejection = self.duration(src, &r.max_ejection, Duration::from_secs(300));
        if let (Some(m), true) = (&r.max_ejection, max_ejection < ejection) {
            self.errors
                .push(src.err(m.span(), "max_ejection is shorter than ejection"));
        }
        Outlier {
            consecutive_failures: self.count(src, &r.consecutive_failures, 1, 1000, 1) as u32,
            count_5xx: r.count_5xx.unwrap_or(false),
            ejection,
            max_ejection,
            max_ejected_percent: self.count(src, &r.max_ejected_percent, 0, 100, 100) as u32,
        }
    }
}
