//! The server side of one HTTP/2 connection, sans I/O: bytes from the client go in
//! (`receive`), requests, body octets, resets and window changes come out through a
//! `Handler`, and every frame this side sends is appended to `out`, which the session
//! writes to the socket. Connection-level duties are kept here: the preface, SETTINGS
//! and their ACK, PING, flow-control credit, stream ids and states, the concurrency
//! limit, GOAWAY, and the flood budgets. Routes, upstreams and responses are the layer
//! above's.

use super::block::Assembly;
use super::flood::{Abuse, Flood};
use super::flow::{Credit, Window};
use super::frame::{self, Frame, Priority, SettingsFrame};
use super::hpack::{self, Fits};
use super::message::{self, HeaderList, Kind};
use super::settings::{Settings, DEFAULT_WINDOW, MIN_FRAME_SIZE};
use super::stream::{Closed, Incoming, State, Verdict};
use super::{ErrorCode, H2Error, MAX_ID, PREFACE};

/// The payload of the PING that follows a draining GOAWAY.
const DRAIN_PING: [u8; 8] = *b"proxyd-d";
use std::collections::{HashMap, VecDeque};

/// Closed streams remembered, so a late frame on one gets the answer its way of closing
/// calls for (RFC 9113 5.1); older ones are treated as reset by this side (ignored).
const RECENT: usize = 256;

/// What this side announces, from the `[[server]]` block's `http2_*` keys.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
    pub initial_window: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_concurrent_streams: 128,
            max_header_list_size: 64 << 10,
            initial_window: 64 << 10,
        }
    }
}

/// The connection window this side gives the client: enough for every stream's window
/// at once, so one stream's slow reader upstream never holds back the others.
fn connection_window(l: &Limits) -> u32 {
    (u64::from(l.initial_window) * u64::from(l.max_concurrent_streams.max(1)))
        .min(u64::from(super::MAX_WINDOW)) as u32
}

/// What the connection tells the layer above.
pub trait Handler {
    /// A request opened `stream`, written as an HTTP/1.1 head; `end_stream`: no body.
    fn request(&mut self, stream: u32, head: &[u8], kind: Kind, end_stream: bool);
    /// Body octets of `stream`. Credit for them goes back to the client only once the
    /// layer above calls `Conn::consumed`.
    fn data(&mut self, stream: u32, data: &[u8], end_stream: bool);
    /// Trailers, which end the request body.
    fn trailers(&mut self, stream: u32, fields: &HeaderList);
    /// The client reset `stream`: its exchange ends.
    fn reset(&mut self, stream: u32, code: ErrorCode);
    /// More may be sent on `stream`, or on every stream when it is 0.
    fn writable(&mut self, stream: u32);
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the 24 preface octets.
    Preface,
    /// The preface arrived; the client's first frame must be SETTINGS.
    FirstSettings,
    Open,
    /// A graceful close (RFC 9113 6.8): GOAWAY with the largest id went out with a PING
    /// behind it. Streams the client opened before it saw the GOAWAY are still taken,
    /// until the PING's ACK shows it has; then the real GOAWAY follows.
    Draining,
    /// GOAWAY was sent (or received): streams above `last` are not taken.
    Closing {
        last: u32,
    },
}

struct Stream {
    state: State,
    /// What the client may still send on it.
    recv: Credit,
    /// What this side may still send on it.
    send: Window,
    /// Whether this side's response is complete (a reset before then is premature).
    responded: bool,
}

pub struct Conn {
    limits: Limits,
    phase: Phase,
    peer: Settings,
    /// SETTINGS frames sent and not yet acknowledged.
    unacked: u32,
    decoder: hpack::Decoder,
    encoder: hpack::Encoder,
    blocks: Assembly,
    fields: HeaderList,
    head: Vec<u8>,
    recv: Credit,
    send: Window,
    streams: HashMap<u32, Stream>,
    /// The highest stream id the client opened.
    last_id: u32,
    /// Recently closed streams and how, newest last.
    recent: VecDeque<(u32, Closed)>,
    flood: Flood,
    /// Frames to send, in order.
    pub out: Vec<u8>,
}

