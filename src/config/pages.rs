//! `error_pages` on a `[[server]]`: files that replace proxyd's built-in pages for the
//! errors it answers itself (no route, an upstream that failed, a body too large...), as
//! nginx's `error_page` does. Keys are a status or a range (`404`, `"500-599"`); a status
//! falls to the one entry that covers it (a status is not covered twice). The file is
//! opened when the error happens, so editing it needs no reload; one that cannot be opened
//! then is logged and the built-in page goes out instead.

use super::load::{resolve, Source};
use super::raw::S;
use super::validate::Validator;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct ErrorPages {
    /// (first status, last status, file), as written.
    entries: Vec<(u16, u16, PathBuf)>,
}

impl ErrorPages {
    /// The file that answers `status`, if any.
    pub fn find(&self, status: u16) -> Option<&Path> {
        self.entries
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&status))
            .map(|(_, _, p)| p.as_path())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Opens an error page, non-blocking, so that a FIFO put where the file was cannot hold a
/// worker (or a config load) in open(2); anything but a regular file is refused. A regular
/// file's reads ignore the flag. Returns the file and its length.
pub fn open_page(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let m = file.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, m.len()))
}

/// `"404"` or `"500-599"`, within 400..=599 (the statuses proxyd answers itself with).
fn statuses(key: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match key.split_once('-') {
        Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
        None => {
            let s = key.trim().parse().ok()?;
            (s, s)
        }
    };
    ((400..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

impl Validator {
    pub(super) fn error_pages(
        &mut self,
        src: &Source,
        base: &Path,
        v: Option<&S<toml::Value>>,
    ) -> ErrorPages {
        let mut out = ErrorPages::default();
        let Some(v) = v else { return out };
        let toml::Value::Table(t) = v.get_ref() else {
            self.errors.push(src.err(
                v.span(),
                "error_pages is a table of status (or \"500-599\") = \"file\"",
            ));
            return out;
        };
        for (key, file) in t {
            let err = |msg: String| src.err(v.span(), format!("error_pages \"{key}\": {msg}"));
            let Some((lo, hi)) = statuses(key) else {
                self.errors.push(err(
                    "not a status or a range of statuses within 400-599".into()
                ));
                continue;
            };
            let toml::Value::String(file) = file else {
                self.errors.push(err("the page is a file name".into()));
                continue;
            };
            let path = resolve(base, file);
            if let Err(e) = open_page(&path) {
                self.errors
                    .push(err(format!("cannot open {}: {e}", path.display())));
                continue;
            }
            if let Some((a, b, _)) = out.entries.iter().find(|(a, b, _)| lo <= *b && *a <= hi) {
                self.errors.push(err(format!(
                    "overlaps the entry for {a}-{b} (a status has one page)"
                )));
                continue;
            }
            out.entries.push((lo, hi, path));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::statuses;

    #[test]
    fn keys_are_a_status_or_a_range_of_error_statuses() {
        assert_eq!(statuses("404"), Some((404, 404)));
        assert_eq!(statuses("500-599"), Some((500, 599)));
        assert_eq!(statuses(" 502 - 504 "), Some((502, 504)));
        for bad in [
            "200", "399", "600", "504-502", "5xx", "", "-", "404-", "400-600",
        ] {
            assert_eq!(statuses(bad), None, "{bad}");
        }
    }
}
