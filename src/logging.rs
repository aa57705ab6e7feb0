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
    level: &str,
    msg: &dyn std::fmt::Display,
) -> io::Result<()> {
    writeln!(
        out,
        "{} [{level}] {}: {msg}",
        chrono::Local::now().format("%Y/%m/%d %H:%M:%S"),
        std::process::id()
    )
}

/// The `log` target that marks a record as nginx's "notice": what an operator did or the
/// node did in answer (signals, reloads, workers started and gone, admin actions). `log` has
/// no level between info and warn, so a notice is an info record with this target.
pub const NOTICE: &str = "notice";

/// Logs at notice level: `notice!("reload requested by {who}")`.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)+) => { log::info!(target: $crate::logging::NOTICE, $($arg)+) };
}

/// Set when the configured level is `notice`: info records pass `log`'s filter (a notice
/// is one) and the format drops those that are not notices.
static NOTICE_FLOOR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The label a record is written with, or None when the level filter drops it.
fn label(record: &log::Record) -> Option<&'static str> {
    let notice = record.level() == log::Level::Info && record.target() == NOTICE;
    if notice {
        return Some("notice");
    }
    if record.level() == log::Level::Info && NOTICE_FLOOR.load(std::sync::atomic::Ordering::Relaxed)
    {
        return None;
    }
    Some(match record.level() {
        log::Level::Error => "error",
        log::Level::Warn => "warn",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    })
}

/// Applies the configured error-log level (`error`, `warn`, `notice`, `info`, `debug`,
/// `trace` or `off`).
pub fn set_level(level: &str) {
    let notice = level == "notice";
    NOTICE_FLOOR.store(notice, std::sync::atomic::Ordering::Relaxed);
    let filter = if notice {
        log::LevelFilter::Info
    } else {
        level.parse().unwrap_or(log::LevelFilter::Info)
    };
    log::set_max_level(filter);
}

/// Most error-log lines a process writes per second. An upstream outage logs one line per
/// failed request; past this the lines are counted, not written, and the count is logged
/// when the next second starts, so the disk cannot fill from the data path.
const LINES_PER_SECOND: u32 = 200;

/// The per-second line budget: (second, lines written in it, lines dropped in it).
static BUDGET: std::sync::Mutex<(u64, u32, u64)> = std::sync::Mutex::new((0, 0, 0));

/// Whether one more line fits in this second's budget; also returns the count dropped in the
/// previous second when a new one begins.
fn take_budget() -> (bool, u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Ok(mut b) = BUDGET.lock() else {
        return (true, 0);
    };
    let mut dropped_before = 0;
    if b.0 != now {
        dropped_before = b.2;
        *b = (now, 0, 0);
    }
    if b.1 >= LINES_PER_SECOND {
        b.2 += 1;
        return (false, dropped_before);
    }
    b.1 += 1;
    (true, dropped_before)
}

/// Installs the logger once per process (workers inherit it across fork).
pub fn init(level: &str) {
    let mut b = env_logger::Builder::new();
    b.filter_level(log::LevelFilter::Trace)
        // rustls warns about what clients send (an IP address as SNI, say): a client could
        // fill the log. Handshake failures get a line of our own, with the client's address.
        .filter_module("rustls", log::LevelFilter::Error)
        .target(env_logger::Target::Stderr)
        .format(|buf, record| {
            let Some(label) = label(record) else {
                return Ok(());
            };
            let (write, dropped) = take_budget();
            if dropped > 0 {
                let note = format!("{dropped} error log lines suppressed in the last second");
                write_line(buf, "warn", &note)?;
            }
            if write {
                write_line(buf, label, record.args())
            } else {
                Ok(())
            }
        });
    let _ = b.try_init();
    set_level(level);
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
