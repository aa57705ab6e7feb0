//! Process titles, as nginx shows them in `ps` (`ngx_setproctitle.c`): each process says what
//! it is, `proxyd: master process /usr/sbin/proxyd -c /etc/proxyd/proxyd.toml`,
//! `proxyd: worker process (gen 3)`, `proxyd: worker process is shutting down`,
//! `proxyd: helper process`, `proxyd: hashing process`.
//!
//! What `ps -o args` and /proc/PID/cmdline show is the memory where the kernel laid out the
//! argument strings, followed by the environment strings. Pointing the kernel elsewhere
//! (prctl PR_SET_MM) needs CAP_SYS_RESOURCE, so the title is written over that memory in
//! place. Two things read it besides the kernel and are moved out of the way first, in
//! `init`, while the process is single-threaded: Rust's `std::env::args` (it reads the
//! strings on each call: the command line is read once, in `main`, before `init`) and the
//! environment (every variable is copied to the heap, so `std::env::var` keeps working).
//! The short name in /proc/PID/comm stays `proxyd`, so `pkill proxyd` and systemd still
//! find the processes.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

/// The memory a title may take: the argument strings, and the environment strings when
/// they follow them (as the kernel lays them out).
#[derive(Clone, Copy)]
struct Area {
    start: usize,
    len: usize,
}

static AREA: OnceLock<Option<Area>> = OnceLock::new();
static COMMAND_LINE: OnceLock<String> = OnceLock::new();

/// Prepares titles: remembers the command line and frees the memory a title is written to.
/// Call once, first thing in `main` (after reading the arguments), before any thread or
/// fork. Without /proc, or memory that is not laid out as expected, titles stay as they are.
pub fn init() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let line: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let _ = COMMAND_LINE.set(line.join(" "));
    let _ = AREA.set(area(&args));
}

/// The command line proxyd was started with, as one string.
pub fn command_line() -> &'static str {
    COMMAND_LINE.get().map_or("proxyd", |s| s.as_str())
}

/// Shows `title` as this process's command line (truncated to the room there is).
pub fn set(title: &str) {
    let Some(Some(a)) = AREA.get() else {
        return;
    };
    // SAFETY: `area` checked that these bytes are this process's argument (and environment)
    // strings, in writable memory at the top of the main stack that lives as long as the
    // process. Nothing reads them any more: std's arguments were read before `init`, and
    // the environment was moved to the heap by it.
    let buf = unsafe { std::slice::from_raw_parts_mut(a.start as *mut u8, a.len) };
    let n = title.len().min(a.len - 1);
    buf[..n].copy_from_slice(&title.as_bytes()[..n]);
    // NUL to the end: the kernel shows the arguments up to the first NUL once the last byte
    // of the original arguments is overwritten, and all of them (trailing NULs) otherwise.
    buf[n..].fill(0);
}

/// Finds the argument strings through /proc/self/stat (arg_start, arg_end, env_start,
/// env_end) and checks that they hold exactly `args`; moves the environment out of the
/// way if its strings follow.
fn area(args: &[OsString]) -> Option<Area> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start with the third, state;
    // arg_start is the 48th.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    let (arg_start, arg_end) = (field(48)?, field(49)?);
    let (env_start, env_end) = (field(50)?, field(51)?);
    let expected: Vec<u8> = args
        .iter()
        .flat_map(|a| a.as_bytes().iter().copied().chain([0]))
        .collect();
    // (No arguments at all, argc 0, leaves no room for even a NUL.)
    if expected.is_empty() || arg_start == 0 || arg_end.checked_sub(arg_start)? != expected.len() {
        return None;
    }
    // SAFETY: the kernel says this range holds our argument strings: mapped and readable.
    let now = unsafe { std::slice::from_raw_parts(arg_start as *const u8, expected.len()) };
    if now != expected.as_slice() {
        return None;
    }
    let mut end = arg_end;
    if env_start == arg_end && env_end > env_start {
        move_environment();
        end = env_end;
    }
    Some(Area {
        start: arg_start,
        len: end - arg_start,
    })
}

/// Copies every environment variable to the heap (clearenv, then setenv each): from here on
/// nothing points into the environment strings the kernel laid out.
fn move_environment() {
    let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    // SAFETY: single-threaded (see `init`); clearenv only resets libc's environ.
    unsafe { libc::clearenv() };
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}
