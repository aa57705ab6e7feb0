//! The path a request is routed on (RFC 3986 section 6.2.2): percent-encoded unreserved
//! characters decoded, dot segments removed, runs of slashes merged. `/%61dmin`, `//admin`
//! and `/./admin` all route as `/admin`. The original target is what goes upstream.

/// `normalize` into `out`, reusing its memory for the common already-normal path.
pub fn normalize_into(path: &str, out: &mut String) -> Option<()> {
    let raw = path.as_bytes();
    let plain = raw.first() == Some(&b'/')
        && !raw.contains(&b'%')
        && !raw.windows(2).any(|w| w == b"//" || w == b"/.");
    if plain {
        out.clear();
        out.push_str(path);
    } else {
        *out = normalize(path)?;
    }
    Some(())
}

/// Normalizes the path part of an origin-form target (no query). `None` for a path that is
/// not origin-form, has a malformed percent escape, or climbs above the root.
pub fn normalize(path: &str) -> Option<String> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return None;
    }
    // Most paths are already normal: no escapes, no empty or dot segments.
    let plain = !raw.contains(&b'%') && !raw.windows(2).any(|w| w == b"//" || w == b"/.");
    if plain {
        return Some(path.to_string());
    }
    // Decode only unreserved characters: `%2F` stays an escaped byte of one segment.
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hi = hex(*raw.get(i + 1)?)?;
            let lo = hex(*raw.get(i + 2)?)?;
            let c = hi * 16 + lo;
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                decoded.push(c);
            } else {
                decoded.push(b'%');
                decoded.extend_from_slice(&[
                    raw[i + 1].to_ascii_uppercase(),
                    raw[i + 2].to_ascii_uppercase(),
                ]);
            }
            i += 3;
        } else {
            decoded.push(raw[i]);
            i += 1;
        }
    }
    let mut out: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (n, seg) in segments.iter().enumerate() {
        match *seg {
            b"" => trailing_slash = n == last,
            b"." => trailing_slash = true,
            b".." => {
                out.pop()?;
                trailing_slash = true;
            }
            // A dot segment with parameters (`..;x`, `.;`): Tomcat, Jetty and Spring drop
            // the parameters and climb; refused rather than routed as a name.
            s if matches!(s.split(|&b| b == b';').next(), Some(b"." | b"..")) => return None,
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut s = Vec::with_capacity(decoded.len());
    for seg in &out {
        s.push(b'/');
        s.extend_from_slice(seg);
    }
    if trailing_slash || out.is_empty() {
        s.push(b'/');
    }
    String::from_utf8(s).ok()
}

/// Whether `path` has a `.` or `..` segment, escaped or not (`%2e%2E`), with or without
/// parameters (`..;x`).
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let name = seg.split(';').next().unwrap_or("");
        // Each dot written as `.` or `%2e`: one or two of them, nothing else.
        let mut dots = 0;
        let mut rest = name.as_bytes();
        while !rest.is_empty() {
            match rest {
                [b'.', r @ ..] => rest = r,
                [b'%', b'2', e, r @ ..] if e.eq_ignore_ascii_case(&b'e') => rest = r,
                _ => return false,
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

/// Whether `path` has an escaped slash or backslash (`%2F`, `%5C`) or a bare backslash,
/// which many backends decode (or, for `\`, read) as a separator.
pub fn has_encoded_slash(path: &str) -> bool {
    path.contains('\\')
        || path.as_bytes().windows(3).any(|w| {
            w[0] == b'%'
                && (w[1..].eq_ignore_ascii_case(b"2f") || w[1..].eq_ignore_ascii_case(b"5c"))
        })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normal_forms() {
        for (input, want) in [
            ("/", "/"),
            ("/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("//admin", "/admin"),
            ("/./admin", "/admin"),
            ("/a/../admin", "/admin"),
            ("/a/b/", "/a/b/"),
            ("/a//b//", "/a/b/"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/a%2fb", "/a%2Fb"),
            ("/%7Euser", "/~user"),
        ] {
            assert_eq!(normalize(input).as_deref(), Some(want), "{input}");
        }
        use super::has_dot_segment;
        for dotted in ["/a/./b", "/a/..", "/%2e%2E/x", "/.%2e;x/y", "/a/..;/b"] {
            assert!(has_dot_segment(dotted), "{dotted}");
        }
        for plain in ["/a/b", "/a/...", "/a/.x", "/%2e%2e%2e", "/files-../x"] {
            assert!(!has_dot_segment(plain), "{plain}");
        }
        for bad in [
            "",
            "x",
            "/..",
            "/a/../..",
            "/%zz",
            "/%4",
            "*",
            "/%2e%2e/x",
            "/.;/admin",
            "/x/..;/admin",
            "/x/..;jsessionid=1",
            "/%2e;x/a",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
