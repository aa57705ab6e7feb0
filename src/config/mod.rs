//! Configuration: TOML text -> raw serde structs (syntax and type errors with FILE:LINE:COL)
//! -> one validated, immutable `Config` (every semantic error with its FILE:LINE:COL, all
//! reported at once). `proxyd -t`, `proxyctl -t`, startup and reload all call `load`.

pub mod admin;
pub mod filters;
mod health;
pub use filters::{Filter, HeaderEdits};
pub use health::{CheckKind, HealthCheck, Initial};
pub(crate) mod hints;
mod load;
pub mod logs;
mod pages;
pub use pages::{open_page, ErrorPages};
mod raw;
pub mod ring;
mod routes;
mod tls;
pub use crate::router::PathKind;
pub use crate::units;
mod unknown;
mod upstream;
mod validate;

use load::absolute;
pub use load::load;
use load::{file_error, resolve, Source};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use units::{ser_duration, ser_pairs};

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
        // Names from the file (keys, upstreams, paths) are quoted in messages as written: a
        // control character among them (an escape sequence, a newline) is shown escaped, so
        // that it can neither drive the terminal nor fake a line of proxyctl's output.
        let file = self.file.display().to_string();
        let file = escape_controls(&file);
        let msg = escape_controls(&self.msg);
        if self.line == 0 {
            write!(f, "{file}: {msg}")
        } else {
            write!(f, "{file}:{}:{}: {msg}", self.line, self.col)
        }
    }
}

/// `s` with its control characters escaped (`\n`, `\u{1b}`).
pub(crate) fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect::<String>()
        .into()
}

/// `Default` is an empty placeholder, never served: what a forked worker leaves in place of
/// the config it takes (`std::mem::take`) rather than clones.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    /// Things `-t` reports without refusing the config (a route that can never match).
    #[serde(skip)]
    pub warnings: Vec<ConfigError>,
    /// The servers of each listen address by Host, compiled from `server_name`.
    #[serde(skip)]
    pub hosts: crate::router::Hosts,
    /// Each TLS listen address's servers' rustls configs.
    #[serde(skip)]
    pub tls: HashMap<SocketAddr, std::sync::Arc<crate::tls::Site>>,
    /// Every OCSP response file servers staple: the master looks at them for changes.
    #[serde(skip)]
    pub staples: Vec<std::sync::Arc<crate::tls::ocsp::Staple>>,
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
    /// Draining generations allowed at once; a reload past it hurries the oldest.
    pub max_draining_generations: usize,
    /// Capacity of the shared memory region (fixed when the master starts).
    pub shared_memory: SharedMemory,
    /// Where peers' host names are resolved.
    pub resolver: crate::dns::Resolver,
    /// Where request spans go (OTLP/HTTP JSON), if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp: Option<logs::Otlp>,
    /// The admin listener, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<admin::Admin>,
    /// Distinct access log destinations; servers refer to them by index.
    #[serde(skip)]
    pub access_logs: Vec<LogTarget>,
    /// The formats servers' access logs use.
    #[serde(skip)]
    pub log_formats: logs::LogFormats,
    pub server: Vec<Server>,
    pub upstream: Vec<Upstream>,
    /// Distinct listen addresses over all servers, in first-seen order.
    #[serde(skip)]
    pub listeners: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum LogTarget {
    #[default]
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

#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorLog {
    pub path: LogTarget,
    pub level: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    /// Its listen addresses speak TLS with this certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
    pub server_name: Vec<String>,
    pub default_server: bool,
    /// Where its requests are logged, and how (empty for `access_log = "off"`).
    #[serde(skip)]
    pub access_log: Vec<logs::AccessLog>,
    /// The same, for `-T`.
    #[serde(rename = "access_log")]
    pub access_log_shown: Vec<logs::AccessLogShown>,
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
    pub max_headers: usize,
    pub max_uri_length: usize,
    /// 0: no limit.
    pub client_max_body_size: u64,
    /// Idle time allowed on an upgraded (tunnelled) connection.
    #[serde(serialize_with = "ser_duration")]
    pub tunnel_timeout: Duration,
    /// The header that carries `$request_id` upstream and back (None: not sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<logs::RequestIdHeader>,
    /// What W3C trace context headers get.
    pub traceparent: crate::http::trace::Mode,
    /// Paths with `%2F` or `%5C` (an escaped slash or backslash) are routed with the escape
    /// kept; by default they are refused with 400, since backends that decode them would
    /// resolve another path than the one routed.
    pub allow_encoded_slashes: bool,
    /// Request header names with `_` are forwarded; by default they are dropped (nginx's
    /// `underscores_in_headers off`): CGI-style backends fold `_` and `-` together.
    pub underscores_in_headers: bool,
    /// Files for the errors it answers itself, by status.
    #[serde(skip_serializing_if = "ErrorPages::is_empty")]
    pub error_pages: ErrorPages,
    /// Its slot in shared memory (request counters).
    #[serde(skip)]
    pub slot: u32,
    /// Its name in metrics and the API, unique among the servers (`name_servers`).
    #[serde(skip)]
    pub label: String,
    pub route: Vec<Route>,
    /// `route`, compiled for lookup.
    #[serde(skip)]
    pub routes: crate::router::RouteTable,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Its name for `$route` and metrics (by default, its path as written).
    pub name: String,
    /// Its slot in shared memory (request counters).
    #[serde(skip)]
    pub slot: u32,
    /// The prefix, the exact path or the regex, as `kind` says.
    #[serde(skip)]
    pub path: String,
    #[serde(skip)]
    pub kind: PathKind,
    /// The same, under the key it was written with, for `-T`.
    #[serde(flatten)]
    pub shown: std::collections::BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub priority: i32,
    #[serde(
        rename = "match",
        skip_serializing_if = "crate::router::Conditions::is_empty"
    )]
    pub conditions: crate::router::Conditions,
    /// The compiled `regex` of a regex route (for its captures).
    #[serde(skip)]
    pub regex: Option<crate::router::Pattern>,
    #[serde(flatten)]
    pub action: Action,
    /// Path changes before proxying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<crate::router::Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// The request's path goes upstream as the client wrote it, not as it was routed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forward_raw_path: bool,
    /// When a failed request goes to another peer.
    pub retry: Retry,
    /// The header edits as configured, for `-T` (the filter chain carries them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<filters::HeaderEdits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<filters::HeaderEdits>,
    /// The filter chain run over heads on this route, compiled here once.
    #[serde(skip)]
    pub filters: Vec<filters::Filter>,
}

