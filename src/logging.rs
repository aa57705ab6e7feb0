//! The error log. Every process writes it to its stderr; when the log is a file, the master
//! opens it and moves it onto fd 2 (nginx does the same), so reopening after rotation is a
//! dup2 in each process and needs no privileges in workers.

use crate::config::{Config, LogTarget};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// One error log line: `2026/11/23 04:09:32 [error] 5095: message`.
pub fn write_line(
    out: &mut impl Write,
    level: log::Level,
    msg: &dyn std::fmt::Display,
) -> io::Result<()> {
    writeln!(
        out,
        "{} [{}] {}: {msg}",
        chrono::Local::now().format("%Y/%m/%d %H:%M:%S"),
        level.as_str().to_ascii_lowercase(),
        std::process::id()
    )
}

/// Installs the logger once per process (workers inherit it across fork).
pub fn init(level: log::LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.filter_level(log::LevelFilter::Trace)
        .target(env_logger::Target::Stderr)
        .format(|buf, record| write_line(buf, record.level(), record.args()));
    let _ = b.try_init();
    log::set_max_level(level);
}

pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
}

/// Opens the configured error log file (if it is one).
pub fn open_error_log(cfg: &Config) -> io::Result<Option<File>> {
    match &cfg.error_log.path {
        LogTarget::File(p) => open_append(p).map(Some).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open error log {}: {e}", p.display()),
            )
        }),
        _ => Ok(None),
    }
}

/// Points this process's stderr at `file`.
pub fn redirect_stderr(file: &impl AsRawFd) -> io::Result<()> {
    nix::unistd::dup2(file.as_raw_fd(), 2)
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Opens every access log file of the config, in order (None for stdout/stderr targets).
pub fn open_access_logs(cfg: &Config) -> io::Result<Vec<Option<File>>> {
    cfg.access_logs
        .iter()
        .map(|t| match t {
            LogTarget::File(p) => open_append(p).map(Some).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open access log {}: {e}", p.display()),
                )
            }),
            _ => Ok(None),
        })
        .collect()
}

/// The log files of a config in the order a reopen carries them: the error log (if it is a
/// file), then every access log file.
pub fn file_paths(cfg: &Config) -> Vec<std::path::PathBuf> {
    std::iter::once(&cfg.error_log.path)
        .chain(cfg.access_logs.iter())
        .filter_map(|t| match t {
            LogTarget::File(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}
