//! The admin listener's JSON API: the node's status, its upstreams with each peer's health
//! and counters, the effective config; and actions taken without a reload: drain a peer,
//! mark it down or up, change its weight (kept in shared memory, shown as set at run time,
//! cleared by the next reload), start a reload (its result shows in the status), reopen the
//! logs. Every action is logged with who took it.

use super::Master;
use crate::config::hints::closest;
use crate::shm::{self, PeerAdmin};
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;

/// The outcome of the last reload, for `GET /api/status`.
#[derive(Debug, Clone, Default)]
pub(super) struct LastReload {
    pub(super) ok: bool,
    pub(super) message: String,
    /// Seconds since the Unix epoch.
    pub(super) at: u64,
}

/// Whether a peer takes requests, and if not, why: one answer for the API, `proxyctl
/// status` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerState {
    Up,
    DownInConfig,
    DownByAdmin,
    DrainingByAdmin,
    DownByHealthCheck,
    Ejected,
}

impl PeerState {
    pub(super) fn of(p: &crate::config::Peer, t: &shm::Totals, admin: PeerAdmin) -> PeerState {
        match admin {
            _ if p.down => PeerState::DownInConfig,
            PeerAdmin::Down => PeerState::DownByAdmin,
            PeerAdmin::Drain => PeerState::DrainingByAdmin,
            PeerAdmin::Normal if t.checked == shm::Checked::Down => PeerState::DownByHealthCheck,
            PeerAdmin::Normal if t.down_for_ms > 0 => PeerState::Ejected,
            PeerAdmin::Normal => PeerState::Up,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            PeerState::Up => "up",
            PeerState::DownInConfig => "down (config)",
            PeerState::DownByAdmin => "down (admin)",
            PeerState::DrainingByAdmin => "draining (admin)",
            PeerState::DownByHealthCheck => "down (health check)",
            PeerState::Ejected => "ejected",
        }
    }
}

/// Reloads kept for the status.
pub(super) const RELOAD_HISTORY: usize = 20;

fn reload_json(r: &LastReload) -> Value {
    json!({ "ok": r.ok, "message": r.message, "at": r.at })
}

pub(super) fn epoch_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A peer's last health-check probe: null before the first one ends.
fn probe_json(h: &shm::Health) -> Value {
    let (ok, failed) = h.probe_counts();
    match h.last_probe() {
        None => Value::Null,
        Some(l) => json!({
            "ok": l.outcome == shm::ProbeOutcome::Ok,
            "result": l.outcome.reason(),
            "at_ms": l.at_ms,
            "duration_seconds": l.duration.as_secs_f64(),
            "count": { "ok": ok, "fail": failed },
        }),
    }
}

/// What the admin API set on a peer (state, weight), which holds until the next reload:
/// null when nothing is set.
fn override_json(h: &shm::Health) -> Value {
    let state = match h.admin() {
        PeerAdmin::Normal => Value::Null,
        PeerAdmin::Drain => json!("draining"),
        PeerAdmin::Down => json!("down"),
    };
    if state.is_null() && h.weight().is_none() {
        return Value::Null;
    }
    json!({ "state": state, "weight": h.weight(), "until": "next reload" })
}

/// A peer's latency histograms (connect, response head, whole response; buckets cumulative,
/// bounds in the answer's `le`) with their means: what a dashboard turns into percentiles.
fn latency_json(t: &shm::Traffic) -> Value {
    let one = |h: &shm::HistTotals| {
        let sum = h.sum_us as f64 / 1e6;
        json!({
            "count": h.count,
            "sum_seconds": sum,
            "mean_seconds": if h.count == 0 { Value::Null } else { json!(sum / h.count as f64) },
            "le": h.le,
        })
    };
    json!({
        "connect": one(&t.hist[shm::Hist::Connect as usize]),
        "header": one(&t.hist[shm::Hist::Header as usize]),
        "response": one(&t.hist[shm::Hist::Response as usize]),
    })
}

/// A server's or route's request durations: cumulative buckets (bounds in the answer's `le`).
fn duration_json(t: &shm::Traffic) -> Value {
    let h = &t.hist[shm::Hist::Request as usize];
    json!({ "le": h.le, "count": h.count, "sum_seconds": h.sum_us as f64 / 1e6 })
}

/// Responses by exact code, as `/metrics` counts them ("other" per class for codes outside
/// the table).
fn codes_json(t: &shm::Traffic) -> Value {
    let mut m = serde_json::Map::new();
    let mut listed = [0u64; 5];
    for (code, n) in shm::codes::CODES.iter().zip(t.codes) {
        if n != 0 {
            m.insert(code.to_string(), json!(n));
            if let Some(c) = shm::codes::class(*code) {
                listed[c] += n;
            }
        }
    }
    for (c, (total, listed)) in t.classes.iter().zip(listed).enumerate() {
        if *total > listed {
            m.insert(format!("{}xx other", c + 1), json!(total - listed));
        }
    }
    Value::Object(m)
}