impl crate::router::Routable for Route {
    fn path(&self) -> &str {
        &self.path
    }
    fn kind(&self) -> PathKind {
        self.kind
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn conditions(&self) -> &crate::router::Conditions {
        &self.conditions
    }
    fn regex(&self) -> Option<&crate::router::Pattern> {
        self.regex.as_ref()
    }
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Action {
    Proxy {
        upstream: String,
        #[serde(skip)]
        index: usize,
    },
    /// Weighted split over upstreams (canary, A/B), optionally sticky on a key.
    Split {
        split: Vec<SplitTarget>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sticky: Option<HashKey>,
    },
    Return {
        #[serde(rename = "return")]
        status: u16,
        body: String,
        #[serde(serialize_with = "ser_pairs")]
        headers: Vec<(String, String)>,
    },
    Redirect {
        #[serde(rename = "return")]
        status: u16,
        redirect: crate::router::Template,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitTarget {
    pub upstream: String,
    #[serde(skip)]
    pub index: usize,
    pub weight: u32,
}

/// A request's value a sticky split or a `hash` balancer hashes: the same value always
/// picks the same upstream or peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Uri,
    Path,
    Host,
    ClientIp,
    Header(String),
    Cookie(String),
    Query(String),
}

impl HashKey {
    pub fn parse(v: &str) -> Option<HashKey> {
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b';');
        Some(match v.split_once(':') {
            Some(("header", h)) if token(h) => HashKey::Header(h.to_ascii_lowercase()),
            Some(("cookie", c)) if token(c) => HashKey::Cookie(c.to_string()),
            Some(("query", q)) if token(q) => HashKey::Query(q.to_string()),
            None if v == "uri" => HashKey::Uri,
            None if v == "path" => HashKey::Path,
            None if v == "host" => HashKey::Host,
            None if v == "client_ip" => HashKey::ClientIp,
            _ => return None,
        })
    }

    pub const HELP: &'static str =
        "use \"uri\", \"path\", \"host\", \"client_ip\", \"header:NAME\", \"cookie:NAME\" or \"query:NAME\"";
}

impl Serialize for HashKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&match self {
            HashKey::Uri => "uri".into(),
            HashKey::Path => "path".into(),
            HashKey::Host => "host".into(),
            HashKey::ClientIp => "client_ip".into(),
            HashKey::Header(h) => format!("header:{h}"),
            HashKey::Cookie(c) => format!("cookie:{c}"),
            HashKey::Query(q) => format!("query:{q}"),
        })
    }
}

