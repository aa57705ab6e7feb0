//! The config file as written: serde structs that keep source spans so that every later
//! semantic error can point at FILE:LINE:COL. Nothing here is validated beyond TOML types.
//! Unknown keys are collected by `unknown.rs` (all of them at once); only `RawUpstreamTls`,
//! read later from a `toml::Value`, denies them itself.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type S<T> = Spanned<T>;

/// `Deserialize` for an enum of a string or a table, written out rather than
/// `#[serde(untagged)]`: an untagged enum buffers its input, which loses the table's unknown
/// keys (`serde_ignored` sees none) and says only "did not match any variant" on an error.
macro_rules! string_or_table {
    ($ty:ident, $string:ident, $table:ident, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        Ok($ty::$string(s.to_string()))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        m: A,
                    ) -> Result<$ty, A::Error> {
                        Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                            .map($ty::$table)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

#[derive(Debug, Deserialize)]
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
pub struct RawSharedMemory {
    pub slots: Option<S<i64>>,
}

/// `otlp = { endpoint, service_name }`: where request spans are exported.
#[derive(Debug, Deserialize)]
pub struct RawOtlp {
    pub endpoint: S<String>,
    pub service_name: Option<String>,
    /// CA bundle for an https endpoint (default: the system's roots).
    pub ca: Option<S<String>>,
}

/// `admin = { ... }`: the master's admin listener.
#[derive(Debug, Deserialize)]
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
pub struct RawResolver {
    pub servers: Option<S<Vec<S<String>>>>,
    pub timeout: Option<S<toml::Value>>,
    pub ipv6: Option<bool>,
    pub hosts: Option<S<String>>,
}

/// `tls = { cert, key, ... }` of a server: its listen addresses speak TLS.
#[derive(Debug, Deserialize)]
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
pub struct RawCert {
    pub cert: S<String>,
    pub key: S<String>,
    pub ocsp: Option<S<String>>,
}

/// An included file holds only servers and upstreams; globals belong to the main file.
#[derive(Debug, Deserialize)]
pub struct RawInclude {
    #[serde(default)]
    pub server: Vec<S<RawServer>>,
    #[serde(default)]
    pub upstream: Vec<S<RawUpstream>>,
}

/// `error_log = "path"` or `{ path, level }`.
#[derive(Debug)]
pub enum RawErrorLog {
    Path(String),
    Table(RawErrorLogTable),
}

string_or_table!(
    RawErrorLog,
    Path,
    Table,
    "a path or a table { path, level }"
);

#[derive(Debug, Deserialize)]
pub struct RawErrorLogTable {
    pub path: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
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
    pub error_pages: Option<S<BTreeMap<String, S<toml::Value>>>>,
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
pub struct RawMatch {
    pub method: Option<S<StringOrList>>,
    #[serde(default)]
    pub header: BTreeMap<String, S<toml::Value>>,
    #[serde(default)]
    pub query: BTreeMap<String, S<toml::Value>>,
    pub client: Option<S<StringOrList>>,
}

#[derive(Debug, Deserialize)]
pub struct RawSplit {
    pub upstream: S<String>,
    pub weight: Option<S<i64>>,
}

/// `request_headers` / `response_headers` of a route.
#[derive(Debug, Deserialize)]
pub struct RawHeaderEdits {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
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
pub struct RawOutlier {
    pub consecutive_failures: Option<S<i64>>,
    pub count_5xx: Option<bool>,
    pub ejection: Option<S<toml::Value>>,
    pub max_ejection: Option<S<toml::Value>>,
    pub max_ejected_percent: Option<S<i64>>,
}

/// `health_check = { ... }` of an upstream.
#[derive(Debug, Deserialize)]
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

/// A peer: `"host:port"` or `{ addr, weight, backup, down }`.
#[derive(Debug)]
pub enum RawPeer {
    Addr(String),
    Table(RawPeerTable),
}

string_or_table!(
    RawPeer,
    Addr,
    Table,
    "an address \"host:port\" or a table { addr, weight, backup, down }"
);

impl RawPeer {
    pub fn addr(&self) -> &str {
        match self {
            RawPeer::Addr(a) => a,
            RawPeer::Table(t) => &t.addr,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawPeerTable {
    pub addr: String,
    pub weight: Option<i64>,
    pub backup: Option<bool>,
    pub down: Option<bool>,
}
