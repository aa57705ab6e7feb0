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
        ("syntax error", format!("worker_processes = \n{SERVER}"), None, "main.toml:1:", "expected"),
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

/// Issue 20: every unknown key of every file is reported in one run, each at its own
/// FILE:LINE:COL with the nearest known key, and the config's other errors come with them.
#[test]
fn every_unknown_key_of_every_file_at_once() {
    let dir = TempDir::new("cfg-unknown");
    dir.write(
        "conf.d/site.toml",
        "user = \"www\"\n[[server]]\nlisten = \"127.0.0.1:8081\"\nkeepalive_timout = \"5s\"\n[[server.route]]\nreturn = 200\nheaderz = { a = \"b\" }\n",
    );
    let f = dir.write(
        "main.toml",
        concat!(
            "include = [\"conf.d/*.toml\"]\n",
            "error_log = { path = \"/dev/null\", levle = \"info\" }\n",
            "[admin]\nlisten = \"127.0.0.1:9\"\ntokn = \"x\"\n",
            "[[server]]\nlisten = \"127.0.0.1:8080\"\nserver_nam = \"a\"\n",
            "[[server.route]]\npath = \"/\"\nupstream = \"app\"\n",
            "retry = { tries = 2, backof = \"1s\" }\n",
            "[server.route.match]\nmethd = \"GET\"\n",
            "[[upstream]]\nname = \"app\"\n",
            "peers = [\"127.0.0.1:1\", { addr = \"127.0.0.1:2\", wieght = 2 }]\n",
            "health_check = { path = \"/\", intervall = \"1s\" }\n",
            "[[upstream]]\nname = \"app\"\npeers = [\"127.0.0.1:3\"]\n",
        ),
    );
    let (code, out, err) = check(&dir, &f);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    for want in [
        "main.toml:2:35: unknown field `levle`, expected one of `path`, `level`; did you mean `level`?",
        "main.toml:5:1: unknown field `tokn`",
        "did you mean `token`?",
        "main.toml:8:1: unknown field `server_nam`",
        "did you mean `server_name`?",
        "main.toml:12:22: unknown field `backof`",
        "main.toml:14:1: unknown field `methd`",
        "main.toml:17:49: unknown field `wieght`",
        "main.toml:18:30: unknown field `intervall`",
        "site.toml:1:1: unknown field `user`, expected one of `server`, `upstream`; global settings belong in the main config file",
        "site.toml:4:1: unknown field `keepalive_timout`",
        "did you mean `keepalive_timeout`?",
        "site.toml:7:1: unknown field `headerz`",
        // A semantic error is still found beside them, naming the first place too.
        "main.toml:20:8: duplicate upstream \"app\" (first given at ",
        "main.toml:16)\n",
        "admin needs a token",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("(12 errors)"), "{err}");
}