/// How an upstream picks a peer (`balance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round-robin (nginx's).
    RoundRobin,
    /// Fewest active connections per weight, counted over every worker.
    LeastConn,
    /// Two peers drawn at random by weight; the less loaded one.
    RandomTwo,
    /// The client address on a consistent hash ring.
    IpHash,
    /// A request value on a consistent hash ring.
    Hash(HashKey),
    /// The first live peer in order (primary and standbys).
    First,
}

impl Serialize for Balance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
            Balance::RandomTwo => "random_two",
            Balance::IpHash => "ip_hash",
            Balance::Hash(_) => "hash",
            Balance::First => "first",
        })
    }
}

/// A route's retries: after a connect failure always (nothing was sent), and on the
/// conditions of `on` for requests that may be replayed.
#[derive(Debug, Clone, Serialize)]
#[serde(into = "RetryShown")]
pub struct Retry {
    /// Attempts in all, the first included; 0: each peer once.
    pub tries: u32,
    /// Retry when the connection breaks or the answer is not HTTP before the response head.
    pub error: bool,
    /// Retry when the response head does not come in time.
    pub timeout: bool,
    /// Retry on these response statuses (502, 503, 504).
    pub statuses: Vec<u16>,
    /// The wait before a retry that is not a connect failure: doubled each time, up to
    /// `max_backoff`, with jitter (a random half to all of it).
    #[serde(serialize_with = "ser_duration")]
    pub backoff: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub max_backoff: Duration,
    /// Retries allowed per upstream, as a percentage of its requests (node-wide, 10 s
    /// windows, at least 10 per window).
    pub budget_percent: u32,
    /// Retry non-idempotent requests (POST, PATCH) too.
    pub non_idempotent: bool,
}

/// `Retry` as it is written: its conditions as one `on` list.
#[derive(Serialize)]
struct RetryShown {
    tries: u32,
    on: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    backoff: Duration,
    #[serde(serialize_with = "ser_duration")]
    max_backoff: Duration,
    budget_percent: u32,
    non_idempotent: bool,
}

impl From<Retry> for RetryShown {
    fn from(r: Retry) -> RetryShown {
        let mut on: Vec<String> = [(r.error, "error"), (r.timeout, "timeout")]
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, w)| w.to_string())
            .collect();
        on.extend(r.statuses.iter().map(u16::to_string));
        if on.is_empty() {
            // An empty `on` list: retries after connect failures only.
            on.push("connect".into());
        }
        RetryShown {
            tries: r.tries,
            on,
            backoff: r.backoff,
            max_backoff: r.max_backoff,
            budget_percent: r.budget_percent,
            non_idempotent: r.non_idempotent,
        }
    }
}

/// Passive health of an upstream's peers (outlier detection).
#[derive(Debug, Clone, Serialize)]
pub struct Outlier {
    /// Failures in a row (connect errors, timeouts, broken responses, and with `count_5xx`
    /// 5xx answers) that eject a peer.
    pub consecutive_failures: u32,
    pub count_5xx: bool,
    /// The first ejection's length; the n-th in a row lasts n times as long, up to
    /// `max_ejection`.
    #[serde(serialize_with = "ser_duration")]
    pub ejection: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub max_ejection: Duration,
    /// Most of the upstream's peers ejected at once, in percent.
    pub max_ejected_percent: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct SharedMemory {
    /// Names (upstreams and peers) it can hold.
    pub slots: u32,
}

/// Default `shared_memory.slots`: 4096 upstreams and peers, 1.25 MiB of directory and
/// health (counter pages are only backed once written).
pub const DEFAULT_SHARED_SLOTS: u32 = 4096;

#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    pub name: String,
    /// Its slot in the shared memory region (set by the master; see `shm`).
    #[serde(skip)]
    pub slot: u32,
    #[serde(serialize_with = "ser_peers")]
    pub peers: Vec<Peer>,
    pub balance: Balance,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<HashKey>,
    /// With every peer down, try them anyway instead of answering 503.
    pub fail_open: bool,
    /// Passive health: what ejects a peer, and for how long.
    pub outlier: Outlier,
    /// Active checks, run once per node by the helper process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Consistent hash ring of the primary peers, for `ip_hash` and `hash`.
    #[serde(skip)]
    pub ring: std::sync::Arc<crate::config::ring::Ring>,
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
    /// Peers given by host name, each standing for `max_addresses` entries of `peers`.
    #[serde(skip)]
    pub names: Vec<NamedPeer>,
    /// How often the helper resolves `names` again (zero: only when a config is loaded).
    #[serde(serialize_with = "ser_duration")]
    pub resolve_interval: Duration,
    /// Addresses used per host name.
    pub max_addresses: u32,
    /// The peers speak TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

/// An upstream's `tls`: how its certificates are checked, the names used, a client
/// certificate, and the rustls config made of them.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamTls {
    /// None: the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    pub verify: bool,
    /// SNI (default: the peer's host name; none for an IP address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The name the certificate must carry (default: the SNI name, else the address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(skip)]
    pub config: std::sync::Arc<rustls::ClientConfig>,
}

