//! `GET /metrics`: the node's counters in Prometheus text format (version 0.0.4), summed at
//! scrape time from the shared memory region (every live worker's block plus the retired
//! totals, so nothing goes backwards when a worker exits or a reload replaces it) and from
//! the master's own counts (generations, reloads, worker restarts).

use super::api::PeerState;
use super::Master;
use crate::shm::{self, HistTotals, Traffic, BUCKETS_US};
use std::fmt::Write;

/// The master's own counts since it started.
#[derive(Debug, Default)]
pub(super) struct MasterStats {
    pub(super) reloads_ok: u64,
    pub(super) reloads_failed: u64,
    pub(super) worker_restarts: u64,
}

/// A server's label and sums, and its routes' names and sums.
type ServerSums = (String, Traffic, Vec<(String, Traffic)>);

/// A peer's labels and sums, gathered once per scrape.
struct PeerSums {
    label: String,
    /// It takes requests (`PeerState::Up`).
    up: bool,
    totals: shm::Totals,
    traffic: Traffic,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `# HELP` and `# TYPE` once per family.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, v: u64) {
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {v}");
        } else {
            let _ = writeln!(self.text, "{name}{{{labels}}} {v}");
        }
    }

    fn histogram(&mut self, name: &str, labels: &str, h: &HistTotals) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS_US.iter().enumerate() {
            let le = *b as f64 / 1e6;
            let _ = writeln!(
                self.text,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {}",
                h.le[i]
            );
        }
        let _ = writeln!(
            self.text,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            self.text,
            "{name}_sum{{{labels}}} {}",
            h.sum_us as f64 / 1e6
        );
        let _ = writeln!(self.text, "{name}_count{{{labels}}} {}", h.count);
    }
}

