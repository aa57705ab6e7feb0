//! Regular expressions in configs (route `regex`, `~` conditions, `~` server names, health
//! check bodies): PCRE2, nginx's dialect, in UTF mode with Unicode properties.
//!
//! Why PCRE2 and not the `regex` crate: a finite-automaton engine compiles counted Unicode
//! classes into automata up front. `[\p{L}0-9_-]{1,40}` alone is a 12,000-state NFA (620 KB);
//! 1,500 such routes needed 2 GB and 22 s to load, and one `RegexSet` over them exceeded its
//! size limit. PCRE2 compiles the same 1,500 patterns in 8 ms into 3 MB. Its backtracking is
//! bounded per match (`LIMITS`): a pattern that runs out of budget is a match *error*, which
//! callers treat as fail-closed (500), never as "no match".

use pcre2::bytes::{Regex, RegexBuilder};

/// Prepended to every pattern: these can only lower PCRE2's defaults (10 million steps and
/// 20 GB of heap), so a hostile subject against a backtracking-prone pattern costs at most a
/// few milliseconds and a megabyte.
const LIMITS: &str = "(*LIMIT_MATCH=1000000)(*LIMIT_DEPTH=100000)(*LIMIT_HEAP=1024)";

#[derive(Debug, Clone)]
pub struct Pattern {
    re: Regex,
    source: String,
}

/// Byte spans of a match's groups (index 0: the whole match); None for a group not taken.
pub type Spans = Vec<Option<(usize, usize)>>;

/// PCRE2 gave up on a match (its step, depth or heap budget, or the JIT stack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchError(pub String);

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        let re = RegexBuilder::new()
            .utf(true)
            .ucp(true)
            .jit_if_available(true)
            .build(&format!("{LIMITS}{source}"))
            .map_err(|e| {
                // Offsets count from the start of the pattern as written, not of `LIMITS`.
                let text = e.to_string();
                match e.offset() {
                    Some(o) => {
                        let msg = format!("PCRE2: error compiling pattern at offset {o}: ");
                        let msg = text.strip_prefix(&msg).unwrap_or(&text);
                        format!("{msg} (at offset {})", o.saturating_sub(LIMITS.len()))
                    }
                    None => text,
                }
            })?;
        Ok(Pattern {
            re,
            source: source.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, s: &str) -> Result<bool, MatchError> {
        self.re
            .is_match(s.as_bytes())
            .map_err(|e| MatchError(e.to_string()))
    }

    /// Capture spans (index 0: the whole match), or None when `s` does not match.
    pub fn captures(&self, s: &str) -> Result<Option<Spans>, MatchError> {
        let mut locs = self.re.capture_locations();
        match self.re.captures_read(&mut locs, s.as_bytes()) {
            Ok(Some(_)) => Ok(Some((0..locs.len()).map(|i| locs.get(i)).collect())),
            Ok(None) => Ok(None),
            Err(e) => Err(MatchError(e.to_string())),
        }
    }

    /// Groups, the whole match (0) included.
    pub fn captures_len(&self) -> usize {
        self.re.captures_len()
    }

    /// Group names by index (index 0, the whole match, has none).
    pub fn capture_names(&self) -> impl Iterator<Item = Option<&str>> {
        self.re.capture_names().iter().map(|n| n.as_deref())
    }

    /// Runs of literal text (2 bytes or more) that every match must contain, when the
    /// pattern is simple enough to tell for certain. Route lookup indexes regex routes by
    /// one of them (see `routes`), so a wrong answer here would make a route fail open:
    /// anything this scanner does not fully understand yields none (the route is then tried
    /// on every request).
    pub fn required_literals(&self) -> Vec<String> {
        required_literals(&self.source).unwrap_or_default()
    }
}

/// Characters that stand for themselves outside a class in PCRE2 (without the `x` flag).
fn plain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"/-_~%,;:@=&!'\"<>`".contains(&c)
}

/// Escapes of punctuation that are literal.
fn escaped_literal(c: u8) -> bool {
    b"./-_~%,;:@=&!'\"<>`#".contains(&c)
}

