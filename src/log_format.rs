//! Access log formats: templates of `$variables` in nginx's spirit, compiled once at config
//! load into a list of literal and variable pieces, so that writing a line is one pass over
//! that list with no lookups by name. A format is text (values escaped as nginx does: `"`,
//! `\` and any byte outside printable ASCII as `\xHH`) or JSON (one object per line; every
//! value a correctly escaped JSON string, or a number, or null when it has no value).
//!
//! What a variable's value is comes from the worker (`Values`); this module knows only names,
//! templates and escaping.

use std::io::Write;

/// One variable. Request and response header variables carry an index into the config's
/// list of captured header names (`Captures`), so that each request captures each name once
/// whatever the number of formats using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    RemoteAddr,
    RemotePort,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    ServerProtocol,
    Scheme,
    Status,
    BodyBytesSent,
    BytesSent,
    RequestLength,
    RequestTime,
    Http(u16),
    SentHttp(u16),
    Host,
    ServerName,
    ServerAddr,
    ServerPort,
    UpstreamName,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamConnectTime,
    UpstreamHeaderTime,
    UpstreamResponseTime,
    UpstreamBytesReceived,
    Connection,
    ConnectionRequests,
    Pid,
    Hostname,
    RequestId,
    TraceId,
    SpanId,
    Route,
    SslProtocol,
    SslCipher,
    SslServerName,
    SslClientVerify,
    SslClientSDn,
    SslClientFingerprint,
}

/// Variables by name, without the `$` (header variables are prefixes, handled apart).
const NAMES: [(&str, Var); 43] = [
    ("remote_addr", Var::RemoteAddr),
    ("remote_port", Var::RemotePort),
    ("remote_user", Var::RemoteUser),
    ("time_local", Var::TimeLocal),
    ("time_iso8601", Var::TimeIso8601),
    ("msec", Var::Msec),
    ("request", Var::Request),
    ("request_method", Var::RequestMethod),
    ("request_uri", Var::RequestUri),
    ("uri", Var::Uri),
    ("args", Var::Args),
    ("server_protocol", Var::ServerProtocol),
    ("scheme", Var::Scheme),
    ("status", Var::Status),
    ("body_bytes_sent", Var::BodyBytesSent),
    ("bytes_sent", Var::BytesSent),
    ("request_length", Var::RequestLength),
    ("request_time", Var::RequestTime),
    ("host", Var::Host),
    ("server_name", Var::ServerName),
    ("server_addr", Var::ServerAddr),
    ("server_port", Var::ServerPort),
    ("upstream_name", Var::UpstreamName),
    ("upstream_addr", Var::UpstreamAddr),
    ("upstream_status", Var::UpstreamStatus),
    ("upstream_connect_time", Var::UpstreamConnectTime),
    ("upstream_header_time", Var::UpstreamHeaderTime),
    ("upstream_response_time", Var::UpstreamResponseTime),
    ("upstream_bytes_received", Var::UpstreamBytesReceived),
    ("connection", Var::Connection),
    ("connection_requests", Var::ConnectionRequests),
    ("pid", Var::Pid),
    ("hostname", Var::Hostname),
    ("request_id", Var::RequestId),
    ("trace_id", Var::TraceId),
    ("span_id", Var::SpanId),
    ("route", Var::Route),
    ("ssl_protocol", Var::SslProtocol),
    ("ssl_cipher", Var::SslCipher),
    ("ssl_server_name", Var::SslServerName),
    ("ssl_client_verify", Var::SslClientVerify),
    ("ssl_client_s_dn", Var::SslClientSDn),
    ("ssl_client_fingerprint", Var::SslClientFingerprint),
];

impl Var {
    /// Whether a value is always one number (written unquoted in JSON).
    fn numeric(self) -> bool {
        matches!(
            self,
            Var::RemotePort
                | Var::Msec
                | Var::Status
                | Var::BodyBytesSent
                | Var::BytesSent
                | Var::RequestLength
                | Var::RequestTime
                | Var::ServerPort
                | Var::Connection
                | Var::ConnectionRequests
                | Var::Pid
        )
    }
}

/// The header names formats capture, lower case, each once: `$http_<name>` from the
/// request, `$sent_http_<name>` from the response sent to the client.
#[derive(Debug, Default, Clone)]
pub struct Captures {
    pub request: Vec<String>,
    pub response: Vec<String>,
}

