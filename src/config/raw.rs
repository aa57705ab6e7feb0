//! The config file as written: serde structs that keep source spans so that every later
//! semantic error can point at FILE:LINE:COL. Nothing here is validated beyond TOML types.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMain {
    pub user: Option<S<String>>,
    pub group: Option<S<String>>,
    pub worker_processes: Option<S<toml::Value>>,
    pub worker_connections: Option<S<i64>>,
    pub pid_file: Option<S<String>>,
    pub control_socket: Option<S<String>>,
    pub error_log: Option<S<RawErrorLog>>,
    pub access_log: Option<S<toml::Value>>,
    pub log_format: Option<BTreeMap<String, S<toml::Value>>>,
    pub shutdown_timeout: Option<S<toml::Value>>,
    pub max_draining_generations: Option<S<i64>>,
    pub shared_memory: Option<S<RawSharedMemory>>,
    pub resolver: Option<S<RawResolver>>,
    pub admin: Option<S<RawAdmin>>,
    pub otlp: Option<S<RawOtlp>>,
    pub include: Option<Vec<S<String>>>,
    #[serde(default)]
    pub server: Vec<S<RawServer>>,
    #[serde(default)]
    pub upstream: Vec<S<RawUpstream>>,
}

/// `shared_memory = { slots = N }`: capacity of the region shared by the workers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSharedMemory {
    pub slots: Option<S<i64>>,
}

/// `otlp = { endpoint, service_name }`: where request spans are exported.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    pub endpoint: S<String>,
    pub service_name: Option<String>,
    /// CA bundle for an https endpoint (default: the system's roots).
    pub ca: Option<S<String>>,
}

/// `admin = { ... }`: the master's admin listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: S<String>,
    pub token: Option<S<String>>,
    /// `{ user = "crypt hash" }`.
    pub basic_auth: Option<S<toml::map::Map<String, toml::Value>>>,
    pub unauthenticated: Option<bool>,
    pub public_metrics: Option<bool>,
    /// Host names (beside its own address) that requests may name in `Host`.
    pub server_names: Option<S<Vec<S<String>>>>,
}

/// `resolver = { ... }`: where peers' host names are looked up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    pub servers: Option<S<Vec<S<String>>>>,
    pub timeout: Option<S<toml::Value>>,
    pub ipv6: Option<bool>,
    pub hosts: Option<S<String>>,
}

/// `tls = { cert, key, ... }` of a server: its listen addresses speak TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: S<String>,
    pub key: S<String>,
    pub ocsp: Option<S<String>>,
    pub extra_certs: Option<S<Vec<S<RawCert>>>>,
    pub protocols: Option<S<Vec<S<String>>>>,
    pub ciphers: Option<S<Vec<S<String>>>>,
    pub verify_client: Option<S<String>>,
    pub client_ca: Option<S<String>>,
    pub handshake_timeout: Option<S<toml::Value>>,
    pub session_resumption: Option<bool>,
}

/// One of a server's `extra_certs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    pub cert: S<String>,
    pub key: S<String>,
    pub ocsp: Option<S<String>>,
}