impl UpstreamTls {
    /// The name a connection to `peer` sends (SNI, and the name verified unless
    /// `verify_name` says another).
    pub fn name_for(
        &self,
        peer: &Peer,
        names: &[NamedPeer],
        addr: SocketAddr,
    ) -> rustls_pki_types::ServerName<'static> {
        let host = match (&self.server_name, peer.addr) {
            (Some(n), _) => Some(n.clone()),
            (None, PeerAddr::Named { name, .. }) => names.get(name).map(|n| n.host.clone()),
            (None, PeerAddr::Fixed(_)) => None,
        };
        host.and_then(|h| rustls_pki_types::ServerName::try_from(h).ok())
            .unwrap_or_else(|| rustls_pki_types::ServerName::from(addr.ip()))
    }
}

/// A server's TLS: certificates and keys (read by the master when the config is loaded),
/// protocols, ciphers, client verification, and the rustls config made of them.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTls {
    #[serde(flatten)]
    pub files: CertFiles,
    /// More certificates: an ECDSA one beside an RSA one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_certs: Vec<CertFiles>,
    /// "TLSv1.2", "TLSv1.3".
    pub protocols: Vec<String>,
    /// Cipher suites in the server's order of preference; empty: rustls's, client's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ciphers: Vec<String>,
    pub verify_client: crate::tls::VerifyClient,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// The time a new connection has for its handshake (the address's default server's
    /// applies: no server is known before the ClientHello); `client_header_timeout` starts
    /// when it is done.
    #[serde(serialize_with = "ser_duration")]
    pub handshake_timeout: Duration,
    /// Tickets (no TLS 1.2 session IDs are offered); off, every handshake is a full one.
    pub session_resumption: bool,
    #[serde(skip)]
    pub config: std::sync::Arc<rustls::ServerConfig>,
}

/// A certificate chain, its key, and the OCSP response stapled to it.
#[derive(Debug, Clone, Serialize)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<PathBuf>,
    /// The server certificate's notAfter, in seconds since the Unix epoch, as read at load
    /// (for `proxyd_tls_certificate_expiry_seconds`).
    #[serde(skip)]
    pub not_after: Option<i64>,
}

/// A peer given by host name: all its addresses are used, each as a peer of its own (with
/// its own health), kept in shared memory and re-resolved without a reload.
#[derive(Debug, Clone, Serialize)]
pub struct NamedPeer {
    /// As written (`host:port`).
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Its entries in `Upstream::peers`, one per address it may have.
    pub peers: std::ops::Range<usize>,
    /// What the name resolved to when the config was loaded.
    pub resolved: Vec<SocketAddr>,
}

/// Where a peer is.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum PeerAddr {
    /// Given as an IP address in the config.
    Fixed(SocketAddr),
    /// The `index`th address of the upstream's `names[name]`: in the peer's shared memory
    /// slot, present or not.
    Named { name: usize, index: u32 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    /// As written (`host:port`), for logs.
    pub name: String,
    /// Its slot in the shared memory region (set by the master; see `shm`).
    #[serde(skip)]
    pub slot: u32,
    pub addr: PeerAddr,
    pub weight: u32,
    /// Used only when no primary peer is live.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub backup: bool,
    /// Never used (kept in the config, taken out of service).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub down: bool,
}

impl Peer {
    /// Where to connect now; None for a host name's entry that has no address at present.
    pub fn address(&self, shared: &crate::shm::View) -> Option<SocketAddr> {
        self.locate(shared).map(|(a, _)| a)
    }

    /// `address`, and its version (see `View::address_versioned`; always 0 for an address
    /// written in the config).
    pub fn locate(&self, shared: &crate::shm::View) -> Option<(SocketAddr, u32)> {
        match self.addr {
            PeerAddr::Fixed(a) => Some((a, 0)),
            PeerAddr::Named { .. } => match shared.address_versioned(self.slot) {
                (Some(a), v) => Some((a, v)),
                (None, _) => None,
            },
        }
    }