impl Conn {
    /// A connection whose preface has not arrived; this side's SETTINGS (and the
    /// connection window beyond the default) are queued at once, as RFC 9113 3.4 allows.
    pub fn new(limits: Limits) -> Conn {
        let ours = Settings {
            enable_push: false,
            max_concurrent_streams: Some(limits.max_concurrent_streams),
            initial_window_size: limits.initial_window,
            max_header_list_size: Some(limits.max_header_list_size),
            enable_connect_protocol: true,
            ..Settings::default()
        };
        let mut out = Vec::new();
        frame::write_settings(&mut out, &ours.changes());
        let window = connection_window(&limits);
        if window > DEFAULT_WINDOW {
            frame::write_window_update(&mut out, 0, window - DEFAULT_WINDOW);
        }
        Conn {
            limits,
            phase: Phase::Preface,
            peer: Settings::default(),
            unacked: 1,
            decoder: hpack::Decoder::default(),
            encoder: hpack::Encoder::default(),
            blocks: Assembly::default(),
            fields: HeaderList::default(),
            head: Vec::new(),
            recv: Credit::new(window),
            send: Window::new(DEFAULT_WINDOW),
            streams: HashMap::new(),
            last_id: 0,
            recent: VecDeque::new(),
            flood: Flood::default(),
            out,
        }
    }

    /// Whether this side still waits for the ACK of its SETTINGS (the layer above times
    /// it out with SETTINGS_TIMEOUT).
    pub fn settings_unacked(&self) -> bool {
        self.unacked > 0
    }

    /// Streams in progress.
    pub fn active(&self) -> usize {
        self.streams
            .values()
            .filter(|s| s.state.is_active())
            .count()
    }

    /// Takes as many whole frames from `buf` as it holds and returns how many octets
    /// were used. A connection error queues GOAWAY in `out` and is returned: the layer
    /// above sends `out` and closes.
    pub fn receive(
        &mut self,
        buf: &[u8],
        now_ms: u64,
        h: &mut impl Handler,
    ) -> Result<usize, H2Error> {
        let r = self.receive_frames(buf, now_ms, h);
        if let Err(H2Error::Connection { code, .. }) = r {
            self.go_away(code);
        }
        r
    }