/// Issue 20: a second server name, default server, upstream or route names the first one's
/// place, also across files.
#[test]
fn duplicates_name_both_places() {
    let dir = TempDir::new("cfg-dup");
    dir.write(
        "b.toml",
        "[[server]]\nlisten = \"127.0.0.1:8080\"\nserver_name = \"a.example\"\ndefault_server = true\n[[server.route]]\nreturn = 200\n[[server.route]]\nreturn = 204\n",
    );
    let f = dir.write(
        "main.toml",
        "include = [\"b.toml\"]\n[[server]]\nlisten = \"127.0.0.1:8080\"\nserver_name = \"a.example\"\ndefault_server = true\n[[server.route]]\nreturn = 200\n",
    );
    let (code, _, err) = check(&dir, &f);
    assert_eq!(code, 1, "{err}");
    let main = dir.path().join("main.toml").display().to_string();
    let b = dir.path().join("b.toml").display().to_string();
    for want in [
        format!("b.toml:3:15: duplicate server \"a.example\" on 127.0.0.1:8080 (first given at {main}:4)"),
        format!("b.toml:1:1: a second default_server for 127.0.0.1:8080 (the first is at {main}:2)"),
        format!("b.toml:7:1: duplicate route for path \"/\" (the same as the route at {b}:5)"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

/// Issue 20: `-T --effective` prints a config that loads as it stands (TLS, includes, log
/// formats, admin secrets, conditions, retries, splits, header edits, host-name peers), and
/// printing that again gives the same text: nothing is lost or changed on the way.
#[test]
fn dump_effective_loads_and_is_a_fixpoint() {
    let dir = TempDir::new("cfg-effective");
    common::certs::cert(dir.path(), "site", &["a.example"], false);
    dir.write(
        "conf.d/up.toml",
        concat!(
            "[[upstream]]\nname = \"app\"\nbalance = \"least_conn\"\n",
            "peers = [\"127.0.0.1:9001\", { addr = \"127.0.0.1:9002\", weight = 3 }, { addr = \"127.0.0.1:9003\", backup = true }, { addr = \"127.0.0.1:9005\", down = true }]\n",
            "health_check = { path = \"/healthz\", interval = \"2s\", status = \"200-299\", body = \"~ok\", initial = \"down\" }\n",
            "outlier = { consecutive_failures = 3, count_5xx = true }\nkeepalive = 16\n",
            "tls = { verify = false, server_name = \"app.internal\" }\n",
            "[[upstream]]\nname = \"named\"\nbalance = \"hash\"\nhash_key = \"header:x-user\"\n",
            "peers = [\"localhost:9004\"]\nresolve_interval = \"10s\"\nmax_addresses = 2\n",
            "health_check = { type = \"tcp\", interval = \"3s\" }\n",
            "[[server]]\nlisten = \"127.0.0.1:8080\"\naccess_log = \"off\"\n",
            "[[server.route]]\npath = \"/\"\nupstream = \"named\"\n",
            "[[server.route]]\npath = \"/p/\"\nhost = \"*.h.test\"\nupstream = \"named\"\n",
        ),
    );
    let main = dir.write(
        "main.toml",
        &format!(
            r#"worker_processes = 1
shutdown_timeout = "60s"
error_log = {{ path = "{d}/error.log", level = "warn" }}
log_format = {{ timing = '$remote_addr "$request" $status', audit = {{ json = {{ client = "$remote_addr" }} }} }}
access_log = {{ path = "{d}/access.log", format = "timing" }}
resolver = {{ servers = ["127.0.0.1:53"], timeout = "2s" }}
admin = {{ listen = "127.0.0.1:9180", token = "secret-token-123", basic_auth = {{ ops = "$2y$05$c4WoMPo3SXsafkva.HHa6uXQZWr7oboPiC2bT/r7q1BB8I2s0BRqC" }} }}
otlp = {{ endpoint = "http://127.0.0.1:4318/v1/traces", service_name = "edge" }}
include = ["conf.d/*.toml"]

[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["a.example", "~^c[0-9]+\\.example$"]
tls = {{ cert = "site.crt", key = "site.key", protocols = ["TLSv1.3"], handshake_timeout = "5s" }}
request_id = {{ header = "X-Request-ID" }}
access_log = [{{ path = "{d}/a.log", format = "audit" }}, {{ path = "stdout", format = "$remote_addr $status" }}]
client_max_body_size = "10m"

[[server.route]]
path = "/api/"
upstream = "app"
strip_prefix = "/api"
retry = {{ tries = 3, on = ["error", "502"], backoff = "50ms" }}
request_headers = {{ set = {{ "X-A" = "1" }}, add = {{ "X-B" = "2" }}, remove = ["X-C"] }}
[server.route.response_headers.set]
X-D = "$request_id"
[server.route.match]
method = ["GET", "POST"]
header = {{ "X-Env" = "prod", "X-Re" = "~^v[0-9]+$" }}
query = {{ debug = "1" }}
client = ["10.0.0.0/8"]

[[server.route]]
regex = "^/u/([0-9]+)$"
upstream = "app"
rewrite = "/users/$1"
priority = 5
retry = {{ on = ["connect"] }}

[[server.route]]
exact = "/old"
return = 301
redirect = "https://$host/new"

[[server.route]]
path = "/canary/"
split = [{{ upstream = "app", weight = 90 }}, {{ upstream = "named", weight = 10 }}]
sticky = "cookie:uid"

[[server.route]]
path = "/"
return = 200
body = "hello\n"
headers = {{ "Content-Type" = "text/plain" }}
"#,
            d = dir.path().display()
        ),
    );
    let (code, _, err) = check(&dir, &main);
    assert_eq!(code, 0, "the source config loads: {err}");
    let dump = |f: &std::path::Path| {
        let out = proxyctl(&["-T", "--effective", "-c", f.to_str().unwrap()]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        // Everything after the "# configuration file" comments.
        text.lines()
            .filter(|l| !l.starts_with("# configuration file "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let first = dump(&main);
    for want in [
        "token = \"secret-token-123\"",
        "ops = \"$2y$05$",
        "on = [\n    \"error\",\n    \"502\",\n]",
        "on = [\"connect\"]",
        "addr = \"localhost:9004\"",
        "down = true",
        "X-D = \"$request_id\"",
        "host = \"*.h.test\"",
        "type = \"tcp\"\ninterval = \"3s\"\ntimeout = \"2s\"\nrise = 2\nfall = 3\ninitial = \"up\"",
        "timing = '$remote_addr \"$request\" $status'",
    ] {
        assert!(first.contains(want), "missing {want:?} in:\n{first}");
    }
    // The host name stands once for its addresses, not once per address.
    assert_eq!(first.matches("localhost:9004").count(), 1, "{first}");
    let copy = dir.write("effective.toml", &first);
    let (code, _, err) = check(&dir, &copy);
    assert_eq!(code, 0, "-T --effective output loads: {err}\n{first}");
    assert_eq!(
        dump(&copy),
        first,
        "the effective config of the effective config is itself"
    );
    // A file name with a newline stays inside its comment line.
    let odd = dir.write("x\nworker_connections = 5\n#.toml", &first);
    let out = proxyctl(&["-T", "--effective", "-c", odd.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# configuration file "), "{text}");
    assert!(
        text.contains("x\\nworker_connections = 5\\n#.toml"),
        "{text}"
    );
    let again = dir.write("again.toml", &text);
    let (code, _, err) = check(&dir, &again);
    assert_eq!(code, 0, "{err}");
}

/// Names from the file are shown with their control characters escaped: an escape sequence
/// in a key or an upstream's name cannot clear the terminal or fake "test is successful"
/// (found by the outside attacker); a file that is not UTF-8 says where.
#[test]
fn errors_escape_control_characters_and_place_bad_bytes() {
    let dir = TempDir::new("cfg-escape");
    let f = dir.write(
        "main.toml",
        "[[server]]\nlisten = \"127.0.0.1:1\"\n\"\\u001b[2Jx\\r\\nproxyctl: fake\" = 1\n[[server.route]]\nupstream = \"a\\u001b[31m\"\n",
    );
    let (code, _, err) = check(&dir, &f);
    assert_eq!(code, 1);
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err:?}");
    assert!(
        err.contains("main.toml:3:1: unknown field `\\u{1b}[2Jx\\r\\nproxyctl: fake`"),
        "{err}"
    );
    assert!(err.contains("unknown upstream \"a\\u{1b}[31m\""), "{err}");
    assert_eq!(err.lines().count(), 3, "{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, b"[[server]]\nlisten = \"\xff\"\n").unwrap();
    let (code, _, err) = check(&dir, &bad);
    assert_eq!(code, 1);
    assert!(err.contains("not UTF-8 at line 2, column 11"), "{err}");
}

/// The verdict lines name the file with its control characters escaped too.
#[test]
fn the_verdict_escapes_the_file_name() {
    let dir = TempDir::new("cfg-name");
    let f = dir.write("a\rb\u{1b}[2J.toml", SERVER);
    let (code, _, err) = check(&dir, &f);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains("a\\rb\\u{1b}[2J.toml syntax is ok"), "{err}");
}
