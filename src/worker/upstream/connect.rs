//! Getting a connection for an attempt: the balancer picks a peer, the pool gives an idle
//! connection to it or a new one is opened; a peer that cannot be reached is charged and the
//! next one tried.

use super::outlier::Outcome;
use super::retry::{may_retry, Cause};
use super::{peer_outcome, Cx};
use super::{Active, Driver, Failure, HeadWait, Owner, Phase, Pick, Trip, UpConn, STALE_REPLAYS};
use crate::worker::token::{key, Kind};
use crate::worker::transport::{Connect, Ready, Transport};
use mio::Token;

/// How far a new attempt got at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// An idle pooled connection: connected now.
    Pooled,
    /// A connect is under way (`Phase::Connecting`).
    Connecting,
    /// A retry waits out its backoff first (`Phase::Backoff`).
    Backoff,
}

impl Driver {
    /// Starts an attempt: picks a peer, takes an idle connection to it or opens one. The
    /// connection's events go to `owner`.
    pub fn connect(
        &mut self,
        w: &mut Cx,
        owner: Owner,
        trip: &mut Trip,
    ) -> Result<Started, Failure> {
        let cfg = w.env.cfg.clone();
        let Some((u, group)) = self.upstream.and_then(|u| Some((u, cfg.upstream.get(u)?))) else {
            return Err(Failure::new(502, "no upstream for the exchange"));
        };
        loop {
            let pick = w.ups.balancer.pick(
                &cfg.upstream,
                u,
                &self.tried,
                self.hash,
                w.env.shared.view(),
                w.env.now_ms,
            );
            let Pick::Peer(peer) = pick else {
                if self.tried.is_empty() {
                    // Nothing was tried: the node knows every peer is down (503, as a
                    // client may retry later), unless the upstream fails open.
                    let why = format!("no live peers in upstream \"{}\"", group.name);
                    return Err(Failure::new(503, why));
                }
                return Err(Failure::new(502, "all upstream peers failed"));
            };
            let slot = group.peers[peer].slot;
            self.tried.push(peer);
            let Some((addr, version)) = group.peers[peer].locate(w.env.shared.view()) else {
                // A host name's address went away between the pick and now.
                continue;
            };
            w.env.shared.request(slot);
            // The upstream's own count is what its retry budget is a share of.
            w.env.shared.request(group.slot);
            self.attempts += 1;
            trip.record.start_attempt(peer, addr, w.env.now);
            // The request goes out from its start on the new connection (a write that failed
            // on a stale one says nothing about this one).
            self.head_pos = 0;
            self.upload = super::Upload::Sending;
            // After STALE_REPLAYS pooled connections in a row turned out closed, the rest
            // of the pool is likely stale too: a fresh connection settles it.
            let pooled = if self.stale_replays < STALE_REPLAYS {
                w.ups.pool.take(u, peer, version)
            } else {
                None
            };
            if let Some(mut idle) = pooled {
                w.ups.upconns[idle.conn] = owner;
                // Registered long ago: nothing announces that it is writable, and it is.
                idle.stream.ready = Ready {
                    r: false,
                    w: true,
                    hup: false,
                };
                let conn = UpConn {
                    stream: idle.stream,
                    conn: idle.conn,
                    upstream: u,
                    peer,
                    version,
                    reused: true,
                    requests: idle.requests,
                    _active: Active::new(w.env.shared, slot),
                };
                self.phase = Phase::Sending {
                    conn,
                    head: HeadWait::default(),
                };
                self.note_connected(w, trip);
                return Ok(Started::Pooled);
            }
            let made = match &group.tls {
                Some(t) => {
                    let name = t.name_for(&group.peers[peer], &group.names, addr);
                    Transport::connect_tls(addr, &t.config, name)
                }
                None => Transport::connect(addr),
            };
            match made {
                Ok(mut s) => {
                    let conn = w.ups.upconns.insert(owner);
                    if s.register(&w.env.registry, Token(key(conn, Kind::Upstream)))
                        .is_ok()
                    {
                        let conn = UpConn {
                            stream: s,
                            conn,
                            upstream: u,
                            peer,
                            version,
                            reused: false,
                            requests: 0,
                            _active: Active::new(w.env.shared, slot),
                        };
                        let by = w.env.now + group.connect_timeout;
                        self.phase = Phase::Connecting { conn, by };
                        return Ok(Started::Connecting);
                    }
                    w.ups.upconns.remove(conn);
                }
                Err(e) => {
                    log::error!(
                        "connect() to {} failed: {e} (upstream \"{}\"){}",
                        group.peers[peer].label(Some(addr)),
                        group.name,
                        trip.log
                    );
                    trip.record.end_attempt(502, w.env.now);
                    peer_outcome(w.env, u, peer, Outcome::ConnectFailed);
                }
            }
            if self.tried.len() >= group.peers.len() {
                return Err(Failure::new(502, "all upstream peers failed"));
            }
        }
    }

