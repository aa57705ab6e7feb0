//! Command-line pieces shared by `proxyd` and `proxyctl`.

pub mod top;

use crate::config;
use std::path::Path;

/// A command-line tool whose output goes into a pipe (`proxyctl status | head`) should end
/// quietly when the pipe closes, as Unix tools do, not panic in `println!`. Rust ignores
/// SIGPIPE by default; put it back for the CLI paths only (never for the server).
pub fn quiet_on_closed_pipe() {
    // SAFETY: setting a signal disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// What `-T` prints after the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dump {
    None,
    /// Every file read, verbatim, each after `# configuration file PATH:` (as `nginx -T`).
    Files,
    /// The configuration as proxyd understood it, defaults included (`-T --effective`).
    Effective,
}

/// `-t` / `-T`: load the config exactly as startup and reload do, print the verdict on
/// stderr (and with `dump` the files or the effective config on stdout), and return the
/// exit code.
pub fn config_test(prog: &str, path: &Path, dump: Dump, quiet: bool) -> i32 {
    match config::load(path) {
        Ok(cfg) => {
            print_warnings(prog, &cfg);
            if !quiet {
                eprintln!(
                    "{prog}: the configuration file {} syntax is ok",
                    shown_path(path)
                );
                eprintln!(
                    "{prog}: configuration file {} test is successful",
                    shown_path(path)
                );
            }
            match dump {
                Dump::None => {}
                Dump::Files => {
                    for f in &cfg.files {
                        match std::fs::read_to_string(f) {
                            Ok(text) => {
                                println!("# configuration file {}:", shown_path(f));
                                print!("{text}");
                                if !text.ends_with('\n') {
                                    println!();
                                }
                                println!();
                            }
                            Err(e) => {
                                eprintln!("{prog}: cannot read {}: {e}", f.display());
                                return 1;
                            }
                        }
                    }
                }
                Dump::Effective => {
                    for f in &cfg.files {
                        println!("# configuration file {}", shown_path(f));
                    }
                    print!("{}", cfg.to_toml());
                }
            }
            0
        }
        Err(errs) => {
            for e in &errs {
                eprintln!("{prog}: [emerg] {e}");
            }
            eprintln!(
                "{prog}: configuration file {} test failed ({} error{})",
                shown_path(path),
                errs.len(),
                if errs.len() == 1 { "" } else { "s" }
            );
            1
        }
    }
}

/// `-t` warnings (exit status 0): things that are valid but surely not meant.
fn print_warnings(prog: &str, cfg: &config::Config) {
    for w in &cfg.warnings {
        eprintln!("{prog}: [warn] warning: {w}");
    }
}

/// A path as proxyctl prints it: a control character in a file's name is escaped, or a
/// newline in it would let the rest be read as configuration after `# configuration file`,
/// and an escape sequence would drive the terminal.
fn shown_path(p: &std::path::Path) -> String {
    config::escape_controls(&p.display().to_string()).into_owned()
}
