//! Text with variables, for `redirect` and `rewrite`: `$1`..`$9` and `${name}` (the route
//! regex's captures), `$uri` (the normalized path), `$args` (the query string),
//! `$request_uri` (the request target as the client sent it, path and query), `$host`,
//! `$scheme` ("http" or "https"), and `$$` for a dollar sign. Compiled at config load: a capture the regex does
//! not have is a config error, not an empty string at run time.

use super::pattern::Pattern;
use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Capture(usize),
    Uri,
    Args,
    RequestUri,
    Host,
    Scheme,
}

#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// What a template is expanded against.
pub struct Vars<'a> {
    pub uri: &'a str,
    pub args: Option<&'a str>,
    pub request_uri: &'a str,
    pub host: &'a str,
    pub scheme: &'a str,
    /// Capture groups of the route's regex (index 0: the whole match); empty otherwise.
    pub captures: &'a [Option<(usize, usize)>],
}

impl Template {
    /// Compiles `s`; `regex` is the route's (None for a prefix or exact route).
    pub fn parse(s: &str, regex: Option<&Pattern>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            let (part, used) = if let Some(r) = rest.strip_prefix('$') {
                text.push('$');
                rest = r;
                continue;
            } else if let Some(r) = rest.strip_prefix('{') {
                let end = r
                    .find('}')
                    .ok_or_else(|| format!("unclosed \"${{\" in \"{s}\""))?;
                let name = &r[..end];
                let idx = match name.parse::<usize>() {
                    Ok(n) => n,
                    Err(_) => regex
                        .and_then(|re| re.capture_names().position(|n| n == Some(name)))
                        .ok_or_else(|| {
                            format!("\"${{{name}}}\" is not a named capture of the route's regex")
                        })?,
                };
                (Part::Capture(idx), end + 2)
            } else if let Some(d) = rest.chars().next().filter(|c| c.is_ascii_digit()) {
                (Part::Capture(d as usize - '0' as usize), 1)
            } else {
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let part = match word.as_str() {
                    "uri" => Part::Uri,
                    "args" => Part::Args,
                    "request_uri" => Part::RequestUri,
                    "host" => Part::Host,
                    "scheme" => Part::Scheme,
                    _ => return Err(format!("unknown variable \"${word}\" in \"{s}\" (use $1..$9, ${{name}}, $uri, $args, $request_uri, $host, $scheme or $$)")),
                };
                (part, word.len())
            };
            if let Part::Capture(n) = part {
                let groups = regex.map_or(0, |r| r.captures_len());
                if n >= groups {
                    return Err(match regex {
                        None => format!(
                            "\"{s}\" uses a capture, but only a \"regex\" route has captures"
                        ),
                        Some(_) => format!(
                            "\"{s}\" uses capture {n}; the route's regex has {}",
                            groups - 1
                        ),
                    });
                }
            }
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(part);
            rest = &rest[used..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template {
            source: s.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether it has a query part of its own (then a rewrite does not append the request's).
    pub fn has_query(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(p, Part::Text(t) if t.contains('?'))
                || *p == Part::Args
                || *p == Part::RequestUri
        })
    }

    pub fn expand_into(&self, v: &Vars, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Capture(n) => {
                    if let Some(Some((a, b))) = v.captures.get(*n) {
                        out.push_str(&v.uri[*a..*b]);
                    }
                }
                Part::Uri => out.push_str(v.uri),
                Part::Args => out.push_str(v.args.unwrap_or("")),
                Part::RequestUri => out.push_str(v.request_uri),
                Part::Host => out.push_str(v.host),
                Part::Scheme => out.push_str(v.scheme),
            }
        }
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_captures_and_variables() {
        let re = Pattern::new(r"^/u/(?P<id>\d+)/(.*)$").unwrap();
        let t = Template::parse("https://$host/users/${id}/$2?from=$uri&$$", Some(&re)).unwrap();
        let uri = "/u/42/x/y";
        let c = re.captures(uri).unwrap().unwrap();
        let mut out = String::new();
        t.expand_into(
            &Vars {
                uri,
                args: Some("a=1"),
                request_uri: "/u/42/x/y?a=1",
                host: "ex.com",
                scheme: "https",
                captures: &c,
            },
            &mut out,
        );
        assert_eq!(out, "https://ex.com/users/42/x/y?from=/u/42/x/y&$");
        assert!(t.has_query());
        assert!(Template::parse("/x/$3", Some(&re)).is_err());
        assert!(Template::parse("/x/$1", None).is_err());
        assert!(Template::parse("/x/${nope}", Some(&re)).is_err());
        assert!(Template::parse("/x/$nope", None).is_err());
        assert!(Template::parse("/x/${id", Some(&re)).is_err());
        assert!(!Template::parse("/v2$uri", None).unwrap().has_query());
    }
}
