//! proxyctl: test the configuration and control a running proxyd master.

use proxyd::{cli, config, control};
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage: proxyctl [-c FILE | -p PIDFILE] COMMAND
  -t                 test the configuration and exit (0 ok, 1 errors)
  -T                 test and print every configuration file read, verbatim
  -T --effective     test and print the configuration as proxyd understood it (defaults shown;
                     itself a configuration that loads)
  reload             reload the configuration; waits until the new workers serve
  upgrade            binary upgrade (as USR2): waits until the new master serves
  quit               graceful stop: finish in-flight requests, then exit
  stop               fast stop
  reopen             reopen log files (after rotation)
  status             master pid, generation, worker pids, uptime, config path, peers
  status --json      the same and more (the admin API's status, upstreams, traffic) as JSON
  top [-n N] [-d S]  live numbers, redrawn every S seconds (default 1), N times (default: until
                     q or ^C); plain screens one after another when not on a terminal
  -c FILE            configuration file (default /etc/proxyd/proxyd.toml)
  -p PIDFILE         find the master by its pid file instead
  -q                 quiet: print only errors (for scripts and ExecStartPre)";

fn main() {
    cli::quiet_on_closed_pipe();
    let mut path = PathBuf::from(config::DEFAULT_PATH);
    let mut pid_file: Option<PathBuf> = None;
    let mut quiet = false;
    let mut command: Option<String> = None;
    let mut json = false;
    let mut effective = false;
    let mut top_count: Option<u64> = None;
    let mut top_interval = Duration::from_secs(1);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" => {
                path = args
                    .next()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| fail("option -c needs a file"))
            }
            "-p" => {
                pid_file = Some(
                    args.next()
                        .map(PathBuf::from)
                        .unwrap_or_else(|| fail("option -p needs a file")),
                )
            }
            "-t" | "-T" => command = Some(a.clone()),
            "-q" => quiet = true,
            "--json" => json = true,
            "--effective" => effective = true,
            "top" => command = Some(a.clone()),
            "-n" => {
                top_count = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| fail("option -n needs a count")),
                )
            }
            "-d" => {
                top_interval = args
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|s| *s > 0.0 && *s < 3600.0)
                    .map(Duration::from_secs_f64)
                    .unwrap_or_else(|| fail("option -d needs seconds"))
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            "-v" | "--version" => {
                println!("proxyctl {}", env!("CARGO_PKG_VERSION"));
                return;
            }
            c if control::COMMANDS.contains(&c) => command = Some(c.to_string()),
            other => fail(&format!("unknown argument \"{other}\"")),
        }
    }
    let Some(command) = command else {
        fail("no command given")
    };
    if command == "-t" || command == "-T" {
        let dump = match (command == "-T", effective) {
            (false, _) => cli::Dump::None,
            (true, false) => cli::Dump::Files,
            (true, true) => cli::Dump::Effective,
        };
        std::process::exit(cli::config_test("proxyctl", &path, dump, quiet));
    }
    let socket = match &pid_file {
        Some(p) => config::control_socket_for_pid_file(p),
        None => config::control_paths(&path).1,
    };
    if command == "top" {
        std::process::exit(cli::top::run(&socket, top_interval, top_count));
    }
    let command = if command == "status" && json {
        "status json".to_string()
    } else {
        command
    };
    let wait = if command.starts_with("status") || command == "reopen" {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(600)
    };
    match control::request(&socket, &command, wait) {
        Ok(reply) if reply.ok && quiet && !command.starts_with("status") => {}
        Ok(reply) if reply.ok => {
            let msg = reply.message.trim_end();
            if command.starts_with("status") {
                println!("{msg}");
            } else {
                println!("proxyctl: {command}: {msg}");
            }
        }
        Ok(reply) => {
            for line in reply.message.lines() {
                eprintln!("proxyctl: {command} failed: {line}");
            }
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("proxyctl: {e}");
            std::process::exit(1);
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("proxyctl: {msg}\n{USAGE}");
    std::process::exit(2);
}
