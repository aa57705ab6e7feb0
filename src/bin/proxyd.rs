//! proxyd: the server. Runs the master in the foreground (systemd style).

use proxyd::{cli, config, logging, master};
use std::path::PathBuf;

// Blocks the master frees are wiped (see `scrub`); counted too in an alloc-count build.
#[cfg(feature = "alloc-count")]
#[global_allocator]
static ALLOC: proxyd::scrub::Scrubbing<proxyd::alloc_count::Counting> =
    proxyd::scrub::Scrubbing(proxyd::alloc_count::Counting);
#[cfg(not(feature = "alloc-count"))]
#[global_allocator]
static ALLOC: proxyd::scrub::Scrubbing<std::alloc::System> =
    proxyd::scrub::Scrubbing(std::alloc::System);

const USAGE: &str = "usage: proxyd [-c FILE] [-t | -T] [-v] [-h]
  -c FILE   configuration file (default /etc/proxyd/proxyd.toml)
  -t        test the configuration and exit
  -T        test the configuration, print the effective configuration and exit
  -v        print the version and exit
  -h        this help";

fn main() {
    // Before the config (and its secrets) is read.
    proxyd::scrub::wipe_freed(true);
    let mut path = PathBuf::from(config::DEFAULT_PATH);
    let mut test = false;
    let mut dump = cli::Dump::None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" => match args.next() {
                Some(p) => path = PathBuf::from(p),
                None => fail("option -c needs a file"),
            },
            "-t" => test = true,
            "-T" => {
                test = true;
                dump = cli::Dump::Files;
            }
            "--effective" if dump != cli::Dump::None => dump = cli::Dump::Effective,
            "-v" | "--version" => {
                cli::quiet_on_closed_pipe();
                println!("proxyd {}", env!("CARGO_PKG_VERSION"));
                return;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail(&format!("unknown option \"{other}\"")),
        }
    }
    if test {
        cli::quiet_on_closed_pipe();
        std::process::exit(cli::config_test("proxyd", &path, dump, false));
    }
    // The arguments were read above: from here on their memory shows the title (and the
    // children's titles, which they set after fork).
    proxyd::proctitle::init();
    proxyd::proctitle::set(&format!(
        "proxyd: master process {}",
        proxyd::proctitle::command_line()
    ));
    // Before the config is loaded: its TLS settings take the ticket keys (see tls::tickets).
    if let Err(e) = proxyd::tls::tickets::create() {
        eprintln!("proxyd: [emerg] cannot create the TLS ticket keys: {e}");
        std::process::exit(1);
    }
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs {
                eprintln!("proxyd: [emerg] {e}");
            }
            std::process::exit(1);
        }
    };
    logging::init(&cfg.error_log.level);
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    std::process::exit(master::run(cfg));
}

fn fail(msg: &str) -> ! {
    eprintln!("proxyd: {msg}\n{USAGE}");
    std::process::exit(2);
}
