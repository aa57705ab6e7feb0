//! A server's `error_pages`: files that replace the built-in pages of the errors proxyd
//! answers itself, served from the file when the error happens (sendfile to a plain client,
//! read in chunks through TLS), with the length and keep-alive of any answer; a file that
//! went away falls back to the built-in page; `proxyctl -t` refuses what cannot work.

mod common;

use common::certs::{cert, curl};
use common::client::{checksum, Client};
use common::*;
use std::time::Duration;

/// A page large enough to take several sendfile calls and many TLS records.
fn big_page() -> Vec<u8> {
    let mut p = b"<html><body>upstream trouble".to_vec();
    p.extend((0..700_000u32).map(|i| b'a' + (i % 26) as u8));
    p.extend_from_slice(b"</body></html>\n");
    p
}

fn conf(dead: u16, tls: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "gone"
peers = ["127.0.0.1:{dead}"]

[[server]]
listen = "127.0.0.1:{{port}}"
{tls}
error_pages = {{ 404 = "{{dir}}/404.html", "500-599" = "{{dir}}/5xx.html" }}
[[server.route]]
path = "/app/"
upstream = "gone"
"#
    )
}

fn start(tls: &str, page404: &[u8], page5xx: &[u8]) -> Proxyd {
    let dir = TempDir::new("error-pages");
    std::fs::write(dir.path().join("404.html"), page404).unwrap();
    std::fs::write(dir.path().join("5xx.html"), page5xx).unwrap();
    let port = free_port();
    let text = Proxyd::render(&dir, port, 1, "", &conf(free_port(), tls));
    let path = dir.write("proxyd.toml", &text);
    Proxyd::start_file(dir, path, port)
}

#[test]
fn the_files_answer_for_the_statuses_they_cover_with_keep_alive() {
    let big = big_page();
    let p = start("", b"<h1>not here</h1>\n", &big);
    let mut c = Client::connect(&p.addr()).unwrap();
    c.set_timeout(Duration::from_secs(10));
    let r = c
        .request("GET", "/nothing", common::client::Body::None)
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "<h1>not here</h1>\n");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("content-length"), Some("18"));
    // The same connection carries on: the length framed the file exactly.
    let r = c
        .request("GET", "/app/x", common::client::Body::None)
        .unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.len, big.len() as u64);
    assert_eq!(r.sum, checksum(big.iter().copied()));
    assert!(!r.closes());
    let r = c
        .request("HEAD", "/nothing", common::client::Body::None)
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-length"), Some("18"));
    assert!(r.body.is_empty());
    let r = c
        .request("GET", "/again", common::client::Body::None)
        .unwrap();
    assert_eq!(r.text(), "<h1>not here</h1>\n");
}

#[test]
fn a_page_is_read_when_the_error_happens_and_a_missing_one_falls_back() {
    let p = start("", b"first\n", b"5xx\n");
    let page = p.dir.path().join("404.html");
    assert!(get_close(&p.addr(), "/x", "a", "").contains("first"));
    // Edited: the next error shows the new text, no reload needed.
    std::fs::write(&page, b"second\n").unwrap();
    let r = common::client::get(&p.addr(), "/x").unwrap();
    assert_eq!(r.text(), "second\n");
    // A FIFO in its place (open(2) would wait for a writer): refused at once, as not a
    // regular file, and the built-in page goes out.
    std::fs::remove_file(&page).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&page)
        .status()
        .unwrap();
    assert!(made.success());
    let r = common::client::get(&p.addr(), "/x").unwrap();
    assert!(r.text().contains("404 Not Found"), "{}", r.text());
    // Gone: the built-in page, and the error log says why.
    std::fs::remove_file(&page).unwrap();
    let r = common::client::get(&p.addr(), "/x").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.text().contains("404 Not Found"), "{}", r.text());
    assert!(
        p.error_log().contains("cannot be opened"),
        "{}",
        p.error_log()
    );
    assert!(p.unexpected_errors(&["cannot be opened"]).is_empty());
}

