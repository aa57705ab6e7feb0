//! TLS to upstreams: a Python TLS server (tests/common/tls_upstream.py) that reports what it
//! saw (SNI, client certificate, connection and request numbers, body length) behind proxyd.
//! Verification against a configured CA (the wrong one: 502), the names sent and verified,
//! `verify = false`, a client certificate, pooled connections reused, a large upload through
//! the handshake, and config errors.

mod common;

use common::certs::{ca, client_cert, server_cert};
use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The Python TLS upstream, stopped on drop.
struct TlsUpstream {
    child: Child,
    port: u16,
}

impl TlsUpstream {
    fn start(dir: &Path, cert: &str, client_ca: Option<&str>) -> TlsUpstream {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/tls_upstream.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(dir.join(format!("{cert}.crt")))
            .arg(dir.join(format!("{cert}.key")));
        if let Some(ca) = client_ca {
            cmd.arg(dir.join(format!("{ca}.crt")));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the upstream's port");
        TlsUpstream { child, port }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A proxyd whose upstream "app" is `peer` with `tls`.
fn proxy(peer: &str, tls: &str) -> Proxyd {
    Proxyd::start(
        1,
        &format!(
            "[[upstream]]\nname = \"app\"\npeers = [\"{peer}\"]\ntls = {tls}\n\
             [[server]]\nlisten = \"127.0.0.1:{{port}}\"\nclient_max_body_size = \"10m\"\n\
             [[server.route]]\npath = \"/\"\nupstream = \"app\"\n"
        ),
    )
}

/// JSON field `key` of the upstream's answer, as text.
fn field(body: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match &v[key] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn setup() -> (TempDir, String) {
    let dir = TempDir::new("upstream-tls");
    let p = dir.path();
    ca(p, "ca");
    ca(p, "other");
    server_cert(p, "up", "up.test", "ca");
    client_cert(p, "proxy", "/CN=proxyd/O=Edge", "ca");
    let d = p.display().to_string();
    (dir, d)
}

#[test]
fn upstream_certificates_are_verified() {
    let (dir, d) = setup();
    let up = TlsUpstream::start(dir.path(), "up", None);
    let peer = format!("127.0.0.1:{}", up.port);

    // The right CA and the name on the certificate: through, with that name as SNI.
    let px = proxy(
        &peer,
        &format!("{{ ca = \"{d}/ca.crt\", server_name = \"up.test\" }}"),
    );
    let r = client::get(&px.addr(), "/a").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(field(&r.text(), "sni"), "up.test");
    assert_eq!(field(&r.text(), "path"), "/a");
    drop(px);

    // Another CA: refused, 502, and the log says why.
    let px = proxy(
        &peer,
        &format!("{{ ca = \"{d}/other.crt\", server_name = \"up.test\" }}"),
    );
    let r = client::get(&px.addr(), "/").unwrap();
    assert_eq!(r.status, 502);
    assert!(
        wait_until(std::time::Duration::from_secs(5), || px
            .error_log()
            .contains("UnknownIssuer")),
        "{}",
        px.error_log()
    );
    drop(px);

    // A name the certificate does not carry: 502; verified as another name: through,
    // still sending the first as SNI.
    let px = proxy(
        &peer,
        &format!("{{ ca = \"{d}/ca.crt\", server_name = \"x.test\" }}"),
    );
    assert_eq!(client::get(&px.addr(), "/").unwrap().status, 502);
    drop(px);
    let px = proxy(
        &peer,
        &format!("{{ ca = \"{d}/ca.crt\", server_name = \"x.test\", verify_name = \"up.test\" }}"),
    );
    let r = client::get(&px.addr(), "/").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(field(&r.text(), "sni"), "x.test");
    drop(px);

    // An address peer with no name: verified against the address, which the certificate
    // does not carry; verify = false takes it.
    let px = proxy(&peer, &format!("{{ ca = \"{d}/ca.crt\" }}"));
    assert_eq!(client::get(&px.addr(), "/").unwrap().status, 502);
    drop(px);
    let px = proxy(&peer, "{ verify = false }");
    let r = client::get(&px.addr(), "/").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(field(&r.text(), "sni"), "null", "no SNI for an address");
    drop(px);

    // Peers that do not speak TLS: one waits for an HTTP request (the handshake times out
    // under connect_timeout: 504), one answers with a bad record or closes at once (502).
    // Each is a failed connect, the log says why, and the worker lives on.
    use common::raw::{self, RawUpstream};
    let http = RawUpstream::start(|_| raw::ok("plain"));
    let junk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let junk_addr = junk.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        for (i, c) in junk.incoming().enumerate() {
            let Ok(mut c) = c else { continue };
            if i % 2 == 0 {
                let _ = c.write_all(&[0x16, 0x03, 0x03, 0xff, 0xff, 1, 2, 3]);
            }
        }
    });
    for (peer, status, says) in [
        (http.addr(), 504, "failed: timed out"),
        (junk_addr.to_string(), 502, "TLS handshake"),
    ] {
        let px = proxy(&peer, "{ verify = false }\nconnect_timeout = \"1s\"");
        let worker = px.worker_pids();
        for _ in 0..3 {
            assert_eq!(client::get(&px.addr(), "/").unwrap().status, status);
        }
        assert!(px.error_log().contains(says), "{}", px.error_log());
        assert_eq!(px.worker_pids(), worker);
    }
}

#[test]
fn client_certificate_pooling_and_large_bodies() {
    let (dir, d) = setup();
    let up = TlsUpstream::start(dir.path(), "up", Some("ca"));
    let peer = format!("127.0.0.1:{}", up.port);
    let px = proxy(
        &peer,
        &format!(
            "{{ ca = \"{d}/ca.crt\", server_name = \"up.test\", cert = \"{d}/proxy.crt\", key = \"{d}/proxy.key\" }}"
        ),
    );
    // A 3 MB upload first, so on a new upstream connection: the body waits in rustls for the
    // handshake, then all of it arrives.
    let body = vec![b'x'; 3 << 20];
    let mut c = client::Client::connect(&px.addr()).unwrap();
    c.send("POST", "/up", &[], client::Body::Bytes(&body))
        .unwrap();
    let r = c.recv(false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(field(&r.text(), "body"), (3 << 20).to_string());
    assert_eq!(field(&r.text(), "conn"), "1");
    // 20 more requests: the pooled upstream connection carries them all.
    let mut seen = Vec::new();
    for i in 0..20 {
        let r = c
            .request("GET", &format!("/{i}"), client::Body::None)
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        seen.push((field(&r.text(), "conn"), field(&r.text(), "request")));
        assert!(
            field(&r.text(), "client").contains("commonName=proxyd"),
            "{}",
            r.text()
        );
    }
    assert!(seen.iter().all(|(conn, _)| conn == &seen[0].0), "{seen:?}");
    assert_eq!(
        seen[19].1,
        (seen[0].1.parse::<u32>().unwrap() + 19).to_string()
    );
    assert!(px.unexpected_errors(&[]).is_empty(), "{}", px.error_log());
}

#[test]
fn http_health_checks_speak_tls() {
    let (dir, d) = setup();
    let up = TlsUpstream::start(dir.path(), "up", None);
    let peer = format!("127.0.0.1:{}", up.port);
    let tls = format!("{{ ca = \"{d}/ca.crt\", server_name = \"up.test\" }}");
    let check = |status: &str| {
        format!(
            "{tls}\nhealth_check = {{ path = \"/healthz\", interval = \"100ms\", timeout = \"1s\", \
             rise = 1, fall = 1, status = \"{status}\", body = \"~\\\"path\\\": \\\"/healthz\\\"\" }}"
        )
    };
    // The upstream answers the probe's GET over TLS with 200 and the path it saw.
    let px = proxy(&peer, &check("200-299"));
    assert!(
        wait_until(std::time::Duration::from_secs(5), || px
            .peer_row("app", &peer)
            .state()
            == "up"),
        "{}",
        px.status()
    );
    assert_eq!(client::get(&px.addr(), "/").unwrap().status, 200);
    drop(px);
    // A check that wants another status finds the peer down: the probe got a real answer.
    let px = proxy(&peer, &check("500-599"));
    assert!(
        wait_until(std::time::Duration::from_secs(5), || px
            .peer_row("app", &peer)
            .state()
            == "down (health check)"),
        "{}",
        px.status()
    );
    assert!(px.error_log().contains("status 200"), "{}", px.error_log());
    // And the wrong CA fails the probe's handshake.
    drop(px);
    let px = proxy(&peer, &check("200-299").replace("ca.crt", "other.crt"));
    assert!(wait_until(std::time::Duration::from_secs(5), || px
        .peer_row("app", &peer)
        .state()
        == "down (health check)"));
}

#[test]
fn upstream_tls_settings_are_checked() {
    let (dir, d) = setup();
    let conf = |tls: &str, extra: &str| {
        format!(
            "pid_file = \"{d}/p.pid\"\n[[upstream]]\nname = \"app\"\npeers = [\"127.0.0.1:9\"]\n\
             tls = {tls}\n{extra}[[server]]\nlisten = \"127.0.0.1:{}\"\n\
             [[server.route]]\npath = \"/\"\nupstream = \"app\"\n",
            free_port()
        )
    };
    let (ok, out) = config_test(&dir, &conf("true", ""));
    assert!(ok, "system roots: {out}");
    let (ok, out) = config_test(&dir, &conf("{ verify = false }", ""));
    assert!(ok && out.contains("accepts any certificate"), "{out}");
    let bad = [
        (
            conf(&format!("{{ ca = \"{d}/missing.crt\" }}"), ""),
            "cannot read CA bundle",
        ),
        (
            conf(&format!("{{ cert = \"{d}/proxy.crt\" }}"), ""),
            "cert and key go together",
        ),
        (conf("{ server_name = \"a b\" }", ""), "is not a host name"),
        (
            conf("{ verify = false, verify_name = \"a\" }", ""),
            "need verify = true",
        ),
        (conf("{ sni = \"a\" }", ""), "unknown field"),
        (conf("\"yes\"", ""), "upstream tls"),
    ];
    for (text, says) in bad {
        let (ok, out) = config_test(&dir, &text);
        assert!(!ok && out.contains(says), "wanted {says:?} in {out}");
        assert!(out.contains("main.toml:"), "{out}");
    }
}