    /// The version of its address now.
    pub fn address_version(&self, shared: &crate::shm::View) -> u32 {
        match self.addr {
            PeerAddr::Fixed(_) => 0,
            PeerAddr::Named { .. } => shared.address_version(self.slot),
        }
    }

    /// Whether it has an address (a host name's entries beyond its current count have none).
    pub fn present(&self, shared: &crate::shm::View) -> bool {
        self.address(shared).is_some()
    }

    /// For logs: the peer as written, and for a host name's entry the address `at`.
    pub fn label(&self, at: Option<SocketAddr>) -> String {
        match (self.addr, at) {
            (PeerAddr::Named { .. }, Some(a)) => format!("{} ({a})", self.name),
            _ => self.name.clone(),
        }
    }

    /// Tells the peer apart from the others of its upstream, for its shared memory slot and
    /// its points on the hash ring: `host:port` as written, plus `#N` for a host name's
    /// Nth address.
    pub fn key(&self) -> String {
        match self.addr {
            PeerAddr::Fixed(_) => self.name.clone(),
            PeerAddr::Named { index, .. } => format!("{}#{index}", self.name),
        }
    }
}

impl Config {
    /// The shared-memory names of every upstream and peer, in the order `set_slots` takes.
    pub fn slot_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for s in &self.server {
            v.push(format!("server {}", s.label()));
            for r in &s.route {
                v.push(format!("route {}/{}", s.label(), r.name));
            }
        }
        for u in &self.upstream {
            v.push(format!("upstream {}", u.name));
            for p in &u.peers {
                v.push(format!("peer {}/{}", u.name, p.key()));
            }
        }
        v
    }

    /// Gives every upstream and peer its slot (as `slot_names` listed them).
    pub fn set_slots(&mut self, slots: &[u32]) {
        let mut it = slots.iter().copied();
        for s in &mut self.server {
            s.slot = it.next().expect("a slot per name");
            for r in &mut s.route {
                r.slot = it.next().expect("a slot per name");
            }
        }
        for u in &mut self.upstream {
            u.slot = it.next().expect("a slot per name");
            for p in &mut u.peers {
                p.slot = it.next().expect("a slot per name");
            }
        }
    }
}

impl Server {
    /// Its name in metrics, the API and the slot directory (see `name_servers`).
    pub fn label(&self) -> String {
        self.label.clone()
    }

    /// The bounds a request head on this server is checked against.
    pub fn limits(&self) -> crate::http::request::Limits {
        crate::http::request::Limits {
            max_headers: self.max_headers,
            max_uri: self.max_uri_length,
            max_body: self.client_max_body_size,
        }
    }
}

/// Peers as written: a host name's entries (one per address it may have) as the one name.
fn ser_peers<S: serde::Serializer>(peers: &[Peer], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown<'a> {
        addr: &'a str,
        weight: u32,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        backup: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        down: bool,
    }
    s.collect_seq(
        peers
            .iter()
            .filter(|p| !matches!(p.addr, PeerAddr::Named { index, .. } if index > 0))
            .map(|p| Shown {
                addr: &p.name,
                weight: p.weight,
                backup: p.backup,
                down: p.down,
            }),
    )
}

impl Config {
    /// The effective configuration (after includes and defaults) as TOML, for
    /// `-T --effective`: a config that loads as it stands. It is the API's view plus what
    /// the API never shows: the admin token and password hashes (whoever runs `-T` has read
    /// the files they are in) and the named log formats as written.
    pub fn to_toml(&self) -> String {
        let render = || -> Result<String, toml::ser::Error> {
            let mut t = toml::Table::try_from(self)?;
            if let (Some(a), Some(toml::Value::Table(shown))) = (&self.admin, t.get_mut("admin")) {
                if let Some(token) = &a.token {
                    shown.insert("token".into(), token.clone().into());
                }
                let users: toml::Table = a
                    .basic_auth
                    .iter()
                    .map(|u| (u.name.clone(), u.hash.clone().into()))
                    .collect();
                if users.is_empty() {
                    shown.remove("basic_auth");
                } else {
                    shown.insert("basic_auth".into(), users.into());
                }
            }
            if !self.log_formats.written.is_empty() {
                let formats: toml::Table = self.log_formats.written.clone().into_iter().collect();
                t.insert("log_format".into(), formats.into());
            }
            toml::to_string_pretty(&t)
        };
        render().unwrap_or_else(|e| format!("# cannot render: {e}\n"))
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

#[cfg(test)]
mod tests;
