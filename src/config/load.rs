//! Reading a configuration: the main file and every file its `include` patterns reach, each
//! read bounded (size, kind of file) and parsed, every unknown key collected (`unknown.rs`),
//! then validated (`validate.rs`); each error located at FILE:LINE:COL through `Source`.

use super::raw::*;
use super::validate::Validator;
use super::{hints, unknown, Config, ConfigError};
use crate::files::read_bounded;
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A config source file, kept to turn byte spans into line:col.
pub(super) struct Source {
    pub(super) path: PathBuf,
    pub(super) text: String,
    /// Where each line starts, found on the first error: with it a span's line is a binary
    /// search, so a file with 100,000 errors is not scanned 100,000 times.
    lines: std::sync::OnceLock<Vec<usize>>,
}

impl Source {
    pub(super) fn new(path: PathBuf, text: String) -> Source {
        Source {
            path,
            text,
            lines: std::sync::OnceLock::new(),
        }
    }

    /// `FILE:LINE` of `span`, to point from one error at a second place.
    pub(super) fn at(&self, span: Range<usize>) -> String {
        let e = self.err(span, "");
        format!("{}:{}", e.file.display(), e.line)
    }

    pub(super) fn err(&self, span: Range<usize>, msg: impl Into<String>) -> ConfigError {
        let lines = self.lines.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let at = span.start.min(self.text.len());
        // The last line start at or before `at`.
        let line = lines.partition_point(|&start| start <= at);
        let col = at - lines[line - 1] + 1;
        ConfigError {
            file: self.path.clone(),
            line,
            col,
            msg: msg.into(),
        }
    }
}

pub(super) fn file_error(path: &Path, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: 0,
        col: 0,
        msg: msg.into(),
    }
}

/// Parses `src` as `T`. Every unknown key is an error of its own (all of them, not only the
/// first); a syntax or type error ends the reading of the file, so `T` is then missing.
fn parse_toml<T: serde::de::DeserializeOwned>(
    src: &Source,
    root: unknown::Root,
) -> (Option<T>, Vec<ConfigError>) {
    let (result, unknown) = unknown::parse::<T>(&src.text, root);
    let mut errors: Vec<ConfigError> = unknown
        .into_iter()
        .map(|u| src.err(u.span, u.msg))
        .collect();
    let parsed = result
        .map_err(|e| {
            let msg =
                hints::toml_hint(&e.message().trim().replace('\n', "; "), &src.text, e.span());
            errors.push(src.err(e.span().unwrap_or(0..0), msg));
        })
        .ok();
    (parsed, errors)
}

/// Most files the `include` patterns may expand to, all together.
const MAX_INCLUDES: usize = 1024;