#[test]
fn a_tls_client_gets_the_file_through_rustls() {
    let certs = TempDir::new("error-pages-certs");
    cert(certs.path(), "a", &["a.test"], false);
    let tls = format!(
        "tls = {{ cert = \"{d}/a.crt\", key = \"{d}/a.key\" }}",
        d = certs.path().display()
    );
    let big = big_page();
    let p = start(&tls, b"tls 404\n", &big);
    let ca = certs.path().join("a.crt");
    let (rc, body, v) = curl(p.port, &ca, "a.test", "/nothing", &[]);
    assert_eq!((rc, body.as_str()), (0, "tls 404\n"), "{v}");
    let (rc, body, v) = curl(p.port, &ca, "a.test", "/app/", &[]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(body.len(), big.len());
    assert_eq!(body.as_bytes(), &big[..]);
}

#[test]
fn the_config_test_refuses_pages_that_cannot_work() {
    let dir = TempDir::new("error-pages-check");
    std::fs::write(dir.path().join("p.html"), b"x").unwrap();
    let fifo = dir.path().join("fifo.html");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let d = dir.path().display();
    let case = |pages: &str| {
        config_test(
            &dir,
            &format!("[[server]]\nlisten = \"127.0.0.1:1\"\nerror_pages = {pages}\n"),
        )
    };
    let (ok, out) = case(&format!(
        "{{ 404 = \"{d}/p.html\", \"500-503\" = \"p.html\" }}"
    ));
    assert!(
        ok,
        "a status and a range, absolute or relative to the config: {out}"
    );
    for (pages, says) in [
        (format!("{{ 404 = \"{d}/missing.html\" }}"), "cannot open"),
        (format!("{{ 200 = \"{d}/p.html\" }}"), "within 400-599"),
        (
            format!("{{ \"500-599\" = \"{d}/p.html\", 502 = \"{d}/p.html\" }}"),
            "overlaps",
        ),
        (format!("{{ 404 = \"{d}\" }}"), "not a regular file"),
        // Without a writer, a blocking open would never return.
        (
            format!("{{ 404 = \"{d}/fifo.html\" }}"),
            "not a regular file",
        ),
        ("{ 404 = 1 }".to_string(), "file name"),
        ("\"x.html\"".to_string(), "expected a map"),
        (format!("{{ \"+404\" = \"{d}/p.html\" }}"), "within 400-599"),
    ] {
        let (ok, out) = case(&pages);
        assert!(!ok, "{pages} passed");
        assert!(out.contains(says), "{pages}: {out}");
        assert!(out.contains("main.toml:3"), "{pages}: located: {out}");
    }
}

#[test]
fn each_entry_is_located_on_its_own_line_and_a_page_the_workers_cannot_read_is_flagged() {
    let dir = TempDir::new("error-pages-lines");
    let d = dir.path().display();
    let secret = dir.path().join("secret.html");
    std::fs::write(&secret, b"x").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[[server]]\nlisten = \"127.0.0.1:1\"\n[server.error_pages]\n404 = \"{d}/secret.html\"\n\"501-502\" = \"{d}/missing.html\"\n600 = \"{d}/secret.html\"\n"
    );
    let (ok, out) = config_test(&dir, &text);
    assert!(!ok, "{out}");
    assert!(
        out.contains("main.toml:5:") && out.contains("missing.html"),
        "{out}"
    );
    assert!(
        out.contains("main.toml:6:") && out.contains("\"600\""),
        "{out}"
    );
    // As root, the master checks files as root but workers open them as `user` (nobody
    // here): a root-only page is worth a warning. Not as another user (no drop then).
    let text = format!(
        "[[server]]\nlisten = \"127.0.0.1:1\"\n[server.error_pages]\n404 = \"{d}/secret.html\"\n"
    );
    let (ok, out) = config_test(&dir, &text);
    assert!(ok, "a warning, not an error: {out}");
    if nix::unistd::geteuid().is_root() {
        assert!(
            out.contains("main.toml:4:") && out.contains("not readable by the workers' user"),
            "{out}"
        );
    }
}
