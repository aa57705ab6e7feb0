//! Semantic validation: raw structs in, one `Config` out, every error collected with its
//! location rather than stopping at the first.

use super::filters::HeaderEdits;
use super::raw::*;
use super::*;
use std::collections::hash_map::Entry;
use std::ops::Range;

/// The longest duration any key accepts.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);
/// Old generations allowed to drain at once (HAProxy's `mworker-max-reloads` idea, with
/// the old ones hurried rather than killed).
const DEFAULT_MAX_DRAINING: usize = 4;

pub(super) struct Validator {
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<ConfigError>,
    /// The OCSP responses servers staple (see `Config::staples`).
    pub(super) staples: Vec<std::sync::Arc<crate::tls::ocsp::Staple>>,
    /// Who the workers run as (uid, gid), when the master drops to them: files a worker
    /// opens itself are checked for them.
    pub(super) worker: Option<(u32, u32)>,
}

impl Validator {
    pub(super) fn duration(
        &mut self,
        src: &Source,
        v: &Option<S<toml::Value>>,
        default: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        let parsed = match v.get_ref() {
            toml::Value::String(s) => units::parse_duration(s),
            toml::Value::Integer(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
            other => Err(format!(
                "expected a duration such as \"30s\", found {}",
                other.type_str()
            )),
        };
        // Deadlines are `now + duration`: an absurd value must be an error here, not an
        // overflow in a worker.
        let parsed = parsed.and_then(|d| {
            if d > MAX_DURATION {
                Err(format!(
                    "duration {} is out of range (at most 365d)",
                    units::format_duration(d)
                ))
            } else {
                Ok(d)
            }
        });
        parsed.unwrap_or_else(|e| {
            self.errors.push(src.err(v.span(), e));
            default
        })
    }

    fn size(&mut self, src: &Source, v: &Option<S<toml::Value>>, default: u64) -> u64 {
        let Some(v) = v else { return default };
        let parsed = match v.get_ref() {
            toml::Value::String(s) => units::parse_size(s),
            toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
            other => Err(format!(
                "expected a size such as \"16k\", found {}",
                other.type_str()
            )),
        };
        parsed.unwrap_or_else(|e| {
            self.errors.push(src.err(v.span(), e));
            default
        })
    }

    /// A size that must lie in `min..=max`.
    fn size_in(
        &mut self,
        src: &Source,
        v: &Option<S<toml::Value>>,
        min: u64,
        max: u64,
        default: u64,
    ) -> u64 {
        let n = self.size(src, v, default);
        if let (Some(v), false) = (v, (min..=max).contains(&n)) {
            self.errors
                .push(src.err(v.span(), format!("size {n} out of range {min}..={max}")));
            return default;
        }
        n
    }

    pub(super) fn count(
        &mut self,
        src: &Source,
        v: &Option<S<i64>>,
        min: i64,
        max: i64,
        default: u64,
    ) -> u64 {
        let Some(v) = v else { return default };
        let n = *v.get_ref();
        if n < min || n > max {
            self.errors
                .push(src.err(v.span(), format!("value {n} out of range {min}..={max}")));
            return default;
        }
        n as u64
    }

    /// A log destination; a file's directory must exist (the file itself is created).
    pub(super) fn log_target(
        &mut self,
        src: &Source,
        span: Range<usize>,
        base: &Path,
        s: &str,
    ) -> LogTarget {
        match s {
            "stderr" => LogTarget::Stderr,
            "stdout" => LogTarget::Stdout,
            p => {
                let path = resolve(base, p);
                if !path.parent().is_some_and(|d| d.is_dir()) {
                    self.errors.push(src.err(
                        span,
                        format!("log directory of \"{}\" does not exist", path.display()),
                    ));
                }
                LogTarget::File(path)
            }
        }
    }

    pub(super) fn build(
        &mut self,
        sources: &[Source],
        base: &Path,
        main: RawMain,
        servers_raw: Vec<(usize, S<RawServer>)>,
        upstreams_raw: Vec<(usize, S<RawUpstream>)>,
        files: Vec<PathBuf>,
    ) -> Config {
        let src = &sources[0];
        let worker_processes = match &main.worker_processes {
            None => 1,
            Some(v) => match v.get_ref() {
                toml::Value::String(s) if s == "auto" => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                toml::Value::Integer(n) if (1..=1024).contains(n) => *n as usize,
                _ => {
                    self.errors.push(src.err(
                        v.span(),
                        "worker_processes must be \"auto\" or a number from 1 to 1024",
                    ));
                    1
                }
            },
        };
        let worker_connections =
            self.count(src, &main.worker_connections, 1, 1 << 20, 1024) as usize;
        let pid_file = main
            .pid_file
            .as_ref()
            .map(|p| resolve(base, p.get_ref()))
            .unwrap_or_else(|| PathBuf::from("/run/proxyd.pid"));
        let control_socket = main
            .control_socket
            .as_ref()
            .map(|p| resolve(base, p.get_ref()))
            .unwrap_or_else(|| control_socket_for_pid_file(&pid_file));
        let error_log = match &main.error_log {
            None => ErrorLog {
                path: LogTarget::Stderr,
                level: "info".into(),
            },
            Some(e) => match e.get_ref() {
                RawErrorLog::Path(p) => ErrorLog {
                    path: self.log_target(src, e.span(), base, p),
                    level: "info".into(),
                },
                RawErrorLog::Table(t) => {
                    let path = t
                        .path
                        .as_ref()
                        .map(|p| self.log_target(src, e.span(), base, p))
                        .unwrap_or(LogTarget::Stderr);
                    let level = match &t.level {
                        None => "info".to_string(),
                        Some(l) => {
                            let name = l.to_ascii_lowercase();
                            let name = if name == "warning" {
                                "warn".to_string()
                            } else {
                                name
                            };
                            if ["error", "warn", "notice", "info", "debug", "trace", "off"]
                                .contains(&name.as_str())
                            {
                                name
                            } else {
                                self.errors.push(src.err(
                                    e.span(),
                                    format!("unknown log level \"{l}\" (use error, warn, notice, info, debug, trace, off)"),
                                ));
                                "info".into()
                            }
                        }
                    };
                    ErrorLog { path, level }
                }
            },
        };
        let shutdown_timeout = self.duration(src, &main.shutdown_timeout, Duration::from_secs(30));
        let max_draining_generations = self.count(
            src,
            &main.max_draining_generations,
            0,
            1000,
            DEFAULT_MAX_DRAINING as u64,
        ) as usize;
        let mut shared_memory = SharedMemory {
            slots: main
                .shared_memory
                .as_ref()
                .map_or(DEFAULT_SHARED_SLOTS, |m| {
                    self.count(
                        src,
                        &m.get_ref().slots,
                        16,
                        1 << 20,
                        DEFAULT_SHARED_SLOTS as u64,
                    ) as u32
                }),
        };
        if let Some(u) = &main.user {
            if !matches!(nix::unistd::User::from_name(u.get_ref()), Ok(Some(_))) {
                self.errors
                    .push(src.err(u.span(), format!("unknown user \"{}\"", u.get_ref())));
            }
        }
        self.worker = crate::privileges::worker_identity(
            main.user.as_ref().map(|u| u.get_ref().as_str()),
            main.group.as_ref().map(|g| g.get_ref().as_str()),
        );
        if let Some(g) = &main.group {
            if !matches!(nix::unistd::Group::from_name(g.get_ref()), Ok(Some(_))) {
                self.errors
                    .push(src.err(g.span(), format!("unknown group \"{}\"", g.get_ref())));
            }
        }
        let mut access_logs: Vec<LogTarget> = Vec::new();
        let mut log_formats = self.log_formats(src, main.log_format.as_ref());
        let global_access = match &main.access_log {
            Some(a) => self.access_logs(src, a, base, &mut access_logs, &mut log_formats),
            None => Vec::new(),
        };

        let resolver = self.resolver(src, base, main.resolver.as_ref());
        let admin = self.admin(src, base, main.admin.as_ref());
        let otlp = self.otlp(src, base, main.otlp.as_ref());
        let (upstream, names) = self.upstreams(sources, &upstreams_raw, &resolver, base);

        let mut server = Vec::new();
        let mut name_patterns: Vec<Vec<crate::router::NamePattern>> = Vec::new();
        let mut listeners: Vec<SocketAddr> = Vec::new();
        // Where each (address, name) and each address's default server was first given
        // (source, span: made into FILE:LINE only for an error, since counting lines for
        // each of 10,000 servers would take seconds).
        let mut vhosts: HashMap<(SocketAddr, String), (usize, Range<usize>)> = HashMap::new();
        let mut defaults: HashMap<SocketAddr, (usize, Range<usize>)> = HashMap::new();
        let mut server_at = Vec::new();
        for (si, s) in &servers_raw {
            let ssrc = &sources[*si];
            let span = s.span();
            let s = s.get_ref();
            let mut listen = Vec::new();
            match &s.listen {
                None => self
                    .errors
                    .push(ssrc.err(span.clone(), "server has no \"listen\" address")),
                Some(l) => {
                    for a in l.get_ref().items() {
                        match parse_listen(&a) {
                            Ok(addr) => {
                                if listen.contains(&addr) {
                                    self.errors.push(
                                        ssrc.err(l.span(), format!("duplicate listen address {a}")),
                                    );
                                    continue;
                                }
                                listen.push(addr);
                                if !listeners.contains(&addr) {
                                    listeners.push(addr);
                                }
                            }
                            Err(e) => self.errors.push(ssrc.err(l.span(), e)),
                        }
                    }
                }
            }
            let server_name: Vec<String> = s
                .server_name
                .as_ref()
                .map(|n| {
                    n.get_ref()
                        .items()
                        .into_iter()
                        // A regex keeps its case (`\D` is not `\d`).
                        .map(|n| {
                            if n.starts_with('~') {
                                n
                            } else {
                                n.to_ascii_lowercase()
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut patterns = Vec::new();
            for n in &server_name {
                match crate::router::NamePattern::parse(n) {
                    Ok(p) => patterns.extend(p),
                    Err(e) => {
                        let at = s
                            .server_name
                            .as_ref()
                            .map(|n| n.span())
                            .unwrap_or(span.clone());
                        self.errors.push(ssrc.err(at, e));
                    }
                }
            }
            name_patterns.push(patterns);
            for addr in &listen {
                let names = if server_name.is_empty() {
                    vec![String::new()]
                } else {
                    server_name.clone()
                };
                let at = s
                    .server_name
                    .as_ref()
                    .map(|n| n.span())
                    .unwrap_or(span.clone());
                for n in names {
                    match vhosts.entry((*addr, n.clone())) {
                        Entry::Vacant(e) => {
                            e.insert((*si, at.clone()));
                        }
                        Entry::Occupied(e) => {
                            let (fi, fspan) = e.get().clone();
                            self.errors.push(ssrc.err(
                                at.clone(),
                                format!(
                                    "duplicate server \"{n}\" on {addr} (first given at {})",
                                    sources[fi].at(fspan)
                                ),
                            ))
                        }
                    }
                }
            }
            let default_server = s.default_server.unwrap_or(false);
            if default_server {
                for addr in &listen {
                    match defaults.entry(*addr) {
                        Entry::Vacant(e) => {
                            e.insert((*si, span.clone()));
                        }
                        Entry::Occupied(e) => {
                            let (fi, fspan) = e.get().clone();
                            self.errors.push(ssrc.err(
                                span.clone(),
                                format!(
                                    "a second default_server for {addr} (the first is at {})",
                                    sources[fi].at(fspan)
                                ),
                            ))
                        }
                    }
                }
            }
            let access_log = match &s.access_log {
                Some(a) => self.access_logs(ssrc, a, base, &mut access_logs, &mut log_formats),
                None => global_access.clone(),
            };
            let route = self.routes(ssrc, &s.route, &names);
            let tls = s
                .tls
                .as_ref()
                .and_then(|t| self.tls(ssrc, base, t, &server_name));
            server_at.push((*si, span.clone()));
            server.push(Server {
                listen,
                tls,
                server_name,
                default_server,
                access_log_shown: logs::shown(&access_log, &access_logs, &log_formats),
                access_log,
                client_header_timeout: self.duration(
                    ssrc,
                    &s.client_header_timeout,
                    Duration::from_secs(60),
                ),
                client_body_timeout: self.duration(
                    ssrc,
                    &s.client_body_timeout,
                    Duration::from_secs(60),
                ),
                keepalive_timeout: self.duration(
                    ssrc,
                    &s.keepalive_timeout,
                    Duration::from_secs(75),
                ),
                send_timeout: self.duration(ssrc, &s.send_timeout, Duration::from_secs(60)),
                keepalive_requests: self.count(ssrc, &s.keepalive_requests, 0, i64::MAX, 1000),
                client_header_buffer_size: self
                    .size(ssrc, &s.client_header_buffer_size, 16 * 1024)
                    .clamp(1024, 1 << 20) as usize,
                max_headers: self.count(
                    ssrc,
                    &s.max_headers,
                    1,
                    crate::http::MAX_HEADERS as i64,
                    100,
                ) as usize,
                max_uri_length: self.size_in(ssrc, &s.max_uri_length, 256, 1 << 20, 8 * 1024)
                    as usize,
                client_max_body_size: self.size(ssrc, &s.client_max_body_size, 1 << 20),
                tunnel_timeout: self.duration(ssrc, &s.tunnel_timeout, Duration::from_secs(3600)),
                request_id: self.request_id(ssrc, s.request_id.as_ref()),
                traceparent: self.trace_mode(ssrc, s.traceparent.as_ref()),
                allow_encoded_slashes: s.allow_encoded_slashes.unwrap_or(false),
                underscores_in_headers: s.underscores_in_headers.unwrap_or(false),
                error_pages: self.error_pages(ssrc, base, s.error_pages.as_ref()),
                slot: 0,
                label: String::new(),
                routes: crate::router::RouteTable::compile(&route),
                route,
            });
        }
        name_servers(&mut server);
        // Every server, route, upstream and peer takes a slot in shared memory (see `shm`).
        let slot_names: usize = upstream
            .iter()
            .map(|u: &Upstream| 1 + u.peers.len())
            .sum::<usize>()
            + server
                .iter()
                .map(|s: &Server| 1 + s.route.len())
                .sum::<usize>();
        if main.shared_memory.is_none() {
            // Unset: room for this config twice over (a reload's new names take free
            // slots while the old generation drains), at least the default.
            let want = (slot_names as u32).saturating_mul(2).next_power_of_two();
            shared_memory.slots = want.clamp(DEFAULT_SHARED_SLOTS, 1 << 20);
        }
        if slot_names > shared_memory.slots as usize {
            let msg = format!(
                "{slot_names} servers, routes, upstreams and peers need more shared memory slots than the {} of shared_memory.slots",
                shared_memory.slots
            );
            match &main.shared_memory {
                Some(m) => self.errors.push(src.err(m.span(), msg)),
                None => self.errors.push(src.err(0..0, msg)),
            }
        }
        if server.is_empty() && self.errors.is_empty() {
            self.errors
                .push(file_error(&src.path, "no [[server]] defined"));
        }

        let hosts = crate::router::Hosts::compile(
            server
                .iter()
                .zip(&name_patterns)
                .map(|(s, p): (&Server, _)| (s.listen.as_slice(), p.as_slice(), s.default_server)),
        );
        let tls = self.tls_listeners(&server, &server_at, sources, &hosts);
        Config {
            warnings: Vec::new(),
            hosts,
            tls,
            staples: std::mem::take(&mut self.staples),
            path: src.path.clone(),
            files,
            user: main.user.map(|u| u.into_inner()),
            group: main.group.map(|g| g.into_inner()),
            worker_processes,
            worker_connections,
            pid_file,
            control_socket,
            error_log,
            shutdown_timeout,
            max_draining_generations,
            shared_memory,
            resolver,
            admin,
            otlp,
            access_logs,
            log_formats,
            server,
            upstream,
            listeners,
        }
    }
}

impl Validator {
    /// Checks one `request_headers` / `response_headers` table.
    pub(super) fn header_edits(
        &mut self,
        src: &Source,
        e: &S<RawHeaderEdits>,
    ) -> Option<HeaderEdits> {
        let raw = e.get_ref();
        let mut ok = true;
        let names = raw
            .set
            .keys()
            .chain(raw.add.keys())
            .chain(raw.remove.iter());
        for name in names {
            if !httparse_token(name) {
                self.errors
                    .push(src.err(e.span(), format!("invalid header name \"{name}\"")));
                ok = false;
            } else if !HeaderEdits::editable(name) {
                self.errors.push(src.err(
                    e.span(),
                    format!("header \"{name}\" cannot be edited: proxyd writes the framing and connection headers itself"),
                ));
                ok = false;
            }
        }
        for (name, value) in raw.set.iter().chain(raw.add.iter()) {
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                self.errors.push(src.err(
                    e.span(),
                    format!("the value of header \"{name}\" contains a line break or NUL"),
                ));
                ok = false;
            }
        }
        ok.then(|| HeaderEdits {
            remove: raw.remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
            set: raw.set.clone(),
            add: raw.add.clone(),
        })
    }
}

pub(super) fn httparse_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Listen addresses: "127.0.0.1:8080", "[::1]:8080", "*:8080", ":8080" or "8080".
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let normalized = if let Some(port) = s.strip_prefix("*:").or_else(|| s.strip_prefix(':')) {
        format!("0.0.0.0:{port}")
    } else if s.bytes().all(|b| b.is_ascii_digit()) {
        format!("0.0.0.0:{s}")
    } else {
        s.to_string()
    };
    let addr: SocketAddr = normalized
        .parse()
        .map_err(|_| format!("invalid listen address \"{s}\" (expected IP:PORT or [IPv6]:PORT)"))?;
    if addr.port() == 0 {
        // Each worker's socket would get a different port of its own.
        return Err(format!("listen address \"{s}\" needs a port other than 0"));
    }
    Ok(addr)
}

/// Gives each server its label: its first server_name, or else its first listen address; a
/// server whose label another already has (the plain server beside the TLS one, both named
/// example.com) adds `@` and its first listen address, so that their counts stay apart.
fn name_servers(servers: &mut [Server]) {
    let mut taken = HashSet::new();
    for s in servers {
        let first = s.listen.first().map_or("_".to_string(), |a| a.to_string());
        let base = s.server_name.first().cloned().unwrap_or(first.clone());
        let mut label = base.clone();
        let mut n = 1;
        while taken.contains(&label) {
            n += 1;
            label = if n == 2 {
                format!("{base}@{first}")
            } else {
                format!("{base}@{first}#{n}")
            };
        }
        taken.insert(label.clone());
        s.label = label;
    }
}
