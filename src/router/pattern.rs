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

/// Escapes that match one character class or position and take no argument: `\d`, `\b`...
fn simple_escape(c: u8) -> bool {
    b"dDwWsSbBAzZGhHvVRXK".contains(&c)
}

/// Whether the pattern holds something that changes how the rest reads, which a byte scan
/// cannot follow: `\Q..\E` quotes and a lone `\E` (PCRE2 drops it, so a quantifier after
/// it applies to the byte before, and `[\E]` starts a class with a literal `]`), `\c`
/// (takes any next byte), `(?#..)` comments, verbs (`(*UTF)`), and inline flags at any
/// depth (`(?x)` makes `#` a comment and `(?i)` makes case free).
fn unscannable(p: &str) -> bool {
    let b = p.as_bytes();
    p.contains("\\Q")
        || p.contains("\\E")
        || p.contains("\\c")
        || p.contains("(?#")
        || p.contains("(*")
        || b.windows(3).any(|w| {
            w[0] == b'('
                && w[1] == b'?'
                && (w[2].is_ascii_alphabetic() && !b"PR".contains(&w[2])
                    || w[2] == b'^'
                    || w[2] == b'-'
                    || w[2] == b'C')
        })
}

/// The length of a quantifier `{n}`, `{n,}`, `{n,m}` or `{,m}` at `b[i]` (a `{`), or None
/// when the brace is not one (then PCRE2 reads it as text, which this scanner does not try
/// to follow).
fn brace_quantifier(b: &[u8], i: usize) -> Option<usize> {
    let close = b[i..].iter().position(|&c| c == b'}')?;
    let body = &b[i + 1..i + close];
    let ok = !body.is_empty()
        && body
            .iter()
            .all(|&c| c.is_ascii_digit() || c == b',' || c == b' ')
        && body.iter().filter(|&&c| c == b',').count() <= 1
        && body.iter().any(u8::is_ascii_digit);
    ok.then_some(close + 1)
}

fn required_literals(p: &str) -> Option<Vec<String>> {
    if unscannable(p) {
        return None;
    }
    let b = p.as_bytes();
    let mut found: Vec<String> = Vec::new();
    let mut run = String::new();
    let mut depth = 0usize;
    let mut i = 0;
    let end_run = |run: &mut String, found: &mut Vec<String>| {
        if run.len() >= 2 {
            found.push(run.clone());
        }
        run.clear();
    };
    while i < b.len() {
        // One atom: where it ends, and the literal byte it is at the top level, if any.
        let c = b[i];
        let (next, literal) = match c {
            b'\\' => {
                let e = *b.get(i + 1)?;
                if e.is_ascii_punctuation() {
                    // A backslash before any punctuation makes it literal.
                    (i + 2, Some(e))
                } else if simple_escape(e) {
                    (i + 2, None)
                } else {
                    // \x, \o, \p, \N, \g, \k, digits (back references, octal)...: arguments
                    // of their own; not followed.
                    return None;
                }
            }
            b'[' => (skip_class(b, i)?, None),
            b'(' => {
                depth += 1;
                (i + 1, None)
            }
            b')' => {
                depth = depth.checked_sub(1)?;
                (i + 1, None)
            }
            b'|' if depth == 0 => return None,
            b'{' => (i + brace_quantifier(b, i)?, None),
            c if plain(c) => (i + 1, Some(c)),
            _ => (i + 1, None),
        };
        // A quantified atom may be absent or repeated: it is no part of a run.
        let quantified = matches!(b.get(next), Some(b'?' | b'*' | b'+' | b'{'));
        match literal {
            Some(l) if depth == 0 && !quantified && c != b'(' => run.push(l as char),
            _ => end_run(&mut run, &mut found),
        }
        i = next;
    }
    if depth != 0 {
        return None;
    }
    end_run(&mut run, &mut found);
    Some(found)
}

/// The index just past the class opening at `i`, by PCRE2's rules: a `]` first (after an
/// optional `^`) is literal, `[:name:]` is a POSIX class only when `:]` comes before any `]`,
/// `\` escapes the next byte.
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
            b'[' if matches!(b.get(i + 1), Some(b':' | b'.' | b'=')) => {
                let term = b[i + 1];
                let mut k = i + 2;
                let mut posix = None;
                while k < b.len() {
                    if b[k] == b'\\' {
                        k += 2;
                    } else if b[k] == b']' {
                        break;
                    } else if b[k] == term && b.get(k + 1) == Some(&b']') {
                        posix = Some(k + 2);
                        break;
                    } else {
                        k += 1;
                    }
                }
                i = posix.unwrap_or(i + 1);
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
        assert_eq!(lit("^/(?=admin)xyz/"), Some("xyz/".into()));
        // Found by attacking the index: each once yielded a literal only one branch needs.
        assert_eq!(lit(r"^/admin\b|^/internal"), None);
        assert_eq!(lit(r"^/x(\c)admin\d)?"), None);
        assert_eq!(lit(r"^/[[:]|x:]]/zzz"), None);
        assert_eq!(lit("^/y((?x)#)secret\\d\n)?"), None);
        assert_eq!(lit(r"^/a{2,4}bc"), Some("bc".into()));
        assert_eq!(lit(r"^/x\12ab"), None);
        assert_eq!(lit(r"^/users/\d+/posts$"), Some("/users/".into()));
        assert_eq!(lit(r"^/a\.b\(c"), Some("/a.b(c".into()));
        assert_eq!(lit(r"^/admin\E?/"), None);
        assert_eq!(lit(r"^/x[\E]abc]"), None);
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