    fn receive_frames(
        &mut self,
        buf: &[u8],
        now_ms: u64,
        h: &mut impl Handler,
    ) -> Result<usize, H2Error> {
        let mut used = 0;
        if self.phase == Phase::Preface {
            let n = buf.len().min(PREFACE.len());
            if buf[..n] != PREFACE[..n] {
                return Err(H2Error::conn(ErrorCode::Protocol, "not the HTTP/2 preface"));
            }
            if n < PREFACE.len() {
                return Ok(0);
            }
            used = PREFACE.len();
            self.phase = Phase::FirstSettings;
        }
        loop {
            let (f, n) = match frame::decode(&buf[used..], MIN_FRAME_SIZE) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(H2Error::Stream { stream, code, .. }) => {
                    // Only a whole frame is found wrong for one stream: skip it.
                    used += frame::HEADER_LEN + frame_len(&buf[used..]);
                    self.reset(stream, code);
                    continue;
                }
                Err(e) => return Err(e),
            };
            used += n;
            if self.phase == Phase::FirstSettings {
                if !matches!(f, Frame::Settings(SettingsFrame::Params(_))) {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "first frame not SETTINGS",
                    ));
                }
                self.phase = Phase::Open;
            }
            match self.frame(f, now_ms, h) {
                Ok(()) => {}
                Err(H2Error::Stream { stream, code, .. }) => self.reset(stream, code),
                Err(e) => return Err(e),
            }
        }
        Ok(used)
    }

    fn frame(&mut self, f: Frame, now_ms: u64, h: &mut impl Handler) -> Result<(), H2Error> {
        self.blocks.check(&f)?;
        let max_streams = self.limits.max_concurrent_streams;
        let max_list = self.limits.max_header_list_size as usize;
        match f {
            Frame::Settings(SettingsFrame::Ack) => {
                self.unacked = self.unacked.saturating_sub(1);
            }
            Frame::Settings(s) => {
                self.flood.hit(Abuse::Settings, now_ms, max_streams)?;
                self.settings(s, h)?;
            }
            Frame::Ping { ack: true, data } => {
                if data == DRAIN_PING && self.phase == Phase::Draining {
                    self.go_away(ErrorCode::NoError);
                }
            }
            Frame::Ping { ack: false, data } => {
                self.flood.hit(Abuse::Ping, now_ms, max_streams)?;
                frame::write_ping(&mut self.out, true, data);
            }
            Frame::GoAway { .. } => {
                // The client will open no more streams; those in progress finish.
                if let Phase::Open | Phase::Draining = self.phase {
                    self.phase = Phase::Closing { last: self.last_id };
                }
            }
            Frame::WindowUpdate {
                stream: 0,
                increment,
            } => {
                self.flood.hit(Abuse::WindowUpdate, now_ms, max_streams)?;
                self.send.grow(increment).map_err(|_| {
                    H2Error::conn(ErrorCode::FlowControl, "connection window past 2^31-1")
                })?;
                h.writable(0);
            }
            Frame::WindowUpdate { stream, increment } => {
                self.flood.hit(Abuse::WindowUpdate, now_ms, max_streams)?;
                if self.advance(stream, Incoming::WindowUpdate)? {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.send.grow(increment).map_err(|_| {
                            H2Error::stream(stream, ErrorCode::FlowControl, "window past 2^31-1")
                        })?;
                        h.writable(stream);
                    }
                }
            }
            Frame::Priority { .. } => self.flood.hit(Abuse::Priority, now_ms, max_streams)?,
            Frame::RstStream { stream, code } => {
                if self.advance(stream, Incoming::Reset)? {
                    let premature = self.streams.get(&stream).is_some_and(|s| !s.responded);
                    self.close(stream, Closed::ResetRemote);
                    h.reset(stream, code);
                    if premature {
                        self.flood.hit(Abuse::Reset, now_ms, max_streams)?;
                    }
                }
            }
            Frame::Data {
                stream,
                data,
                end_stream,
                flow_len,
            } => {
                self.recv.received(flow_len).map_err(|_| {
                    H2Error::conn(ErrorCode::FlowControl, "DATA beyond the connection window")
                })?;
                if data.is_empty() && !end_stream {
                    self.flood.hit(Abuse::Empty, now_ms, max_streams)?;
                }
                // Padding is credited back at once; the data when the layer above used it.
                let padding = flow_len - data.len() as u32;
                let taken = match self.advance(stream, Incoming::Data { end_stream }) {
                    Ok(t) => t,
                    Err(e) => {
                        // Refused octets still count against the connection (6.9): given back.
                        self.credit(0, flow_len);
                        return Err(e);
                    }
                };
                let s = self.streams.get_mut(&stream).filter(|_| taken);
                let Some(s) = s else {
                    // A stream this side reset: its octets still count, and are given back.
                    self.credit(0, flow_len);
                    return Ok(());
                };
                if s.recv.received(flow_len).is_err() {
                    // The stream is reset; its octets still go back to the connection.
                    self.credit(0, flow_len);
                    return Err(H2Error::stream(
                        stream,
                        ErrorCode::FlowControl,
                        "DATA beyond the window",
                    ));
                }
                self.credit(stream, padding);
                h.data(stream, data, end_stream);
            }
            Frame::Headers { .. } => {
                if let Some(c) = self.blocks.headers(&f, max_list)? {
                    if c.block.is_empty() {
                        self.flood.hit(Abuse::Empty, now_ms, max_streams)?;
                    }
                    let fits = decode(&mut self.decoder, &mut self.fields, c.block, max_list)?;
                    let (stream, end_stream, priority) = (c.stream, c.end_stream, c.priority);
                    self.block_done(stream, end_stream, priority, fits, now_ms, h)?;
                } else if let Frame::Headers { block: &[], .. } = f {
                    self.flood.hit(Abuse::Empty, now_ms, max_streams)?;
                }
            }
            Frame::Continuation { block, .. } => {
                if block.is_empty() {
                    self.flood.hit(Abuse::Empty, now_ms, max_streams)?;
                }
                if let Some(c) = self.blocks.continuation(&f, max_list)? {
                    let fits = decode(&mut self.decoder, &mut self.fields, c.block, max_list)?;
                    let (stream, end_stream, priority) = (c.stream, c.end_stream, c.priority);
                    self.blocks.release();
                    self.block_done(stream, end_stream, priority, fits, now_ms, h)?;
                }
            }
            Frame::PushPromise { .. } => {
                return Err(H2Error::conn(
                    ErrorCode::Protocol,
                    "PUSH_PROMISE from a client",
                ))
            }
            Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    /// A complete header block on `stream`, decoded into `self.fields`, with the
    /// priority its HEADERS carried.
    fn block_done(
        &mut self,
        stream: u32,
        end_stream: bool,
        priority: Option<Priority>,
        fits: Fits,
        now_ms: u64,
        h: &mut impl Handler,
    ) -> Result<(), H2Error> {
        // Checked only now: the block had to go through the decoder first (4.3).
        if priority.is_some_and(|p| p.dependency == stream) {
            return Err(H2Error::stream(
                stream,
                ErrorCode::Protocol,
                "stream depends on itself",
            ));
        }
        self.headers(stream, end_stream, fits, now_ms, h)
    }

    /// A complete header block on `stream`, decoded into `self.fields`.
    fn headers(
        &mut self,
        stream: u32,
        end_stream: bool,
        fits: Fits,
        now_ms: u64,
        h: &mut impl Handler,
    ) -> Result<(), H2Error> {
        if !self.streams.contains_key(&stream) && stream > self.last_id {
            return self.open(stream, end_stream, fits, now_ms, h);
        }
        if !self.advance(stream, Incoming::Headers { end_stream })? {
            return Ok(());
        }
        // A second block on an open stream is trailers: it must end the stream (8.1).
        if !end_stream {
            return Err(H2Error::stream(
                stream,
                ErrorCode::Protocol,
                "trailers without END_STREAM",
            ));
        }
        if fits == Fits::TooLarge || message::trailers(&self.fields).is_err() {
            return Err(H2Error::stream(
                stream,
                ErrorCode::Protocol,
                "malformed trailers",
            ));
        }
        h.trailers(stream, &self.fields);
        Ok(())
    }

    /// A request opening a new stream.
    fn open(
        &mut self,
        stream: u32,
        end_stream: bool,
        fits: Fits,
        now_ms: u64,
        h: &mut impl Handler,
    ) -> Result<(), H2Error> {
        if stream.is_multiple_of(2) {
            return Err(H2Error::conn(
                ErrorCode::Protocol,
                "HEADERS on an even stream id, which only a server opens",
            ));
        }
        self.last_id = stream;
        if let Phase::Closing { last } = self.phase {
            if stream > last {
                // After GOAWAY: ignored, the client retries elsewhere (6.8).
                return Ok(());
            }
        }
        self.flood.opened();
        if self.active() >= self.limits.max_concurrent_streams as usize {
            self.flood
                .hit(Abuse::Refused, now_ms, self.limits.max_concurrent_streams)?;
            return Err(H2Error::stream(
                stream,
                ErrorCode::RefusedStream,
                "too many concurrent streams",
            ));
        }
        if fits == Fits::TooLarge {
            // 431 would need an exchange; the stream is refused as the list is dropped.
            return Err(H2Error::stream(
                stream,
                ErrorCode::Protocol,
                "header list too large",
            ));
        }
        let kind = message::request_head(&self.fields, end_stream, &mut self.head)
            .map_err(|why| H2Error::stream(stream, ErrorCode::Protocol, why))?;
        let state = match State::Idle.receive(stream, Incoming::Headers { end_stream })? {
            Verdict::Accept(s) => s,
            Verdict::Ignore => return Ok(()),
        };
        self.streams.insert(
            stream,
            Stream {
                state,
                recv: Credit::new(self.limits.initial_window),
                send: Window::new(self.peer.initial_window_size),
                responded: false,
            },
        );
        h.request(stream, &self.head, kind, end_stream);
        Ok(())
    }

    /// Moves `stream` on for an incoming frame: `Ok(true)` to process the frame,
    /// `Ok(false)` to drop it.
    fn advance(&mut self, stream: u32, f: Incoming) -> Result<bool, H2Error> {
        let state = match self.streams.get(&stream) {
            Some(s) => s.state,
            None if stream > self.last_id => State::Idle,
            None => match self.recent.iter().rev().find(|(id, _)| *id == stream) {
                Some((_, how)) => State::Closed(*how),
                // Opened by id order but never used: a lower id than the last one (5.1.1).
                None if matches!(f, Incoming::Headers { .. }) => {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        "HEADERS on a stream id below the last one",
                    ))
                }
                // Closed long ago: treated as reset by this side.
                None => State::Closed(Closed::ResetLocal),
            },
        };
        match state.receive(stream, f)? {
            Verdict::Ignore => Ok(false),
            Verdict::Accept(next) => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.state = next;
                }
                Ok(true)
            }
        }
    }

    fn settings(&mut self, s: SettingsFrame, h: &mut impl Handler) -> Result<(), H2Error> {
        let before = self.peer.initial_window_size;
        for (id, value) in s.params() {
            self.peer.apply(id, value)?;
        }
        let delta = i64::from(self.peer.initial_window_size) - i64::from(before);
        if delta != 0 {
            for (id, st) in self.streams.iter_mut() {
                st.send.shift(delta).map_err(|_| {
                    H2Error::conn(ErrorCode::FlowControl, "stream window past 2^31-1")
                })?;
                if delta > 0 {
                    h.writable(*id);
                }
            }
        }
        self.encoder
            .set_peer_limit(self.peer.header_table_size as usize);
        frame::write_settings_ack(&mut self.out);
        Ok(())
    }

    /// Gives credit back for `n` octets of `stream` (0: the connection only).
    fn credit(&mut self, stream: u32, n: u32) {
        if n == 0 {
            return;
        }
        if let Some(inc) = self.recv.released(n) {
            frame::write_window_update(&mut self.out, 0, inc);
        }
        if let Some(inc) = self
            .streams
            .get_mut(&stream)
            .filter(|s| s.state == State::Open || s.state == State::HalfClosedLocal)
            .and_then(|s| s.recv.released(n))
        {
            frame::write_window_update(&mut self.out, stream, inc);
        }
    }

    /// The layer above passed on `n` body octets of `stream`: the client may send more.
    pub fn consumed(&mut self, stream: u32, n: usize) {
        self.credit(stream, u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Resets `stream` from this side.
    pub fn reset(&mut self, stream: u32, code: ErrorCode) {
        frame::write_rst_stream(&mut self.out, stream, code);
        self.close(stream, Closed::ResetLocal);
    }

    /// Forgets a stream, remembering how it closed.
    fn close(&mut self, stream: u32, how: Closed) {
        self.streams.remove(&stream);
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((stream, how));
    }

    /// Starts a graceful close (a reload's old generation draining): the client is told
    /// to open no more streams, and the streams in progress finish. `is_finished` says
    /// when the connection may close.
    pub fn drain(&mut self) {
        if matches!(self.phase, Phase::Draining | Phase::Closing { .. }) {
            return;
        }
        frame::write_goaway(&mut self.out, MAX_ID, ErrorCode::NoError, b"");
        frame::write_ping(&mut self.out, false, DRAIN_PING);
        self.phase = Phase::Draining;
    }

    /// Whether GOAWAY went out with its final stream id and no stream is left.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. }) && self.active() == 0
    }

    /// Sends GOAWAY: no stream above the last one opened will be processed.
    pub fn go_away(&mut self, code: ErrorCode) {
        let last = match self.phase {
            Phase::Closing { last } => last.min(self.last_id),
            _ => self.last_id,
        };
        frame::write_goaway(&mut self.out, last, code, b"");
        self.phase = Phase::Closing { last };
    }

    /// Sends a response head (fields with `:status` first, names in lower case).
    pub fn send_head<'a>(
        &mut self,
        stream: u32,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        end_stream: bool,
    ) {
        let mut block = std::mem::take(&mut self.head);
        block.clear();
        self.encoder.encode(fields, &mut block);
        frame::write_headers(
            &mut self.out,
            stream,
            &block,
            end_stream,
            self.peer.max_frame_size,
        );
        self.head = block;
        if end_stream {
            self.ended(stream);
        }
    }

    /// Sends trailers, which end the response (gRPC's status is in them).
    pub fn send_trailers<'a>(
        &mut self,
        stream: u32,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        self.send_head(stream, fields, true);
    }

    /// How many body octets `stream` may send now (both windows, and one frame).
    pub fn sendable(&self, stream: u32) -> usize {
        self.streams.get(&stream).map_or(0, |s| {
            s.send
                .available()
                .min(self.send.available())
                .min(self.peer.max_frame_size as usize)
        })
    }

    /// Sends body octets (at most `sendable`) as one DATA frame.
    pub fn send_data(&mut self, stream: u32, data: &[u8], end_stream: bool) -> usize {
        let n = data.len().min(self.sendable(stream));
        if n == 0 && !end_stream {
            return 0;
        }
        if let Some(s) = self.streams.get_mut(&stream) {
            let _ = s.send.take(n as u32);
            let _ = self.send.take(n as u32);
        }
        let end = end_stream && n == data.len();
        frame::write_data_head(&mut self.out, stream, n, end);
        self.out.extend_from_slice(&data[..n]);
        if end {
            self.ended(stream);
        }
        n
    }

    /// This side's END_STREAM went out on `stream`.
    fn ended(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.responded = true;
            s.state = s.state.end_local();
            if let State::Closed(how) = s.state {
                self.close(stream, how);
            }
        }
    }
}

/// The payload length in a frame header at the start of `buf` (which holds it whole).
fn frame_len(buf: &[u8]) -> usize {
    buf.first_chunk::<{ frame::HEADER_LEN }>()
        .map_or(0, |h| frame::Head::parse(h).len as usize)
}

/// Decodes a block into `fields`; a block the decoder cannot take ends the connection.
fn decode(
    d: &mut hpack::Decoder,
    fields: &mut HeaderList,
    block: &[u8],
    max_list: usize,
) -> Result<Fits, H2Error> {
    fields.clear();
    d.decode(block, max_list, |n, v| fields.push(n, v))
        .map_err(|e| H2Error::conn(ErrorCode::Compression, e.why()))
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