impl Master {
    /// When the master started, in seconds since the Unix epoch.
    pub(super) fn started_secs(&self) -> u64 {
        self.started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Answers `method path` under `/api/`; `who` is the client's address.
    pub(super) fn api(&mut self, method: &str, path: &str, query: &str, who: &str) -> (u16, Value) {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("GET", ["api", "status"]) => (200, self.api_status()),
            ("GET", ["api", "upstreams"]) => (200, self.api_upstreams()),
            ("GET", ["api", "traffic"]) => (200, self.api_traffic()),
            ("GET", ["api", "history"]) => (200, self.api_history()),
            ("GET", ["api", "errors"]) => (200, self.api_errors()),
            ("GET", ["api", "config"]) => {
                (200, serde_json::to_value(&self.cfg).unwrap_or(Value::Null))
            }
            ("POST", ["api", "reload"]) => {
                crate::notice!("admin: reload requested by {who}");
                // Begun by the loop once this request is answered and its head freed: a
                // generation forked from inside the request would inherit the head (and the
                // token in it) on its stack.
                self.api_reload = true;
                (
                    202,
                    json!({"reload": "started", "see": "/api/status last_reload"}),
                )
            }
            ("POST", ["api", "reopen"]) => {
                crate::notice!("admin: log reopen requested by {who}");
                match self.reopen() {
                    Ok(()) => (200, json!({"reopened": true})),
                    Err(e) => (500, json!({"error": e.to_string()})),
                }
            }
            ("POST", ["api", "upstreams", u, "peers", p, action]) => {
                // The names as written: the dashboard encodes them (`#` of a host name's
                // entry, a space in an upstream's name), and so may a script.
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .map(|c| c.into_owned())
                };
                match (decode(u), decode(p)) {
                    (Ok(u), Ok(p)) => self.api_peer_action(&u, &p, action, query, who),
                    _ => (400, json!({"error": "names are UTF-8"})),
                }
            }
            ("GET", _) => (404, json!({"error": "not found"})),
            _ => (405, json!({"error": "method not allowed"})),
        }
    }

    pub(super) fn api_status(&self) -> Value {
        let view = self.shared.region.view();
        let workers: Vec<Value> = self
            .workers
            .iter()
            .map(|(_, w)| {
                let s = view.worker_stats(w.block);
                json!({
                    "pid": w.pid.as_raw(),
                    "generation": w.generation,
                    "serving": w.generation == self.generation,
                    "connections": {
                        "active": s.active.load(Relaxed),
                        "reading": s.reading.load(Relaxed),
                        "writing": s.writing.load(Relaxed),
                        "waiting": s.waiting.load(Relaxed),
                    },
                    "requests": s.requests.load(Relaxed),
                })
            })
            .collect();
        let started = self.started_secs();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "master_pid": std::process::id(),
            "generation": self.generation,
            "started": started,
            "service_started": self.service_started,
            "uptime_seconds": epoch_secs().saturating_sub(started),
            "workers": workers,
            "reloads": {"success": self.stats.reloads_ok, "failure": self.stats.reloads_failed},
            "worker_restarts": self.stats.worker_restarts,
            "last_reload": self.reloads.back().map(reload_json),
            "reload_history": self.reloads.iter().map(reload_json).collect::<Vec<_>>(),
        })
    }

    /// Request counts and latency histograms by server and by each server's route, and
    /// client connections: what the dashboard turns into rates and percentiles between two
    /// polls.
    pub(super) fn api_traffic(&self) -> Value {
        let view = self.shared.region.view();
        let live = self.shared.live_blocks();
        let mut seen = std::collections::HashSet::new();
        let servers: Vec<Value> = self
            .cfg
            .server
            .iter()
            .filter(|s| seen.insert(s.slot))
            .map(|s| {
                let t = view.traffic(s.slot, &live);
                let routes: Vec<Value> = s
                    .route
                    .iter()
                    .map(|r| {
                        let t = view.traffic(r.slot, &live);
                        json!({
                            "route": r.name,
                            "classes": t.classes,
                            "duration": duration_json(&t),
                        })
                    })
                    .collect();
                json!({
                    "server": s.label(),
                    "classes": t.classes,
                    "duration": duration_json(&t),
                    "routes": routes,
                })
            })
            .collect();
        let c = view.connections(&live);
        let le: Vec<f64> = shm::BUCKETS_US.iter().map(|b| *b as f64 / 1e6).collect();
        json!({
            // The master's clock: the dashboard lines these up with /api/history's samples.
            "at_ms": epoch_ms(),
            "requests": c.requests,
            "accepted": c.accepted,
            "connections": { "active": c.active, "reading": c.reading, "writing": c.writing, "waiting": c.waiting },
            "le": le,
            "servers": servers,
        })
    }

    /// The last lines of the error log, when it is a file.
    fn api_errors(&self) -> Value {
        use std::io::{Read, Seek, SeekFrom};
        const TAIL: u64 = 64 * 1024;
        let crate::config::LogTarget::File(path) = &self.cfg.error_log.path else {
            return json!({ "lines": [], "note": "the error log is not a file" });
        };
        let mut text = Vec::new();
        if let Ok(mut f) = std::fs::File::open(path) {
            let len = f.metadata().map_or(0, |m| m.len());
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
            let _ = f.take(TAIL).read_to_end(&mut text);
        }
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        // The first line may be cut; the last 50 are enough.
        let from = lines
            .len()
            .saturating_sub(50)
            .max(usize::from(lines.len() > 50));
        json!({ "lines": lines[from.min(lines.len())..] })
    }

    pub(super) fn api_upstreams(&self) -> Value {
        let view = self.shared.region.view();
        let live = self.shared.live_blocks();
        let now = shm::now_ms();
        let ups: Vec<Value> = self
            .cfg
            .upstream
            .iter()
            .map(|u| {
                let peers: Vec<Value> = u
                    .peers
                    .iter()
                    .filter_map(|p| {
                        // A host name's spare entries (no address now) are not shown.
                        let address = p.address(&view)?.to_string();
                        let t = view.totals(p.slot, now);
                        let traffic = view.traffic(p.slot, &live);
                        let h = view.health(p.slot);
                        let state = PeerState::of(p, &t, h.admin());
                        Some(json!({
                            "peer": p.key(),
                            "address": address,
                            "state": state.as_str(),
                            "backup": p.backup,
                            "weight": h.weight().unwrap_or(p.weight),
                            "weight_set_at_run_time": h.weight().is_some(),
                            "override": override_json(h),
                            "health_check": match t.checked {
                                shm::Checked::Up => "up",
                                shm::Checked::Down => "down",
                                shm::Checked::Unknown => "unknown",
                            },
                            "requests": t.requests,
                            "failures": t.failures,
                            "consecutive_failures": t.fails,
                            "ejections": t.ejections,
                            "ejected_for_ms": t.down_for_ms,
                            "probes": t.probes,
                            "last_probe": probe_json(h),
                            "latency": latency_json(&traffic),
                            "active": t.active,
                            "idle": traffic.idle,
                            "responses": {
                                "1xx": traffic.classes[0], "2xx": traffic.classes[1],
                                "3xx": traffic.classes[2], "4xx": traffic.classes[3],
                                "5xx": traffic.classes[4],
                            },
                            "codes": codes_json(&traffic),
                        }))
                    })
                    .collect();
                let t = view.totals(u.slot, now);
                json!({
                    "name": u.name,
                    "retries": t.retries,
                    "peers": peers,
                })
            })
            .collect();
        let le: Vec<f64> = shm::BUCKETS_US.iter().map(|b| *b as f64 / 1e6).collect();
        json!({ "upstreams": ups, "le": le })
    }

    fn api_peer_action(
        &mut self,
        u: &str,
        p: &str,
        action: &str,
        query: &str,
        who: &str,
    ) -> (u16, Value) {
        let Some(up) = self.cfg.upstream.iter().find(|x| x.name == u) else {
            let near = closest(u, self.cfg.upstream.iter().map(|x| x.name.as_str()));
            return (
                404,
                json!({"error": format!("no upstream \"{u}\"{}", did_you_mean(near))}),
            );
        };
        let Some(peer) = up.peers.iter().find(|x| x.key() == p) else {
            let keys: Vec<String> = up.peers.iter().map(|x| x.key()).collect();
            let near = closest(p, keys.iter().map(String::as_str));
            return (
                404,
                json!({"error": format!("no peer \"{p}\" in upstream \"{u}\"{}", did_you_mean(near))}),
            );
        };
        let view = self.shared.region.view();
        let h = view.health(peer.slot);
        let what = match action {
            "drain" => {
                h.set_admin(PeerAdmin::Drain);
                "drained (no new requests)".to_string()
            }
            "down" => {
                h.set_admin(PeerAdmin::Down);
                "marked down".to_string()
            }
            "up" => {
                h.set_admin(PeerAdmin::Normal);
                "marked up (as the config and health say)".to_string()
            }
            "weight" => {
                let value = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("value="))
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|w| (1..=1000).contains(w));
                let Some(w) = value else {
                    return (400, json!({"error": "weight needs ?value=1..1000"}));
                };
                h.set_weight(Some(w));
                format!("given weight {w} (the config says {})", peer.weight)
            }
            _ => {
                return (
                    404,
                    json!({"error": format!("no action \"{action}\" (drain, down, up, weight)")}),
                )
            }
        };
        crate::notice!("admin: peer {u}/{p} {what} by {who}, until the next reload");
        (
            200,
            json!({"upstream": u, "peer": p, "done": what, "until": "next reload"}),
        )
    }

    /// A reload resets what the API set on peers (the config is the truth again).
    pub(super) fn clear_peer_overrides(&self) {
        let view = self.shared.region.view();
        for u in &self.cfg.upstream {
            for p in &u.peers {
                let h = view.health(p.slot);
                h.set_admin(PeerAdmin::Normal);
                h.set_weight(None);
            }
        }
    }
}

/// "; did you mean \"NAME\"?" for a name the operator probably meant, or nothing.
fn did_you_mean(near: Option<&str>) -> String {
    near.map(|n| format!("; did you mean \"{n}\"?"))
        .unwrap_or_default()
}
