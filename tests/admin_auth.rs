//! Who may use the admin listener: basic-auth users from the config (bcrypt and SHA-crypt
//! hashes) beside the bearer token; actions logged at notice with the user's name; slow
//! hashes rationed so sign-in attempts cannot stall the master; a flood of silent
//! connections cannot lock a prompt client out.

mod common;

use common::upstream::Upstream;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "api-token-0123456789";
/// `openssl passwd -6 -salt saltsalt secret`.
const SHA512: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
/// bcrypt of "secret" at cost 4 (fast), as `htpasswd -B -C 4` writes it.
const BCRYPT: &str = "$2y$04$mtR7KntlY0.o9BPcRubBr.7FDd73r5STzyTTNc33SoLMwPHZzufTK";
/// bcrypt of "secret" at cost 12: a quarter of a second or more per check.
const SLOW: &str = "$2b$12$2NJNDE81RGLlwNcKO54JWuAvj/Md7pV4/BF2lo4w6gPpS2Ph.ZxfG";

/// SHA-512 of "secret" with 1,000,000 rounds: the slowest SHA-crypt `-t` accepts (about a
/// second in a release build, several in a debug one).
const SLOWEST: &str = "$6$rounds=1000000$saltsalt$ODu5qzWG85BfQpbzNPR6U1evaVuYTh8pE0A4vdPbMrzjA/u63ymSQmHeQ6qvWlHugcXmrX4zNCPJIHwcIrg1w0";

fn start(users: &str) -> (Upstream, u16, Proxyd) {
    let up = Upstream::start("a");
    let admin = free_port();
    let conf = app_conf(&up, "", "", "fixed").replace(
        "[[upstream]]\nname = \"app\"",
        &format!("admin = {{ listen = \"127.0.0.1:{admin}\", token = \"{TOKEN}\", basic_auth = {{ {users} }} }}\n\n[[upstream]]\nname = \"app\""),
    );
    let p = Proxyd::start(1, &conf);
    (up, admin, p)
}

