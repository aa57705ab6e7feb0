//! Prometheus text as Prometheus's own parser reads it (`prom.py`, `prometheus_client`), and
//! promtool's lint when it is installed.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// One sample: name, labels, value.
pub type Sample = (String, serde_json::Map<String, serde_json::Value>, f64);

/// What `cmd` prints with `text` on its standard input.
fn piped(cmd: &mut Command, text: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Samples as Prometheus's parser reads them; a text it refuses fails the test.
pub fn parse(text: &str) -> Vec<Sample> {
    super::tools::need_python("prometheus_client", "prometheus_client");
    let out = piped(
        Command::new("python3").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/prom.py")),
        text,
    );
    assert!(
        out.status.success(),
        "the parser refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Samples of `name` that have every label of `labels`.
pub fn all<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(*v))
        })
        .collect()
}

/// The one sample of `name` with `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = all(samples, name, labels).iter().map(|s| s.2).collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0]
}

/// `promtool check metrics` (Debian package prometheus) finds nothing to say; without
/// promtool, says so in one line and checks nothing.
pub fn promtool_check(text: &str) {
    let found = Command::new("sh")
        .args(["-c", "command -v promtool"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: promtool check metrics (apt-get install -y prometheus)");
        return;
    }
    let out = piped(Command::new("promtool").args(["check", "metrics"]), text);
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sum of the samples of `name` with `labels` (a class over its codes, say).
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    all(samples, name, labels).iter().map(|s| s.2).sum()
}
