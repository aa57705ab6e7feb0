//! `proxyctl -t` / `proxyd -t` on the shipped configs and on broken ones: each broken config
//! must exit 1 and name the right FILE:LINE.

mod common;

use common::*;

fn check(dir: &TempDir, file: &std::path::Path) -> (i32, String, String) {
    let _ = dir;
    let out = proxyctl(&["-t", "-c", file.to_str().unwrap()]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SERVER: &str = "[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nreturn = 200\n";

#[test]
fn shipped_configs_pass() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            n += 1;
            for bin_name in ["proxyctl", "proxyd"] {
                let out = std::process::Command::new(bin(bin_name))
                    .args(["-t", "-c", p.to_str().unwrap()])
                    .output()
                    .unwrap();
                // The verdict goes to stderr, as nginx's does; stdout stays for -T's dump.
                let stdout = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.stdout.is_empty(),
                    "{}",
                    String::from_utf8_lossy(&out.stdout)
                );
                assert!(out.status.success(), "{}: {stdout}", p.display());
                assert!(
                    stdout.contains(&format!(
                        "{bin_name}: the configuration file {} syntax is ok",
                        p.display()
                    )),
                    "{stdout}"
                );
                assert!(
                    stdout.contains(&format!(
                        "{bin_name}: configuration file {} test is successful",
                        p.display()
                    )),
                    "{stdout}"
                );
            }
        }
    }
    assert!(n >= 1);
}

