//! `GET /metrics`: the node's counters in Prometheus text format (version 0.0.4), summed at
//! scrape time from the shared memory region (every live worker's block plus the retired
//! totals, so nothing goes backwards when a worker exits or a reload replaces it) and from
//! the master's own counts (generations, reloads, worker restarts).
//!
//! The text is made a piece at a time as the client reads it (a `Scrape` remembers where it
//! is), never whole: with thousands of upstreams it is megabytes, and the master holds at
//! most a piece of it per scrape whatever the clients do.

use super::api::PeerState;
use super::Master;
use crate::shm::{self, HistTotals, BUCKETS_US};
use std::collections::HashSet;
use std::fmt::Write;

/// The master's own counts since it started.
#[derive(Debug, Default)]
pub(super) struct MasterStats {
    pub(super) reloads_ok: u64,
    pub(super) reloads_failed: u64,
    pub(super) worker_restarts: u64,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A label value with `\\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes samples into a piece of the text.
struct Out<'a> {
    text: &'a mut String,
}

impl Out<'_> {
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

/// What a family has one sample (or histogram) per.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Server,
    Route,
    Upstream,
    Peer,
    /// The node's and the master's own numbers: one item, several families.
    Node,
}

/// The families in the order of the text: name, type, help, what it has a sample per.
const FAMILIES: [(&str, &str, &str, Scope); 18] = [
    ("proxyd_server_requests_total", "counter", "Requests answered, by server and status class.", Scope::Server),
    ("proxyd_server_request_duration_seconds", "histogram", "Time from a request's head to its last byte sent, by server.", Scope::Server),
    ("proxyd_server_received_bytes_total", "counter", "Bytes of requests (heads and bodies) received from clients, by server.", Scope::Server),
    ("proxyd_server_sent_bytes_total", "counter", "Bytes sent to clients, by server.", Scope::Server),
    ("proxyd_route_requests_total", "counter", "Requests answered, by server, route and status class.", Scope::Route),
    ("proxyd_route_request_duration_seconds", "histogram", "Time from a request's head to its last byte sent, by server and route.", Scope::Route),
    ("proxyd_upstream_responses_total", "counter", "Responses from an upstream's peers by status class (a failed try counts as the 502 or 504 proxyd made of it).", Scope::Upstream),
    ("proxyd_upstream_connect_duration_seconds", "histogram", "Time to connect to a peer (TLS handshake included), by upstream.", Scope::Upstream),
    ("proxyd_upstream_header_duration_seconds", "histogram", "Time from a try's start to the response head, by upstream.", Scope::Upstream),
    ("proxyd_upstream_response_duration_seconds", "histogram", "Time from a try's start to the response's last byte, by upstream.", Scope::Upstream),
    ("proxyd_upstream_retries_total", "counter", "Requests sent again to another peer after a failure, by upstream.", Scope::Upstream),
    ("proxyd_upstream_peer_up", "gauge", "1 when the peer takes requests: not down in the config or through the admin API, not draining, not failed by its health check, not ejected.", Scope::Peer),
    ("proxyd_upstream_peer_requests_total", "counter", "Requests sent to the peer (a retry counts again).", Scope::Peer),
    ("proxyd_upstream_peer_failures_total", "counter", "Connect failures, timeouts and broken responses of the peer.", Scope::Peer),
    ("proxyd_upstream_peer_ejections_total", "counter", "Times the peer was taken out of rotation (failures or health check).", Scope::Peer),
    ("proxyd_upstream_peer_responses_total", "counter", "Responses from the peer by status class.", Scope::Peer),
    ("proxyd_upstream_peer_connections", "gauge", "Connections to the peer: carrying a request (active) or pooled (idle).", Scope::Peer),
    ("", "", "", Scope::Node),
];

/// Where a scrape is in the text.
pub(super) struct Scrape {
    family: usize,
    /// The item within the family: (server, route) or (upstream, peer); (n, 0) otherwise.
    at: (usize, usize),
    /// Server slots written in this family (a server listening on several addresses shares
    /// one slot, and one sample).
    seen: HashSet<u32>,
    /// The text follows the config of this generation; a reload ends the scrape.
    generation: u64,
}

impl Scrape {
    pub(super) fn new(generation: u64) -> Scrape {
        Scrape {
            family: 0,
            at: (0, 0),
            seen: HashSet::new(),
            generation,
        }
    }
}

impl Master {
    /// Appends the next pieces of the metrics text to `out` until it holds `want` bytes or
    /// the text is done. Ok(true): done. Err: a reload replaced the config the text follows.
    pub(super) fn metrics_fill(
        &self,
        s: &mut Scrape,
        out: &mut String,
        want: usize,
    ) -> Result<bool, ()> {
        if s.generation != self.generation {
            return Err(());
        }
        let view = self.shared.region.view();
        let live = self.shared.live_blocks();
        let now = shm::now_ms();
        let cfg = &self.cfg;
        let mut o = Out { text: out };
        while o.text.len() < want {
            let Some(&(name, kind, help, scope)) = FAMILIES.get(s.family) else {
                return Ok(true);
            };
            if s.at == (0, 0) && scope != Scope::Node {
                o.family(name, kind, help);
                s.seen.clear();
            }
            let (a, b) = s.at;
            // Each arm writes item (a, b) if it exists and moves on, or ends the family.
            let more = match scope {
                Scope::Server | Scope::Route => match cfg.server.get(a) {
                    None => false,
                    Some(srv) if b == 0 && !s.seen.insert(srv.slot) => {
                        s.at = (a + 1, 0);
                        true
                    }
                    Some(srv) if scope == Scope::Server => {
                        let t = view.traffic(srv.slot, &live);
                        let label = format!("server=\"{}\"", esc(&srv.label()));
                        match s.family {
                            0 => {
                                for (c, n) in CLASSES.iter().zip(t.classes) {
                                    o.sample(name, &format!("{label},class=\"{c}\""), n);
                                }
                            }
                            1 => o.histogram(name, &label, &t.hist[shm::Hist::Request as usize]),
                            2 => o.sample(name, &label, t.bytes_in),
                            _ => o.sample(name, &label, t.bytes_out),
                        }
                        s.at = (a + 1, 0);
                        true
                    }
                    Some(srv) => {
                        match srv.route.get(b) {
                            Some(r) => {
                                let t = view.traffic(r.slot, &live);
                                let label = format!(
                                    "server=\"{}\",route=\"{}\"",
                                    esc(&srv.label()),
                                    esc(&r.name)
                                );
                                if s.family == 4 {
                                    for (c, n) in CLASSES.iter().zip(t.classes) {
                                        o.sample(name, &format!("{label},class=\"{c}\""), n);
                                    }
                                } else {
                                    o.histogram(name, &label, &t.hist[shm::Hist::Request as usize]);
                                }
                                s.at = (a, b + 1);
                            }
                            None => s.at = (a + 1, 0),
                        }
                        true
                    }
                },
                Scope::Upstream => match cfg.upstream.get(a) {
                    None => false,
                    Some(u) => {
                        let label = format!("upstream=\"{}\"", esc(&u.name));
                        let t = view.traffic(u.slot, &live);
                        match s.family {
                            6 => {
                                for (c, n) in CLASSES.iter().zip(t.classes) {
                                    o.sample(name, &format!("{label},class=\"{c}\""), n);
                                }
                            }
                            7 => o.histogram(name, &label, &t.hist[shm::Hist::Connect as usize]),
                            8 => o.histogram(name, &label, &t.hist[shm::Hist::Header as usize]),
                            9 => o.histogram(name, &label, &t.hist[shm::Hist::Response as usize]),
                            _ => o.sample(name, &label, view.totals(u.slot, now).retries),
                        }
                        s.at = (a + 1, 0);
                        true
                    }
                },
                Scope::Peer => match cfg.upstream.get(a) {
                    None => false,
                    Some(u) => {
                        match u.peers.get(b) {
                            // A host name's spare entries (no address now) are left out.
                            Some(p) => {
                                if let Some(addr) = p.address(&view) {
                                    let label = format!(
                                        "upstream=\"{}\",peer=\"{}\",address=\"{}\"",
                                        esc(&u.name),
                                        esc(&p.key()),
                                        esc(&addr.to_string())
                                    );
                                    let t = view.totals(p.slot, now);
                                    match s.family {
                                        11 => {
                                            let state =
                                                PeerState::of(p, &t, view.health(p.slot).admin());
                                            o.sample(
                                                name,
                                                &label,
                                                u64::from(state == PeerState::Up),
                                            );
                                        }
                                        12 => o.sample(name, &label, t.requests),
                                        13 => o.sample(name, &label, t.failures),
                                        14 => o.sample(name, &label, t.ejections),
                                        15 => {
                                            let tr = view.traffic(p.slot, &live);
                                            for (c, n) in CLASSES.iter().zip(tr.classes) {
                                                o.sample(
                                                    name,
                                                    &format!("{label},class=\"{c}\""),
                                                    n,
                                                );
                                            }
                                        }
                                        _ => {
                                            let idle = view.traffic(p.slot, &live).idle;
                                            for (state, v) in [("active", t.active), ("idle", idle)]
                                            {
                                                o.sample(
                                                    name,
                                                    &format!("{label},state=\"{state}\""),
                                                    v,
                                                );
                                            }
                                        }
                                    }
                                }
                                s.at = (a, b + 1);
                            }
                            None => s.at = (a + 1, 0),
                        }
                        true
                    }
                },
                Scope::Node => {
                    self.node_metrics(&mut o, &view, &live);
                    false
                }
            };
            if !more {
                s.family += 1;
                s.at = (0, 0);
            }
        }
        Ok(s.family >= FAMILIES.len())
    }

    /// Client connections over the live workers, and the master's own counts.
    fn node_metrics(&self, o: &mut Out, view: &shm::View, live: &[u32]) {
        let c = view.connections(live);
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
    }
}