/// curl's status line and headers (and body) for a request with `-u user:password`.
fn curl(admin: u16, method: &str, path: &str, user: Option<&str>) -> String {
    let mut c = Command::new("curl");
    c.args(["-sS", "-i", "-X", method, "--max-time", "10"]);
    if let Some(u) = user {
        c.args(["-u", u]);
    }
    if method != "GET" {
        // An action needs it beside the credential (see admin_api's CSRF test).
        c.args(["-H", "X-Proxyd-Dashboard: 1"]);
    }
    let out = c
        .arg(format!("http://127.0.0.1:{admin}{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

#[test]
fn basic_auth_users_sign_in_and_are_named_in_the_log() {
    let (up, admin, p) = start(&format!("ops = \"{BCRYPT}\", ci = \"{SHA512}\""));

    let r = curl(admin, "GET", "/api/status", Some("ops:secret"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"generation\":1"), "{r}");
    // Remembered after the first check: the dashboard's polling costs no more hashes.
    for _ in 0..5 {
        let r = curl(admin, "GET", "/api/upstreams", Some("ops:secret"));
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    let r = curl(admin, "GET", "/metrics", Some("ci:secret"));
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("proxyd_config_generation"),
        "{r}"
    );

    // Wrong password, unknown user, no credential, a mangled one: 401 with both challenges.
    for user in [Some("ops:wrong"), Some("nobody:secret"), Some("ops:"), None] {
        let r = curl(admin, "GET", "/api/status", user);
        assert!(r.starts_with("HTTP/1.1 401"), "{user:?}: {r}");
        assert!(
            r.contains("WWW-Authenticate: Basic realm=\"proxyd admin\"")
                && r.contains("WWW-Authenticate: Bearer realm=\"proxyd\""),
            "{r}"
        );
    }
    let raw = send_raw(
        &format!("127.0.0.1:{admin}"),
        format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nAuthorization: Basic %%%%\r\n\r\n").as_bytes(),
    );
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    // The token still works beside the users.
    let raw = send_raw(
        &format!("127.0.0.1:{admin}"),
        format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");

    // /login sends a signed-in browser back to the dashboard; without a user it challenges.
    let r = curl(admin, "GET", "/login", Some("ops:secret"));
    assert!(
        r.starts_with("HTTP/1.1 303") && r.contains("Location: /\n"),
        "{r}"
    );
    let r = curl(admin, "GET", "/login", None);
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");

    // An action names the user who took it, at notice level.
    let r = curl(
        admin,
        "POST",
        &format!("/api/upstreams/app/peers/{}/drain", up.addr()),
        Some("ci:secret"),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let log = p.error_log();
    let line = log
        .lines()
        .find(|l| l.contains("drained"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("[notice]") && line.contains("(user ci)") && line.contains("by 127.0.0.1:"),
        "{line}"
    );
    // The hashes never show in the effective config.
    let r = curl(admin, "GET", "/api/config", Some("ops:secret"));
    assert!(
        r.contains("\"ops\"") && !r.contains("$2y$") && !r.contains("$6$"),
        "{r}"
    );
}

#[test]
fn slow_hashes_are_rationed_and_the_master_keeps_answering() {
    let (_up, admin, p) = start(&format!("slow = \"{SLOW}\", ops = \"{BCRYPT}\""));
    // Wrong guesses at a slow hash: the first is checked, the next ones wait their turn (429)
    // rather than holding the master for most of each second.
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = curl(admin, "GET", "/api/status", Some("slow:guess"));
        codes.push(r[9..12].to_string());
    }
    assert_eq!(codes[0], "401", "{codes:?}");
    assert!(codes.contains(&"429".to_string()), "{codes:?}");
    // Meanwhile the token (no hash) and the control socket answer, and a reload works.
    let raw = send_raw(
        &format!("127.0.0.1:{admin}"),
        format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(p.ctl("reload").status.success());
    // The budget refills (at a quarter of the time that passes: a few seconds, more on a
    // loaded machine where each hash takes longer): a right password gets in.
    assert!(wait_until(Duration::from_secs(60), || curl(
        admin,
        "GET",
        "/api/status",
        Some("slow:secret")
    )
    .starts_with("HTTP/1.1 200")));
}

#[test]
fn silent_connections_cannot_lock_out_a_prompt_client() {
    let (_up, admin, _p) = start(&format!("ops = \"{BCRYPT}\""));
    // Twice the table's 64 connections, each sending half a head and nothing more.
    let mut silent = Vec::new();
    for _ in 0..128 {
        let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
        s.write_all(b"GET /api/status HTTP/1.1\r\n").unwrap();
        silent.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let r = curl(admin, "GET", "/api/status", Some("ops:secret"));
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    // The oldest silent ones were closed to make room.
    let mut closed = 0;
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut b = [0u8; 16];
        // Closed with its half head unread, a socket is reset rather than ended.
        match s.read(&mut b) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    assert!(closed >= 64, "{closed}");
}

#[test]
fn bad_basic_auth_config_is_refused_with_its_line() {
    let dir = TempDir::new("admin-auth");
    let cases = [
        ("ops = \"secret\"", "not a password in clear"),
        ("ops = \"$1$abc$def\"", "bcrypt ($2b$, $2y$) or SHA-crypt"),
        (
            &format!("\"a:b\" = \"{BCRYPT}\"") as &str,
            "has no ':' or control characters",
        ),
        ("", "names no users"),
    ];
    for (users, want) in cases {
        let text = format!(
            "[[upstream]]\nname = \"u\"\npeers = [\"127.0.0.1:9\"]\n\n[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\npath = \"/\"\nupstream = \"u\"\n\n[admin]\nlisten = \"127.0.0.1:9180\"\nbasic_auth = {{ {users} }}\n"
        );
        let (ok, out) = config_test(&dir, &text);
        assert!(!ok, "{users}: {out}");
        assert!(out.contains(want) && out.contains(":13:"), "{users}: {out}");
    }
    // Users alone (no token) are enough.
    let text = format!(
        "[[upstream]]\nname = \"u\"\npeers = [\"127.0.0.1:9\"]\n\n[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\npath = \"/\"\nupstream = \"u\"\n\n[admin]\nlisten = \"127.0.0.1:9180\"\nbasic_auth = {{ ops = \"{BCRYPT}\" }}\n"
    );
    let (ok, out) = config_test(&dir, &text);
    assert!(ok, "{out}");
}

/// A bcrypt hash at cost 14, the highest `-t` accepts (a second or more per check; no
/// password matches it: only wrong guesses are sent).
const COST14: &str = "$2y$14$mtR7KntlY0.o9BPcRubBr.7FDd73r5STzyTTNc33SoLMwPHZzufTK";

/// Sends a request for `/api/status` as `slow:guess` (a hash of the slowest kind), then a
/// token request on a second connection and waits for its answer: the master has taken the
/// first one in hand (it reads them in order) by then. Returns the first connection.
fn slow_sign_in_in_flight(admin: u16) -> TcpStream {
    use base64::Engine;
    let cred = base64::engine::general_purpose::STANDARD.encode("slow:guess");
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    write!(
        s,
        "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nAuthorization: Basic {cred}\r\n\r\n"
    )
    .unwrap();
    let raw = send_raw(
        &format!("127.0.0.1:{admin}"),
        format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    s
}

/// Whether `s` has been answered (or closed) yet, without waiting.
fn answered(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let r = s.peek(&mut b);
    s.set_nonblocking(false).unwrap();
    !matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn read_all(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    String::from_utf8_lossy(&v).to_string()
}

/// Password hashing stalls the master: while a slow hash is checked, a killed worker is
/// respawned at once (before the sign-in is answered), and the answer comes after.
#[test]
fn password_hashing_does_not_stall_the_master_worker_respawn() {
    let (_up, admin, p) = start(&format!("slow = \"{COST14}\""));
    let mut pending = slow_sign_in_in_flight(admin);
    let victim = p.worker_pids()[0];
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(120), || p
        .error_log()
        .matches("started worker process")
        .count()
        == 2));
    // Respawned, and the sign-in still waits for its hash.
    assert!(
        !answered(&mut pending),
        "the sign-in was answered before the worker was respawned"
    );
    let r = read_all(&mut pending);
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(get_close(&p.addr(), "/x", "t", "").starts_with("HTTP/1.1 200"));
}

/// Password hashing stalls the master: SIGTERM during a slow hash stops the master without
/// waiting for the hash (the sign-in gets 429, never its 401), and the hashing process goes.
#[test]
fn password_hashing_does_not_stall_the_master_sigterm() {
    let (_up, admin, mut p) = start(&format!("slow = \"{COST14}\""));
    let mut pending = slow_sign_in_in_flight(admin);
    let helpers = children_of(p.pid());
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(120)).is_some());
    let r = read_all(&mut pending);
    assert!(r.starts_with("HTTP/1.1 429"), "{r}");
    assert!(wait_until(Duration::from_secs(10), || helpers
        .iter()
        .all(|&pid| !alive(pid))));
}

#[test]
fn password_hashing_too_slow_is_refused_by_config_test() {
    let dir = TempDir::new("admin-cost");
    let bcrypt31 = BCRYPT.replace("$04$", "$31$");
    let sha = SLOWEST.replace("rounds=1000000", "rounds=20000000");
    for (hash, want) in [
        (bcrypt31.as_str(), "bcrypt cost 31 is above 14"),
        (sha.as_str(), "rounds=20000000 is above 1000000"),
    ] {
        let text = format!(
            "[[upstream]]\nname = \"u\"\npeers = [\"127.0.0.1:9\"]\n\n[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\npath = \"/\"\nupstream = \"u\"\n\n[admin]\nlisten = \"127.0.0.1:9180\"\nbasic_auth = {{ ops = \"{hash}\" }}\n"
        );
        let (ok, out) = config_test(&dir, &text);
        assert!(
            !ok && out.contains(want) && out.contains("main.toml:13:"),
            "{out}"
        );
    }
    // The bounds themselves pass.
    for hash in [BCRYPT.replace("$04$", "$14$"), SLOWEST.to_string()] {
        let text = format!(
            "[[upstream]]\nname = \"u\"\npeers = [\"127.0.0.1:9\"]\n\n[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\npath = \"/\"\nupstream = \"u\"\n\n[admin]\nlisten = \"127.0.0.1:9180\"\nbasic_auth = {{ ops = \"{hash}\" }}\n"
        );
        let (ok, out) = config_test(&dir, &text);
        assert!(ok, "{out}");
    }
    // Users whose hashes differ in cost: a timing oracle for names, said by -t.
    let text = format!(
        "[[upstream]]\nname = \"u\"\npeers = [\"127.0.0.1:9\"]\n\n[[server]]\nlisten = \"127.0.0.1:8080\"\n[[server.route]]\npath = \"/\"\nupstream = \"u\"\n\n[admin]\nlisten = \"127.0.0.1:9180\"\nbasic_auth = {{ ops = \"{BCRYPT}\", ci = \"{SLOWEST}\" }}\n"
    );
    let (ok, out) = config_test(&dir, &text);
    assert!(
        ok && out.contains("main.toml:13:") && out.contains("differ in cost"),
        "{out}"
    );
}