#[test]
fn dump_effective_shows_effective_config() {
    let dir = TempDir::new("cfg");
    let f = dir.write(
        "main.toml",
        &format!("include = [\"conf.d/*.toml\"]\n{SERVER}"),
    );
    dir.write(
        "conf.d/up.toml",
        "[[upstream]]\nname = \"inc\"\npeers = [\"127.0.0.1:9\"]\n",
    );
    let out = proxyctl(&["-T", "--effective", "-c", f.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("conf.d/up.toml"), "{text}");
    assert!(text.contains("name = \"inc\""), "{text}");
    assert!(
        text.contains("keepalive_timeout = \"75s\""),
        "defaults are shown: {text}"
    );
}

/// Issue 20: `-T` prints every file read verbatim, each after `# configuration file PATH:`,
/// as `nginx -T` does (it printed a normalised dump: "60s" became "1m"), with the verdict on
/// stderr even with -q; each file's part loads as it stands.
#[test]
fn dump_prints_the_files_verbatim() {
    let dir = TempDir::new("cfg-verbatim");
    let main_text = format!(
        "# the main file\ninclude = [\"conf.d/*.toml\"]\nshutdown_timeout = \"60s\"\n{SERVER}"
    );
    let f = dir.write("main.toml", &main_text);
    let inc_text = "[[upstream]]\nname = \"inc\"   # kept as written\npeers = [\"127.0.0.1:9\"]\n";
    dir.write("conf.d/up.toml", inc_text);
    for args in [&["-T"][..], &["-T", "-q"]] {
        let mut all = args.to_vec();
        all.extend(["-c", f.to_str().unwrap()]);
        let out = proxyctl(&all);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("syntax is ok"), "{text}");
        let parts: Vec<&str> = text.split("# configuration file ").skip(1).collect();
        assert_eq!(parts.len(), 2, "{text}");
        for (part, path, want) in [
            (parts[0], f.clone(), main_text.as_str()),
            (parts[1], dir.path().join("conf.d/up.toml"), inc_text),
        ] {
            let (head, body) = part.split_once('\n').unwrap();
            assert_eq!(head, format!("{}:", path.display()));
            assert_eq!(body.trim_end(), want.trim_end());
        }
    }
    // What -T printed for the main file loads as the main file.
    let out = proxyctl(&["-T", "-c", f.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let main_part = text.split("# configuration file ").nth(1).unwrap();
    let copy = dir.write("copy.toml", main_part.split_once('\n').unwrap().1);
    let (code, _, err) = check(&dir, &copy);
    assert_eq!(code, 0, "{err}");
}

/// (name, main file text, optional included file, expected "FILE:LINE:" suffix, expected message part)
#[test]
fn broken_configs_fail_with_location() {
    let cases: Vec<(&str, String, Option<&str>, &str, &str)> = vec![
        ("syntax error", format!("worker_processes = \n{SERVER}"), None, "main.toml:1:", "invalid"),
        ("unknown key", format!("worker_processes = 1\nbogus_key = 1\n{SERVER}"), None, "main.toml:2:", "bogus_key"),
        ("unknown key in server", "[[server]]\nlisten = \"127.0.0.1:8080\"\nlisen = 1\n".into(), None, "main.toml:", "lisen"),
        ("bad address", "[[server]]\nlisten = \"300.1.1.1:80\"\n[[server.route]]\nreturn = 200\n".into(), None, "main.toml:2:", "invalid listen address"),
        ("bad server_name regex", "[[server]]\nlisten = \"127.0.0.1:8080\"\nserver_name = \"~^(api\"\n[[server.route]]\nreturn = 200\n".into(), None, "main.toml:3:", "invalid server_name regex"),
        ("bad wildcard", "[[server]]\nlisten = \"127.0.0.1:8080\"\nserver_name = \"a.*.test\"\n[[server.route]]\nreturn = 200\n".into(), None, "main.toml:3:", "a wildcard must be a whole leading or trailing label"),
        ("port 0", "[[server]]\nlisten = \"127.0.0.1:0\"\n[[server.route]]\nreturn = 200\n".into(), None, "main.toml:2:", "needs a port other than 0"),
        ("unknown upstream", "[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nupstream = \"nope\"\n".into(), None, "main.toml:4:", "unknown upstream \"nope\""),
        ("bad duration", format!("shutdown_timeout = \"5x\"\n{SERVER}"), None, "main.toml:1:", "invalid duration"),
        ("bad size", "[[server]]\nlisten = \"127.0.0.1:8080\"\nclient_header_buffer_size = \"12q\"\n".into(), None, "main.toml:3:", "invalid size"),
        (
            "duplicate upstream",
            format!("[[upstream]]\nname = \"a\"\npeers = [\"127.0.0.1:1\"]\n[[upstream]]\nname = \"a\"\npeers = [\"127.0.0.1:2\"]\n{SERVER}"),
            None,
            "main.toml:5:",
            "duplicate upstream \"a\"",
        ),
        ("missing include", format!("include = [\"nothere.toml\"]\n{SERVER}"), None, "main.toml:1:", "no such file"),
        ("syntax error in include", format!("include = [\"conf.d/*.toml\"]\n{SERVER}"), Some("[[upstream]]\nname = \"x\"\npeers = [\"127.0.0.1:1\"]\nweight = = 2\n"), "conf.d/bad.toml:4:", ""),
        (
            "semantic error in include",
            format!("include = [\"conf.d/*.toml\"]\n{SERVER}"),
            Some("# comment\n[[server]]\nlisten = \"127.0.0.1:8081\"\n[[server.route]]\nupstream = \"ghost\"\n"),
            "conf.d/bad.toml:5:",
            "unknown upstream \"ghost\"",
        ),
        ("global key in include", format!("include = [\"conf.d/*.toml\"]\n{SERVER}"), Some("worker_processes = 2\n"), "conf.d/bad.toml:1:", "worker_processes"),
        ("upstream and return", "[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nreturn = 200\nupstream = \"x\"\n".into(), None, "main.toml:3:", "exactly one"),
        ("bad worker_processes", format!("worker_processes = \"many\"\n{SERVER}"), None, "main.toml:1:", "worker_processes"),
        ("unknown user", format!("user = \"no-such-user-xyz\"\n{SERVER}"), None, "main.toml:1:", "unknown user"),
        ("peer without port", format!("[[upstream]]\nname = \"a\"\npeers = [\"localhost\"]\n{SERVER}"), None, "main.toml:3:", "invalid peer address"),
        ("duplicate server", format!("{SERVER}{SERVER}"), None, "main.toml:5:", "duplicate server"),
        ("missing log directory", format!("access_log = \"no/such/dir/access.log\"\n{SERVER}"), None, "main.toml:1:", "log directory"),
        ("bad status", "[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\nreturn = 999\n".into(), None, "main.toml:4:", "out of range"),
    ];
    assert!(cases.len() >= 10);
    for (name, main, include, loc, msg) in cases {
        let dir = TempDir::new("cfg");
        let f = dir.write("main.toml", &main);
        if let Some(inc) = include {
            dir.write("conf.d/bad.toml", inc);
        }
        let (code, _out, err) = check(&dir, &f);
        assert_eq!(code, 1, "{name}: expected failure, got {code}: {err}");
        let line = err
            .lines()
            .find(|l| l.contains(loc))
            .unwrap_or_else(|| panic!("{name}: no {loc} in: {err}"));
        assert!(line.contains(msg), "{name}: {line}");
        assert!(
            line.contains(dir.path().to_str().unwrap()),
            "{name}: full path expected: {line}"
        );
        assert!(err.contains("test failed"), "{name}: {err}");
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let dir = TempDir::new("cfg");
    let f = dir.write(
        "main.toml",
        "shutdown_timeout = \"soon\"\n[[server]]\nlisten = [\"127.0.0.1:80800\"]\n[[server.route]]\nupstream = \"a\"\n[[server.route]]\npath = \"/x\"\nupstream = \"b\"\n",
    );
    let (code, _, err) = check(&dir, &f);
    assert_eq!(code, 1);
    for loc in [
        "main.toml:1:",
        "main.toml:3:",
        "main.toml:5:",
        "main.toml:8:",
    ] {
        assert!(err.contains(loc), "missing {loc}: {err}");
    }
    assert!(err.contains("(4 errors)"), "{err}");
}

/// Issue 20: errors say what was probably meant: the nearest key or upstream name, `[[server]]`
/// for `[server]`, quotes around a duration.
#[test]
fn errors_hint_at_what_was_meant() {
    let dir = TempDir::new("cfg-hints");
    for (text, want) in [
        (
            "[[server]]\nlisten = \"127.0.0.1:1\"\nlisen = 2\n".to_string(),
            "main.toml:3:1: unknown field `lisen`",
        ),
        ("[server]\nlisten = \"127.0.0.1:1\"\n".into(), "write [[server]]"),
        (
            format!("shutdown_timeout = 30s\n{SERVER}"),
            "durations and sizes are strings: \"30s\"",
        ),
        (
            "[[upstream]]\nname = \"app\"\npeers = [\"127.0.0.1:9\"]\n[[server]]\nlisten = \"127.0.0.1:1\"\n[[server.route]]\nupstream = \"ap\"\n".into(),
            "main.toml:7:12: unknown upstream \"ap\"; did you mean \"app\"?",
        ),
    ] {
        let (ok, out) = config_test(&dir, &text);
        assert!(!ok && out.contains(want), "{want}: {out}");
    }
    let (_, out) = config_test(&dir, "[[server]]\nlisten = \"127.0.0.1:1\"\nlisen = 2\n");
    assert!(out.contains("did you mean `listen`?"), "{out}");
}
