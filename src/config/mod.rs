//! Configuration: TOML text -> raw serde structs (syntax and type errors with FILE:LINE:COL)
//! -> one validated, immutable `Config` (every semantic error with its FILE:LINE:COL, all
//! reported at once). `proxyd -t`, `proxyctl -t`, startup and reload all call `load`.

mod raw;
pub mod units;

use raw::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/etc/proxyd/proxyd.toml";

/// One semantic or syntax error, located in a config file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.msg)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.msg
            )
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    #[serde(skip)]
    pub path: PathBuf,
    /// Every file the config was read from (the main file first).
    #[serde(skip)]
    pub files: Vec<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub worker_processes: usize,
    pub worker_connections: usize,
    pub pid_file: PathBuf,
    pub control_socket: PathBuf,
    pub error_log: ErrorLog,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_timeout: Duration,
    /// Distinct access log destinations; servers refer to them by index.
    pub access_logs: Vec<LogTarget>,
    pub server: Vec<Server>,
    pub upstream: Vec<Upstream>,
    /// Distinct listen addresses over all servers, in first-seen order.
    #[serde(skip)]
    pub listeners: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum LogTarget {
    Stderr,
    Stdout,
    File(PathBuf),
}

impl From<LogTarget> for String {
    fn from(t: LogTarget) -> String {
        match t {
            LogTarget::Stderr => "stderr".into(),
            LogTarget::Stdout => "stdout".into(),
            LogTarget::File(p) => p.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorLog {
    pub path: LogTarget,
    pub level: String,
}

impl ErrorLog {
    pub fn level_filter(&self) -> log::LevelFilter {
        self.level.parse().unwrap_or(log::LevelFilter::Info)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub server_name: Vec<String>,
    pub default_server: bool,
    /// Index into `Config::access_logs`, or None for `access_log = "off"`.
    pub access_log: Option<usize>,
    #[serde(serialize_with = "ser_duration")]
    pub client_header_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub client_body_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub keepalive_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub send_timeout: Duration,
    pub keepalive_requests: u64,
    pub client_header_buffer_size: usize,
    pub route: Vec<Route>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub host: Option<String>,
    pub path: String,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Action {
    Proxy {
        upstream: String,
        #[serde(skip)]
        index: usize,
    },
    Return {
        #[serde(rename = "return")]
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    pub name: String,
    pub peers: Vec<Peer>,
    pub keepalive: usize,
    #[serde(serialize_with = "ser_duration")]
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u64,
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub read_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub send_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    /// As written (`host:port`), for logs.
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&units::format_duration(*d))
}

impl Config {
    /// The effective configuration (after includes and defaults) as TOML, for `-T`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// A config source file, kept to turn byte spans into line:col.
struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    fn err(&self, span: Range<usize>, msg: impl Into<String>) -> ConfigError {
        let upto = &self.text[..span.start.min(self.text.len())];
        let line = upto.matches('\n').count() + 1;
        let col = upto.len() - upto.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        ConfigError {
            file: self.path.clone(),
            line,
            col,
            msg: msg.into(),
        }
    }
}

fn file_error(path: &Path, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: 0,
        col: 0,
        msg: msg.into(),
    }
}

fn parse_toml<T: serde::de::DeserializeOwned>(src: &Source) -> Result<T, ConfigError> {
    toml::from_str(&src.text).map_err(|e| {
        let msg = e.message().trim().replace('\n', "; ");
        match e.span() {
            Some(span) => src.err(span, msg),
            None => src.err(0..0, msg),
        }
    })
}

/// Reads, parses and validates the config at `path` and everything it includes.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let path = absolute(path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| vec![file_error(&path, format!("cannot read: {e}"))])?;
    let main_src = Source {
        path: path.clone(),
        text,
    };
    let mut main: RawMain = parse_toml(&main_src).map_err(|e| vec![e])?;

    let mut v = Validator { errors: Vec::new() };
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();

    // Included files: parse each; syntax errors are collected and the rest still validated.
    let mut files = vec![path.clone()];
    let mut servers_raw: Vec<(usize, S<RawServer>)> =
        main.server.drain(..).map(|s| (0, s)).collect();
    let mut upstreams_raw: Vec<(usize, S<RawUpstream>)> =
        main.upstream.drain(..).map(|u| (0, u)).collect();
    let mut inc_paths = Vec::new();
    for pat in main.include.as_deref().unwrap_or(&[]) {
        let pattern = resolve(&base, pat.get_ref()).display().to_string();
        let is_glob = pattern.contains(['*', '?', '[']);
        match glob::glob(&pattern) {
            Err(e) => v
                .errors
                .push(main_src.err(pat.span(), format!("bad include pattern: {e}"))),
            Ok(paths) => {
                let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                matched.sort();
                if matched.is_empty() && !is_glob {
                    v.errors.push(main_src.err(
                        pat.span(),
                        format!("include \"{}\": no such file", pat.get_ref()),
                    ));
                }
                inc_paths.extend(matched.into_iter().map(|p| (p, pat.span())));
            }
        }
    }
    let mut sources = vec![main_src];
    for (p, span) in inc_paths {
        match std::fs::read_to_string(&p) {
            Err(e) => {
                let err = sources[0].err(span, format!("cannot read include {}: {e}", p.display()));
                v.errors.push(err)
            }
            Ok(text) => {
                let src = Source {
                    path: p.clone(),
                    text,
                };
                files.push(p);
                match parse_toml::<RawInclude>(&src) {
                    Ok(inc) => {
                        let i = sources.len();
                        servers_raw.extend(inc.server.into_iter().map(|s| (i, s)));
                        upstreams_raw.extend(inc.upstream.into_iter().map(|u| (i, u)));
                    }
                    Err(e) => v.errors.push(e),
                }
                sources.push(src);
            }
        }
    }

    let cfg = v.build(&sources, &base, main, servers_raw, upstreams_raw, files);
    if v.errors.is_empty() {
        Ok(cfg)
    } else {
        Err(v.errors)
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Relative paths in the config are relative to the main config file's directory.
fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn duration(
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

    fn count(&mut self, src: &Source, v: &Option<S<i64>>, min: i64, max: i64, default: u64) -> u64 {
        let Some(v) = v else { return default };
        let n = *v.get_ref();
        if n < min || n > max {
            self.errors
                .push(src.err(v.span(), format!("value {n} out of range {min}..={max}")));
            return default;
        }
        n as u64
    }

    fn log_target(&mut self, base: &Path, s: &str) -> LogTarget {
        match s {
            "stderr" => LogTarget::Stderr,
            "stdout" => LogTarget::Stdout,
            p => LogTarget::File(resolve(base, p)),
        }
    }

    fn build(
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
                    path: self.log_target(base, p),
                    level: "info".into(),
                },
                RawErrorLog::Table(t) => {
                    let path = t
                        .path
                        .as_ref()
                        .map(|p| self.log_target(base, p))
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
                            if ["error", "warn", "info", "debug", "trace", "off"]
                                .contains(&name.as_str())
                            {
                                name
                            } else {
                                self.errors.push(src.err(
                                    e.span(),
                                    format!("unknown log level \"{l}\" (use error, warn, info, debug, trace)"),
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
        if let Some(u) = &main.user {
            if !matches!(nix::unistd::User::from_name(u.get_ref()), Ok(Some(_))) {
                self.errors
                    .push(src.err(u.span(), format!("unknown user \"{}\"", u.get_ref())));
            }
        }
        if let Some(g) = &main.group {
            if !matches!(nix::unistd::Group::from_name(g.get_ref()), Ok(Some(_))) {
                self.errors
                    .push(src.err(g.span(), format!("unknown group \"{}\"", g.get_ref())));
            }
        }
        let mut access_logs: Vec<LogTarget> = Vec::new();
        let global_access = main
            .access_log
            .as_ref()
            .and_then(|a| self.access_log(base, a.get_ref(), &mut access_logs));

        let mut upstream = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (si, u) in &upstreams_raw {
            let usrc = &sources[*si];
            let u = u.get_ref();
            let name = u.name.get_ref().clone();
            if names.contains_key(&name) {
                self.errors
                    .push(usrc.err(u.name.span(), format!("duplicate upstream \"{name}\"")));
                continue;
            }
            if name.is_empty() {
                self.errors
                    .push(usrc.err(u.name.span(), "upstream name must not be empty"));
            }
            let mut peers = Vec::new();
            for p in u.peers.get_ref() {
                let (addr_s, weight) = match p.get_ref() {
                    RawPeer::Addr(a) => (a.clone(), 1),
                    RawPeer::Table(t) => (t.addr.clone(), t.weight.unwrap_or(1)),
                };
                if !(1..=1000).contains(&weight) {
                    self.errors.push(usrc.err(
                        p.span(),
                        format!("peer weight {weight} out of range 1..=1000"),
                    ));
                    continue;
                }
                match resolve_peer(&addr_s) {
                    Ok(addr) => peers.push(Peer {
                        name: addr_s,
                        addr,
                        weight: weight as u32,
                    }),
                    Err(e) => self.errors.push(usrc.err(p.span(), e)),
                }
            }
            if u.peers.get_ref().is_empty() {
                self.errors
                    .push(usrc.err(u.peers.span(), format!("upstream \"{name}\" has no peers")));
            }
            names.insert(name.clone(), upstream.len());
            upstream.push(Upstream {
                name,
                peers,
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
            });
        }

        let mut server = Vec::new();
        let mut listeners: Vec<SocketAddr> = Vec::new();
        let mut vhosts: HashSet<(SocketAddr, String)> = HashSet::new();
        let mut defaults: HashSet<SocketAddr> = HashSet::new();
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
                        .map(|n| n.to_ascii_lowercase())
                        .collect()
                })
                .unwrap_or_default();
            for addr in &listen {
                let names = if server_name.is_empty() {
                    vec![String::new()]
                } else {
                    server_name.clone()
                };
                for n in names {
                    if !vhosts.insert((*addr, n.clone())) {
                        let at = s
                            .server_name
                            .as_ref()
                            .map(|n| n.span())
                            .unwrap_or(span.clone());
                        self.errors
                            .push(ssrc.err(at, format!("duplicate server \"{n}\" on {addr}")));
                    }
                }
            }
            let default_server = s.default_server.unwrap_or(false);
            if default_server {
                for addr in &listen {
                    if !defaults.insert(*addr) {
                        self.errors.push(
                            ssrc.err(span.clone(), format!("a second default_server for {addr}")),
                        );
                    }
                }
            }
            let access_log = match &s.access_log {
                Some(a) => self.access_log(base, a.get_ref(), &mut access_logs),
                None => global_access,
            };
            let mut route = Vec::new();
            let mut seen: HashSet<(Option<String>, String)> = HashSet::new();
            for r in &s.route {
                let rspan = r.span();
                let r = r.get_ref();
                let path = r
                    .path
                    .as_ref()
                    .map(|p| p.get_ref().clone())
                    .unwrap_or_else(|| "/".into());
                if !path.starts_with('/') {
                    let at = r.path.as_ref().map(|p| p.span()).unwrap_or(rspan.clone());
                    self.errors
                        .push(ssrc.err(at, format!("route path \"{path}\" must start with '/'")));
                }
                let host = r.host.as_ref().map(|h| h.get_ref().to_ascii_lowercase());
                if !seen.insert((host.clone(), path.clone())) {
                    self.errors.push(ssrc.err(
                        rspan.clone(),
                        format!("duplicate route for path \"{path}\""),
                    ));
                }
                let action = match (&r.upstream, &r.return_status) {
                    (Some(u), None) => {
                        if r.body.is_some() || !r.headers.is_empty() {
                            self.errors.push(ssrc.err(
                                rspan.clone(),
                                "\"body\" and \"headers\" need \"return\", not \"upstream\"",
                            ));
                        }
                        match names.get(u.get_ref()) {
                            Some(&index) => Action::Proxy {
                                upstream: u.get_ref().clone(),
                                index,
                            },
                            None => {
                                self.errors.push(ssrc.err(
                                    u.span(),
                                    format!("unknown upstream \"{}\"", u.get_ref()),
                                ));
                                continue;
                            }
                        }
                    }
                    (None, Some(st)) => {
                        let status = *st.get_ref();
                        if !(200..=599).contains(&status) {
                            self.errors.push(ssrc.err(
                                st.span(),
                                format!("return status {status} out of range 200..=599"),
                            ));
                            continue;
                        }
                        let mut headers = Vec::new();
                        for (k, val) in &r.headers {
                            if httparse_token(k) && !val.get_ref().contains(['\r', '\n']) {
                                headers.push((k.clone(), val.get_ref().clone()));
                            } else {
                                self.errors
                                    .push(ssrc.err(val.span(), format!("invalid header \"{k}\"")));
                            }
                        }
                        Action::Return {
                            status: status as u16,
                            body: r.body.clone().unwrap_or_default(),
                            headers,
                        }
                    }
                    _ => {
                        self.errors.push(ssrc.err(
                            rspan.clone(),
                            "a route needs exactly one of \"upstream\" or \"return\"",
                        ));
                        continue;
                    }
                };
                route.push(Route { host, path, action });
            }
            server.push(Server {
                listen,
                server_name,
                default_server,
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
                route,
            });
        }
        if server.is_empty() && self.errors.is_empty() {
            self.errors
                .push(file_error(&src.path, "no [[server]] defined"));
        }

        Config {
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
            access_logs,
            server,
            upstream,
            listeners,
        }
    }

    fn access_log(&mut self, base: &Path, s: &str, logs: &mut Vec<LogTarget>) -> Option<usize> {
        if s == "off" {
            return None;
        }
        let t = self.log_target(base, s);
        Some(logs.iter().position(|l| *l == t).unwrap_or_else(|| {
            logs.push(t);
            logs.len() - 1
        }))
    }
}

/// The pid file and control socket a config names, read leniently (no validation), so
/// `proxyctl reload` can reach the master even when the new config is broken.
pub fn control_paths(path: &Path) -> (PathBuf, PathBuf) {
    let path = absolute(path);
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let table: toml::Table = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    let get = |k: &str| {
        table
            .get(k)
            .and_then(|v| v.as_str())
            .map(|s| resolve(&base, s))
    };
    let pid = get("pid_file").unwrap_or_else(|| PathBuf::from("/run/proxyd.pid"));
    let sock = get("control_socket").unwrap_or_else(|| control_socket_for_pid_file(&pid));
    (pid, sock)
}

/// The control socket sits next to the pid file unless configured.
pub fn control_socket_for_pid_file(pid: &Path) -> PathBuf {
    pid.with_extension("sock")
}

fn httparse_token(s: &str) -> bool {
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
    normalized
        .parse()
        .map_err(|_| format!("invalid listen address \"{s}\" (expected IP:PORT or [IPv6]:PORT)"))
}

/// Peers are `host:port`; host names are resolved once, when the config is loaded.
fn resolve_peer(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("invalid peer address \"{s}\" (expected HOST:PORT)"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("invalid peer address \"{s}\" (expected HOST:PORT)"));
    }
    (host, port.parse::<u16>().unwrap())
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve peer \"{s}\": {e}"))?
        .next()
        .ok_or_else(|| format!("peer \"{s}\" resolves to no address"))
}

#[cfg(test)]
mod tests;
