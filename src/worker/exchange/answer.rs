//! Answers made here: a `return` route's or a filter's (through the route's response
//! filters), a redirect, and error pages, built in or a server's `error_pages` file. The
//! head goes into the session's `out`; the body becomes the exchange's body source, which
//! the session writes after it.

use super::file::FileBody;
use super::start::Arrival;
use super::Ctx;
use super::{Exchange, Source};
use crate::config::open_page;
use crate::http::headers::Headers;
use crate::http::local;
use crate::worker::filters::{self, Answer, Verdict};
use std::borrow::Cow;

impl Exchange {
    /// Writes an error page (no response filters: like nginx's `add_header` without
    /// `always`, a route's edits are for its own answers). The server's `error_pages` file
    /// for `status` replaces the built-in page; one that cannot be opened now is logged and
    /// the built-in page goes out.
    pub fn write_error(
        &mut self,
        w: &mut Ctx,
        at: &Arrival,
        out: &mut Vec<u8>,
        status: u16,
        close: bool,
    ) {
        let cfg = w.env.cfg.clone();
        if let Some(page) = cfg.server[self.server].error_pages.find(status) {
            match open_page(&page.file) {
                Ok((file, len)) => {
                    let mut fields = std::mem::take(&mut w.env.scratch.headers);
                    let ctype = [("Content-Type".to_string(), page.content_type.into())];
                    self.answer_fields(w, &mut fields, &ctype);
                    self.write_answer_head(w, out, status, &fields, len as usize, close);
                    w.env.scratch.headers = fields;
                    self.body = if self.req.method == "HEAD" || len == 0 {
                        Source::None
                    } else {
                        Source::File(Box::new(FileBody::new(file, len)))
                    };
                    return;
                }
                Err(e) => log::error!(
                    "error page {} for status {status} cannot be opened ({e}); the built-in page goes out",
                    page.file.display()
                ),
            }
        }
        self.answer(w, at, out, &error_answer(status), close, false);
    }

    /// Writes the head of an answer made here into `out` (through the route's response
    /// filters when `filtered`); its body becomes the exchange's body source (none for
    /// HEAD), which the session writes after the head.
    pub fn answer(
        &mut self,
        w: &mut Ctx,
        at: &Arrival,
        out: &mut Vec<u8>,
        a: &Answer,
        close: bool,
        filtered: bool,
    ) {
        let cfg = w.env.cfg.clone();
        let mut fields = std::mem::take(&mut w.env.scratch.headers);
        self.answer_fields(w, &mut fields, &a.headers);
        let (mut status, mut body) = (a.status, a.body.clone());
        if filtered {
            let rid = self.request_id;
            let cx = self.cx(w, &cfg, at, &rid);
            if let Verdict::Answer(b) =
                filters::on_response(self.chain(&cfg), b"", &mut fields, &cx)
            {
                // A response filter refused the answer: its own goes out instead, as is.
                fields.fill_pairs(&b.headers);
                local::own_fields(&mut fields, &w.env.clock.http_date);
                (status, body) = (b.status, b.body);
            }
        }
        self.write_answer_head(w, out, status, &fields, body.len(), close);
        w.env.scratch.headers = fields;
        self.body = if self.req.method == "HEAD" || body.is_empty() || local::bodiless(status) {
            Source::None
        } else {
            Source::Bytes { data: body, pos: 0 }
        };
    }

    /// The fields of an answer made here: `pairs`, then `Server` and `Date`, then the
    /// server's request id header.
    fn answer_fields(&self, w: &Ctx, fields: &mut Headers, pairs: &[(String, String)]) {
        fields.fill_pairs(pairs);
        local::own_fields(fields, &w.env.clock.http_date);
        if let Some(h) = &w.env.cfg.server[self.server].request_id {
            fields.append_copy(h.header.as_bytes(), self.request_id.as_str().as_bytes());
        }
    }

    /// Serializes an answer's head into `out`, after what it holds (interim heads still to
    /// be written); a body of `len` bytes follows it.
    fn write_answer_head(
        &mut self,
        w: &Ctx,
        out: &mut Vec<u8>,
        status: u16,
        fields: &Headers,
        len: usize,
        close: bool,
    ) {
        self.close_after = close;
        let start = out.len();
        let connection = match (close, self.req.minor) {
            (true, _) => local::Connection::Close,
            (false, 0) => local::Connection::KeepAlive,
            (false, _) => local::Connection::Default,
        };
        self.status = status;
        local::write_head(status, fields, b"", len, connection, out);
        self.record
            .capture_response(&w.env.cfg.log_formats.captures.response, &out[start..]);
    }
}

/// The error page for `status`.
pub fn error_answer(status: u16) -> Answer<'static> {
    Answer {
        status,
        headers: Cow::Owned(local::error_headers()),
        body: local::error_page(status).into(),
    }
}
