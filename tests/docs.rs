//! The manual pages: they format without warnings (`groff -ww`), and they list every
//! configuration key the loader accepts, every proxyctl command and option, and every
//! signal the master handles.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap()
}

#[test]
fn man_pages_format_without_warnings() {
    common::tools::need("groff", "groff-base");
    for page in ["man/proxyd.8", "man/proxyctl.8", "man/proxyd.toml.5"] {
        let out = Command::new("groff")
            .args(["-ww", "-man", "-z"])
            .arg(root().join(page))
            .output()
            .expect("groff (Debian package groff-base)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Field names of the raw (as written) configuration structs: the keys users can write.
fn config_keys() -> Vec<String> {
    let src = read("src/config/raw.rs");
    let mut keys = Vec::new();
    let mut rename: Option<String> = None;
    for line in src.lines().map(str::trim) {
        if let Some(r) = line
            .strip_prefix("#[serde(rename = \"")
            .and_then(|r| r.strip_suffix("\")]"))
        {
            rename = Some(r.to_string());
            continue;
        }
        if let Some(field) = line
            .strip_prefix("pub ")
            .and_then(|l| l.split_once(':'))
            .map(|(name, _)| name)
            .filter(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        {
            keys.push(rename.take().unwrap_or_else(|| field.to_string()));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// `key` set in bold in the page (`.B key`, `.BR key`, `\fBkey\fR`) or as a table header.
fn documented(page: &str, key: &str) -> bool {
    page.lines().any(|l| {
        l == format!(".B {key}")
            || l.starts_with(&format!(".B {key} "))
            || l.starts_with(&format!(".BR {key} "))
            || l.contains(&format!("\\fB{key}\\fR"))
            || l.contains(&format!("[[{key}]]"))
            || l.contains(&format!("[[server.{key}]]"))
    })
}

#[test]
fn every_config_key_is_in_proxyd_toml_5() {
    let page = read("man/proxyd.toml.5");
    let keys = config_keys();
    assert!(keys.len() > 30, "found only {keys:?}");
    let missing: Vec<&String> = keys.iter().filter(|k| !documented(&page, k)).collect();
    assert!(missing.is_empty(), "not in proxyd.toml(5): {missing:?}");
}

#[test]
fn every_command_and_signal_is_documented() {
    let ctl = read("man/proxyctl.8");
    let control = read("src/control.rs");
    let commands = control
        .lines()
        .find(|l| l.contains("pub const COMMANDS"))
        .unwrap();
    for c in commands.split('"').skip(1).step_by(2) {
        assert!(documented(&ctl, c), "proxyctl(8) lacks the command {c}");
    }
    for opt in ["\\-t", "\\-T", "\\-q", "\\-c", "\\-p"] {
        assert!(ctl.contains(opt), "proxyctl(8) lacks {opt}");
    }
    let proxyd = read("man/proxyd.8");
    let master = read("src/master/mod.rs");
    for (sig, _) in master
        .lines()
        .filter_map(|l| l.trim().strip_prefix("(SIG"))
        .filter_map(|l| l.split_once(','))
    {
        if sig == "CHLD" {
            continue;
        }
        let listed = proxyd.lines().any(|l| {
            l.starts_with(".B")
                && l.split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|w| w == sig)
        });
        assert!(listed, "proxyd(8) lacks the signal {sig}");
    }
}

/// The EXAMPLE in proxyd.toml(5) uses every key and is a valid configuration.
#[test]
fn the_man_page_example_uses_every_key_and_is_valid() {
    let page = read("man/proxyd.toml.5");
    let example = page
        .split(".SH EXAMPLE")
        .nth(1)
        .and_then(|e| e.split(".nf\n").nth(1))
        .and_then(|e| e.split("\n.fi").next())
        .expect("an EXAMPLE section with a .nf block");
    for key in config_keys() {
        let key = if key == "return_status" {
            "return".into()
        } else {
            key
        };
        let used = example.lines().any(|l| {
            l.trim_start().starts_with(&format!("{key} ="))
                || l.contains(&format!("{{ {key} ="))
                || l.contains(&format!(", {key} ="))
                || l.contains(&format!("[[{key}]]"))
                || l.contains(&format!("[[server.{key}]]"))
        });
        assert!(used, "the example does not use {key}");
    }
    // Valid once pointed at a test directory (user, log and run paths exist here).
    let dir = std::env::temp_dir().join(format!("proxyd-man-example-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    let d = dir.display().to_string();
    // The example's certificate, made here.
    let made = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "365", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-subj",
            "/CN=example.com",
        ])
        .arg("-keyout")
        .arg(dir.join("example.com.key"))
        .arg("-out")
        .arg(dir.join("example.com.pem"))
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(made.status.success());
    // Its OCSP response, the certificate answering for itself (example.com.crt/.key).
    std::fs::copy(dir.join("example.com.pem"), dir.join("example.com.crt")).unwrap();
    common::certs::ocsp_for(
        &dir,
        "example.com.pem",
        "example.com",
        false,
        1,
        "example.com.ocsp",
    );
    let text = example
        .replace("\\-", "-")
        .replace("/etc/proxyd/tls", &d)
        .replace("user = \"proxyd\"", "user = \"nobody\"")
        .replace("group = \"proxyd\"", "")
        .replace("/var/log/proxyd", &d)
        .replace("/run/proxyd", &d)
        .replace("/usr/share/proxyd/errors", &d);
    // The example's error pages.
    std::fs::write(dir.join("5xx.html"), "<h1>Try again soon</h1>\n").unwrap();
    let conf = dir.join("proxyd.toml");
    std::fs::write(&conf, text).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_proxyctl"));
    let out = Command::new(bin)
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 20: every repository path the README names exists (it once named
/// `../shared/ARCHITECTURE.md`, outside the repository and the package).
#[test]
fn readme_paths_exist() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut named = 0;
    for quoted in text.split('`').skip(1).step_by(2) {
        let tops = [
            "../",
            "src/",
            "tests/",
            "bench/",
            "scripts/",
            "packaging/",
            "conf/",
            "man/",
        ];
        if quoted.contains(' ') || !tops.iter().any(|t| quoted.starts_with(t)) {
            continue;
        }
        // Globs and placeholders name no one file.
        if quoted.contains(['*', '<', '{']) {
            continue;
        }
        named += 1;
        assert!(
            root().join(quoted.trim_end_matches('/')).exists() && !quoted.starts_with("../"),
            "README.md names `{quoted}`, which is not in the repository"
        );
    }
    assert!(named > 10, "{named} paths found");
}

/// Issue 20: the manual's examples keep their quotes when rendered (`.B` took them as
/// argument delimiters, so `upstream = "app"` showed as `upstream = app`), and the rendered
/// EXAMPLE section is the config the source holds.
#[test]
fn man_page_examples_render_with_their_quotes() {
    common::tools::need("groff", "groff-base");
    let out = Command::new("groff")
        .args(["-Tutf8", "-man", "-P-cbou"])
        .arg(root().join("man/proxyd.toml.5"))
        .output()
        .unwrap();
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    let flat = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
    let page = read("man/proxyd.toml.5");
    let mut inline = 0;
    // `\%` keeps a word from being hyphenated; `\(dq` is a quote `.B` does not eat.
    let source_lines = page.lines().map(|l| l.replace("\\%", ""));
    for line in source_lines.filter(|l| l.starts_with(".B ") && l.contains(" = ")) {
        let want = line[3..].replace("\\(dq", "\"").replace("\\e", "\\");
        let want = want.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&want), "rendered without `{want}`");
        // Each is one line of TOML.
        assert!(want.parse::<toml::Table>().is_ok(), "`{want}` is not TOML");
        inline += 1;
    }
    assert!(inline >= 10, "{inline} inline examples");
    // The EXAMPLE section, as a reader copies it from the rendered page.
    let example = rendered
        .split("\nEXAMPLE\n")
        .nth(1)
        .and_then(|e| e.split("\nSEE ALSO").next())
        .expect("an EXAMPLE section");
    let lines: Vec<&str> = example.lines().collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap();
    let copied: String = lines
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("").trim_end()))
        .collect();
    let source = page
        .split(".SH EXAMPLE")
        .nth(1)
        .and_then(|e| e.split(".nf\n").nth(1))
        .and_then(|e| e.split("\n.fi").next())
        .unwrap()
        .replace("\\e", "\\")
        .replace("\\-", "-");
    // After its one-line introduction, the rendered block is the source's, and TOML.
    let copied = copied.trim().split_once("\n\n").map_or("", |(_, c)| c);
    assert_eq!(copied, source.trim());
    assert!(
        copied.parse::<toml::Table>().is_ok(),
        "the rendered example is not TOML"
    );
}