/// Reads, parses and validates the config at `path` and everything it includes.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let path = absolute(path);
    let text =
        read_bounded(&path).map_err(|e| vec![file_error(&path, format!("cannot read: {e}"))])?;
    let main_src = Source::new(path.clone(), text);
    let (main, errors) = parse_toml::<RawMain>(&main_src, unknown::Root::Main);
    let Some(mut main) = main else {
        return Err(errors);
    };

    let mut v = Validator {
        staples: Vec::new(),
        errors,
        warnings: Vec::new(),
        worker: None,
    };
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();

    // Included files: parse each; syntax errors are collected and the rest still validated.
    let mut files = vec![path.clone()];
    let mut servers_raw: Vec<(usize, S<RawServer>)> =
        main.server.drain(..).map(|s| (0, s)).collect();
    let mut upstreams_raw: Vec<(usize, S<RawUpstream>)> =
        main.upstream.drain(..).map(|u| (0, u)).collect();
    let mut inc_paths = Vec::new();
    // The same file reached twice (a symlink to a directory already matched) is read once.
    let mut seen: HashSet<PathBuf> =
        HashSet::from([std::fs::canonicalize(&path).unwrap_or(path.clone())]);
    for pat in main.include.as_deref().unwrap_or(&[]) {
        let pattern = resolve(&base, pat.get_ref()).display().to_string();
        let is_glob = pattern.contains(['*', '?', '[']);
        if pattern.contains("**") {
            // A recursive pattern over a symlink loop never ends.
            v.errors.push(main_src.err(
                pat.span(),
                "recursive \"**\" patterns are not supported in include; name each directory level",
            ));
            continue;
        }
        match glob::glob(&pattern) {
            Err(e) => v
                .errors
                .push(main_src.err(pat.span(), format!("bad include pattern: {e}"))),
            Ok(paths) => {
                let room = MAX_INCLUDES.saturating_sub(inc_paths.len());
                let mut matched: Vec<PathBuf> = Vec::new();
                for p in paths {
                    if matched.len() > room {
                        break;
                    }
                    match p {
                        Ok(p) => matched.push(p),
                        // An unreadable directory on the way: part of the config unseen.
                        Err(e) => v.errors.push(
                            main_src.err(pat.span(), format!("include \"{}\": {e}", pat.get_ref())),
                        ),
                    }
                }
                if is_glob {
                    // A name that is not UTF-8 matches no pattern (glob compares text): the
                    // file would be left out without a word.
                    for name in unmatchable_names(Path::new(&pattern)) {
                        v.errors.push(main_src.err(
                            pat.span(),
                            format!(
                                "include \"{}\": {name} has a name that is not UTF-8 and is not read; rename it",
                                pat.get_ref()
                            ),
                        ));
                    }
                }
                if matched.len() > room {
                    v.errors.push(main_src.err(
                        pat.span(),
                        format!("include expands to more than {MAX_INCLUDES} files in all"),
                    ));
                    matched.truncate(room);
                }
                matched.sort();
                // Missing is decided before duplicates go: a file already read (through
                // another name or a symlink) is no error, just not read again.
                if matched.is_empty() && !is_glob {
                    v.errors.push(main_src.err(
                        pat.span(),
                        format!("include \"{}\": no such file", pat.get_ref()),
                    ));
                }
                matched.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or(p.clone())));
                inc_paths.extend(matched.into_iter().map(|p| (p, pat.span())));
            }
        }
    }
    let mut sources = vec![main_src];
    for (p, span) in inc_paths {
        match read_bounded(&p) {
            Err(e) => {
                let err = sources[0].err(span, format!("cannot read include {}: {e}", p.display()));
                v.errors.push(err)
            }
            Ok(text) => {
                let src = Source::new(p.clone(), text);
                files.push(p);
                let (inc, errors) = parse_toml::<RawInclude>(&src, unknown::Root::Include);
                v.errors.extend(errors);
                if let Some(inc) = inc {
                    let i = sources.len();
                    servers_raw.extend(inc.server.into_iter().map(|s| (i, s)));
                    upstreams_raw.extend(inc.upstream.into_iter().map(|u| (i, u)));
                }
                sources.push(src);
            }
        }
    }

    let mut cfg = v.build(&sources, &base, main, servers_raw, upstreams_raw, files);
    if v.errors.is_empty() {
        cfg.warnings = v.warnings;
        Ok(cfg)
    } else {
        Err(v.errors)
    }
}

pub(super) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Relative paths in the config are relative to the main config file's directory.
pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The entries of a pattern's directory (when only its last part has wildcards) whose names
/// are not UTF-8 but would match with their bad bytes read as U+FFFD, shown escaped.
fn unmatchable_names(pattern: &Path) -> Vec<String> {
    let (Some(dir), Some(last)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let Ok(last) = glob::Pattern::new(&last.to_string_lossy()) else {
        return Vec::new();
    };
    if dir.to_string_lossy().contains(['*', '?', '[']) {
        return Vec::new();
    }
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let name = e.file_name();
                    name.to_str().is_none() && last.matches(&name.to_string_lossy())
                })
                .map(|e| format!("{:?}", e.path()))
                .collect()
        })
        .unwrap_or_default()
}
