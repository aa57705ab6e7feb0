//! The `process_*` metrics of the node's processes, read by the master from `/proc` at
//! scrape time (it knows every child's pid), summed per kind of process: the master, the
//! workers, the helper. Per kind and not per pid: a pid label would make a new series at
//! every reload and respawn. A kind's CPU time stays a counter although its processes come
//! and go: a process that is gone leaves the CPU time it had at the last scrape in a retired
//! total (what it used after that scrape is not seen).

use std::cell::RefCell;
use std::collections::HashMap;

/// A kind of process, the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Master,
    Worker,
    Helper,
}

impl Kind {
    pub(super) const ALL: [Kind; 3] = [Kind::Master, Kind::Worker, Kind::Helper];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Master => "master",
            Kind::Worker => "worker",
            Kind::Helper => "helper",
        }
    }
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sample {
    /// User and system time, in clock ticks.
    cpu_ticks: u64,
    rss_pages: u64,
    open_fds: u64,
    /// Since boot, in clock ticks.
    start_ticks: u64,
}

/// What `/proc/PID/stat` says: the fields after the command name, which is in parentheses
/// and may itself hold spaces and parentheses (so the last `)` ends it).
fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest starts at field 3 (state): utime is field 14, stime 15, starttime 22.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some((n(14)? + n(15)?, n(22)?))
}

fn read(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (cpu_ticks, start_ticks) = parse_stat(&stat)?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let rss_pages = statm.split_whitespace().nth(1)?.parse().ok()?;
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    Some(Sample {
        cpu_ticks,
        rss_pages,
        open_fds,
        start_ticks,
    })
}

fn sysconf(name: libc::c_int) -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).unwrap_or(0).max(1)
}

/// When the system booted, in seconds since the Unix epoch (`btime` of `/proc/stat`).
fn boot_time() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The numbers of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct KindTotals {
    pub(super) cpu_seconds: f64,
    pub(super) resident_bytes: u64,
    pub(super) open_fds: u64,
    /// The oldest live process's start, in seconds since the Unix epoch.
    pub(super) start_time: f64,
    pub(super) processes: usize,
}

/// The CPU time of each process seen at the last scrape, and of the gone ones.
#[derive(Debug, Default)]
pub(super) struct Tally {
    seen: RefCell<HashMap<u32, (Kind, u64)>>,
    retired: RefCell<HashMap<Kind, u64>>,
}

impl Tally {
    /// Reads every process of `pids` and returns the totals of each kind, in `Kind::ALL`
    /// order (a kind without a live process has no start time and counts its retired CPU).
    pub(super) fn scrape(&self, pids: &[(Kind, u32)]) -> Vec<(Kind, KindTotals)> {
        let (tick, page) = (sysconf(libc::_SC_CLK_TCK), sysconf(libc::_SC_PAGESIZE));
        let boot = boot_time();
        let mut seen = self.seen.borrow_mut();
        let mut retired = self.retired.borrow_mut();
        let mut now: HashMap<u32, (Kind, u64)> = HashMap::new();
        let mut out: Vec<(Kind, KindTotals, u64)> = Kind::ALL
            .iter()
            .map(|k| (*k, KindTotals::default(), 0))
            .collect();
        for &(kind, pid) in pids {
            let Some(s) = read(pid) else { continue };
            now.insert(pid, (kind, s.cpu_ticks));
            let Some((_, t, ticks)) = out.iter_mut().find(|(k, _, _)| *k == kind) else {
                continue;
            };
            *ticks += s.cpu_ticks;
            t.resident_bytes += s.rss_pages * page;
            t.open_fds += s.open_fds;
            let start = boot as f64 + s.start_ticks as f64 / tick as f64;
            if t.processes == 0 || start < t.start_time {
                t.start_time = start;
            }
            t.processes += 1;
        }
        // A pid gone (or now another process's) leaves its last CPU time behind.
        for (pid, (kind, ticks)) in seen.iter() {
            if now.get(pid).is_none_or(|(k, t)| k != kind || t < ticks) {
                *retired.entry(*kind).or_default() += ticks;
            }
        }
        *seen = now;
        out.into_iter()
            .map(|(k, mut t, ticks)| {
                let all = ticks + retired.get(&k).copied().unwrap_or(0);
                t.cpu_seconds = all as f64 / tick as f64;
                (k, t)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_past_a_command_with_spaces_and_parentheses() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 555 1000 50";
        assert_eq!(parse_stat(line), Some((10, 555)));
        assert_eq!(parse_stat("42 (x) S 1"), None);
    }

    #[test]
    fn this_process_is_read_and_a_gone_one_keeps_its_cpu() {
        let me = std::process::id();
        let t = Tally::default();
        let got = t.scrape(&[(Kind::Master, me)]);
        let (_, m) = got[0];
        assert_eq!(m.processes, 1);
        assert!(m.resident_bytes > 0 && m.open_fds > 0 && m.start_time > 1e9);
        // Pretend a worker was seen with 5 s of CPU and is gone now.
        t.seen
            .borrow_mut()
            .insert(u32::MAX, (Kind::Worker, 5 * sysconf(libc::_SC_CLK_TCK)));
        let got = t.scrape(&[(Kind::Master, me)]);
        assert_eq!(got[1].1.cpu_seconds, 5.0);
        assert_eq!(got[1].1.processes, 0);
    }
}
