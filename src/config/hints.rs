//! "Did you mean" hints for config errors: the nearest known name to a misspelt key or
//! reference, and what the common TOML slips (`[server]` for `[[server]]`, an unquoted
//! `30s`) really need.

/// Edit distance between `a` and `b`, case folded, a swap of two neighbours counting as one
/// edit (optimal string alignment: `levle` is one step from `level`).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (
        a.to_lowercase().chars().collect(),
        b.to_lowercase().chars().collect(),
    );
    // d[i][j]: distance between a[..i] and b[..j]; three rows suffice.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j - 1] + cost).min(prev[j] + 1).min(cur[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// The candidate nearest to `word`, if it is near enough to be what was meant.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `msg` (from the TOML parser, about `text[span]`) with a hint appended when one applies.
pub fn toml_hint(msg: &str, text: &str, span: Option<std::ops::Range<usize>>) -> String {
    // "unknown field `lisen`, expected one of `listen`, `tls`, ..."
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let known = expected.split('`').skip(1).step_by(2);
            if let Some(c) = closest(field, known) {
                return format!("{msg}; did you mean `{c}`?");
            }
        }
        return msg.to_string();
    }
    let at = span.clone().and_then(|s| text.get(s)).unwrap_or("");
    if msg == "duplicate key" {
        // The parser does not say which key; it points at the second one.
        let key = span
            .clone()
            .and_then(|s| text.get(s.start..))
            .and_then(|t| t.split(['=', '\n', ']']).next())
            .map(str::trim)
            .unwrap_or("");
        if !key.is_empty() {
            return format!("duplicate key `{key}`: a table gives each key once");
        }
    }
    if msg.starts_with("invalid type: map, expected a sequence") {
        if let Some(name) = at
            .trim()
            .strip_prefix('[')
            .and_then(|s| s.split(']').next())
        {
            return format!("{msg}; [{name}] is a list of tables: write [[{name}]]");
        }
    }
    // An unquoted duration or size: `shutdown_timeout = 30s` stops the parser at the unit.
    let line = span
        .and_then(|s| {
            let from = text.get(..s.start)?.rfind('\n').map_or(0, |i| i + 1);
            let to = text
                .get(s.start..)?
                .find('\n')
                .map_or(text.len(), |i| s.start + i);
            text.get(from..to)
        })
        .unwrap_or("");
    if let Some((_, value)) = line.split_once('=') {
        let v = value.split('#').next().unwrap_or("").trim();
        let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && digits != v {
            return format!("{msg}; durations and sizes are strings: \"{v}\"");
        }
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_slips() {
        let m = toml_hint(
            "unknown field `lisen`, expected one of `listen`, `tls`",
            "",
            None,
        );
        assert!(m.ends_with("did you mean `listen`?"), "{m}");
        let text = "[server]\nlisten = 1\n";
        let m = toml_hint("invalid type: map, expected a sequence", text, Some(0..8));
        assert!(m.ends_with("write [[server]]"), "{m}");
        let text = "[a]\nlisten = 1\nlisten = 2\n";
        let m = toml_hint("duplicate key", text, Some(15..21));
        assert_eq!(m, "duplicate key `listen`: a table gives each key once");
        let text = "x = 1\nshutdown_timeout = 30s\n";
        let m = toml_hint("expected newline, `#`", text, Some(27..28));
        assert!(m.ends_with("strings: \"30s\""), "{m}");
    }

    #[test]
    fn nearest_names() {
        assert_eq!(closest("ap", ["app", "api2", "payments"]), Some("app"));
        assert_eq!(closest("lisen", ["listen", "tls"]), Some("listen"));
        assert_eq!(closest("zzzzzz", ["listen", "tls"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("levle", "level"), 1);
        assert_eq!(closest("levle", ["path", "level"]), Some("level"));
        assert_eq!(distance("", "abc"), 3);
    }
}
