//! Tools some tests run besides proxyd. A missing one fails its test at once with one line
//! naming what to install (`scripts/test.sh` installs them all), instead of an error from
//! deep inside the test.

use std::process::{Command, Stdio};

const HOW: &str = "scripts/test.sh installs it (as root), or";

/// `cmd` must be on the PATH; `package` is the Debian package that has it.
pub fn need(cmd: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "missing tool `{cmd}`: {HOW} apt-get install -y {package}"
    );
}

/// Python 3 must import `module`; `pip` is what installs it.
pub fn need_python(module: &str, pip: &str) {
    need("python3", "python3");
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "missing Python module `{module}`: {HOW} pip install '{pip}'"
    );
}