impl Master {
    pub(super) fn metrics_text(&self) -> String {
        let view = self.shared.region.view();
        let live = self.shared.live_blocks();
        let cfg = &self.cfg;
        let mut o = Out {
            text: String::with_capacity(16 * 1024),
        };

        // Requests, by server and route.
        // Each slot is summed over the workers once per scrape.
        let servers: Vec<ServerSums> = {
            let mut seen = std::collections::HashSet::new();
            cfg.server
                .iter()
                .filter(|s| seen.insert(s.slot))
                .map(|s| {
                    let routes = s
                        .route
                        .iter()
                        .map(|r| (r.name.clone(), view.traffic(r.slot, &live)))
                        .collect();
                    (s.label(), view.traffic(s.slot, &live), routes)
                })
                .collect()
        };
        o.family(
            "proxyd_server_requests_total",
            "counter",
            "Requests answered, by server and status class.",
        );
        for (name, t, _) in &servers {
            for (c, n) in CLASSES.iter().zip(t.classes) {
                o.sample(
                    "proxyd_server_requests_total",
                    &format!("server=\"{}\",class=\"{c}\"", esc(name)),
                    n,
                );
            }
        }
        o.family(
            "proxyd_server_request_duration_seconds",
            "histogram",
            "Time from a request's head to its last byte sent, by server.",
        );
        for (name, t, _) in &servers {
            o.histogram(
                "proxyd_server_request_duration_seconds",
                &format!("server=\"{}\"", esc(name)),
                &t.hist[shm::Hist::Request as usize],
            );
        }
        for (family, help, pick) in [
            (
                "proxyd_server_received_bytes_total",
                "Bytes of requests (heads and bodies) received from clients, by server.",
                0,
            ),
            (
                "proxyd_server_sent_bytes_total",
                "Bytes sent to clients, by server.",
                1,
            ),
        ] {
            o.family(family, "counter", help);
            for (name, t, _) in &servers {
                let v = if pick == 0 { t.bytes_in } else { t.bytes_out };
                o.sample(family, &format!("server=\"{}\"", esc(name)), v);
            }
        }
        o.family(
            "proxyd_route_requests_total",
            "counter",
            "Requests answered, by server, route and status class.",
        );
        for (name, _, routes) in &servers {
            for (route, t) in routes {
                for (c, n) in CLASSES.iter().zip(t.classes) {
                    o.sample(
                        "proxyd_route_requests_total",
                        &format!(
                            "server=\"{}\",route=\"{}\",class=\"{c}\"",
                            esc(name),
                            esc(route)
                        ),
                        n,
                    );
                }
            }
        }
        o.family(
            "proxyd_route_request_duration_seconds",
            "histogram",
            "Time from a request's head to its last byte sent, by server and route.",
        );
        for (name, _, routes) in &servers {
            for (route, t) in routes {
                o.histogram(
                    "proxyd_route_request_duration_seconds",
                    &format!("server=\"{}\",route=\"{}\"", esc(name), esc(route)),
                    &t.hist[shm::Hist::Request as usize],
                );
            }
        }

        // Upstreams and peers.
        let now = shm::now_ms();
        let upstreams: Vec<(&str, Traffic, shm::Totals)> = cfg
            .upstream
            .iter()
            .map(|u| {
                (
                    u.name.as_str(),
                    view.traffic(u.slot, &live),
                    view.totals(u.slot, now),
                )
            })
            .collect();
        o.family(
            "proxyd_upstream_responses_total",
            "counter",
            "Responses from an upstream's peers by status class (a failed try counts as the 502 or 504 proxyd made of it).",
        );
        for (name, t, _) in &upstreams {
            for (c, n) in CLASSES.iter().zip(t.classes) {
                o.sample(
                    "proxyd_upstream_responses_total",
                    &format!("upstream=\"{}\",class=\"{c}\"", esc(name)),
                    n,
                );
            }
        }
        for (family, help, h) in [
            (
                "proxyd_upstream_connect_duration_seconds",
                "Time to connect to a peer (TLS handshake included), by upstream.",
                shm::Hist::Connect,
            ),
            (
                "proxyd_upstream_header_duration_seconds",
                "Time from a try's start to the response head, by upstream.",
                shm::Hist::Header,
            ),
            (
                "proxyd_upstream_response_duration_seconds",
                "Time from a try's start to the response's last byte, by upstream.",
                shm::Hist::Response,
            ),
        ] {
            o.family(family, "histogram", help);
            for (name, t, _) in &upstreams {
                o.histogram(
                    family,
                    &format!("upstream=\"{}\"", esc(name)),
                    &t.hist[h as usize],
                );
            }
        }
        o.family(
            "proxyd_upstream_retries_total",
            "counter",
            "Requests sent again to another peer after a failure, by upstream.",
        );
        for (name, _, totals) in &upstreams {
            o.sample(
                "proxyd_upstream_retries_total",
                &format!("upstream=\"{}\"", esc(name)),
                totals.retries,
            );
        }
        // A host name's spare entries (no address now) are left out.
        let peers: Vec<PeerSums> = cfg
            .upstream
            .iter()
            .flat_map(|u| {
                let (view, live) = (&view, &live);
                u.peers.iter().filter_map(move |p| {
                    let addr = p.address(view)?.to_string();
                    let totals = view.totals(p.slot, now);
                    let state = PeerState::of(p, &totals, view.health(p.slot).admin());
                    Some(PeerSums {
                        label: format!(
                            "upstream=\"{}\",peer=\"{}\",address=\"{}\"",
                            esc(&u.name),
                            esc(&p.key()),
                            esc(&addr)
                        ),
                        up: state == PeerState::Up,
                        totals,
                        traffic: view.traffic(p.slot, live),
                    })
                })
            })
            .collect();
        o.family(
            "proxyd_upstream_peer_up",
            "gauge",
            "1 when the peer takes requests: not down in the config or through the admin API, not draining, not failed by its health check, not ejected.",
        );
        for p in &peers {
            o.sample("proxyd_upstream_peer_up", &p.label, p.up as u64);
        }
        for (family, kind, help) in [
            (
                "proxyd_upstream_peer_requests_total",
                "counter",
                "Requests sent to the peer (a retry counts again).",
            ),
            (
                "proxyd_upstream_peer_failures_total",
                "counter",
                "Connect failures, timeouts and broken responses of the peer.",
            ),
            (
                "proxyd_upstream_peer_ejections_total",
                "counter",
                "Times the peer was taken out of rotation (failures or health check).",
            ),
        ] {
            o.family(family, kind, help);
            for p in &peers {
                let t = &p.totals;
                let v = match family {
                    "proxyd_upstream_peer_requests_total" => t.requests,
                    "proxyd_upstream_peer_failures_total" => t.failures,
                    _ => t.ejections,
                };
                o.sample(family, &p.label, v);
            }
        }
        o.family(
            "proxyd_upstream_peer_responses_total",
            "counter",
            "Responses from the peer by status class.",
        );
        for p in &peers {
            for (c, n) in CLASSES.iter().zip(p.traffic.classes) {
                o.sample(
                    "proxyd_upstream_peer_responses_total",
                    &format!("{},class=\"{c}\"", p.label),
                    n,
                );
            }
        }
        o.family(
            "proxyd_upstream_peer_connections",
            "gauge",
            "Connections to the peer: carrying a request (active) or pooled (idle).",
        );
        for p in &peers {
            for (state, v) in [("active", p.totals.active), ("idle", p.traffic.idle)] {
                o.sample(
                    "proxyd_upstream_peer_connections",
                    &format!("{},state=\"{state}\"", p.label),
                    v,
                );
            }
        }

        // Client connections, over the live workers.
        let c = view.connections(&live);
        let (accepted, requests) = (c.accepted, c.requests);
        let states = [c.active, c.reading, c.writing, c.waiting];
        o.family(
            "proxyd_connections",
            "gauge",
            "Client connections (active: all; reading a head, writing: working on a request, waiting: idle keep-alive), as workers last counted them (about once a second).",
        );
        for (state, v) in ["active", "reading", "writing", "waiting"]
            .iter()
            .zip(states)
        {
            o.sample("proxyd_connections", &format!("state=\"{state}\""), v);
        }
        o.family(
            "proxyd_connections_accepted_total",
            "counter",
            "Client connections accepted.",
        );
        o.sample("proxyd_connections_accepted_total", "", accepted);
        o.family(
            "proxyd_requests_total",
            "counter",
            "Requests answered by the node (every access log line).",
        );
        o.sample("proxyd_requests_total", "", requests);

        // The master.
        o.family(
            "proxyd_config_generation",
            "gauge",
            "The generation of workers serving (1 at start, one more per successful reload).",
        );
        o.sample("proxyd_config_generation", "", self.generation);
        o.family(
            "proxyd_reloads_total",
            "counter",
            "Reloads since the master started, by result.",
        );
        o.sample(
            "proxyd_reloads_total",
            "result=\"success\"",
            self.stats.reloads_ok,
        );
        o.sample(
            "proxyd_reloads_total",
            "result=\"failure\"",
            self.stats.reloads_failed,
        );
        o.family(
            "proxyd_worker_restarts_total",
            "counter",
            "Workers that exited unexpectedly and were started again.",
        );
        o.sample(
            "proxyd_worker_restarts_total",
            "",
            self.stats.worker_restarts,
        );
        o.family("proxyd_workers", "gauge", "Worker processes, by state.");
        let serving = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == self.generation)
            .count();
        let draining = self.workers.len() - serving;
        o.sample("proxyd_workers", "state=\"serving\"", serving as u64);
        o.sample("proxyd_workers", "state=\"other\"", draining as u64);
        o.family(
            "proxyd_start_time_seconds",
            "gauge",
            "When the master started, in seconds since the Unix epoch.",
        );
        o.sample("proxyd_start_time_seconds", "", self.started_secs());
        o.family("proxyd_info", "gauge", "The running version.");
        o.sample(
            "proxyd_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
            1,
        );
        o.text
    }
}
