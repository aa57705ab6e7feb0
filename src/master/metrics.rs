//! `GET /metrics`: the node's counters in Prometheus text format (version 0.0.4), summed at
//! scrape time from the shared memory region (every live worker's block plus the retired
//! totals, so nothing goes backwards when a worker exits or a reload replaces it) and from
//! the master's own counts (generations, reloads, worker restarts).
//!
//! The text is made a piece at a time as the client reads it (a `Scrape` remembers where it
//! is), never whole: with thousands of upstreams it is megabytes, and the master holds at
//! most a piece of it per scrape whatever the clients do.

use super::api::PeerState;
use super::process::{Kind, Tally};
use super::Master;
use crate::shm::{self, codes, HistTotals, BUCKETS_US};
use std::collections::HashSet;
use std::fmt::Write;

/// The master's own counts since it started.
#[derive(Debug, Default)]
pub(super) struct MasterStats {
    pub(super) reloads_ok: u64,
    pub(super) reloads_failed: u64,
    pub(super) worker_restarts: u64,
    /// CPU time of the node's processes, for `process_cpu_seconds_total`.
    pub(super) processes: Tally,
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

    fn float(&mut self, name: &str, labels: &str, v: f64) {
        let _ = writeln!(self.text, "{name}{{{labels}}} {v}");
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
    /// Peers of upstreams with a health check.
    Probe,
    /// Servers with TLS, one sample per certificate file.
    Certificate,
    /// The node's and the master's own numbers: one item, several families.
    Node,
}

/// The families in the order of the text: name, type, help, what it has a sample per.
const FAMILIES: [(&str, &str, &str, Scope); 25] = [
    ("proxyd_server_requests_total", "counter", "Requests answered, by server, status class and code (a code outside proxyd's table of common codes counts as code=\"other\" of its class).", Scope::Server),
    ("proxyd_server_request_duration_seconds", "histogram", "Time from a request's head to its last byte sent, by server.", Scope::Server),
    ("proxyd_server_received_bytes_total", "counter", "Bytes of requests (heads and bodies) received from clients, by server.", Scope::Server),
    ("proxyd_server_sent_bytes_total", "counter", "Bytes sent to clients, by server.", Scope::Server),
    ("proxyd_route_requests_total", "counter", "Requests answered, by server, route, status class and code.", Scope::Route),
    ("proxyd_route_request_duration_seconds", "histogram", "Time from a request's head to its last byte sent, by server and route.", Scope::Route),
    ("proxyd_upstream_responses_total", "counter", "Responses from an upstream's peers by status class and code (a failed try counts as the 502 or 504 proxyd made of it).", Scope::Upstream),
    ("proxyd_upstream_connect_duration_seconds", "histogram", "Time to connect to a peer (TLS handshake included), by upstream.", Scope::Upstream),
    ("proxyd_upstream_header_duration_seconds", "histogram", "Time from a try's start to the response head, by upstream.", Scope::Upstream),
    ("proxyd_upstream_response_duration_seconds", "histogram", "Time from a try's start to the response's last byte, by upstream.", Scope::Upstream),
    ("proxyd_upstream_retries_total", "counter", "Requests sent again to another peer after a failure, by upstream.", Scope::Upstream),
    ("proxyd_upstream_peer_up", "gauge", "1 when the peer takes requests: not down in the config or through the admin API, not draining, not failed by its health check, not ejected.", Scope::Peer),
    ("proxyd_upstream_peer_requests_total", "counter", "Requests sent to the peer (a retry counts again).", Scope::Peer),
    ("proxyd_upstream_peer_failures_total", "counter", "Connect failures, timeouts and broken responses of the peer.", Scope::Peer),
    ("proxyd_upstream_peer_ejections_total", "counter", "Times the peer was taken out of rotation (failures or health check).", Scope::Peer),
    ("proxyd_upstream_peer_responses_total", "counter", "Responses from the peer by status class and code.", Scope::Peer),
    ("proxyd_upstream_peer_response_duration_seconds", "histogram", "Time from a try's start to the response's last byte, by peer.", Scope::Peer),
    ("proxyd_upstream_peer_connections", "gauge", "Connections to the peer: carrying a request (active) or pooled (idle).", Scope::Peer),
    ("proxyd_upstream_peer_probes_total", "counter", "Health-check probes of the peer finished, by result (ok or fail).", Scope::Probe),
    ("proxyd_upstream_peer_probe_success", "gauge", "1 when the peer's last health-check probe succeeded, 0 when it failed (no sample before the first).", Scope::Probe),
    ("proxyd_upstream_peer_probe_duration_seconds", "gauge", "How long the peer's last health-check probe took.", Scope::Probe),
    ("proxyd_upstream_peer_probe_timestamp_seconds", "gauge", "When the peer's last health-check probe ended, in seconds since the Unix epoch.", Scope::Probe),
    ("proxyd_tls_certificate_expiry_seconds", "gauge", "When a server's certificate expires (its notAfter, as read at the last config load), in seconds since the Unix epoch.", Scope::Certificate),
    ("", "", "", Scope::Node),
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

/// Samples of a family by status class and code: each code of the table that was seen, and
/// per class the rest as code="other", so that the samples of a class sum to its count.
fn statuses(o: &mut Out, name: &str, label: &str, t: &shm::Traffic) {
    for (c, (class, total)) in CLASSES.iter().zip(t.classes).enumerate() {
        let mut listed = 0;
        for (code, n) in codes::CODES.iter().zip(t.codes) {
            if n != 0 && codes::class(*code) == Some(c) {
                listed += n;
                o.sample(
                    name,
                    &format!("{label},class=\"{class}\",code=\"{code}\""),
                    n,
                );
            }
        }
        if total > listed {
            let other = format!("{label},class=\"{class}\",code=\"other\"");
            o.sample(name, &other, total - listed);
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
                Scope::Server | Scope::Route | Scope::Certificate => match cfg.server.get(a) {
                    None => false,
                    Some(srv) if b == 0 && !s.seen.insert(srv.slot) => {
                        s.at = (a + 1, 0);
                        true
                    }
                    Some(srv) if scope == Scope::Server => {
                        let t = view.traffic(srv.slot, &live);
                        let label = format!("server=\"{}\"", esc(&srv.label()));
                        match name {
                            "proxyd_server_requests_total" => statuses(&mut o, name, &label, &t),
                            "proxyd_server_request_duration_seconds" => {
                                o.histogram(name, &label, &t.hist[shm::Hist::Request as usize])
                            }
                            "proxyd_server_received_bytes_total" => {
                                o.sample(name, &label, t.bytes_in)
                            }
                            _ => o.sample(name, &label, t.bytes_out),
                        }
                        s.at = (a + 1, 0);
                        true
                    }
                    Some(srv) if scope == Scope::Certificate => {
                        let files = srv
                            .tls
                            .iter()
                            .flat_map(|t| std::iter::once(&t.files).chain(t.extra_certs.iter()));
                        for f in files {
                            let Some(until) = f.not_after else { continue };
                            let label = format!(
                                "server=\"{}\",file=\"{}\"",
                                esc(&srv.label()),
                                esc(&f.cert.display().to_string())
                            );
                            let _ = writeln!(o.text, "{name}{{{label}}} {until}");
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
                                if name == "proxyd_route_requests_total" {
                                    statuses(&mut o, name, &label, &t);
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
                        let hist = |h: shm::Hist| &t.hist[h as usize];
                        match name {
                            "proxyd_upstream_responses_total" => statuses(&mut o, name, &label, &t),
                            "proxyd_upstream_connect_duration_seconds" => {
                                o.histogram(name, &label, hist(shm::Hist::Connect))
                            }
                            "proxyd_upstream_header_duration_seconds" => {
                                o.histogram(name, &label, hist(shm::Hist::Header))
                            }
                            "proxyd_upstream_response_duration_seconds" => {
                                o.histogram(name, &label, hist(shm::Hist::Response))
                            }
                            _ => o.sample(name, &label, view.totals(u.slot, now).retries),
                        }
                        s.at = (a + 1, 0);
                        true
                    }
                },
                Scope::Peer | Scope::Probe => match cfg.upstream.get(a) {
                    None => false,
                    Some(u) if scope == Scope::Probe && u.health_check.is_none() => {
                        s.at = (a + 1, 0);
                        true
                    }
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
                                    self.peer_sample(&mut o, name, &label, p, &view, &live, now);
                                }
                                s.at = (a, b + 1);
                            }
                            None => s.at = (a + 1, 0),
                        }
                        true
                    }
                },
                Scope::Node => {
                    if s.family + 1 == FAMILIES.len() {
                        self.master_metrics(&mut o);
                    } else {
                        self.node_metrics(&mut o, &view, &live);
                    }
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

    /// The sample(s) of family `name` for peer `p`.
    #[allow(clippy::too_many_arguments)]
    fn peer_sample(
        &self,
        o: &mut Out,
        name: &str,
        label: &str,
        p: &crate::config::Peer,
        view: &shm::View,
        live: &[u32],
        now: u64,
    ) {
        // Each family reads only what it shows: the totals sum every worker block.
        let totals = || view.totals(p.slot, now);
        let h = view.health(p.slot);
        let last = || h.last_probe();
        match name {
            "proxyd_upstream_peer_up" => {
                let state = PeerState::of(p, &totals(), h.admin());
                o.sample(name, label, u64::from(state == PeerState::Up));
            }
            "proxyd_upstream_peer_requests_total" => o.sample(name, label, totals().requests),
            "proxyd_upstream_peer_failures_total" => o.sample(name, label, totals().failures),
            "proxyd_upstream_peer_ejections_total" => o.sample(name, label, totals().ejections),
            "proxyd_upstream_peer_responses_total" => {
                statuses(o, name, label, &view.traffic(p.slot, live))
            }
            "proxyd_upstream_peer_response_duration_seconds" => {
                let tr = view.traffic(p.slot, live);
                o.histogram(name, label, &tr.hist[shm::Hist::Response as usize]);
            }
            "proxyd_upstream_peer_connections" => {
                let idle = view.traffic(p.slot, live).idle;
                for (state, v) in [("active", totals().active), ("idle", idle)] {
                    o.sample(name, &format!("{label},state=\"{state}\""), v);
                }
            }
            "proxyd_upstream_peer_probes_total" => {
                let (ok, failed) = h.probe_counts();
                o.sample(name, &format!("{label},result=\"ok\""), ok);
                o.sample(name, &format!("{label},result=\"fail\""), failed);
            }
            "proxyd_upstream_peer_probe_success" => {
                if let Some(l) = last() {
                    o.sample(name, label, u64::from(l.outcome == shm::ProbeOutcome::Ok));
                }
            }
            "proxyd_upstream_peer_probe_duration_seconds" => {
                if let Some(l) = last() {
                    o.float(name, label, l.duration.as_secs_f64());
                }
            }
            "proxyd_upstream_peer_probe_timestamp_seconds" => {
                if let Some(l) = last() {
                    o.float(name, label, l.at_ms as f64 / 1e3);
                }
            }
            _ => {}
        }
    }

    /// Client connections over the live workers.
    fn node_metrics(&self, o: &mut Out, view: &shm::View, live: &[u32]) {
        let c = view.connections(live);
        // The states partition the open connections (a worker counts all of them at the
        // same moment), so sum() over them is the total; there is no "all" state beside them.
        o.family(
            "proxyd_connections",
            "gauge",
            "Open client connections by state (reading: a request head or TLS handshake; writing: working on a request; waiting: idle keep-alive), as workers last counted them (about once a second); the states sum to the total.",
        );
        for (state, v) in [
            ("reading", c.reading),
            ("writing", c.writing),
            ("waiting", c.waiting),
        ] {
            o.sample("proxyd_connections", &format!("state=\"{state}\""), v);
        }
        o.family(
            "proxyd_connections_accepted_total",
            "counter",
            "Client connections accepted.",
        );
        o.sample("proxyd_connections_accepted_total", "", c.accepted);
        o.family(
            "proxyd_requests_total",
            "counter",
            "Requests answered by the node (every access log line).",
        );
        o.sample("proxyd_requests_total", "", c.requests);
    }

    /// The master's own counts, its workers, and the node's processes. `proxyd_info` comes
    /// last: a scraper that sees it has the whole text.
    fn master_metrics(&self, o: &mut Out) {
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
        o.family(
            "proxyd_workers",
            "gauge",
            "Worker processes by state: starting (forked, not ready yet), serving, draining (finishing what they have after a reload or before a stop).",
        );
        let mut states = [("starting", 0u64), ("serving", 0), ("draining", 0)];
        for (_, w) in self.workers.iter() {
            let i = match w.life {
                super::Life::Starting => 0,
                super::Life::Serving => 1,
                super::Life::Draining(_) => 2,
            };
            states[i].1 += 1;
        }
        for (state, n) in states {
            o.sample("proxyd_workers", &format!("state=\"{state}\""), n);
        }
        self.process_metrics(o);
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

    /// `process_*` of the master, the workers and the helper, summed per kind (see
    /// `process.rs`).
    fn process_metrics(&self, o: &mut Out) {
        let mut pids = vec![(Kind::Master, std::process::id())];
        for (_, w) in self.workers.iter() {
            pids.push((Kind::Worker, w.pid.as_raw() as u32));
        }
        if let Some(h) = self.helper_pid() {
            pids.push((Kind::Helper, h.as_raw() as u32));
        }
        let kinds = self.stats.processes.scrape(&pids);
        let families: [(&str, &str, &str); 5] = [
            ("process_cpu_seconds_total", "counter", "User and system CPU time of the node's processes of a kind (of gone ones: as of the last scrape that saw them), in seconds."),
            ("process_resident_memory_bytes", "gauge", "Resident memory of the live processes of a kind, summed."),
            ("process_open_fds", "gauge", "Open file descriptors of the live processes of a kind, summed."),
            ("process_start_time_seconds", "gauge", "When the oldest live process of a kind started, in seconds since the Unix epoch."),
            ("proxyd_processes", "gauge", "Live processes of a kind."),
        ];
        for (i, (name, kind, help)) in families.iter().enumerate() {
            o.family(name, kind, help);
            for (k, t) in &kinds {
                let label = format!("kind=\"{}\"", k.as_str());
                match i {
                    0 => o.float(name, &label, t.cpu_seconds),
                    _ if t.processes == 0 => {}
                    1 => o.sample(name, &label, t.resident_bytes),
                    2 => o.sample(name, &label, t.open_fds),
                    3 => o.float(name, &label, t.start_time),
                    _ => o.sample(name, &label, t.processes as u64),
                }
            }
        }
    }
}