/// An included file holds only servers and upstreams; globals belong to the main file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInclude {
    #[serde(default)]
    pub server: Vec<S<RawServer>>,
    #[serde(default)]
    pub upstream: Vec<S<RawUpstream>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawErrorLog {
    Path(String),
    Table(RawErrorLogTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawErrorLogTable {
    // No spans here: untagged enums buffer their input and lose them.
    pub path: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<S<StringOrList>>,
    pub tls: Option<S<RawTls>>,
    pub server_name: Option<S<StringOrList>>,
    pub default_server: Option<bool>,
    pub access_log: Option<S<toml::Value>>,
    pub client_header_timeout: Option<S<toml::Value>>,
    pub client_body_timeout: Option<S<toml::Value>>,
    pub keepalive_timeout: Option<S<toml::Value>>,
    pub send_timeout: Option<S<toml::Value>>,
    pub keepalive_requests: Option<S<i64>>,
    pub client_header_buffer_size: Option<S<toml::Value>>,
    pub max_headers: Option<S<i64>>,
    pub max_uri_length: Option<S<toml::Value>>,
    pub client_max_body_size: Option<S<toml::Value>>,
    pub tunnel_timeout: Option<S<toml::Value>>,
    pub request_id: Option<S<toml::Value>>,
    pub traceparent: Option<S<String>>,
    pub allow_encoded_slashes: Option<bool>,
    pub underscores_in_headers: Option<bool>,
    #[serde(default)]
    pub route: Vec<S<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn items(&self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s.clone()],
            StringOrList::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<S<String>>,
    pub host: Option<S<String>>,
    pub path: Option<S<String>>,
    pub exact: Option<S<String>>,
    pub regex: Option<S<String>>,
    pub priority: Option<S<i64>>,
    #[serde(rename = "match")]
    pub conditions: Option<S<RawMatch>>,
    pub upstream: Option<S<String>>,
    pub split: Option<S<Vec<S<RawSplit>>>>,
    pub sticky: Option<S<String>>,
    pub redirect: Option<S<String>>,
    pub rewrite: Option<S<String>>,
    pub strip_prefix: Option<S<String>>,
    pub forward_raw_path: Option<S<bool>>,
    pub retry: Option<S<RawRetry>>,
    #[serde(rename = "return")]
    pub return_status: Option<S<i64>>,
    pub body: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, S<String>>,
    pub request_headers: Option<S<RawHeaderEdits>>,
    pub response_headers: Option<S<RawHeaderEdits>>,
}

/// A route's `retry` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub tries: Option<S<i64>>,
    pub on: Option<S<Vec<String>>>,
    pub backoff: Option<S<toml::Value>>,
    pub max_backoff: Option<S<toml::Value>>,
    pub budget_percent: Option<S<i64>>,
    pub non_idempotent: Option<bool>,
}

/// A route's `match` table: conditions besides the path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub method: Option<S<StringOrList>>,
    #[serde(default)]
    pub header: BTreeMap<String, S<toml::Value>>,
    #[serde(default)]
    pub query: BTreeMap<String, S<toml::Value>>,
    pub client: Option<S<StringOrList>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplit {
    pub upstream: S<String>,
    pub weight: Option<S<i64>>,
}

/// `request_headers` / `response_headers` of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderEdits {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: S<String>,
    pub peers: S<Vec<S<RawPeer>>>,
    pub balance: Option<S<String>>,
    pub health_check: Option<S<RawHealthCheck>>,
    pub outlier: Option<S<RawOutlier>>,
    pub hash_key: Option<S<String>>,
    pub fail_open: Option<bool>,
    pub keepalive: Option<S<i64>>,
    pub keepalive_timeout: Option<S<toml::Value>>,
    pub keepalive_requests: Option<S<i64>>,
    pub connect_timeout: Option<S<toml::Value>>,
    pub read_timeout: Option<S<toml::Value>>,
    pub send_timeout: Option<S<toml::Value>>,
    pub resolve_interval: Option<S<toml::Value>>,
    pub max_addresses: Option<S<i64>>,
    /// `true`, or a table (`RawUpstreamTls`).
    pub tls: Option<S<toml::Value>>,
}

/// `tls = { ... }` of an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub ca: Option<String>,
    pub verify: Option<bool>,
    pub server_name: Option<String>,
    pub verify_name: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `outlier = { ... }` of an upstream: passive health.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    pub consecutive_failures: Option<S<i64>>,
    pub count_5xx: Option<bool>,
    pub ejection: Option<S<toml::Value>>,
    pub max_ejection: Option<S<toml::Value>>,
    pub max_ejected_percent: Option<S<i64>>,
}

/// `health_check = { ... }` of an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    pub path: Option<S<String>>,
    pub host: Option<S<String>>,
    pub interval: Option<S<toml::Value>>,
    pub timeout: Option<S<toml::Value>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
    pub status: Option<S<String>>,
    pub body: Option<S<String>>,
    pub initial: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPeer {
    Addr(String),
    Table(RawPeerTable),
}

impl RawPeer {
    pub fn addr(&self) -> &str {
        match self {
            RawPeer::Addr(a) => a,
            RawPeer::Table(t) => &t.addr,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerTable {
    pub addr: String,
    pub weight: Option<i64>,
    pub backup: Option<bool>,
    pub down: Option<bool>,
}