impl Captures {
    fn index(list: &mut Vec<String>, name: String) -> u16 {
        match list.iter().position(|n| *n == name) {
            Some(i) => i as u16,
            None => {
                list.push(name);
                (list.len() - 1) as u16
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(Vec<u8>),
    Var(Var),
}

/// A compiled format.
#[derive(Debug, Clone)]
pub enum Format {
    Text(Vec<Piece>),
    /// Keys (already escaped, quoted and followed by `:`) and their templates.
    Json(Vec<(Vec<u8>, Template)>),
}

/// One JSON value's template: a lone numeric variable is written as a number.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// The built-in formats, by name.
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
const MAIN: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;
const JSON: [(&str, &str); 25] = [
    ("time", "$time_iso8601"),
    ("remote_addr", "$remote_addr"),
    ("remote_port", "$remote_port"),
    ("request_id", "$request_id"),
    ("trace_id", "$trace_id"),
    ("method", "$request_method"),
    ("uri", "$request_uri"),
    ("protocol", "$server_protocol"),
    ("scheme", "$scheme"),
    ("host", "$host"),
    ("server_name", "$server_name"),
    ("route", "$route"),
    ("status", "$status"),
    ("body_bytes_sent", "$body_bytes_sent"),
    ("bytes_sent", "$bytes_sent"),
    ("request_length", "$request_length"),
    ("request_time", "$request_time"),
    ("upstream", "$upstream_name"),
    ("upstream_addr", "$upstream_addr"),
    ("upstream_status", "$upstream_status"),
    ("upstream_response_time", "$upstream_response_time"),
    ("referer", "$http_referer"),
    ("user_agent", "$http_user_agent"),
    ("connection", "$connection"),
    ("connection_requests", "$connection_requests"),
];

/// The names of the built-in formats.
pub const BUILTIN: [&str; 3] = ["combined", "main", "json"];

/// Compiles a built-in format by name.
pub fn builtin(name: &str, caps: &mut Captures) -> Option<Format> {
    Some(match name {
        "combined" => Format::Text(pieces(COMBINED, caps).ok()?),
        "main" => Format::Text(pieces(MAIN, caps).ok()?),
        "json" => json(JSON.iter().map(|(k, v)| (*k, *v)), caps).ok()?,
        _ => return None,
    })
}

/// Compiles a text template.
pub fn text(template: &str, caps: &mut Captures) -> Result<Format, String> {
    Ok(Format::Text(pieces(template, caps)?))
}

/// Compiles a JSON format from its keys and templates, in order.
pub fn json<'a>(
    fields: impl Iterator<Item = (&'a str, &'a str)>,
    caps: &mut Captures,
) -> Result<Format, String> {
    let mut out = Vec::new();
    for (key, template) in fields {
        let mut k = Vec::new();
        json_string(&mut k, key.as_bytes());
        k.push(b':');
        let pieces = pieces(template, caps).map_err(|e| format!("\"{key}\": {e}"))?;
        out.push((k, Template { pieces }));
    }
    if out.is_empty() {
        return Err("a json format needs at least one field".into());
    }
    Ok(Format::Json(out))
}

fn var_by_name(name: &str, caps: &mut Captures) -> Option<Var> {
    if let Some((_, v)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Some(*v);
    }
    // `$http_x_forwarded_for` is the header X-Forwarded-For, as in nginx.
    let header =
        |rest: &str| (!rest.is_empty()).then(|| rest.to_ascii_lowercase().replace('_', "-"));
    if let Some(h) = name.strip_prefix("sent_http_").and_then(header) {
        return Some(Var::SentHttp(Captures::index(&mut caps.response, h)));
    }
    if let Some(h) = name.strip_prefix("http_").and_then(header) {
        return Some(Var::Http(Captures::index(&mut caps.request, h)));
    }
    None
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Splits a template into literals and variables: `$name`, or `${name}` when letters follow.
fn pieces(template: &str, caps: &mut Captures) -> Result<Vec<Piece>, String> {
    let bytes = template.as_bytes();
    let mut out = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            lit.push(bytes[i]);
            i += 1;
            continue;
        }
        let (name, next) = if bytes.get(i + 1) == Some(&b'{') {
            let Some(end) = template[i + 2..].find('}') else {
                return Err(format!("unclosed \"${{\" at byte {i}"));
            };
            (&template[i + 2..i + 2 + end], i + 3 + end)
        } else {
            let len = bytes[i + 1..]
                .iter()
                .take_while(|&&b| is_name_byte(b))
                .count();
            (&template[i + 1..i + 1 + len], i + 1 + len)
        };
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return Err(format!("invalid variable name after \"$\" at byte {i}"));
        }
        let Some(var) = var_by_name(&name.to_ascii_lowercase(), caps) else {
            return Err(format!("unknown variable \"${name}\""));
        };
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        out.push(Piece::Var(var));
        i = next;
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

/// Where the values come from: the worker's view of one finished request.
pub trait Values {
    /// Appends `var`'s value, unescaped, to `out`; false (and nothing appended) when it has
    /// none, which is written `-` (or null in JSON).
    fn value(&self, var: Var, out: &mut Vec<u8>) -> bool;
}

impl Format {
    /// Whether any of its variables is one of `vars` (to skip work no format needs).
    pub fn uses(&self, pred: impl Fn(Var) -> bool) -> bool {
        let vars = |p: &[Piece]| p.iter().any(|p| matches!(p, Piece::Var(v) if pred(*v)));
        match self {
            Format::Text(p) => vars(p),
            Format::Json(f) => f.iter().any(|(_, t)| vars(&t.pieces)),
        }
    }

    /// Appends one line (with its newline) to `line`; `scratch` holds a value meanwhile.
    pub fn write(&self, v: &dyn Values, line: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        match self {
            Format::Text(pieces) => {
                for p in pieces {
                    match p {
                        Piece::Lit(l) => line.extend_from_slice(l),
                        Piece::Var(var) => {
                            scratch.clear();
                            if v.value(*var, scratch) {
                                text_escape(line, scratch);
                            } else {
                                line.push(b'-');
                            }
                        }
                    }
                }
            }
            Format::Json(fields) => {
                line.push(b'{');
                for (i, (key, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    line.extend_from_slice(key);
                    t.write_json(v, line, scratch);
                }
                line.push(b'}');
            }
        }
        line.push(b'\n');
    }
}

impl Template {
    fn write_json(&self, v: &dyn Values, line: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        scratch.clear();
        if let [Piece::Var(var)] = self.pieces[..] {
            if !v.value(var, scratch) {
                line.extend_from_slice(b"null");
            } else if var.numeric() && is_json_number(scratch) {
                line.extend_from_slice(scratch);
            } else {
                json_string(line, scratch);
            }
            return;
        }
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => scratch.extend_from_slice(l),
                Piece::Var(var) => {
                    if !v.value(*var, scratch) {
                        scratch.push(b'-');
                    }
                }
            }
        }
        json_string(line, scratch);
    }
}

fn is_json_number(s: &[u8]) -> bool {
    !s.is_empty()
        && s[0].is_ascii_digit()
        && s.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && s.iter().filter(|&&b| b == b'.').count() <= 1
        && s.last().is_some_and(u8::is_ascii_digit)
}

/// nginx's default escaping: `"`, `\` and bytes outside printable ASCII as `\xHH`.
pub fn text_escape(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// A JSON string of any bytes: valid UTF-8 passes (escaped where JSON requires), and each
/// byte of an invalid sequence becomes `\u00XX`, so the line is always valid JSON and no
/// byte is lost.
pub fn json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                // U+2028 and U+2029 are valid JSON but end a line in JavaScript.
                '\u{2028}' | '\u{2029}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut b = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            let _ = write!(out, "\\u{b:04x}");
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Values for Fake {
        fn value(&self, var: Var, out: &mut Vec<u8>) -> bool {
            match var {
                Var::RemoteAddr => out.extend_from_slice(b"10.0.0.1"),
                Var::Status => out.extend_from_slice(b"200"),
                Var::Request => out.extend_from_slice(b"GET /a\"b\xff HTTP/1.1"),
                Var::Http(0) => out.extend_from_slice("caf\u{e9}\n".as_bytes()),
                Var::RequestTime => out.extend_from_slice(b"0.004"),
                _ => return false,
            }
            true
        }
    }

    fn line(f: &Format) -> String {
        let (mut l, mut s) = (Vec::new(), Vec::new());
        f.write(&Fake, &mut l, &mut s);
        String::from_utf8(l).unwrap()
    }

    #[test]
    fn text_escapes_like_nginx() {
        let mut c = Captures::default();
        let f = text(
            "$remote_addr \"$request\" $status ${status}x $upstream_addr",
            &mut c,
        )
        .unwrap();
        assert_eq!(
            line(&f),
            "10.0.0.1 \"GET /a\\x22b\\xFF HTTP/1.1\" 200 200x -\n"
        );
    }

    #[test]
    fn json_is_valid_whatever_the_bytes() {
        let mut c = Captures::default();
        let f = json(
            [
                ("ip", "$remote_addr"),
                ("st", "$status"),
                ("t", "$request_time"),
                ("req", "$request"),
                ("ua", "$http_user_agent"),
                ("none", "$upstream_status"),
                ("mixed", "$status/$upstream_status"),
            ]
            .into_iter(),
            &mut c,
        )
        .unwrap();
        assert_eq!(c.request, ["user-agent"]);
        let l = line(&f);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["st"], 200);
        assert_eq!(v["t"], 0.004);
        assert_eq!(v["req"], "GET /a\"b\u{ff} HTTP/1.1");
        assert_eq!(v["ua"], "caf\u{e9}\n");
        assert!(v["none"].is_null());
        assert_eq!(v["mixed"], "200/-");
        assert!(l.ends_with("}\n") && !l[..l.len() - 1].contains('\n'));
    }

    #[test]
    fn header_variables_share_captures() {
        let mut c = Captures::default();
        text("$http_X_Forwarded_For $sent_http_content_type", &mut c).unwrap();
        text("$http_x_forwarded_for $http_user_agent", &mut c).unwrap();
        assert_eq!(c.request, ["x-forwarded-for", "user-agent"]);
        assert_eq!(c.response, ["content-type"]);
    }

    #[test]
    fn bad_templates() {
        let mut c = Captures::default();
        for (t, want) in [
            ("$nope", "unknown variable \"$nope\""),
            ("a $ b", "invalid variable name"),
            ("${status", "unclosed"),
            ("$http_", "unknown variable"),
            ("${sta-tus}", "invalid variable name"),
        ] {
            let e = text(t, &mut c).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
        for name in BUILTIN {
            assert!(builtin(name, &mut c).is_some());
        }
    }
}
