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
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct ErrorPages {
    entries: Vec<Page>,
}

/// One entry: the statuses it covers, its file, and the file's type (from its name, found
/// here once rather than per error).
#[derive(Debug, Clone)]
pub struct Page {
    first: u16,
    last: u16,
    pub file: PathBuf,
    pub content_type: &'static str,
}

/// Shown by `-T` as written: (first status, last status, file).
impl Serialize for Page {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.first, self.last, &self.file).serialize(s)
    }
}

impl ErrorPages {
    /// The page that answers `status`, if any.
    pub fn find(&self, status: u16) -> Option<&Page> {
        self.entries
            .iter()
            .find(|p| (p.first..=p.last).contains(&status))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An error page's type, by its file name's extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html",
        "txt" => "text/plain",
        "json" => "application/json",
        "xml" => "application/xml",
        _ => "application/octet-stream",
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

/// `"404"` or `"500-599"`, within 400..=599 (the statuses proxyd answers itself with):
/// three digits each, nothing else ("+404", "0404" or " 404" are refused, not read as 404).
fn statuses(key: &str) -> Option<(u16, u16)> {
    let status = |s: &str| {
        (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
    };
    let (lo, hi) = match key.split_once('-') {
        Some((lo, hi)) => (status(lo)?, status(hi)?),
        None => {
            let s = status(key)?;
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
        v: Option<&S<BTreeMap<String, S<toml::Value>>>>,
    ) -> ErrorPages {
        let mut out = ErrorPages::default();
        let Some(v) = v else { return out };
        for (key, file) in v.get_ref() {
            // Each entry's own line: its value's.
            let err = |msg: String| src.err(file.span(), format!("error_pages \"{key}\": {msg}"));
            let Some((lo, hi)) = statuses(key) else {
                self.errors.push(err(
                    "not a status or a range of statuses within 400-599 (\"404\", \"500-599\")"
                        .into(),
                ));
                continue;
            };
            let toml::Value::String(file) = file.get_ref() else {
                self.errors.push(err("the page is a file name".into()));
                continue;
            };
            let path = resolve(base, file);
            if let Err(e) = open_page(&path) {
                self.errors
                    .push(err(format!("cannot open {}: {e}", path.display())));
                continue;
            }
            let taken = out.entries.iter().find(|p| lo <= p.last && p.first <= hi);
            if let Some(Page {
                first: a, last: b, ..
            }) = taken
            {
                self.errors.push(err(format!(
                    "overlaps the entry for {a}-{b} (a status has one page)"
                )));
                continue;
            }
            // The master checked it as root; the workers open it as themselves.
            if let Some((uid, gid)) = self.worker {
                if !readable_by(&path, uid, gid) {
                    self.warnings.push(err(format!(
                        "{} is not readable by the workers' user (uid {uid}, gid {gid}): they will send the built-in page",
                        path.display()
                    )));
                }
            }
            out.entries.push(Page {
                first: lo,
                last: hi,
                content_type: content_type(&path),
                file: path,
            });
        }
        out
    }
}

/// Whether `uid`/`gid` (and no other group) may read `path`, by its mode bits and the
/// search bits of the directories above it (ACLs are not looked at).
fn readable_by(path: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let allowed = |m: &std::fs::Metadata, owner: u32, group: u32, other: u32| {
        let bit = if m.uid() == uid {
            owner
        } else if m.gid() == gid {
            group
        } else {
            other
        };
        m.mode() & bit != 0
    };
    if uid == 0 {
        return true;
    }
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let dirs_searchable = real
        .ancestors()
        .skip(1)
        .all(|d| std::fs::metadata(d).is_ok_and(|m| allowed(&m, 0o100, 0o010, 0o001)));
    dirs_searchable && std::fs::metadata(&real).is_ok_and(|m| allowed(&m, 0o400, 0o040, 0o004))
}

#[cfg(test)]
mod tests {
    use super::statuses;

    #[test]
    fn keys_are_a_status_or_a_range_of_error_statuses() {
        assert_eq!(statuses("404"), Some((404, 404)));
        assert_eq!(statuses("500-599"), Some((500, 599)));
        assert_eq!(statuses("502-504"), Some((502, 504)));
        for bad in [
            "200", "399", "600", "504-502", "5xx", "", "-", "404-", "400-600",
        ] {
            assert_eq!(statuses(bad), None, "{bad}");
        }
    }
}