fn required_literals(p: &str) -> Option<Vec<String>> {
    // `\Q..\E` quotes and `(?#..)` comments hide the structure from a byte scan.
    if p.contains("\\Q") || p.contains("(?#") {
        return None;
    }
    let b = p.as_bytes();
    let mut found: Vec<String> = Vec::new();
    let mut run = String::new();
    let mut depth = 0usize;
    let mut i = 0;
    // A run ends at anything not literal; its last char is dropped when a quantifier follows.
    let end_run = |run: &mut String, found: &mut Vec<String>, quantified: bool| {
        if quantified {
            run.pop();
        }
        if run.len() >= 2 {
            found.push(run.clone());
        }
        run.clear();
    };
    while i < b.len() {
        let c = b[i];
        if depth > 0 {
            match c {
                b'\\' => i += 2,
                b'[' => i = skip_class(b, i)?,
                b'(' => {
                    if b.get(i + 1) == Some(&b'*') {
                        return None;
                    }
                    depth += 1;
                    i += 1;
                }
                b')' => {
                    depth -= 1;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match c {
            b'|' => return None,
            b'(' => {
                // Inline flags (`(?i)`, `(?x)`) and verbs (`(*UTF)`) change how the rest
                // reads; groups of any other kind are skipped whole.
                let rest = &b[i + 1..];
                let lookbehind = rest.starts_with(b"?<=") || rest.starts_with(b"?<!");
                let capture = !rest.starts_with(b"*") && !rest.starts_with(b"?");
                let named = [&b"?:"[..], b"?P<", b"?<", b"?'"]
                    .iter()
                    .any(|k| rest.starts_with(k));
                if !(capture || named && !lookbehind) {
                    return None;
                }
                end_run(&mut run, &mut found, false);
                depth = 1;
                i += 1;
            }
            b')' => return None,
            b'[' => {
                end_run(&mut run, &mut found, false);
                i = skip_class(b, i)?;
            }
            b'\\' => {
                let e = *b.get(i + 1)?;
                if escaped_literal(e) {
                    i += 2;
                    if quantifier(b.get(i)) {
                        end_run(&mut run, &mut found, false);
                    } else {
                        run.push(e as char);
                    }
                } else {
                    // \Q..\E, \x{..}, \d, \b, \K...: stop reading literals here.
                    end_run(&mut run, &mut found, false);
                    break;
                }
            }
            c if plain(c) => {
                i += 1;
                if quantifier(b.get(i)) {
                    end_run(&mut run, &mut found, false);
                } else {
                    run.push(c as char);
                }
            }
            _ => {
                // `^`, `$`, `.`, quantifiers, `#`, spaces, non-ASCII: not part of a run.
                let quantified = quantifier(Some(&c));
                end_run(&mut run, &mut found, quantified);
                i += 1;
            }
        }
    }
    if depth != 0 {
        return None;
    }
    end_run(&mut run, &mut found, false);
    Some(found)
}

fn quantifier(c: Option<&u8>) -> bool {
    matches!(c, Some(b'?' | b'*' | b'+' | b'{'))
}

/// The index just past the class opening at `i`, by PCRE2's rules: a `]` first (after an
/// optional `^`) is literal, `[:name:]` is a POSIX class, `\` escapes the next byte.
fn skip_class(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    if b.get(i) == Some(&b'^') {
        i += 1;
    }
    if b.get(i) == Some(&b']') {
        i += 1;
    }
    loop {
        match *b.get(i)? {
            b'\\' => i += 2,
            b'[' if b.get(i + 1) == Some(&b':') => {
                let close = b[i + 2..].windows(2).position(|w| w == b":]")?;
                i += 2 + close + 2;
            }
            b']' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_only_when_certain() {
        // The longest run, or None when there is none.
        let lit = |p: &str| {
            required_literals(p)
                .unwrap_or_default()
                .into_iter()
                .max_by_key(|l| l.len())
        };
        assert_eq!(
            lit(
                r"^/shop/(?P<cat>[\p{L}0-9_-]{1,40})/item-17/(?P<id>[0-9a-f]{8,32})(/(edit|view|buy))?$"
            ),
            Some("/item-17/".into())
        );
        assert_eq!(lit("^/admin(/.*)?$"), Some("/admin".into()));
        assert_eq!(lit(r"^/api/v1/users/(\d+)$"), Some("/api/v1/users/".into()));
        // The quantified last byte is not required.
        assert_eq!(lit("^/abcd?"), Some("/abc".into()));
        assert_eq!(lit("^/ab+x"), Some("/a".into()));
        assert_eq!(lit("^/a+x"), None);
        assert_eq!(lit(r"^/a\.bc"), Some("/a.bc".into()));
        // Alternation, inline flags, verbs, \Q: no answer.
        assert_eq!(lit("^/admin|/other"), None);
        assert_eq!(lit("(?i)^/admin"), None);
        assert_eq!(lit("(*UTF)^/admin"), None);
        assert_eq!(lit(r"^/x\Q|\E/admin"), None);
        assert_eq!(lit(r"^/x(\Q)\E/admin)?/abc"), None);
        assert_eq!(lit(r"^/xyz(?#)/abc"), None);
        assert_eq!(lit("^/(?=admin)xyz/"), None);
        assert_eq!(lit(r"^/[]|]admin/"), Some("admin/".into()));
        assert_eq!(lit(r"^/[[:alpha:]]admin/"), Some("admin/".into()));
        assert_eq!(lit("^/(a|b)admin/"), Some("admin/".into()));
        assert_eq!(lit("^/(unclosed"), None);
        assert_eq!(lit("^/admin/x{2}"), Some("/admin/".into()));
    }

    #[test]
    fn literal_is_in_every_match() {
        let cases = [
            (
                r"^/shop/(?P<cat>[\p{L}0-9_-]{1,40})/item-17/([0-9a-f]{8,32})$",
                "/shop/Ünï_c/item-17/deadbeef",
            ),
            ("^/admin(/.*)?$", "/admin/x"),
            (r"/[]]x/yz", "/]x/yz"),
        ];
        for (p, s) in cases {
            let re = Pattern::new(p).unwrap();
            assert!(re.is_match(s).unwrap(), "{p}");
            let lits = re.required_literals();
            assert!(!lits.is_empty(), "{p}");
            for l in lits {
                assert!(s.contains(l.as_str()), "{p}: {l}");
            }
        }
    }

    #[test]
    fn runaway_backtracking_is_an_error_not_a_miss() {
        let re = Pattern::new("^/(a+)+$").unwrap();
        let s = format!("/{}b", "a".repeat(40));
        assert!(re.is_match(&s).is_err());
        assert_eq!(re.is_match("/aaa"), Ok(true));
    }

    #[test]
    fn errors_point_into_the_pattern_as_written() {
        let e = Pattern::new("^/(a").unwrap_err();
        assert_eq!(e, "missing closing parenthesis (at offset 4)");
    }

    #[test]
    fn captures_and_names() {
        let re = Pattern::new(r"^/(?P<lang>\w{2})/(\d+)$").unwrap();
        let c = re.captures("/de/42").unwrap().unwrap();
        assert_eq!(c, vec![Some((0, 6)), Some((1, 3)), Some((4, 6))]);
        let names: Vec<_> = re.capture_names().collect();
        assert_eq!(names, vec![None, Some("lang"), None]);
        assert_eq!(re.captures("/x").unwrap(), None);
    }
}