    /// Notes the try's connection time (the access log's `$upstream_connect_time`).
    fn note_connected(&mut self, w: &mut Cx, trip: &mut Trip) {
        if let Some(a) = trip.record.current() {
            a.connected = Some(w.env.now);
        }
        if let Some(conn) = self.conn() {
            log::trace!(
                "upstream \"{}\" peer {} connected (reused: {})",
                w.env.cfg.upstream[conn.upstream].name,
                conn.peer,
                conn.reused
            );
        }
    }

    /// A connect under way: Ok(true) once it completed (the request may go), Ok(false)
    /// while it is still pending, Err with the reason when it failed.
    pub fn poll_connect(&mut self, w: &mut Cx, trip: &mut Trip) -> Result<bool, String> {
        let Phase::Connecting { conn, by } = &mut self.phase else {
            return Ok(false);
        };
        if !(conn.stream.ready.r || conn.stream.ready.w) {
            return Ok(false);
        }
        match conn.stream.connect_state() {
            Connect::InProgress => Ok(false),
            Connect::Failed(e) => Err(e.to_string()),
            Connect::Done => {
                let by = *by;
                if let Some(conn) = self.take_conn(Phase::Off, w) {
                    self.phase = Phase::Sending {
                        conn,
                        head: HeadWait {
                            handshake_by: Some(by),
                            ..HeadWait::default()
                        },
                    };
                }
                self.note_connected(w, trip);
                Ok(true)
            }
        }
    }

    /// A connect attempt failed (or its TLS handshake did): the peer is charged and the
    /// next one tried when the route allows, else 502 (504 when it timed out).
    pub fn connect_failed(
        &mut self,
        w: &mut Cx,
        owner: Owner,
        trip: &mut Trip,
        why: &str,
        timed_out: bool,
    ) -> Result<Started, Failure> {
        let cfg = w.env.cfg.clone();
        if let Some(conn) = self.take_conn(Phase::Off, w) {
            let peer = &cfg.upstream[conn.upstream].peers[conn.peer];
            log::error!(
                "connect() to {} failed: {why} (upstream \"{}\"){}",
                peer.label(peer.address(w.env.shared.view())),
                cfg.upstream[conn.upstream].name,
                trip.log
            );
            peer_outcome(w.env, conn.upstream, conn.peer, Outcome::ConnectFailed);
            w.ups.upconns.try_remove(conn.conn);
        }
        if let Some(b) = self.resp.take() {
            w.env.bufs.put(b);
        }
        let status = if timed_out { 504 } else { 502 };
        trip.record.end_attempt(status, w.env.now);
        match may_retry(w, self, trip, Cause::Connect) {
            Ok(()) => self.retry(w, owner, trip, Cause::Connect),
            Err(why_not) => Err(Failure::new(
                status,
                format!("cannot connect to upstream (not retried: {why_not})"),
            )),
        }
    }
}
